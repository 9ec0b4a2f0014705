"""Import and export of BERT-family, Longformer, ModernBERT (and core) checkpoints."""

from longadapt.interop.checkpoints import (
    ImportResult,
    enable_global_tokens,
    export_modernbert,
    import_checkpoint,
    make_long,
    resolve_source,
)
from longadapt.interop.save import save_core, save_exported

__all__ = [
    "ImportResult",
    "import_checkpoint",
    "make_long",
    "enable_global_tokens",
    "export_modernbert",
    "resolve_source",
    "save_core",
    "save_exported",
]
