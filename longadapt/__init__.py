"""longadapt: long-document adaptation of biomedical and clinical encoders.

Importing the package registers the core encoder (``model_type="longadapt"``) with the
transformers Auto classes, so ``AutoModel.from_pretrained(dir)`` works on directories that
longadapt wrote.
"""

__version__ = "0.1.0"

from longadapt.errors import LongAdaptError  # noqa: E402


def _help_only() -> bool:
    """``longadapt ... --help`` / ``-h``: the command line only prints help, which needs neither torch nor
    transformers (loading them takes seconds); every other use registers the core as usual."""
    import os
    import sys

    argv = sys.argv or [""]
    entry = os.path.basename(argv[0]) == "longadapt" or argv[0].endswith(os.path.join("longadapt", "__main__.py"))
    return entry and any(a in ("-h", "--help") for a in argv[1:])


if not _help_only():
    try:  # registration needs torch + transformers
        from longadapt.modeling import register_auto_classes as _register

        _register()
    except ImportError:  # pragma: no cover - only when torch/transformers are missing
        pass


# longadapt.predict (entities or labels of texts by a fine-tuned model: longadapt.evaluation.predict.predict),
# imported on first use: the package root stays below every layer (tests/test_architecture.py)
from longadapt._lazy import lazy_exports  # noqa: E402

__getattr__, __dir__ = lazy_exports(__name__, {"predict": "evaluation.predict"})

__all__ = ["LongAdaptError", "__version__", "predict"]
