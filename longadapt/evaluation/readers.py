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

import csv
import inspect
import io
import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import ClassificationExample, Document, Entity, MCQAItem, TaggedSentence

logger = logging.getLogger(__name__)

CAS_NS = "http:///uima/cas.ecore"
XMI_NS = "http://www.omg.org/XMI"


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


# --------------------------------------------------------------------------------------------
# IOB / CoNLL columns
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# BRAT standoff
# --------------------------------------------------------------------------------------------

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


def _read_text_exact(path: Path, encoding: str = "utf-8") -> str:
    """Read a text without newline translation, so that offsets count every character."""
    try:
        with open(path, encoding=encoding, newline="") as fh:
            return fh.read()
    except FileNotFoundError:
        raise _error(path, None, "file does not exist", "Check the task's data paths") from None
    except UnicodeDecodeError as exc:
        raise _not_decoded(path, exc, encoding) from None


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


# --------------------------------------------------------------------------------------------
# UIMA CAS XMI (E3C)
# --------------------------------------------------------------------------------------------


def read_xmi(
    path: str | Path,
    annotation: str = "custom:CLINENTITY",
    label: str | None = None,
    label_attribute: str | None = None,
    labels: Sequence[str] | None = None,
    other_labels: str = "error",
    select: IdSelection | None = None,
    unlabelled: str = "error",
) -> list[Document]:
    """Read UIMA CAS XMI documents (a folder of ``.xml``/``.xmi`` files, or one file).

    ``annotation`` is the ``prefix:Type`` of the span annotations to read (E3C clinical entities:
    ``custom:CLINENTITY``); the label is ``label_attribute``'s value when given, else ``label``,
    else the type name. Offsets (``begin``/``end``) index the ``sofaString`` of the ``cas:Sofa``
    the annotation points to. ``select`` (the task's ``ids_file``) keeps file names before any file is
    read; ``other_labels: ignore`` leaves out (and counts) annotations of labels outside ``labels``.
    An annotation without ``label_attribute`` is an error naming its line, or with ``unlabelled: skip``
    left out and counted (``meta["unlabelled"]``, reported per split).
    """
    if unlabelled not in UNLABELLED:
        raise LongAdaptError(f"xmi reader: unlabelled must be one of {', '.join(UNLABELLED)}, not {unlabelled!r}")
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".xml", ".xmi"))
        if not files:
            raise _error(path, None, "no .xml/.xmi file in this folder", "Check the task's data paths")
    else:
        files = _files(path, path.suffix or ".xml")
    if select is not None:
        by_stem = {f.stem: f for f in files}
        files = [by_stem[n] for n in select.apply(list(by_stem), path)]
    prefix, _, local = annotation.rpartition(":")
    docs = []
    for f in files:
        docs.append(_read_one_xmi(f, prefix, local, label or local, label_attribute, labels, other_labels, unlabelled))
    return docs


