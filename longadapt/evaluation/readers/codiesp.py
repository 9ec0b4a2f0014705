"""CodiEsp: whole documents coded with ICD-10, read as multi-label classification by chapter."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from longadapt.errors import LongAdaptError
from longadapt.evaluation.data import ClassificationExample

from longadapt.evaluation.readers.common import IdSelection, _check_label, _error, _read_text

logger = logging.getLogger(__name__)


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
