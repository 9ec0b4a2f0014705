"""BRAT standoff: a folder (or one file) of ``.txt`` + ``.ann``; labels from the T line's type or from the
mention's AnnotatorNotes."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import Document, Entity

from longadapt.evaluation.readers.common import IdSelection, _check_label, _error, _read_text_exact

logger = logging.getLogger(__name__)


_BRAT_T = re.compile(r"^(T\S*)\t(\S+) ([0-9; ]+)\t(.*)$")
_BRAT_NOTE = re.compile(r"^#\S*\tAnnotatorNotes (\S+)\t(.*)$")
_NOTE_FIELDS = re.compile(r'^\s*"[^"]*"(\s*,\s*"[^"]*")*\s*$')  # "a", "b" ,"c": quoted fields, commas between
BRAT_LABEL_FROM = ("type", "note")  # brat reader: a mention's label is its T line's type, or its note's last field


def read_brat(
    path: str | Path,
    labels: Sequence[str] | None = None,
    check_text: bool = True,
    other_labels: str = "error",
    select: IdSelection | None = None,
    label_from: str = "type",
    label_map: dict[str, str] | None = None,
    encoding: str = "utf-8",
) -> list[Document]:
    """Read BRAT standoff: ``<doc>.txt`` with its ``<doc>.ann`` (a folder of pairs, or one file).

    Only text-bound annotations (``T`` lines) are read; relations, events and attributes are ignored, and
    so are notes unless ``label_from`` is ``note``. A mention's label is its BRAT type (``label_from:
    type``) or the last field of its ``AnnotatorNotes`` line, a comma-separated list of quoted fields
    (``label_from: note``; Mantra GSC: ``"C1721214", "protelos", "Organic Chemical" ,"CHEM"`` gives
    ``CHEM``, and the type, a CUI there, is kept in ``Entity.attributes["brat_type"]``); a mention without
    a note, with two, or with one that does not parse is an error naming the ``.ann`` line. ``label_map``
    then renames labels (``{"Manufactured Object": OBJC}``); each renaming is counted in
    ``meta["mapped_labels"]`` (``"Manufactured Object -> OBJC": 1``). A discontinuous entity
    (``start end;start end``) keeps every fragment in ``Entity.fragments`` (``start``/``end`` are its
    extent); the task's ``discontinuous`` option decides what is scored. With ``check_text`` the span text in the ``.ann`` must equal the text at the offsets
    (fragments joined by a space, newlines read as spaces). With ``other_labels: ignore`` mentions of
    labels outside ``labels`` are left out and counted in ``meta["ignored_labels"]``.

    ``select`` (the task's ``ids_file``) is applied to the file names *before* any file is read, so a
    document outside the selection may lack its ``.ann``; an id that matches no document is an error.
    """
    if label_from not in BRAT_LABEL_FROM:
        raise LongAdaptError(f"brat reader: label_from must be one of {', '.join(BRAT_LABEL_FROM)}, not {label_from!r}")
    label_map = dict(label_map or {})
    bad = [f"{k!r}: {v!r}" for k, v in label_map.items() if not isinstance(k, str) or not isinstance(v, str) or not v]
    if bad:
        raise LongAdaptError(f"brat reader: label_map must map labels as read to task labels (text to text), not "
                             f"{', '.join(bad)}; quote them in the YAML")
    path = Path(path)
    if path.is_file():
        stems = {path.stem: path.parent}
    elif path.is_dir():
        found = sorted(path.glob("*.txt")) + sorted(path.glob("*.ann"))
        if not found:  # documents in subfolders (one per part or batch): read them all
            found = sorted(path.rglob("*.txt")) + sorted(path.rglob("*.ann"))
        if not found:
            raise _error(path, None, "no .txt or .ann file in this folder or below it", "Check the task's data paths")
        stems: dict[str, Path] = {}
        for p in found:
            if stems.setdefault(p.stem, p.parent) != p.parent:
                raise _error(p, None, f"two documents are named {p.stem!r} ({stems[p.stem]} and {p.parent})",
                             "Document ids are file names: point each source at one of the folders")
    else:
        raise _error(path, None, "does not exist", "Check the task's data paths and --data-root")
    names = select.apply(sorted(stems), path) if select is not None else sorted(stems)
    docs = []
    for stem in names:
        folder = stems[stem]
        txt_path, ann = folder / f"{stem}.txt", folder / f"{stem}.ann"
        if not txt_path.is_file():
            raise _error(ann, None, f"has no text file {txt_path.name}", "Put the .txt next to its .ann")
        if not ann.is_file():
            raise _error(txt_path, None, "has no .ann file",
                         "Add its .ann (BRAT writes an empty one for a document without entities), or leave the "
                         "document out of the split with ids_file and ids_mode: exclude in the task YAML")
        text = _read_text_exact(txt_path, encoding)
        ignored: dict[str, int] = {}
        mapped: dict[str, int] = {}
        entities = _read_ann(ann, text, labels, check_text, other_labels, ignored, label_from, label_map, mapped,
                             encoding)
        meta: dict[str, Any] = {"ignored_labels": ignored} if ignored else {}
        if mapped:
            meta["mapped_labels"] = mapped
        docs.append(Document(id=stem, text=text, entities=entities, source=str(txt_path), meta=meta))
    return docs


def _brat_notes(ann: Path, lines: list[str]) -> dict[str, tuple[int, str]]:
    """The ``AnnotatorNotes`` of an ``.ann``: annotation id -> (line, note text); two notes on one id is an error."""
    notes: dict[str, tuple[int, str]] = {}
    for lineno, raw in enumerate(lines, start=1):
        m = _BRAT_NOTE.match(raw.rstrip("\r"))
        if not m:
            continue
        target, note = m.group(1), m.group(2)
        if target in notes:
            raise _error(ann, lineno, f"a second AnnotatorNotes for {target} (the first is on line {notes[target][0]})",
                         "Keep one note per mention: label_from: note reads the label from it")
        notes[target] = (lineno, note)
    return notes


def _note_label(ann: Path, tid: str, t_line: int, notes: dict[str, tuple[int, str]]) -> str:
    """The label of mention ``tid`` from its note: the last of the note's comma-separated quoted fields."""
    fix = (f"Give {tid} a line '#<n><TAB>AnnotatorNotes {tid}<TAB>\"...\", \"LABEL\"' (its label is the last quoted "
           "field), or read labels from the T lines' type with reader_options.label_from: type")
    if tid not in notes:
        raise _error(ann, t_line, f"{tid} has no AnnotatorNotes line (label_from: note takes each mention's label "
                     "from its note)", fix)
    line, note = notes[tid]
    fields = re.findall(r'"([^"]*)"', note) if _NOTE_FIELDS.match(note) else []
    if not fields or not fields[-1].strip():
        raise _error(ann, line, f"the AnnotatorNotes of {tid} is not a comma-separated list of quoted fields ending in "
                     f"a label: {note!r}", fix)
    return fields[-1].strip()


def _read_ann(ann: Path, text: str, labels: Sequence[str] | None, check_text: bool, other_labels: str = "error",
              ignored: dict[str, int] | None = None, label_from: str = "type",
              label_map: dict[str, str] | None = None, mapped: dict[str, int] | None = None,
              encoding: str = "utf-8") -> list[Entity]:
    entities = []
    lines = _read_text_exact(ann, encoding).split("\n")
    notes = _brat_notes(ann, lines) if label_from == "note" else {}
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.startswith("T"):
            continue  # relations (R), events (E), attributes (A/M), notes (#), equivalences (*)
        m = _BRAT_T.match(line)
        if not m:
            raise _error(ann, lineno, f"malformed text-bound annotation {line!r}",
                         "Expected 'T<n><TAB><label> <start> <end>[;<start> <end>]<TAB><text>'")
        tid, brat_type, offsets, surface = m.groups()
        label = _note_label(ann, tid, lineno, notes) if label_from == "note" else brat_type
        if label_map and label in label_map:
            if mapped is not None and label_map[label] != label:
                key = f"{label} -> {label_map[label]}"
                mapped[key] = mapped.get(key, 0) + 1
            label = label_map[label]
        if not _check_label(label, labels, ann, lineno, other_labels=other_labels,
                            also=", map it to one of them with reader_options.label_map"):
            if ignored is not None:
                ignored[label] = ignored.get(label, 0) + 1
            continue
        fragments = []
        for frag in offsets.split(";"):
            parts = frag.split()
            if len(parts) != 2:
                raise _error(ann, lineno, f"bad offsets {offsets!r}", "Offsets are '<start> <end>' pairs")
            start, end = int(parts[0]), int(parts[1])
            if not 0 <= start < end <= len(text):
                raise _error(ann, lineno,
                             f"{tid}: offsets {start}-{end} outside the text (length {len(text)}) or empty",
                             "The .ann does not belong to this .txt, or the text was changed")
            fragments.append((start, end))
        if check_text:
            found = " ".join(text[s:e] for s, e in fragments)
            if _norm_ws(found) != _norm_ws(surface):
                raise _error(ann, lineno,
                             f"{tid}: span text {surface!r} does not match the text at {offsets} ({found!r})",
                             "The .ann does not belong to this .txt, or the text was changed")
        fragments.sort()
        start, end = fragments[0][0], max(e for _, e in fragments)
        entities.append(Entity(start=start, end=end, label=label, text=" ".join(text[s:e] for s, e in fragments),
                               id=tid, fragments=tuple(fragments) if len(fragments) > 1 else None,
                               attributes={"brat_type": brat_type} if label_from == "note" else {}))
    return entities


def _norm_ws(s: str) -> str:
    return re.sub(r"\s", " ", s)
