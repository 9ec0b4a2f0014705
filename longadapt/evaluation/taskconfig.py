"""A task's configuration as its YAML states it: the config dataclasses (the task, its splits' sources, its
fine-tuning) and the constants they refer to. Checked by :mod:`.taskfile`, loaded by :mod:`.tasks`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longadapt.config import to_dict
from longadapt.errors import LongAdaptError
from longadapt.evaluation import tasktypes


SPLITS = ("train", "dev", "test")
PROTOCOLS = ("default", "drbenchmark")

# entity tasks on whole documents train on batches of whole documents, up to this many words, unless the
# task says otherwise: the batches are made from the data and the seed alone (never from a tokenizer or a
# window length), so a 512-token model reading windows and a long model reading whole documents take the
# same optimizer steps over the same documents. Batches of N examples would give the 512-token model, whose
# examples are windows, several times the long model's steps; batches of N tokens still differ by the
# windows' overlap and by tokenizer.
DOCUMENT_BATCH_WORDS = 800

# --protocol drbenchmark: DrBenchmark's handling, so that a number can stand beside published ones
# (512-token truncation, its hyper-parameters, joined nested labels, fragments of discontinuous mentions,
# whitespace words, checkpoint selection on token accuracy for NER, MORFITT's fixed 0.7 threshold). A task
# YAML adds its own specifics under protocols.drbenchmark (QUAERO EMEA: sentences cut at "."). What the
# protocol sets per task type is the type's ``drbenchmark`` entry (tasktypes); these settings are common to all.
DRBENCHMARK_ALL = {"training": {"max_length": 512, "truncate": True, "batch_tokens": None, "batch_words": None,
                                "weight_decay": 0.01,
                                "warmup_ratio": 0.0, "stride": None, "eval_every_epochs": 1}}


@dataclass
class SourceSpec:
    """One file or folder read into a split, with an optional deterministic selection.

    Selection is applied in this order: ``ids_file`` (keep or drop the listed document ids),
    ``shuffle_seed`` (put the examples in a seeded random order: ``shuffle_rounds`` calls of Python's
    ``random.Random(shuffle_seed).shuffle``, as DrBenchmark's loaders do), ``fraction`` (the contiguous
    block ``[start, end)`` of the examples in reading order, or in the shuffled order; cut at
    ``int(start * n)`` and ``int(end * n)``), ``every`` (examples whose position ``i`` has
    ``i % every == offset``: kept with ``every_mode: keep``, dropped with ``every_mode: drop``). The
    examples kept are returned in reading order.
    """

    path: str = ""
    # reader options for this source only
    options: dict[str, Any] = field(default_factory=dict)
    ids_file: str | None = None
    ids_section: str | None = None
    # include | exclude
    ids_mode: str = "include"
    fraction: list[float] | None = None
    every: int | None = None
    offset: int = 0
    # keep | drop
    every_mode: str = "keep"
    # seeded random order before fraction / every (DrBenchmark's splits)
    shuffle_seed: int | None = None
    # how many times that order is shuffled (DrBenchmark's MANTRAGSC: 3)
    shuffle_rounds: int = 1


@dataclass
class FinetuneConfig:
    """Fine-tuning hyper-parameters; ``None`` means the task type's default (``tasktypes``: ``defaults``)."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    # default: batch_size
    eval_batch_size: int | None = None
    # training batches of whole examples (documents, or segments with segment_on) up to this many words
    # (at least one example; a document's windows always travel together): the batch plan depends on the
    # data and the seed only, so every model, whatever its tokenizer and window, takes the same optimizer
    # steps over the same documents. batch_size then applies to prediction only. Default:
    # DOCUMENT_BATCH_WORDS for entity tasks on documents (brat, xmi) that set no batch_size or batch_tokens
    batch_words: int | None = None
    # training batches of up to this many real tokens of the model's tokenizer (at least one item): steps
    # then differ between tokenizers and between windows and whole documents; prefer batch_words
    batch_tokens: int | None = None
    # prediction batches hold at most this many tokens (memory bound)
    eval_batch_tokens: int = 16384
    # training memory bound: a batch whose padded size (rows x longest row; a document's windows and an
    # MCQA question's options are rows) exceeds this many tokens is run as several forward/backward
    # passes over whole examples, gradients summed before the one optimizer step; the gradient is the
    # batch's (each pass weighted by its share of the loss). 0 = never split.
    micro_batch_tokens: int = 2048
    # default: the model's maximum length
    max_length: int | None = None
    # tokens between window starts; default: half the window
    stride: int | None = None
    # one window per example (its first max_length tokens); the rest is never seen
    truncate: bool = False
    # token predictions of overlapping windows: max_context | average
    merge: str = "max_context"
    # document logits over windows: mean | max
    pool: str = "mean"
    # multi-label/MCQA: None = chosen on validation
    threshold: float | None = None
    # multi-label/MCQA: an empty prediction takes its best label
    at_least_one: bool = True
    # no | fp16 | bf16 (accelerate)
    mixed_precision: str = "no"
    eval_every_epochs: int = 1
    # the dev metric that selects the checkpoint; default: the task's metric
    select_metric: str | None = None

    def resolved(self, task_type: str, document_task: bool = False) -> FinetuneConfig:
        epochs, batch, lr = tasktypes.get(task_type).defaults
        out = FinetuneConfig(**to_dict(self))  # values typed by longadapt.config.from_dict when the task loaded
        out.epochs = self.epochs if self.epochs is not None else epochs
        out.batch_size = self.batch_size if self.batch_size is not None else batch
        out.learning_rate = self.learning_rate if self.learning_rate is not None else lr
        out.eval_batch_size = self.eval_batch_size or out.batch_size
        for name in ("truncate", "at_least_one"):
            if not isinstance(getattr(self, name), bool):
                raise LongAdaptError(f"training.{name} must be true or false, not {getattr(self, name)!r}")
        if out.batch_words is not None and out.batch_tokens is not None:
            raise LongAdaptError(f"training.batch_words ({out.batch_words}) and training.batch_tokens "
                                 f"({out.batch_tokens}) both set the training batches; keep one (batch_words gives "
                                 "every model the same batches; set the other to null)")
        if (self.batch_tokens is None and self.batch_words is None and self.batch_size is None and document_task
                and not self.truncate):
            out.batch_words = DOCUMENT_BATCH_WORDS  # a task that sets batch_size trains by examples
        for name, unit in (("batch_tokens", "tokens"), ("batch_words", "words")):
            if getattr(out, name) is not None and int(getattr(out, name)) < 1:
                raise LongAdaptError(f"training.{name} must be a positive number of {unit}, not {getattr(out, name)!r}")
        if out.micro_batch_tokens < 0:
            raise LongAdaptError(f"training.micro_batch_tokens must be 0 (never split) or a positive number of tokens, "
                                 f"not {out.micro_batch_tokens!r}")
        if out.epochs < 1 or out.batch_size < 1 or out.eval_every_epochs < 1 or out.gradient_accumulation_steps < 1:
            raise LongAdaptError("training.epochs, batch_size, eval_every_epochs and gradient_accumulation_steps "
                                 "must be at least 1")
        if out.merge not in ("max_context", "average"):
            raise LongAdaptError(f"training.merge must be max_context or average, not {out.merge!r}")
        if out.pool not in ("mean", "max"):
            raise LongAdaptError(f"training.pool must be mean or max, not {out.pool!r}")
        if out.mixed_precision not in ("no", "fp16", "bf16"):
            raise LongAdaptError(f"training.mixed_precision must be no, fp16 or bf16, not {out.mixed_precision!r}")
        metrics = tasktypes.get(task_type).metrics
        if out.select_metric is not None and out.select_metric not in metrics:
            raise LongAdaptError(f"training.select_metric {out.select_metric!r} is not a {task_type} metric; use one "
                                 f"of {', '.join(metrics)}")
        return out


