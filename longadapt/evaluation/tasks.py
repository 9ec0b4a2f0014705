"""The task registry: one YAML file per task under ``languages/tasks/``.

A task YAML says what to read (reader, options, data paths per split), what to predict (type,
labels), how to score it (metric, length buckets) and how to fine-tune (``training``: defaults per
task type follow DrBenchmark). A user-defined task is the same YAML given with
``longadapt evaluate --task-file T.yaml``; no code is needed. The format is documented in
docs/evaluation.md.

Data paths are relative to the data root: the task's own ``data_root`` (relative to the YAML
file's folder) when set, else ``--data-root``, else the ``LONGADAPT_DATA`` environment variable,
else ``../shared/data`` next to the repository when it exists.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import deep_merge, from_dict, load_yaml, to_dict
from longadapt.errors import LongAdaptError
from longadapt.evaluation import readers
from longadapt.evaluation.data import Document, document_to_tagged
from longadapt.evaluation.metrics import MAIN_METRIC

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TASK_TYPES = ("ner", "pos", "classification", "multilabel", "regression", "mcqa")
SPLITS = ("train", "dev", "test")

# DrBenchmark's reference hyper-parameters per task type: (epochs, batch size, learning rate).
# Classification is 10-25 epochs there depending on the task; 20 here. Weight decay 0.01 for all.
TYPE_DEFAULTS: dict[str, tuple[int, int, float]] = {
    "ner": (15, 16, 1e-4),
    "pos": (10, 16, 1e-5),
    "classification": (20, 16, 2e-5),
    "multilabel": (35, 12, 2e-5),
    "mcqa": (20, 16, 2e-5),
    "regression": (20, 16, 2e-5),
}


@dataclass
class SourceSpec:
    """One file or folder read into a split, with an optional deterministic selection.

    Selection is applied in this order: ``ids_file`` (keep or drop the listed document ids),
    ``fraction`` (the contiguous block ``[start, end)`` of the examples in reading order), ``every``
    (examples whose position ``i`` has ``i % every == offset``: kept with ``every_mode: keep``,
    dropped with ``every_mode: drop``).
    """

    path: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # reader options for this source only
    ids_file: str | None = None
    ids_section: str | None = None
    ids_mode: str = "include"  # include | exclude
    fraction: list[float] | None = None
    every: int | None = None
    offset: int = 0
    every_mode: str = "keep"  # keep | drop


@dataclass
class TrainingConfig:
    """Fine-tuning hyper-parameters; ``None`` means the task type's default (TYPE_DEFAULTS)."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    eval_batch_size: int | None = None  # default: batch_size
    # training batches by tokens instead of examples: each batch holds up to this many real tokens (at
    # least one example). With it a 512-token model (windows) and a long model (whole documents) take
    # the same number of optimizer steps on the same text; batch_size then applies to prediction only
    batch_tokens: int | None = None
    max_length: int | None = None  # default: the model's maximum length
    stride: int | None = None  # tokens between window starts; default: half the window
    merge: str = "max_context"  # token predictions of overlapping windows: max_context | average
    pool: str = "mean"  # document logits over windows: mean | max
    threshold: float | None = None  # multi-label/MCQA: None = chosen on validation
    at_least_one: bool = True  # multi-label/MCQA: an empty prediction takes its best label
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate)
    eval_every_epochs: int = 1

    def resolved(self, task_type: str) -> TrainingConfig:
        epochs, batch, lr = TYPE_DEFAULTS[task_type]
        out = TrainingConfig(**to_dict(self))
        out.epochs = self.epochs if self.epochs is not None else epochs
        out.batch_size = self.batch_size if self.batch_size is not None else batch
        out.learning_rate = float(self.learning_rate) if self.learning_rate is not None else lr
        out.eval_batch_size = self.eval_batch_size or out.batch_size
        if out.batch_tokens is not None and int(out.batch_tokens) < 1:
            raise LongAdaptError(f"training.batch_tokens must be a positive number of tokens, not {out.batch_tokens!r}")
        if out.merge not in ("max_context", "average"):
            raise LongAdaptError(f"training.merge must be max_context or average, not {out.merge!r}")
        if out.pool not in ("mean", "max"):
            raise LongAdaptError(f"training.pool must be mean or max, not {out.pool!r}")
        return out


