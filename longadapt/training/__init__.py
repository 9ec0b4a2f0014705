"""longadapt.training: the masked-LM training engine (accelerate).

``train(TrainConfig(...)) -> TrainResult`` from Python or notebooks; ``longadapt pretrain
CONFIG.yaml [key.sub=value ...] [--resume]`` from the shell (also under ``accelerate launch``).
"""

from longadapt.training.config import (
    ConfigSource,
    DataOptions,
    MaskingConfig,
    ModelSection,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
    train_config_from_dict,
)
from longadapt.training.engine import TrainingDiverged, TrainResult, evaluate, train
from longadapt.training.metrics import masked_token_losses, positions_in_document, read_metrics

__all__ = [
    "ConfigSource",
    "DataOptions",
    "MaskingConfig",
    "ModelSection",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "evaluate",
    "masked_token_losses",
    "positions_in_document",
    "read_metrics",
    "train",
    "train_config_from_dict",
]
