"""longadapt.training: the masked-LM training engine (accelerate).

``train(TrainConfig(...)) -> TrainResult`` from Python or notebooks; ``longadapt pretrain
CONFIG.yaml [key.sub=value ...] [--resume]`` from the shell (also under ``accelerate launch``).
The names below are imported on first use (see :mod:`longadapt._lazy`).
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys([
        "ConfigSource", "DataOptions", "MaskingConfig", "ModelSection", "OptimizerConfig", "ScheduleConfig",
        "TrainConfig", "train_config_from_dict"
    ], "config"),
    **dict.fromkeys(["TrainingDiverged", "TrainResult", "evaluate", "train"], "engine"),
    **dict.fromkeys(["masked_token_losses", "positions_in_document", "read_metrics"], "metrics"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
