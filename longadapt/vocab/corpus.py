"""Corpora and term lists for the vocabulary analysis.

Corpora are read by :func:`longadapt.data.corpus.iter_texts` (``iter_documents`` here): ``.jsonl`` /
``.jsonl.gz`` (one JSON object per line with a text field), ``.txt`` / ``.txt.gz`` (one document per
line), or a directory of ``.txt`` files (one document per file), each text as stored.

Terms: a list (one term per line), BRAT standoff annotations (``.ann`` files or a directory of
them: the text of each ``T`` line), or an IOB/BIO file (``token TAG`` per line: the tokens of each
mention joined by spaces).
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from longadapt.data.corpus import iter_texts
from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)

_IOB_TAG = re.compile(r"^(O|[BIES]-\S+)$")


# The corpus reader is the data pipeline's (one reader for every format, with its error messages);
# the analysis reads the texts as stored, uncleaned.
iter_documents = iter_texts


def fingerprint(path: str | Path) -> dict[str, object]:
    """Size and SHA-256 of a corpus file (or of the file list of a directory)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_dir():
        size = 0
        for f in sorted(path.rglob("*.txt")):
            h.update(str(f.relative_to(path)).encode())
            h.update(f.read_bytes())
            size += f.stat().st_size
    else:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return {"path": str(path), "bytes": size, "sha256": h.hexdigest()}


def detect_terms_format(path: Path) -> str:
    if path.is_dir() or path.suffix == ".ann":
        return "brat"
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()[:200] if ln.strip()]
    if lines and all(len(ln.split()) >= 2 and _IOB_TAG.match(ln.split()[-1]) for ln in lines):
        return "iob"
    return "lines"


def read_terms(path: str | Path, fmt: str = "auto") -> list[str]:
    """Distinct domain terms, in first-seen order.

    ``fmt``: ``lines`` (one term per line; blank lines and lines starting with ``#`` skipped),
    ``brat`` (text of ``T`` lines of ``.ann`` files; a directory is searched recursively),
    ``iob`` (``token ... TAG`` lines, BIO/IOB2 tags; mention tokens joined by spaces), or ``auto``.
    """
    path = Path(path)
    if not path.exists():
        raise LongAdaptError(f"terms file {path} does not exist")
    if fmt == "auto":
        fmt = detect_terms_format(path)
    terms: list[str] = []
    if fmt == "lines":
        for line in path.read_text(encoding="utf-8").splitlines():
            term = line.strip()
            if term and not term.startswith("#"):
                terms.append(term)
    elif fmt == "brat":
        files = sorted(path.rglob("*.ann")) if path.is_dir() else [path]
        if not files:
            raise LongAdaptError(f"terms {path}: no .ann files (BRAT standoff) found")
        for f in files:
            for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
                if not line.startswith("T"):
                    continue
                parts = line.split("\t")
                if len(parts) < 3:
                    raise LongAdaptError(f"{f}:{lineno}: a BRAT T line needs 3 tab-separated fields (id, type offsets, text)")
                if parts[2].strip():
                    terms.append(parts[2].strip())
    elif fmt == "iob":
        current: list[str] = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            cols = line.split()
            tag = cols[-1] if len(cols) >= 2 else "O"
            if len(cols) == 1:
                raise LongAdaptError(f"{path}:{lineno}: expected 'token TAG', got {line!r}")
            if tag.startswith(("B-", "S-")) or tag == "O" or not cols:
                if current:
                    terms.append(" ".join(current))
                current = [cols[0]] if tag.startswith(("B-", "S-")) else []
            else:  # I- / E-: continue (an I- without B- opens a mention, as seqeval does)
                current.append(cols[0])
        if current:
            terms.append(" ".join(current))
    else:
        raise LongAdaptError(f"terms format {fmt!r} unknown; use auto, lines, brat or iob")
    distinct = list(dict.fromkeys(terms))
    if not distinct:
        raise LongAdaptError(f"terms {path} ({fmt}): no terms found")
    return distinct