@dataclass
class TaskConfig:
    name: str = ""
    type: str = ""
    # a module to import first that registers the type (tasktypes.register)
    type_module: str | None = None
    reader: str = ""
    language: str = ""
    description: str = ""
    reader_options: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    splits: dict[str, list[SourceSpec]] = field(default_factory=dict)
    # default: the type's main metric (tasktypes)
    metric: str | None = None
    # documents -> words (NER on documents): regex | whitespace | <regex>
    word_splitter: str = "regex"
    # upper bounds (words) of the test length buckets, or "auto": the test documents' own thirds
    # (metrics.auto_length_edges), so that no bucket holds every document
    length_buckets: list[int] | str = "auto"
    # regression (EDRM)
    score_scale: list[float] = field(default_factory=lambda: [0.0, 5.0])
    # relative to the YAML file's folder
    data_root: str | None = None
    # entities (ner): how nested / overlapping mentions are represented (every gold mention is scored)
    # auto | layers | flatten | join
    nested: str = "auto"
    # layers: at most this many nesting levels per type (default: what the data needs)
    max_depth: int | None = None
    # fragments | extent | longest
    discontinuous: str = "fragments"
    # units: precision/recall/F1 count the scoring units above (fragments of discontinuous mentions, duplicates
    # once, spans trimmed); clef: the CLEF eHealth BRATEval count is recorded next to them as clef_* (every gold
    # T line one entity; entities.clef_scores). f1 stays the units count unless metric says clef_f1
    count: str = "units"
    # mentions (or tags) of labels not in `labels`: error | ignore (counted)
    other_labels: str = "error"
    # of the task's text files (brat, iob, tsv, mcqa_json, codiesp); never guessed
    encoding: str = "utf-8"
    # cut documents into segments after each word equal to this (e.g. ".")
    segment_on: str | None = None
    training: FinetuneConfig = field(default_factory=FinetuneConfig)
    # per protocol: overrides of this YAML
    protocols: dict[str, Any] = field(default_factory=dict)
    # set by load_task
    protocol: str = "default"
    licence: str = ""
    citation: str = ""
    notes: str = ""
    # published scores on this task, for reports to set beside (never to rank with) ours: each a mapping
    # with model, score (x 100), metric, source and optionally note (protocol, budget)
    published: list[dict[str, Any]] = field(default_factory=list)


# keys that describe a task without changing a score (left out of run fingerprints)
DESCRIPTIVE_KEYS = ("description", "licence", "citation", "notes", "published")