def _read_one_xmi(path: Path, prefix: str, local: str, label: str, label_attribute: str | None,
                  labels: Sequence[str] | None, other_labels: str = "error", unlabelled: str = "error") -> Document:
    # only to find an annotation's line for messages: the XML parser reads the encoding the file declares
    raw = path.read_bytes().decode("utf-8", errors="replace")
    namespaces: dict[str, str] = {}
    try:
        for _event, (ns_prefix, uri) in ET.iterparse(path, events=["start-ns"]):
            namespaces[ns_prefix] = uri
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise _error(path, exc.position[0], f"not well-formed XML ({exc})", "Re-export the XMI") from None
    if prefix and prefix not in namespaces:
        raise _error(path, None, f"namespace prefix {prefix!r} is not declared",
                     f"Declared prefixes: {', '.join(sorted(namespaces))}")
    tag = f"{{{namespaces[prefix]}}}{local}" if prefix else local
    sofas = {s.get(f"{{{XMI_NS}}}id"): s.get("sofaString") for s in root.iter(f"{{{CAS_NS}}}Sofa")}
    sofas = {k: v for k, v in sofas.items() if v is not None}
    if not sofas:
        raise _error(path, None, "no cas:Sofa with a sofaString", "This is not a UIMA CAS XMI document")
    default_sofa = next(iter(sofas))
    text = sofas[default_sofa]
    to_cp = _utf16_to_codepoints(text)
    entities = []
    ignored: dict[str, int] = {}
    skipped = 0
    for el in root.iter(tag):
        xid = el.get(f"{{{XMI_NS}}}id", "?")
        line = _xmi_line(raw, xid)
        sofa = el.get("sofa", default_sofa)
        if sofa not in sofas:
            raise _error(path, line, f"{local} xmi:id={xid} points to an unknown sofa {sofa!r}")
        if sofa != default_sofa:
            continue
        try:
            begin, end = int(el.get("begin", "")), int(el.get("end", ""))
        except ValueError:
            raise _error(path, line, f"{local} xmi:id={xid} has no integer begin/end") from None
        if not 0 <= begin < end <= len(to_cp) - 1:
            raise _error(path, line,
                         f"{local} xmi:id={xid}: offsets {begin}-{end} outside the text (length {len(to_cp) - 1} "
                         "UTF-16 code units) or empty",
                         "The annotation does not belong to this document's sofaString")
        begin, end = to_cp[begin], to_cp[end]
        if begin < 0 or end < 0:
            raise _error(path, line, f"{local} xmi:id={xid}: an offset falls inside a character outside the Basic "
                         "Multilingual Plane (between the two halves of a UTF-16 surrogate pair)",
                         "UIMA offsets count UTF-16 code units; re-export the annotation")
        lab = el.get(label_attribute) if label_attribute else label
        if lab is None:
            if unlabelled == "skip":
                skipped += 1
                continue
            raise _error(path, line, f"{local} xmi:id={xid} has no attribute {label_attribute!r}",
                         "Label it, or set reader_options.unlabelled: skip in the task YAML to leave such annotations "
                         "out (they are counted per split)")
        if not _check_label(lab, labels, path, line, other_labels=other_labels):
            ignored[lab] = ignored.get(lab, 0) + 1
            continue
        attributes = {k: v for k, v in el.attrib.items() if "}" not in k and k not in ("begin", "end", "sofa")}
        entities.append(Entity(start=begin, end=end, label=lab, text=text[begin:end], id=xid, attributes=attributes))
    entities.sort(key=lambda e: (e.start, e.end))
    meta: dict[str, Any] = {"ignored_labels": ignored} if ignored else {}
    if skipped:
        meta["unlabelled"] = skipped
    return Document(id=path.stem, text=text, entities=entities, source=str(path), meta=meta)


def _utf16_to_codepoints(text: str) -> list[int]:
    """For each UTF-16 offset of ``text`` (0 to its UTF-16 length), the Python (code point) offset; -1 where
    it falls between the halves of a surrogate pair. UIMA (Java) counts ``begin``/``end`` in UTF-16 code units,
    so every character outside the Basic Multilingual Plane (an emoji, some symbols) before a mention shifts it
    by one in Python's indexing."""
    out: list[int] = []
    for i, ch in enumerate(text):
        out.append(i)
        if ord(ch) > 0xFFFF:
            out.append(-1)
    out.append(len(text))
    return out


def _xmi_line(raw: str, xid: str) -> int | None:
    idx = raw.find(f'xmi:id="{xid}"')
    return raw.count("\n", 0, idx) + 1 if idx >= 0 else None


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


# --------------------------------------------------------------------------------------------
# TSV (MORFITT and user data)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# MCQA JSON (FrenchMedMCQA)
# --------------------------------------------------------------------------------------------


