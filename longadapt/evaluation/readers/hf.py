"""Hugging Face datasets (DrBenchmark's hub datasets, or any local datasets / Parquet / JSON file)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import ClassificationExample, TaggedSentence

from longadapt.evaluation.readers.common import _check_label

logger = logging.getLogger(__name__)


def _load_hf_split(path: Path | str, hub_id: str | None, split: str, name: str | None, revision: str | None) -> Any:
    """One split of a task's dataset: the local path first, else the hub id (the one loader:
    :func:`longadapt.data.hf.load_split`)."""
    from longadapt.data.hf import load_split

    return load_split(path, split, hub_id=hub_id if not Path(path).exists() else None, name=name, revision=revision)


def _feature_names(feature: Any) -> list[str] | None:
    """Class names of a ClassLabel feature (or of a Sequence of ClassLabel)."""
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if hasattr(inner, "names") else None


def read_datasets(
    path: str | Path,
    labels: Sequence[str] | None = None,
    columns: dict[str, str] | None = None,
    name: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    tag_names: list[str] | None = None,
    label_separator: str | None = "|",
    other_labels: str = "error",
    task_type: str = "ner",
    hub_id: str | None = None,
    split_name: str = "train",
) -> list[Any]:
    """Read a Hugging Face dataset split into the data model.

    ``columns`` maps our fields to the dataset's columns. Token tasks (``ner``, ``pos``): ``tokens``
    (default ``tokens``), ``tags`` (``ner_tags`` for NER, ``pos_tags`` for POS) and optionally ``id``; the
    tags may be strings or class ids (names from the dataset's ClassLabel feature, or ``tag_names``).
    Text tasks: ``text`` (``text``), ``label`` (``label``: a class name or id, a list of them, or names
    joined by ``label_separator``), ``text_pair``, ``score`` and ``id``. ``split`` is the dataset's split
    name (default: ``train``, ``validation``, ``test`` for our train, dev and test).
    """
    columns = dict(columns or {})
    token_task = task_type in ("ner", "pos")
    known = {"id", "tokens", "tags"} if token_task else {"id", "text", "label", "text_pair", "score"}
    bad = sorted(set(columns) - known)
    if bad:
        raise LongAdaptError(f"datasets reader: unknown column key(s) {', '.join(bad)} for a {task_type} task; "
                             f"map {', '.join(sorted(known))}")
    hf_split = split or {"train": "train", "dev": "validation", "test": "test"}.get(split_name, split_name)
    ds = _load_hf_split(path, hub_id, hf_split, name, revision)
    where = f"{hub_id or path}[{hf_split}]"

    def column(key: str, default: str | None, required: bool = True) -> str | None:
        col = columns.get(key, default)
        if col is None:
            return None
        if col not in ds.column_names:
            if not required and key not in columns:
                return None
            raise LongAdaptError(f"{where}: no column {col!r} for {key!r}; the columns are "
                                 f"{', '.join(ds.column_names)}. Map it in reader_options.columns")
        return col

    id_col = column("id", "id", required=False)
    out: list[Any] = []
    if token_task:
        tok_col = column("tokens", "tokens")
        tag_col = column("tags", "ner_tags" if task_type == "ner" else "pos_tags")
        names = tag_names or _feature_names(ds.features[tag_col])
        for row_i, row in enumerate(ds):
            raw = row[tag_col]
            try:
                tags = [names[t] if isinstance(t, int) else str(t) for t in raw] if names else [str(t) for t in raw]
            except IndexError:
                raise LongAdaptError(f"{where} row {row_i}: a tag id is outside tag_names") from None
            if any(isinstance(t, int) for t in raw) and not names:
                raise LongAdaptError(f"{where}: the tags are class ids without names; give reader_options.tag_names")
            words = [str(w) for w in row[tok_col]]
            if len(words) != len(tags):
                raise LongAdaptError(f"{where} row {row_i}: {len(words)} tokens but {len(tags)} tags")
            ignored: dict[str, int] = {}
            checked = []
            for k, tag in enumerate(tags):
                if task_type == "pos":
                    _check_label(tag, labels, Path(str(where)), row_i + 1, "tag")
                    checked.append(tag)
                    continue
                if tag == "O":
                    checked.append(tag)
                    continue
                prefix, dash, typ = tag.partition("-")
                if not dash or prefix not in ("B", "I") or not typ:
                    raise LongAdaptError(f"{where} row {row_i}: tag {tag!r} is not O, B-<label> or I-<label>")
                if not _check_label(typ, labels, Path(str(where)), row_i + 1, other_labels=other_labels):
                    if prefix == "B" or k == 0 or tags[k - 1].partition("-")[2] != typ:
                        ignored[typ] = ignored.get(typ, 0) + 1
                    tag = "O"
                checked.append(tag)
            out.append(TaggedSentence(id=str(row[id_col]) if id_col else f"{hf_split}:{row_i}", words=words,
                                      tags=checked, source=str(where), line=row_i + 1,
                                      meta={"ignored_labels": ignored} if ignored else {}))
        return out
    text_col = column("text", "text")
    label_col = column("label", "label" if task_type != "regression" else None, required=task_type != "regression")
    pair_col = column("text_pair", None)
    score_col = column("score", "label" if task_type == "regression" else None)
    names = _feature_names(ds.features[label_col]) if label_col else None
    for row_i, row in enumerate(ds):
        ex_labels: list[str] = []
        if label_col and task_type != "regression":
            value = row[label_col]
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, int) and names:
                    v = names[v]
                parts = str(v).split(label_separator) if label_separator and isinstance(v, str) else [str(v)]
                ex_labels += [x.strip() for x in parts if x.strip()]
            for lab in ex_labels:
                _check_label(lab, labels, Path(str(where)), row_i + 1)
        score = None
        if score_col:
            try:
                score = float(row[score_col])
            except (TypeError, ValueError):
                raise LongAdaptError(f"{where} row {row_i}: score {row[score_col]!r} is not a number") from None
        out.append(ClassificationExample(id=str(row[id_col]) if id_col else f"{hf_split}:{row_i}",
                                         text=str(row[text_col]), labels=ex_labels, score=score,
                                         text_pair=str(row[pair_col]) if pair_col else None, source=str(where),
                                         line=row_i + 1))
    if not out:
        raise LongAdaptError(f"{where}: the split is empty")
    return out