@dataclass
class TaskConfig:
    name: str = ""
    type: str = ""
    reader: str = ""
    language: str = ""
    description: str = ""
    reader_options: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    splits: dict[str, list[SourceSpec]] = field(default_factory=dict)
    metric: str | None = None  # default: MAIN_METRIC[type]
    word_splitter: str = "regex"  # documents -> words (NER on documents): regex | whitespace | <regex>
    length_buckets: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    score_scale: list[float] = field(default_factory=lambda: [0.0, 5.0])  # regression (EDRM)
    data_root: str | None = None  # relative to the YAML file's folder
    training: TrainingConfig = field(default_factory=TrainingConfig)
    licence: str = ""
    citation: str = ""
    notes: str = ""


@dataclass
class Task:
    """A loaded task: its config, where it came from and where its data lives."""

    config: TaskConfig
    yaml_path: Path
    data_root: Path

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def type(self) -> str:
        return self.config.type

    @property
    def metric(self) -> str:
        return self.config.metric or MAIN_METRIC[self.config.type]

    @property
    def kind(self) -> str:
        """What the examples are after loading: tagged | classification | mcqa."""
        k = readers.READER_KINDS[self.config.reader]
        return "tagged" if k == "document" else k

    @property
    def tag_labels(self) -> list[str]:
        """BIO tags of a NER task (``O`` first), or the tags of a POS task."""
        if self.type == "pos":
            return list(self.config.labels)
        return ["O"] + [f"{p}-{lab}" for lab in self.config.labels for p in ("B", "I")]

    def training(self) -> TrainingConfig:
        return self.config.training.resolved(self.type)

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.data_root / p

    def load_split(self, split: str) -> list[Any]:
        """The examples of ``split`` (documents of a NER task become word-level tagged sequences)."""
        if split not in self.config.splits:
            raise LongAdaptError(f"task {self.name}: no split {split!r} in {self.yaml_path}")
        out: list[Any] = []
        for i, src in enumerate(self.config.splits[split]):
            where = f"{self.yaml_path}: splits.{split}[{i}]"
            options = {**self.config.reader_options, **src.options}
            if self.type == "pos" and self.config.reader == "iob":
                options.setdefault("scheme", "raw")
            labels = None if self.type == "regression" else self.config.labels
            items = readers.read(self.config.reader, self.path(src.path), options, labels, where)
            out.extend(self._select(items, src, where))
        if self.config.reader in ("brat", "xmi"):
            out = [document_to_tagged(d, self.config.word_splitter) if isinstance(d, Document) else d for d in out]
        if not out:
            raise LongAdaptError(f"task {self.name}: split {split!r} is empty after selection; check {self.yaml_path}")
        return out

    def _select(self, items: list[Any], src: SourceSpec, where: str) -> list[Any]:
        if src.ids_file:
            ids = set(readers.read_id_list(self.path(src.ids_file), src.ids_section))
            if src.ids_mode not in ("include", "exclude"):
                raise LongAdaptError(f"{where}: ids_mode must be include or exclude, not {src.ids_mode!r}")
            keep = src.ids_mode == "include"
            items = [x for x in items if (x.id in ids) == keep]
        if src.fraction is not None:
            if len(src.fraction) != 2 or not 0 <= src.fraction[0] <= src.fraction[1] <= 1:
                raise LongAdaptError(f"{where}: fraction must be [start, end] with 0 <= start <= end <= 1")
            n = len(items)
            items = items[int(src.fraction[0] * n) : int(src.fraction[1] * n)]
        if src.every:
            if src.every_mode not in ("keep", "drop"):
                raise LongAdaptError(f"{where}: every_mode must be keep or drop, not {src.every_mode!r}")
            keep = src.every_mode == "keep"
            items = [x for i, x in enumerate(items) if (i % src.every == src.offset) == keep]
        return items

    def fingerprint(self, split: str) -> dict[str, Any]:
        """sha256 of every file the split reads (data and id lists), for run.json."""
        files: list[Path] = []
        for src in self.config.splits.get(split, []):
            for rel in [src.path] + ([src.ids_file] if src.ids_file else []):
                p = self.path(rel)
                files.extend(sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p])
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(self.data_root) if f.is_relative_to(self.data_root) else f).encode())
            h.update(_file_sha256(f).encode())
        return {"sha256": h.hexdigest(), "files": len(files)}


@functools.lru_cache(maxsize=8192)
def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tasks_dir() -> Path:
    env = os.environ.get("LONGADAPT_TASKS")
    return Path(env) if env else REPO / "languages" / "tasks"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in tasks_dir().glob("*.yaml"))


