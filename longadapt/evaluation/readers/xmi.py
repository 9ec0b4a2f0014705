"""UIMA CAS XMI (E3C): span annotations of one type, offsets in UTF-16 code units."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import Document, Entity

from longadapt.evaluation.readers.common import IdSelection, UNLABELLED, _check_label, _error, _files

logger = logging.getLogger(__name__)


CAS_NS = "http:///uima/cas.ecore"
XMI_NS = "http://www.omg.org/XMI"




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
