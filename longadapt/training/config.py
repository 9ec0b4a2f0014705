"""The configuration tree of a masked-LM training run.

Every default of the training engine lives here, in these dataclasses, and nowhere else: YAML
recipes and ``key.sub=value`` overrides only change values. Build a config from a dict with
:func:`train_config_from_dict` (unknown keys raise a :class:`~longadapt.errors.LongAdaptError`
that names the key, the file and the line when known).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longadapt.config import ConfigSource, from_dict, to_dict
from longadapt.data.corpus import CorpusSpec
from longadapt.data.packing import PackingConfig
from longadapt.errors import LongAdaptError

SCHEDULES = ("wsd", "linear", "cosine", "constant")
DECAY_SHAPES = ("1-sqrt", "linear", "cosine")
PRECISIONS = ("fp32", "bf16", "auto")  # auto: bf16 where the device computes it natively (longadapt.precision)


@dataclass
class ModelSection:
    """Which model to train: a core config to initialise randomly OR a checkpoint to continue.

    ``config`` holds the keyword arguments of the model config (``model_type`` defaults to
    ``"longadapt"``, the core). ``vocab_size`` defaults to the tokenizer's length rounded up to a
    multiple of 64, and the special-token ids default to the tokenizer's. ``freeze`` lists glob
    patterns of parameter names left untrained (a head warm-up: ``["model.*"]`` trains only the MLM
    head and the decoder bias; the decoder weight is tied to the embeddings, so it is frozen with them).
    """

    config: dict[str, Any] | None = None
    path: str | None = None
    gradient_checkpointing: bool = False
    # glob patterns of parameter names (as in model.named_parameters(), e.g. "model.*" for the whole
    # encoder and the embeddings) that this run does not train
    freeze: list[str] | None = None


@dataclass
class OptimizerConfig:
    """AdamW; weight decay is not applied to biases and normalisation weights (1-d parameters)."""

    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    # None or 0: no clipping (the norm is still logged)
    max_grad_norm: float | None = 1.0
    # learning-rate multipliers by glob pattern of parameter names (the first pattern that matches wins;
    # unmatched parameters train at lr): {"model.*": 0.1} trains a pretrained encoder at a tenth of the
    # rate of a newly initialised MLM head. A pattern that matches nothing is an error.
    lr_multipliers: dict[str, float] | None = None


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, in optimizer steps.

    ``wsd``: warmup, stable, then a decay over the last ``decay_steps`` (or ``decay_fraction`` of
    the run) with ``decay_shape`` (``1-sqrt`` as in ModernBERT, ``linear`` or ``cosine``).
    ``linear`` / ``cosine``: warmup then a decay over the whole run. ``constant``: warmup then flat.
    ``min_lr_ratio`` (final rate / lr) applies to ``wsd`` and ``cosine``; ``linear`` ends at 0.
    """

    name: str = "wsd"
    warmup_steps: int = 0
    decay_steps: int | None = None
    decay_fraction: float = 0.1
    decay_shape: str = "1-sqrt"
    min_lr_ratio: float = 0.0


@dataclass
class MaskingConfig:
    """Masked-LM corruption, passed to :class:`longadapt.data.MLMCollator`."""

    mlm_probability: float = 0.3
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    whole_word_masking: bool = False
    pad_to_multiple_of: int | None = None


@dataclass
class DataOptions:
    """Options of :func:`longadapt.data.build_packed_dataset`; ``None`` keeps that function's default."""

    validation_fraction: float | None = None
    num_proc: int | None = None
    cache_dir: str | None = None
    max_documents: int | None = None
    # sentence segmentation and packing options
    packing: PackingConfig | None = None
    # evaluate on at most this many packed validation rows
    max_validation_rows: int | None = None


