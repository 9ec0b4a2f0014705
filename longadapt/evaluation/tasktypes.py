"""Task types as units: one table, each entry carrying everything the code asks about a type.

A :class:`TaskType` names its adapter (the class that builds inputs, the head, the loss and predictions:
:mod:`longadapt.evaluation.adapters`), its default budget, the metrics it reports and the main one, the
reader kinds that can feed it, and whether ``predict`` serves it. Every place that asks about a type reads
this table (task checks, metrics, fine-tuning, predict). A new type is one adapter class and one entry::

    # my_types.py
    from longadapt.evaluation.adapters import SequenceAdapter
    from longadapt.evaluation.tasktypes import TaskType, register

    class BinaryAdapter(SequenceAdapter): ...
    register(TaskType("binary", BinaryAdapter, defaults=(10, 16, 2e-5), metrics=("accuracy",),
                      main_metric="accuracy", readers=("classification",), predict=True))

    # my-task.yaml
    type: binary
    type_module: my_types      # imported before the type is looked up

This module imports nothing heavy: built-in adapters are named as ``module:Class`` and imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from longadapt.errors import LongAdaptError

READER_KINDS = ("tagged", "document", "classification", "mcqa")  # what a reader yields (readers.READERS[...].kind)


@dataclass(frozen=True)
class TaskType:
    """One task type.

    * ``adapter``: the adapter class, or ``"module:Class"`` (imported on first use);
    * ``defaults``: (epochs, batch size, learning rate) of a user task that states none (DrBenchmark's
      reference per type; every built-in task states the budget measured to learn in its YAML);
    * ``metrics``: every metric a run of this type reports (greater is better, except ``rmse``-like ones
      that never select); ``main_metric`` ranks models and selects checkpoints unless a task says otherwise;
    * ``readers``: the reader kinds that can feed it (``tagged`` word sequences, whole ``document`` s with
      character spans, ``classification`` texts, ``mcqa`` questions);
    * ``predict``: ``longadapt predict`` serves models of this type;
    * ``entities``: mentions with character spans (entity schemes, coverage, BRAT output);
    * ``labels``: the task must list its labels (all but regression);
    * ``drbenchmark``: what ``--protocol drbenchmark`` sets for this type (DrBenchmark's own handling and
      hyper-parameters; ``None``: the protocol does not apply to the type).
    """

    name: str
    adapter: Any
    defaults: tuple[int, int, float]
    metrics: tuple[str, ...]
    main_metric: str
    readers: tuple[str, ...]
    predict: bool = False
    entities: bool = False
    labels: bool = True
    drbenchmark: dict[str, Any] | None = None

    @property
    def tokens(self) -> bool:
        """Word-level tags (entity and POS tasks): other_labels and the word readers apply."""
        return "tagged" in self.readers

    def adapter_class(self) -> type:
        if isinstance(self.adapter, str):
            module, _, cls = self.adapter.partition(":")
            return getattr(importlib.import_module(module), cls)
        return self.adapter


_A = "longadapt.evaluation.adapters:"
_TYPES: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    """Make ``task_type`` available to task files under its name (registering a name again replaces it)."""
    bad = [k for k in task_type.readers if k not in READER_KINDS]
    if bad or task_type.main_metric not in task_type.metrics:
        raise LongAdaptError(f"task type {task_type.name!r}: readers must be among {', '.join(READER_KINDS)} and "
                             f"main_metric one of its metrics ({', '.join(task_type.metrics)})")
    _TYPES[task_type.name] = task_type
    return task_type


def names(*, predict: bool = False) -> tuple[str, ...]:
    """Every task type's name (``predict``: those ``longadapt predict`` serves), in registration order."""
    return tuple(n for n, t in _TYPES.items() if t.predict or not predict)


def get(name: str, where: str = "type") -> TaskType:
    """The task type called ``name``; an unknown one is an error that lists the known ones."""
    if name not in _TYPES:
        raise LongAdaptError(f"{where}: type must be one of {', '.join(_TYPES)}, not {name!r}")
    return _TYPES[name]


def load_module(module: str | None, where: str) -> None:
    """Import a task file's ``type_module`` (which registers its types)."""
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise LongAdaptError(f"{where}: type_module {module!r} cannot be imported ({exc})") from None


# Built-in types. Metrics: f1 / precision / recall / macro_f1 count every gold mention, exact span and type
# (entities.mention_scores); seqeval_f1 is seqeval on the scheme's word tags (single-layer schemes;
# DrBenchmark's number); word_accuracy the share of words whose classes are all right (DrBenchmark selects on
# it); clef_f1 / clef_precision / clef_recall the CLEF eHealth BRATEval count (tasks with count: clef).
_DRB_NER = {"nested": "join", "discontinuous": "fragments", "word_splitter": "whitespace", "metric": "seqeval_f1",
            "training": {"epochs": 15, "batch_size": 16, "learning_rate": 1e-4, "select_metric": "word_accuracy"}}
register(TaskType("ner", _A + "TokenAdapter", (15, 16, 1e-4),
                  ("f1", "precision", "recall", "macro_f1", "seqeval_f1", "word_accuracy", "clef_f1", "clef_precision",
                   "clef_recall"), "f1", ("tagged", "document"), predict=True, entities=True, drbenchmark=_DRB_NER))
register(TaskType("pos", _A + "TokenAdapter", (10, 16, 1e-5), ("accuracy",), "accuracy", ("tagged",),
                  drbenchmark={"word_splitter": "whitespace",
                               "training": {"epochs": 10, "batch_size": 16, "learning_rate": 1e-5}}))
register(TaskType("classification", _A + "SequenceAdapter", (20, 16, 2e-5), ("weighted_f1", "macro_f1", "accuracy"),
                  "weighted_f1", ("classification",), predict=True,
                  drbenchmark={"training": {"epochs": 20, "batch_size": 16, "learning_rate": 2e-5}}))
register(TaskType("multilabel", _A + "SequenceAdapter", (35, 12, 2e-5),
                  ("weighted_f1", "macro_f1", "micro_f1", "hamming_score", "exact_match"), "weighted_f1",
                  ("classification",), predict=True,
                  drbenchmark={"training": {"epochs": 35, "batch_size": 12, "learning_rate": 2e-5, "threshold": 0.7}}))
register(TaskType("regression", _A + "SequenceAdapter", (20, 16, 2e-5), ("spearman", "edrm", "pearson"), "spearman",
                  ("classification",), predict=True, labels=False,
                  drbenchmark={"training": {"epochs": 20, "batch_size": 16, "learning_rate": 2e-5}}))
register(TaskType("mcqa", _A + "ChoiceAdapter", (20, 16, 2e-5), ("hamming_score", "exact_match"), "hamming_score",
                  ("mcqa",), drbenchmark={"training": {"epochs": 20, "batch_size": 16, "learning_rate": 2e-5}}))
