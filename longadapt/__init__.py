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



def predict(model, texts, **kwargs):
    """Entities or labels of ``texts`` (strings or ``(id, text)`` pairs) by a fine-tuned ``model``; see
    :func:`longadapt.evaluation.predict.predict`."""
    from longadapt.evaluation.predict import predict as _predict

    return _predict(model, texts, **kwargs)


__all__ = ["LongAdaptError", "__version__", "predict"]