@dataclass
class TrainConfig:
    """A masked-LM training run (``longadapt pretrain`` / :func:`longadapt.training.train`)."""

    model: ModelSection = field(default_factory=ModelSection)
    # a path, or pkg:<python package>/<folder>; default: model.path
    tokenizer: str | None = None
    # path (relative: config folder, then $LONGADAPT_DATA), format...
    corpus: CorpusSpec | None = None
    language: str = "fr"
    max_length: int = 1024
    # target tokens per optimizer step (all processes together)
    tokens_per_step: int = 65536
    # packed rows per forward pass and process
    micro_batch_size: int = 8
    # optimizer steps
    steps: int = 1000
    lr: float = 5e-4
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    data: DataOptions = field(default_factory=DataOptions)
    # fp32 | bf16 | auto (mixed precision through accelerate; auto: longadapt.precision)
    precision: str = "fp32"
    seed: int = 0
    # optimizer steps between validation passes (0: only at start and end)
    eval_every: int = 100
    # bits per byte per position bucket in the document; 0: off
    position_bucket_size: int = 512
    log_every: int = 10
    # optimizer steps between checkpoints (0: none)
    save_every: int = 500
    # also checkpoint when this much training time passed since the last (0: off)
    save_every_minutes: float = 0.0
    # checkpoints kept
    keep_last: int = 2
    tensorboard: bool = True
    output_dir: str = "runs/pretrain"
    resume: bool = False

    def validate(self, where: "ConfigSource | None" = None) -> None:
        """Check values that are wrong whatever the data (raises LongAdaptError)."""
        w = where or ConfigSource()
        checks: list[tuple[bool, str, str]] = [
            (self.max_length >= 8, "max_length", "must be at least 8"),
            (self.tokens_per_step > 0, "tokens_per_step", "must be positive"),
            (self.micro_batch_size > 0, "micro_batch_size", "must be positive"),
            (self.steps > 0, "steps", "must be positive"),
            (self.lr > 0, "lr", "must be positive"),
            (self.schedule.name in SCHEDULES, "schedule.name", f"must be one of {', '.join(SCHEDULES)}"),
            (
                self.schedule.decay_shape in DECAY_SHAPES,
                "schedule.decay_shape",
                f"must be one of {', '.join(DECAY_SHAPES)}",
            ),
            (self.schedule.warmup_steps >= 0, "schedule.warmup_steps", "must be >= 0"),
            (0.0 <= self.schedule.decay_fraction <= 1.0, "schedule.decay_fraction", "must be in [0, 1]"),
            (self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}"),
            (0.0 < self.masking.mlm_probability < 1.0, "masking.mlm_probability", "must be in (0, 1)"),
            (self.eval_every >= 0, "eval_every", "must be >= 0"),
            (self.save_every >= 0, "save_every", "must be >= 0"),
            (self.save_every_minutes >= 0, "save_every_minutes", "must be >= 0"),
            (self.keep_last >= 1, "keep_last", "must be at least 1"),
            (self.log_every >= 1, "log_every", "must be at least 1"),
            (self.position_bucket_size >= 0, "position_bucket_size", "must be >= 0"),
            (
                self.optimizer.lr_multipliers is None
                or (isinstance(self.optimizer.lr_multipliers, dict) and all(
                    isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                    for k, v in self.optimizer.lr_multipliers.items())),
                "optimizer.lr_multipliers",
                'must map glob patterns of parameter names to numbers >= 0, e.g. {"model.*": 0.1}',
            ),
            (
                self.model.freeze is None
                or (isinstance(self.model.freeze, list) and all(isinstance(x, str) for x in self.model.freeze)),
                "model.freeze",
                'must be a list of glob patterns of parameter names, e.g. ["model.*"]',
            ),
        ]
        for ok, key, what in checks:
            if not ok:
                raise LongAdaptError(f"{w.where(key)}: {key} {what} (got {_get(self, key)!r})")
        if self.model.config is not None and self.model.path is not None:
            raise LongAdaptError(
                f"{w.where('model')}: set either model.config (a new model) or model.path "
                "(a checkpoint to continue), not both"
            )


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def train_config_from_dict(data: dict[str, Any], source: ConfigSource | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts, rejecting unknown keys with file/line."""
    source = source or ConfigSource()
    cfg = from_dict(TrainConfig, data, source)
    if isinstance(cfg.optimizer.betas, list):
        cfg.optimizer.betas = tuple(cfg.optimizer.betas)  # type: ignore[assignment]
    cfg.validate(source)
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-JSON form of a config (``run.json``)."""
    return to_dict(cfg)


# keys that may differ between a run and its resumption: they change no weight. A run is known by
# what decides its weights, not by where it lies: output_dir is left out, so a run folder that was
# moved, copied or named by another (relative) path resumes.
RESUMABLE_DIFFERENCES = frozenset(
    {
        "output_dir",
        "resume",
        "save_every",
        "save_every_minutes",
        "keep_last",
        "log_every",
        "eval_every",
        "tensorboard",
        "data.num_proc",
        "data.cache_dir",
        "model.gradient_checkpointing",
    }
)


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (ignoring RESUMABLE_DIFFERENCES)."""
    out: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        dotted = f"{prefix}{key}"
        if dotted in RESUMABLE_DIFFERENCES:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict) and not dotted.startswith("model.config"):
            out.extend(config_differences(va, vb, dotted + "."))
        elif _normalise(va) != _normalise(vb):
            out.append(dotted)
    return out


def _normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value
