"""Import and export of BERT-family, Longformer, ModernBERT (and core) checkpoints.

The names below are imported on first use (see :mod:`longadapt._lazy`).
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys([
        "ImportResult", "enable_global_tokens", "export_modernbert", "import_checkpoint", "make_long",
        "resolve_source"
    ], "checkpoints"),
    **dict.fromkeys(["save_core", "save_exported"], "save"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
