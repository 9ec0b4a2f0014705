"""Tab-separated text with label or score columns (MORFITT and user data)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

from longadapt.evaluation.data import ClassificationExample

from longadapt.evaluation.readers.common import _check_label, _error, _read_text_exact

logger = logging.getLogger(__name__)


def read_tsv(
    path: str | Path,
    text_column: str | int = "text",
    label_column: str | int | None = "label",
    id_column: str | int | None = None,
    text_pair_column: str | int | None = None,
    score_column: str | int | None = None,
    label_separator: str | None = "|",
    header: bool = True,
    quoting: bool = True,
    labels: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> list[ClassificationExample]:
    """Read a tab-separated file of texts with labels (``label_separator`` joins several) or a score.

    Columns are named (with ``header``) or 0-based indices. With ``quoting`` (default), a field
    may be quoted as spreadsheets and pandas write it (``"a ""quoted"" word"``); with
    ``quoting: false`` quotes are ordinary characters and fields are split on tabs only.
    """
    path = Path(path)
    text = _read_text_exact(path, encoding)
    if quoting:
        reader = csv.reader(io.StringIO(text, newline=""), dialect="excel-tab")
    else:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows: list[tuple[int, list[str]]] = []
    try:
        start_line = 1
        for fields in reader:
            rows.append((start_line, fields))
            start_line = reader.line_num + 1
    except csv.Error as exc:
        raise _error(path, reader.line_num, f"malformed TSV ({exc})",
                     "Check the quotes, or set quoting: false if quotes are ordinary characters") from None
    if not rows:
        raise _error(path, None, "empty file")
    names: list[str] = []
    if header:
        names = rows[0][1]
        rows = rows[1:]

    def col(spec: str | int | None, what: str) -> int | None:
        if spec is None:
            return None
        if isinstance(spec, int):
            return spec
        if not header:
            raise _error(path, None, f"{what} {spec!r} is a name but the file has no header",
                         "Give a 0-based column index or set header: true")
        if spec not in names:
            raise _error(path, 1, f"no column {spec!r} for {what}; the columns are: {', '.join(names)}",
                         f"Set '{what}' in the task YAML")
        return names.index(spec)

    ti, li, ii = col(text_column, "text_column"), col(label_column, "label_column"), col(id_column, "id_column")
    pi, si = col(text_pair_column, "text_pair_column"), col(score_column, "score_column")
    width = len(names) if header else None
    out = []
    for lineno, fields in rows:
        if not any(f.strip() for f in fields):
            continue
        if width is not None and len(fields) != width:
            raise _error(path, lineno, f"{len(fields)} tab-separated fields, the header has {width}",
                         "Quote a field that contains a tab or a newline, or remove them")
        need = max(i for i in (ti, li, ii, pi, si) if i is not None)
        if len(fields) <= need:
            raise _error(path, lineno, f"{len(fields)} fields, column {need} is needed")
        ex_labels: list[str] = []
        if li is not None:
            value = fields[li].strip()
            parts = value.split(label_separator) if label_separator else [value]
            ex_labels = [p.strip() for p in parts if p.strip()]
            for lab in ex_labels:
                _check_label(lab, labels, path, lineno)
        score = None
        if si is not None:
            try:
                score = float(fields[si])
            except ValueError:
                raise _error(path, lineno, f"score {fields[si]!r} is not a number") from None
        out.append(
            ClassificationExample(
                id=fields[ii] if ii is not None else f"{path.stem}:{lineno}",
                text=fields[ti],
                labels=ex_labels,
                score=score,
                text_pair=fields[pi] if pi is not None else None,
                source=str(path),
                line=lineno,
            )
        )
    if not out:
        raise _error(path, None, "no example found")
    return out