def read_mcqa_json(path: str | Path, labels: Sequence[str] | None = None, encoding: str = "utf-8") -> list[MCQAItem]:
    """Read a JSON array of ``{id, question, answers{a..e}, correct_answers[, nbr_correct_answers]}``.

    ``labels`` (when given) is the list of option keys every question must have.
    """
    path = Path(path)
    raw = _read_text(path, encoding)
    decoder = json.JSONDecoder()
    items: list[tuple[int, Any]] = []
    try:
        idx = _skip_ws(raw, 0)
        if raw[idx : idx + 1] != "[":
            raise _error(path, 1, "expected a JSON array of questions")
        idx = _skip_ws(raw, idx + 1)
        while raw[idx : idx + 1] != "]":
            obj, end = decoder.raw_decode(raw, idx)
            items.append((raw.count("\n", 0, idx) + 1, obj))
            idx = _skip_ws(raw, end)
            if raw[idx : idx + 1] == ",":
                idx = _skip_ws(raw, idx + 1)
            elif raw[idx : idx + 1] != "]":
                raise _error(path, raw.count("\n", 0, idx) + 1, "expected ',' or ']' between questions")
    except json.JSONDecodeError as exc:
        raise _error(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    out = []
    for line, obj in items:
        if not isinstance(obj, dict):
            raise _error(path, line, "a question must be a JSON object")
        for key in ("id", "question", "answers", "correct_answers"):
            if key not in obj:
                raise _error(path, line, f"question without {key!r}",
                             "Each question needs id, question, answers and correct_answers")
        options = obj["answers"]
        if not isinstance(options, dict) or not options:
            raise _error(path, line, f"question {obj['id']}: 'answers' must map option keys to texts")
        if labels is not None and sorted(options) != sorted(labels):
            raise _error(path, line, f"question {obj['id']}: options {sorted(options)} differ from the task's "
                         f"{list(labels)}")
        answers = obj["correct_answers"]
        if not isinstance(answers, list) or not answers:
            raise _error(path, line, f"question {obj['id']}: 'correct_answers' must be a non-empty list")
        for a in answers:
            if a not in options:
                raise _error(path, line, f"question {obj['id']}: correct answer {a!r} is not an option")
        n = obj.get("nbr_correct_answers")
        if n is not None and n != len(answers):
            raise _error(path, line, f"question {obj['id']}: nbr_correct_answers={n} but {len(answers)} "
                         "correct answers are listed")
        meta = {k: v for k, v in obj.items() if k not in ("id", "question", "answers", "correct_answers")}
        meta["line"] = line
        out.append(MCQAItem(id=str(obj["id"]), question=obj["question"],
                            options={k: options[k] for k in sorted(options)},
                            answers=sorted(answers), source=str(path), meta=meta))
    if not out:
        raise _error(path, None, "no question found")
    return out


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i


# --------------------------------------------------------------------------------------------
# CodiEsp (ICD-10 coding of whole documents)
# --------------------------------------------------------------------------------------------

# ICD-10-CM chapters (the 2020 edition CodiEsp was coded with), by first code of each block;
# a code belongs to the last chapter whose first code is <= the code.
ICD10_CHAPTERS: list[tuple[str, str]] = [
    ("A00", "A00-B99"), ("C00", "C00-D49"), ("D50", "D50-D89"), ("E00", "E00-E89"),
    ("F00", "F01-F99"), ("G00", "G00-G99"), ("H00", "H00-H59"), ("H60", "H60-H95"),
    ("I00", "I00-I99"), ("J00", "J00-J99"), ("K00", "K00-K95"), ("L00", "L00-L99"),
    ("M00", "M00-M99"), ("N00", "N00-N99"), ("O00", "O00-O9A"), ("P00", "P00-P96"),
    ("Q00", "Q00-Q99"), ("R00", "R00-R99"), ("S00", "S00-T88"), ("U00", "U00-U85"),
    ("V00", "V00-Y99"), ("Z00", "Z00-Z99"),
]
ICD10_CHAPTER_NAMES = [name for _, name in ICD10_CHAPTERS]
_ICD10 = re.compile(r"^[A-Za-z][0-9][0-9A-Za-z](\.[0-9A-Za-z]{1,4})?$")


def icd10_chapter(code: str) -> str:
    """The ICD-10(-CM) chapter (e.g. ``"C00-D49"``) of a diagnosis code such as ``d3a.8``.

    A letter in the third position (``D3A``, ``O9A``, ``Z3A``) sorts after the digits of its
    block, as in the tabular list. Raises ValueError on a code that is not ICD-10 shaped.
    """
    if not _ICD10.match(code):
        raise ValueError(f"{code!r} is not an ICD-10 diagnosis code")
    letter = code[0].upper()
    tens = int(code[1])
    units = int(code[2]) if code[2].isdigit() else 9
    key = (letter, tens * 10 + units)
    chapter = None
    for first, name in ICD10_CHAPTERS:
        if (first[0], int(first[1:])) <= key:
            chapter = name
    if chapter is None:  # pragma: no cover - every letter >= A
        raise ValueError(code)
    return chapter


def read_codiesp(
    path: str | Path,
    codes_file: str | Path | None = None,
    label_mode: str = "chapter",
    labels: Sequence[str] | None = None,
    select: IdSelection | None = None,
    encoding: str = "utf-8",
) -> list[ClassificationExample]:
    """Read CodiEsp: ``<path>/text_files/<doc>.txt`` and a headerless TSV of ``doc<TAB>code``.

    ``codes_file`` defaults to ``<path>/<split>D.tsv`` (``<split>`` = the folder name).
    ``label_mode`` ``chapter`` maps each diagnosis code to its ICD-10 chapter
    (:func:`icd10_chapter`); ``code`` keeps the codes. Every document of ``text_files`` is
    returned, also one without codes (no labels).
    """
    path = Path(path)
    text_dir = path / "text_files"
    if not text_dir.is_dir():
        raise _error(path, None, "has no text_files/ folder", "Point the task at a CodiEsp split folder")
    codes_path = Path(codes_file) if codes_file else path / f"{path.name}D.tsv"
    if label_mode not in ("chapter", "code"):
        raise LongAdaptError(f"codiesp reader: label_mode must be 'chapter' or 'code', not {label_mode!r}")
    texts = {p.stem: p for p in sorted(text_dir.glob("*.txt"))}
    selected = set(select.apply(list(texts), text_dir)) if select is not None else set(texts)
    doc_labels: dict[str, list[str]] = {doc: [] for doc in texts}
    for lineno, raw in enumerate(_read_text(codes_path, encoding).splitlines(), start=1):
        if not raw.strip():
            continue
        fields = raw.split("\t")
        if len(fields) < 2:
            raise _error(codes_path, lineno, f"expected 'doc<TAB>code', got {raw!r}")
        doc, code = fields[0].strip(), fields[1].strip()
        if doc not in texts:
            raise _error(codes_path, lineno, f"document {doc!r} has no text file in {text_dir}")
        if label_mode == "chapter":
            try:
                lab = icd10_chapter(code)
            except ValueError:
                raise _error(codes_path, lineno, f"{code!r} is not an ICD-10 diagnosis code",
                             "Chapters exist only for diagnosis (D) codes") from None
        else:
            lab = code
        _check_label(lab, labels, codes_path, lineno)
        if lab not in doc_labels[doc]:
            doc_labels[doc].append(lab)
    return [
        ClassificationExample(id=doc, text=_read_text(p, encoding), labels=sorted(doc_labels[doc]), source=str(p),
                              meta={"codes_file": str(codes_path)})
        for doc, p in texts.items() if doc in selected
    ]


# --------------------------------------------------------------------------------------------
# Hugging Face datasets (DrBenchmark's hub datasets, or any local datasets / Parquet / JSON file)
# --------------------------------------------------------------------------------------------

DATASET_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".gz": "json", ".csv": "csv"}


