"""Streaming corpus readers and term lists for the vocabulary analysis.

Corpora: ``.jsonl`` / ``.jsonl.gz`` (one JSON object per line with a text field), ``.txt`` /
``.txt.gz`` (one document per line), or a directory of ``.txt`` files (one document per file).

Terms: a list (one term per line), BRAT standoff annotations (``.ann`` files or a directory of
them: the text of each ``T`` line), or an IOB/BIO file (``token TAG`` per line: the tokens of each
mention joined by spaces).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Iterator

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)

_IOB_TAG = re.compile(r"^(O|[BIES]-\S+)$")


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_documents(path: str | Path, text_field: str = "text", max_docs: int | None = None) -> Iterator[str]:
    """Yield the text of each document of a corpus, streaming (nothing is held in memory)."""
    path = Path(path)
    if not path.exists():
        raise LongAdaptError(f"corpus {path} does not exist")
    n = 0
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise LongAdaptError(f"corpus directory {path} holds no .txt files (one document per file)")
        for f in files:
            if max_docs is not None and n >= max_docs:
                return
            yield f.read_text(encoding="utf-8")
            n += 1
        return
    name = path.name.removesuffix(".gz")
    is_jsonl = name.endswith((".jsonl", ".json"))
    if not is_jsonl and not name.endswith(".txt"):
        raise LongAdaptError(
            f"corpus {path}: unknown format; use .jsonl(.gz) with a {text_field!r} field per line, "
            ".txt(.gz) with one document per line, or a directory of .txt files"
        )
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if max_docs is not None and n >= max_docs:
                    return
                if not line.strip():
                    continue
                if not is_jsonl:
                    yield line.rstrip("\n")
                    n += 1
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LongAdaptError(f"{path}:{lineno}: not valid JSON ({exc.msg}); expected one JSON object per line") from exc
                if not isinstance(record, dict) or text_field not in record:
                    raise LongAdaptError(f"{path}:{lineno}: no field {text_field!r}; each line must be an object with a {text_field!r} string")
                text = record[text_field]
                if not isinstance(text, str):
                    raise LongAdaptError(f"{path}:{lineno}: field {text_field!r} must be a string, got {type(text).__name__}")
                yield text
                n += 1
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise LongAdaptError(f"corpus {path} cannot be read ({exc}); is it UTF-8 text or gzip of it?") from exc


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
