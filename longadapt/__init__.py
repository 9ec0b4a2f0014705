"""longadapt: long-document adaptation of biomedical and clinical encoders.

Importing the package registers the core encoder (``model_type="longadapt"``) with the
transformers Auto classes, so ``AutoModel.from_pretrained(dir)`` works on directories that
longadapt wrote.
"""

__version__ = "0.1.0"

from longadapt.errors import LongAdaptError  # noqa: E402

try:  # registration needs torch + transformers; the CLI's --help should work without them
    from longadapt.modeling import register_auto_classes as _register

    _register()
except ImportError:  # pragma: no cover - only when torch/transformers are missing
    pass

__all__ = ["LongAdaptError", "__version__"]