def default_data_root(cli_value: str | Path | None = None) -> Path | None:
    """``--data-root``, else ``$LONGADAPT_DATA``, else ``../shared/data`` next to the repository."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("LONGADAPT_DATA")
    if env:
        return Path(env)
    guess = REPO.parent / "shared" / "data"
    return guess if guess.is_dir() else None


def load_task(name_or_path: str | Path, data_root: str | Path | None = None,
              overrides: dict[str, Any] | None = None) -> Task:
    """Load a task by registry name (``fr-e3c-ner``) or from a YAML file path.

    ``overrides`` (e.g. from ``parse_overrides(["training.epochs=3"])``) are merged onto the YAML.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = tasks_dir() / f"{text}.yaml"
        if not path.is_file():
            raise LongAdaptError(
                f"unknown task {text!r}; known tasks: {', '.join(available_tasks()) or 'none'}. "
                "Give a task YAML with --task-file to run your own task"
            )
    data = load_yaml(path)
    if overrides:
        data = deep_merge(data, overrides)
    data.setdefault("name", path.stem)
    where = str(path)
    raw_splits = data.pop("splits", None)
    raw_training = data.pop("training", None) or {}
    cfg = from_dict(TaskConfig, data, where)
    cfg.training = from_dict(TrainingConfig, raw_training, f"{where}: training")
    cfg.splits = _parse_splits(raw_splits, where)
    _validate(cfg, where)
    if cfg.data_root is not None:
        root = (path.parent / cfg.data_root).resolve()
    else:
        found = default_data_root(data_root)
        if found is None:
            raise LongAdaptError(
                f"{where}: no data root: give --data-root, set LONGADAPT_DATA, or set data_root in the task YAML"
            )
        root = found
    if not root.is_dir():
        raise LongAdaptError(f"{where}: data root {root} is not a folder; check --data-root / LONGADAPT_DATA")
    return Task(config=cfg, yaml_path=path, data_root=root)


def _parse_splits(raw: Any, where: str) -> dict[str, list[SourceSpec]]:
    if not isinstance(raw, dict):
        raise LongAdaptError(f"{where}: 'splits' must map train/dev/test to data paths")
    out = {}
    for split, value in raw.items():
        if split not in SPLITS:
            raise LongAdaptError(f"{where}: unknown split {split!r}; use train, dev and test")
        items = value if isinstance(value, list) else [value]
        specs = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                item = {"path": item}
            if not isinstance(item, dict) or not item.get("path"):
                raise LongAdaptError(f"{where}: splits.{split}[{i}] needs a 'path'")
            specs.append(from_dict(SourceSpec, item, f"{where}: splits.{split}[{i}]"))
        out[split] = specs
    for split in SPLITS:
        if split not in out:
            raise LongAdaptError(f"{where}: split {split!r} is missing; a task needs train, dev and test "
                                 "(dev selects the checkpoint)")
    return out


def _validate(cfg: TaskConfig, where: str) -> None:
    if cfg.type not in TASK_TYPES:
        raise LongAdaptError(f"{where}: type must be one of {', '.join(TASK_TYPES)}, not {cfg.type!r}")
    if cfg.reader not in readers.READERS:
        raise LongAdaptError(f"{where}: unknown reader {cfg.reader!r}; known: {', '.join(readers.READERS)}")
    kind = readers.READER_KINDS[cfg.reader]
    compatible = {
        "ner": ("tagged", "document"), "pos": ("tagged",), "classification": ("classification",),
        "multilabel": ("classification",), "regression": ("classification",), "mcqa": ("mcqa",),
    }[cfg.type]
    if kind not in compatible:
        raise LongAdaptError(f"{where}: reader {cfg.reader!r} cannot feed a {cfg.type} task")
    if cfg.type != "regression" and not cfg.labels:
        raise LongAdaptError(f"{where}: 'labels' must list the task's labels (entity types, classes or options)")
    if len(set(cfg.labels)) != len(cfg.labels):
        raise LongAdaptError(f"{where}: 'labels' has duplicates")
    if cfg.metric is not None and cfg.metric != MAIN_METRIC[cfg.type]:
        allowed = {"ner": ["f1", "precision", "recall"], "classification": ["weighted_f1", "macro_f1", "accuracy"],
                   "multilabel": ["weighted_f1", "macro_f1", "micro_f1", "hamming_score", "exact_match"],
                   "regression": ["spearman", "edrm", "pearson"], "mcqa": ["hamming_score", "exact_match"],
                   "pos": ["accuracy"]}[cfg.type]
        if cfg.metric not in allowed:
            raise LongAdaptError(f"{where}: metric {cfg.metric!r} is not available for {cfg.type}; use one of {allowed}")
    if sorted(cfg.length_buckets) != list(cfg.length_buckets) or not cfg.length_buckets:
        raise LongAdaptError(f"{where}: length_buckets must be ascending word counts, e.g. [256, 512, 1024]")
