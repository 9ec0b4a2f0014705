"""Import and export of BERT-family, Longformer, ModernBERT (and core) checkpoints.

The names below are imported on first use (see :mod:`longadapt._lazy`).
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    "ImportResult": "checkpoints",
    "enable_global_tokens": "checkpoints",
    "export_modernbert": "checkpoints",
    "import_checkpoint": "checkpoints",
    "make_long": "checkpoints",
    "resolve_source": "checkpoints",
    "save_core": "save",
    "save_exported": "save",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