def _load_hf_split(path: Path | str, hub_id: str | None, split: str, name: str | None, revision: str | None) -> Any:
    """One split of a dataset: a ``save_to_disk`` folder (Dataset or DatasetDict), a Parquet / JSON Lines
    / CSV file, or a hub id (``datasets.load_dataset``, which needs a network or the local hub cache)."""
    import datasets

    local = Path(path)
    try:
        if local.is_dir():
            if not ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
                raise _error(local, None, "is not a datasets.save_to_disk folder (no dataset_dict.json or state.json)",
                             "Point the source at a save_to_disk folder or at one Parquet / JSON Lines file")
            ds = datasets.load_from_disk(str(local))
        elif local.is_file():
            suffix = local.suffix.lower()
            if suffix not in DATASET_FILE_BUILDERS:
                raise _error(local, None, f"unknown dataset file type {suffix!r}",
                             f"Use one of {', '.join(sorted(DATASET_FILE_BUILDERS))}")
            ds = datasets.load_dataset(DATASET_FILE_BUILDERS[suffix], data_files=str(local), split="train")
        elif hub_id:
            ds = datasets.load_dataset(hub_id, name, split=split, revision=revision)
        else:
            raise _error(local, None, "does not exist", "Check the task's data paths, or give a hub id")
    except LongAdaptError:
        raise
    except Exception as exc:  # network, unknown dataset or config, script datasets under datasets >= 4
        raise LongAdaptError(
            f"{hub_id or local}: cannot load the dataset ({type(exc).__name__}: {exc}). Offline, save it with "
            "datasets' save_to_disk and point the task at that folder; a hub dataset that needs a loading "
            "script may have a Parquet conversion (reader option revision: refs/convert/parquet)") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise LongAdaptError(f"{hub_id or local}: no split {split!r}; the dataset has {', '.join(ds)}. "
                                 "Set the source's options: {split: NAME}")
        ds = ds[split]
    return ds


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


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

READERS: dict[str, Callable[..., list[Any]]] = {
    "iob": read_iob,
    "brat": read_brat,
    "xmi": read_xmi,
    "tsv": read_tsv,
    "mcqa_json": read_mcqa_json,
    "codiesp": read_codiesp,
    "datasets": read_datasets,
}

READER_KINDS: dict[str, str] = {
    "iob": "tagged",
    "brat": "document",
    "xmi": "document",
    "tsv": "classification",
    "mcqa_json": "mcqa",
    "codiesp": "classification",
    "datasets": "tagged|classification",  # by the task type
}

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
    fn = READERS[reader]
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
