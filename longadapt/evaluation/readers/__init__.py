"""Readers for the task data formats, all returning the data model of :mod:`.data`.

=============  ============================================  =======================
reader         input                                         returns
=============  ============================================  =======================
``iob``        CoNLL columns: token ... tag, blank lines     :class:`TaggedSentence`
``brat``       folder (or one file) of ``.txt`` + ``.ann``   :class:`Document`
``xmi``        folder (or one file) of UIMA CAS XMI          :class:`Document`
``tsv``        tab-separated text + labels/score columns      :class:`ClassificationExample`
``mcqa_json``  JSON array of questions (FrenchMedMCQA)       :class:`MCQAItem`
``codiesp``    ``text_files/*.txt`` + headerless doc/code    :class:`ClassificationExample`
=============  ============================================  =======================

Every reader validates what it reads (offsets inside the text, span text equal to the ``.ann``
text, labels in the task's label set, well-formed lines) and raises
:class:`~longadapt.errors.LongAdaptError` naming the file and the line of the first problem.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.evaluation.readers.brat import BRAT_LABEL_FROM, read_brat
from longadapt.evaluation.readers.codiesp import ICD10_CHAPTER_NAMES, icd10_chapter, read_codiesp
from longadapt.evaluation.readers.common import OTHER_LABELS, UNLABELLED, IdSelection, read_id_list
from longadapt.evaluation.readers.hf import read_datasets
from longadapt.evaluation.readers.iob import read_iob
from longadapt.evaluation.readers.mcqa import read_mcqa_json
from longadapt.evaluation.readers.tsv import read_tsv
from longadapt.evaluation.readers.xmi import read_xmi

__all__ = ["BRAT_LABEL_FROM", "ICD10_CHAPTER_NAMES", "OTHER_LABELS", "READERS", "UNLABELLED", "IdSelection", "Reader",
           "icd10_chapter", "read", "read_brat", "read_codiesp", "read_datasets", "read_id_list", "read_iob",
           "read_mcqa_json", "read_tsv", "read_xmi", "reads_documents"]


@dataclass(frozen=True)
class Reader:
    """One format: the function that reads it and the kind of items it yields (``tagged`` word sequences,
    whole ``document`` s with character spans, ``classification`` texts, ``mcqa`` questions; ``by type``:
    what the task type reads, for hub datasets)."""

    read: Callable[..., list[Any]]
    kind: str


# the one registry of formats (tasks.py and the task types read it)
READERS: dict[str, Reader] = {
    "iob": Reader(read_iob, "tagged"),
    "brat": Reader(read_brat, "document"),
    "xmi": Reader(read_xmi, "document"),
    "tsv": Reader(read_tsv, "classification"),
    "mcqa_json": Reader(read_mcqa_json, "mcqa"),
    "codiesp": Reader(read_codiesp, "classification"),
    "datasets": Reader(read_datasets, "by type"),
}


def reads_documents(reader: str) -> bool:
    """Whether ``reader`` yields whole documents with character spans (brat, xmi)."""
    return reader in READERS and READERS[reader].kind == "document"


# parameters the task sets itself (not reader_options)
RESERVED_PARAMS = ("path", "labels", "other_labels", "select", "task_type", "hub_id", "split_name", "encoding")


def read(reader: str, path: str | Path, options: dict[str, Any] | None = None,
         labels: Sequence[str] | None = None, where: str = "task", *, other_labels: str = "error",
         select: IdSelection | None = None, **context: Any) -> list[Any]:
    """Run the reader named ``reader`` on ``path`` with YAML ``options``; options are checked.

    ``other_labels`` and ``select`` go to readers that take them; a reader without ``select`` has its
    examples filtered by id afterwards, with the same check that every listed id matches. ``context``
    (``task_type``, ``hub_id``, ``split_name``) reaches readers that take it.
    """
    if reader not in READERS:
        raise LongAdaptError(f"{where}: unknown reader {reader!r}; known readers: {', '.join(READERS)}")
    fn = READERS[reader].read
    options = dict(options or {})
    params = inspect.signature(fn).parameters
    bad = [k for k in options if k not in params or k in RESERVED_PARAMS]
    if bad:
        valid = [p for p in params if p not in RESERVED_PARAMS]
        raise LongAdaptError(f"{where}: unknown option(s) {', '.join(bad)} for reader {reader!r}; "
                             f"valid options: {', '.join(valid) or 'none'}")
    encoding = context.pop("encoding", "utf-8")
    if "encoding" in params:
        extra_encoding = {"encoding": encoding}
    elif encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise LongAdaptError(f"{where}: encoding applies to readers of text files, not to reader {reader!r} "
                             "(XML and datasets declare their own)")
    else:
        extra_encoding = {}
    extra: dict[str, Any] = {k: v for k, v in context.items() if k in params} | extra_encoding
    if "other_labels" in params:
        extra["other_labels"] = other_labels
    elif other_labels != "error":
        raise LongAdaptError(f"{where}: other_labels applies to entity and tag readers, not to reader {reader!r}")
    if select is not None and "select" in params:
        return fn(path, labels=labels, select=select, **extra, **options)
    items = fn(path, labels=labels, **extra, **options)
    if select is not None:
        by_id: dict[str, list[Any]] = {}
        for x in items:
            by_id.setdefault(x.id, []).append(x)
        kept = set(select.apply(list(by_id), path))
        items = [x for x in items if x.id in kept]
    return items
