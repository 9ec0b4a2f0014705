"""What every reader shares: errors that name the file and line, label checks, decoding, file lists, and
the id selections of a split (``ids_file``, shuffles, fractions)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from longadapt.errors import LongAdaptError


logger = logging.getLogger(__name__)


def _error(path: Path | str, line: int | None, message: str, fix: str = "") -> LongAdaptError:
    where = f"{path}:{line}" if line else f"{path}"
    return LongAdaptError(f"{where}: {message}" + (f". {fix}" if fix else ""))


OTHER_LABELS = ("error", "ignore")
UNLABELLED = ("error", "skip")  # an annotation without its label (xmi label_attribute): stop, or leave out and count


def _check_label(label: str, labels: Sequence[str] | None, path: Path, line: int | None, what: str = "label",
                 other_labels: str = "error", also: str = "") -> bool:
    """True when ``label`` is one of the task's; False when it is not and ``other_labels`` is ``ignore``
    (the caller leaves the annotation out and counts it); an error otherwise."""
    if labels is None or label in labels:
        return True
    if other_labels == "ignore":
        return False
    if other_labels != "error":
        raise LongAdaptError(f"other_labels must be one of {', '.join(OTHER_LABELS)}, not {other_labels!r}")
    raise _error(
        path,
        line,
        f"unknown {what} {label!r}; the task's labels are: {', '.join(labels)}",
        f"Add it to 'labels' in the task YAML{also}, or set 'other_labels: ignore' there to leave annotations of "
        "other labels out (they are counted in run.json)" if what == "label" else
        "Fix the data or add the tag to 'labels' in the task YAML",
    )


def _not_decoded(path: Path, exc: UnicodeDecodeError, encoding: str) -> LongAdaptError:
    line = path.read_bytes()[: exc.start].count(b"\n") + 1
    return _error(path, line, f"not valid {encoding} at byte {exc.start} ({exc.reason})",
                  "Convert the file to UTF-8, or give the data's encoding in the task YAML (encoding: cp1252, or "
                  "any Python codec name; never guessed)")


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise _error(path, None, "file does not exist", "Check the task's data paths and --data-root") from None
    except UnicodeDecodeError as exc:
        raise _not_decoded(path, exc, encoding) from None


def _files(path: Path, suffix: str) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob(f"*{suffix}"))
        if not files:
            raise _error(path, None, f"no *{suffix} file in this folder", "Check the task's data paths")
        return files
    if path.is_file():
        return [path]
    raise _error(path, None, "does not exist", "Check the task's data paths and --data-root")


@dataclass
class IdSelection:
    """The documents a source keeps: the ids of an id list, included or excluded (``ids_file``)."""

    ids: list[str]
    mode: str = "include"  # include | exclude
    origin: str = ""  # the id list, for messages

    def apply(self, names: Sequence[str], where: Path | str) -> list[str]:
        """The ``names`` (document ids, in order) kept; an id that matches none of them is an error. An id
        written as a file name (``doc1.txt``, ``doc1.ann``, ``doc1.xml``) means the document ``doc1``."""
        if self.mode not in ("include", "exclude"):
            raise LongAdaptError(f"{self.origin}: ids_mode must be include or exclude, not {self.mode!r}")
        present = set(names)
        self.ids = [i if i in present else re.sub(r"\.(txt|ann|xml|xmi)$", "", i) for i in self.ids]
        unknown = [i for i in self.ids if i not in present]
        if unknown:
            shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            raise LongAdaptError(
                f"{self.origin}: {len(unknown)} of its {len(self.ids)} ids match no document in {where}: {shown}. "
                "Fix the id list or the data path (ids are file names without extension, or the reader's id "
                "column)")
        keep = set(self.ids)
        return [n for n in names if (n in keep) == (self.mode == "include")]


def _read_text_exact(path: Path, encoding: str = "utf-8") -> str:
    """Read a text without newline translation, so that offsets count every character."""
    try:
        with open(path, encoding=encoding, newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        raise _error(path, None, "file does not exist", "Check the task's data paths") from None
    except UnicodeDecodeError as exc:
        raise _not_decoded(path, exc, encoding) from None


def read_id_list(path: str | Path, section: str | None = None) -> list[str]:
    """Document ids listed in a file: quoted ids (``'FR100003', ...``) or one id per line.

    With ``section``, only the ids in the block after the line equal to ``section``
    (case-insensitive) are read, up to the next blank line (E3C's ``train_test_split.txt``).
    """
    path = Path(path)
    lines = _read_text(path).splitlines()
    start, stop = 0, len(lines)
    if section is not None:
        heads = [i for i, l in enumerate(lines) if l.strip().lower() == section.lower()]
        if not heads:
            raise _error(path, None, f"no section {section!r}", "Check 'ids_section' in the task YAML")
        start = heads[0] + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        stop = start
        while stop < len(lines) and lines[stop].strip():
            stop += 1
    block = "\n".join(lines[start:stop])
    ids = re.findall(r"'([^']+)'|\"([^\"]+)\"", block)
    found = [a or b for a, b in ids]
    if not found:
        found = [l.strip() for l in lines[start:stop] if l.strip()]
    if not found:
        raise _error(path, start + 1, "no document id found", "List the ids one per line or quoted")
    return found
