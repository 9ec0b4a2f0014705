"""The RoPE long-context encoder core (``model_type="longadapt"``)."""

from longadapt.modeling.configuration import LongAdaptConfig
from longadapt.modeling.modeling import (
    LongAdaptForMaskedLM,
    LongAdaptForMultipleChoice,
    LongAdaptForSequenceClassification,
    LongAdaptForTokenClassification,
    LongAdaptModel,
    LongAdaptPreTrainedModel,
)

_REGISTERED = False


def register_auto_classes() -> None:
    """Register the core with AutoConfig and the AutoModel* classes (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForMultipleChoice,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    AutoConfig.register("longadapt", LongAdaptConfig, exist_ok=True)
    for auto, cls in (
        (AutoModel, LongAdaptModel),
        (AutoModelForMaskedLM, LongAdaptForMaskedLM),
        (AutoModelForSequenceClassification, LongAdaptForSequenceClassification),
        (AutoModelForTokenClassification, LongAdaptForTokenClassification),
        (AutoModelForMultipleChoice, LongAdaptForMultipleChoice),
    ):
        auto.register(LongAdaptConfig, cls, exist_ok=True)
    _REGISTERED = True


__all__ = [
    "LongAdaptConfig",
    "LongAdaptModel",
    "LongAdaptPreTrainedModel",
    "LongAdaptForMaskedLM",
    "LongAdaptForSequenceClassification",
    "LongAdaptForTokenClassification",
    "LongAdaptForMultipleChoice",
    "register_auto_classes",
]
