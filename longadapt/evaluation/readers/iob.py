"""IOB / CoNLL columns: one token per line (token ... tag), blank lines between sentences."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import TaggedSentence

from longadapt.evaluation.readers.common import _check_label, _error, _read_text

logger = logging.getLogger(__name__)


def read_iob(
    path: str | Path,
    labels: Sequence[str] | None = None,
    token_column: int = 0,
    tag_column: int = -1,
    separator: str | None = None,
    scheme: str = "bio",
    other_labels: str = "error",
    encoding: str = "utf-8",
) -> list[TaggedSentence]:
    """Read CoNLL-style columns: one token per line, blank line between sentences.

    ``separator`` splits the columns (default: any whitespace). With ``scheme: bio`` tags are ``O``
    or ``B-X``/``I-X`` with ``X`` in ``labels`` (when given); with ``scheme: raw`` (POS tagging)
    each tag must itself be in ``labels``. ``-DOCSTART-`` lines are skipped. With
    ``other_labels: ignore`` a tag of another type becomes ``O`` and is counted in the sentence's
    ``meta["ignored_labels"]`` (one count per mention, i.e. per ``B-`` tag).
    """
    if scheme not in ("bio", "raw"):
        raise LongAdaptError(f"iob reader: scheme must be bio or raw, not {scheme!r}")
    path = Path(path)
    text = _read_text(path, encoding)
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    ignored: dict[str, int] = {}
    raw_tags: list[str] = []  # the tags as read, before other labels became O
    first_line = 0

    def flush() -> None:
        if words:
            sentences.append(
                TaggedSentence(id=f"{path.stem}:{len(sentences)}", words=list(words), tags=list(tags),
                               source=str(path), line=first_line,
                               meta={"ignored_labels": dict(ignored)} if ignored else {})
            )
            words.clear()
            tags.clear()
            ignored.clear()

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            flush()
            continue
        cols = line.split(separator) if separator else line.split()
        if cols[0] == "-DOCSTART-":
            flush()
            continue
        if len(cols) < 2:
            raise _error(path, lineno, f"expected 'token tag' columns, got {line!r}",
                         "Each non-blank line must hold a token and its tag")
        try:
            token, tag = cols[token_column], cols[tag_column]
        except IndexError:
            raise _error(path, lineno, f"no column {tag_column} in {line!r}") from None
        if not words:
            raw_tags = []
        if scheme == "raw":
            _check_label(tag, labels, path, lineno, "tag")
            raw_tags.append(tag)
        elif tag != "O":
            prefix, dash, typ = tag.partition("-")
            if not dash or prefix not in ("B", "I") or not typ:
                raise _error(path, lineno, f"tag {tag!r} is not O, B-<label> or I-<label>",
                             "Use IOB2 tags")
            if not _check_label(typ, labels, path, lineno, other_labels=other_labels):
                if prefix == "B" or not words or raw_tags[-1].partition("-")[2] != typ:
                    ignored[typ] = ignored.get(typ, 0) + 1  # one per mention
                raw_tags.append(tag)
                tag = "O"
            else:
                raw_tags.append(tag)
        else:
            raw_tags.append(tag)
        if not words:
            first_line = lineno
        words.append(token)
        tags.append(tag)
    flush()
    if not sentences:
        raise _error(path, None, "no sentence found", "Check that the file is in CoNLL/IOB format")
    return sentences
