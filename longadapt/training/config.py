"""The configuration tree of a masked-LM training run.

Every default of the training engine lives here, in these dataclasses, and nowhere else: YAML
recipes and ``key.sub=value`` overrides only change values. Build a config from a dict with
:func:`train_config_from_dict` (unknown keys raise a :class:`~longadapt.errors.LongAdaptError`
that names the key, the file and the line when known).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import from_dict, to_dict, yaml_key_lines  # noqa: F401 - yaml_key_lines: used by training.cli
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
    max_grad_norm: float | None = 1.0  # None or 0: no clipping (the norm is still logged)
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
    packing: PackingConfig | None = None  # sentence segmentation and packing options
    max_validation_rows: int | None = None  # evaluate on at most this many packed validation rows


@dataclass
class TrainConfig:
    """A masked-LM training run (``longadapt pretrain`` / :func:`longadapt.training.train`)."""

    model: ModelSection = field(default_factory=ModelSection)
    tokenizer: str | None = None  # a path, or pkg:<python package>/<folder>; default: model.path
    corpus: CorpusSpec | None = None  # path (relative: config folder, then $LONGADAPT_DATA), format...
    language: str = "fr"
    max_length: int = 1024
    tokens_per_step: int = 65536  # target tokens per optimizer step (all processes together)
    micro_batch_size: int = 8  # packed rows per forward pass and process
    steps: int = 1000  # optimizer steps
    lr: float = 5e-4
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    data: DataOptions = field(default_factory=DataOptions)
    precision: str = "fp32"  # fp32 | bf16 | auto (mixed precision through accelerate; auto: longadapt.precision)
    seed: int = 0
    eval_every: int = 100  # optimizer steps between validation passes (0: only at start and end)
    position_bucket_size: int = 512  # bits per byte per position bucket in the document; 0: off
    log_every: int = 10
    save_every: int = 500  # optimizer steps between checkpoints (0: none)
    save_every_minutes: float = 0.0  # also checkpoint when this much training time passed since the last (0: off)
    keep_last: int = 2  # checkpoints kept
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


@dataclass
class ConfigSource:
    """Where a config came from, so that error messages can name a file, a line and a key."""

    path: Path | None = None
    lines: dict[str, int] = field(default_factory=dict)  # dotted key -> 1-based line in `path`
    overrides: dict[str, str] = field(default_factory=dict)  # dotted key -> "key=value" as typed

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths of the config are resolved against."""
        return self.path.resolve().parent if self.path is not None else Path.cwd()

    def known(self, key: str) -> str | None:
        """Where ``key`` (or the section holding it) was set, when this source knows; else None."""
        if key in self.overrides:
            return f"command-line override {self.overrides[key]!r}"
        probe = key
        while probe:
            if probe in self.lines and self.path is not None:
                return f"{self.path}:{self.lines[probe]}"
            probe = probe.rpartition(".")[0]
        return None

    def where(self, key: str) -> str:
        """``file.yaml:12 (key)``, ``command-line override key=value`` or ``config key``."""
        found = self.known(key)
        if found is not None:
            return found if key in self.overrides else f"{found} ({key})"
        if self.path is not None:
            return f"{self.path} ({key}: not set in the file, default used)"
        return f"config key {key}"


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass in a type hint (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(hint):
        return hint  # type: ignore[return-value]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1 and dataclasses.is_dataclass(args[0]):
        return args[0]
    return None


def _check_keys(cls: type, data: dict[str, Any], prefix: str, source: ConfigSource) -> None:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {prefix + close[0]!r}?" if close else ""
            raise LongAdaptError(
                f"{source.where(dotted)}: unknown key {dotted!r}.{hint} "
                f"Valid keys{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"
            )
        sub = _dataclass_of(hints.get(key))
        if sub is not None and value is not None:
            if not isinstance(value, dict):
                raise LongAdaptError(
                    f"{source.where(dotted)}: {dotted!r} must be a mapping of keys "
                    f"({', '.join(f.name for f in dataclasses.fields(sub))}), got {value!r}"
                )
            _check_keys(sub, value, dotted + ".", source)


def _materialise(cls: type, data: dict[str, Any], prefix: str, source: ConfigSource) -> dict[str, Any]:
    """Turn the values of optional dataclass fields (``X | None``) into ``X`` instances, which
    :func:`longadapt.config.from_dict` leaves as dicts; nested plain dataclasses recurse."""
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for key, value in data.items():
        hint = hints.get(key)
        sub = _dataclass_of(hint)
        if sub is None or not isinstance(value, dict):
            continue
        value = _materialise(sub, value, f"{prefix}{key}.", source)
        if dataclasses.is_dataclass(hint):
            out[key] = value  # from_dict recurses into it
            continue
        try:
            out[key] = from_dict(sub, value, f"{prefix}{key}")
        except TypeError as exc:
            required = [
                f.name for f in dataclasses.fields(sub)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                and f.name not in value
            ]
            what = f"missing required key(s): {', '.join(required)}" if required else str(exc)
            raise LongAdaptError(f"{source.where(prefix + key)}: {prefix}{key}: {what}") from exc
        except LongAdaptError as exc:
            raise LongAdaptError(f"{source.where(prefix + key)}: {exc}") from exc
    return out


def train_config_from_dict(data: dict[str, Any], source: ConfigSource | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts, rejecting unknown keys with file/line."""
    source = source or ConfigSource()
    _check_keys(TrainConfig, data, "", source)
    data = _materialise(TrainConfig, data, "", source)
    try:
        cfg = from_dict(TrainConfig, data, str(source.path) if source.path else "config", locate=source.known)
    except TypeError as exc:  # a nested dataclass refused a value
        raise LongAdaptError(f"{source.path or 'config'}: {exc}") from exc
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
