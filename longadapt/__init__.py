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



def predict(model, texts, **kwargs):
    """Entities or labels of ``texts`` (strings or ``(id, text)`` pairs) by a fine-tuned ``model``; see
    :func:`longadapt.evaluation.predict.predict`."""
    from longadapt.evaluation.predict import predict as _predict

    return _predict(model, texts, **kwargs)


__all__ = ["LongAdaptError", "__version__", "predict"]
