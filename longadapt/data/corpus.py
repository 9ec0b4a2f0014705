"""Corpus reading: plain text, JSON Lines (optionally gzipped), Parquet, ``datasets`` hub names,
saved ``datasets`` directories and folders of BRAT ``.txt`` files, all yielding :class:`Document`.

Every document is cleaned the same way whatever its format (:func:`clean_text`: Unicode
normalisation, whitespace clean-up that keeps line breaks) and exact duplicates (same cleaned text)
are dropped. Errors a user can cause (missing path, empty corpus, bytes that are not UTF-8, a JSON
line that is invalid or lacks the text field) raise :class:`~longadapt.errors.LongAdaptError` naming
the file, the line or the key, and saying what to do.
"""

from __future__ import annotations

import codecs
import glob as globlib
import gzip
import hashlib
import json
import logging
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)

FORMATS = ("auto", "text", "jsonl", "parquet", "hub", "disk", "brat")
NORMALIZATION_FORMS = ("NFC", "NFD", "NFKC", "NFKD", "none")

_TEXT_SUFFIXES = (".txt", ".txt.gz", ".text")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json", ".json.gz")
_PARQUET_SUFFIXES = (".parquet",)


@dataclass
class Document:
    """One document of a corpus: a stable identifier and its cleaned text."""

    id: str
    text: str


@dataclass
class CorpusSpec:
    """Where a corpus is and how to read it.

    path: a file, a folder, a glob pattern (``data/*.jsonl.gz``), or with ``format="hub"`` a
        ``datasets`` hub name (or a packaged builder such as ``json`` together with ``data_files``).
    format: ``auto`` (from the suffix, or the folder's content), ``text``, ``jsonl``, ``parquet``,
        ``hub``, ``disk`` (a folder written by ``Dataset.save_to_disk``) or ``brat`` (a folder of
        BRAT ``.txt``/``.ann`` pairs: the ``.txt`` files are read, the annotations ignored).
    text_field / id_field: the record keys holding the text and the identifier (jsonl, parquet, hub,
        disk). A record without ``id_field`` gets ``<file>:<line>`` as identifier.
    text_documents: for plain text, ``file`` (one document per file), ``blank_line`` (documents
        separated by one or more blank lines) or ``line`` (one document per non-empty line).
    encoding: of text and JSON Lines files.
    normalization: Unicode normal form (NFC, NFKC, ..., or ``none``); ``None`` means NFC, or the
        language pack's ``normalization`` when the corpus is read for a language.
    deduplicate: drop documents whose cleaned text was already seen (exact match on a hash).
    clean: ``False`` yields each text exactly as stored (no normal form, no white-space clean-up, no
        lower-casing; only blank documents are skipped): what the vocabulary analysis and the
        tokenizer trainer read (:func:`iter_texts`), so that they measure the files as they are.
    dataset_split / hub_config / data_files / revision: passed to ``datasets`` for ``hub``/``disk``.
    """

    path: str
    format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    text_documents: str = "file"
    encoding: str = "utf-8"
    normalization: str | None = None
    lowercase: bool = False
    deduplicate: bool = True
    clean: bool = True
    dataset_split: str = "train"
    hub_config: str | None = None
    data_files: Any = None
    revision: str | None = None

    def __post_init__(self) -> None:
        self.path = str(self.path)
        if self.format not in FORMATS:
            raise LongAdaptError(f"corpus format {self.format!r} is not one of: {', '.join(FORMATS)}")
        if self.text_documents not in ("file", "blank_line", "line"):
            raise LongAdaptError(
                f"text_documents={self.text_documents!r}: use 'file' (one document per file), "
                "'blank_line' (documents separated by blank lines) or 'line' (one document per line)"
            )
        if self.normalization is not None and self.normalization not in NORMALIZATION_FORMS:
            raise LongAdaptError(
                f"normalization={self.normalization!r} is not one of: {', '.join(NORMALIZATION_FORMS)}"
            )


# ----------------------------------------------------------------------------------------------
# Cleaning
# ----------------------------------------------------------------------------------------------

# Horizontal white space: every Unicode space character except the line break.
_HSPACE = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_BLOCK_SEPARATOR = re.compile(r"\n[^\S\n]*\n\s*")


def clean_text(text: str, normalization: str | None = "NFC", lowercase: bool = False) -> str:
    """Normalise ``text`` (Unicode form) and its white space, keeping line breaks meaningful.

    Line endings become ``\\n``; a byte-order mark is dropped; runs of spaces, tabs and other
    horizontal spaces (no-break spaces included) become one space; lines lose their leading and
    trailing spaces; single line breaks are kept; runs of blank lines become one blank line; the
    document is stripped.
    """
    if normalization and normalization != "none":
        text = unicodedata.normalize(normalization, text)
    if lowercase:
        text = text.lower()
    text = text.replace("\ufeff", "").replace("\r\n", "\n").replace("\r", "\n")
    text = _HSPACE.sub(" ", text)
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def text_hash(text: str) -> str:
    """The hash used for exact de-duplication and for the train/validation split."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------------
# Locating files
# ----------------------------------------------------------------------------------------------


def _has_suffix(path: Path, suffixes: Iterable[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def _format_of_file(path: Path) -> str | None:
    if _has_suffix(path, _JSONL_SUFFIXES):
        return "jsonl"
    if _has_suffix(path, _PARQUET_SUFFIXES):
        return "parquet"
    if _has_suffix(path, _TEXT_SUFFIXES):
        return "text"
    return None


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()
    )


def resolve_format(spec: CorpusSpec) -> str:
    """The format ``spec`` will be read with (``auto`` resolved); raises if the path is missing."""
    if spec.format == "hub":
        return "hub"
    path = Path(spec.path)
    if not path.exists() and not globlib.has_magic(spec.path):
        hint = " If it is a datasets hub name, set format='hub'." if spec.format == "auto" else ""
        raise LongAdaptError(f"corpus path {spec.path} does not exist. Check the path.{hint}")
    if spec.format != "auto":
        return spec.format
    if path.is_file():
        fmt = _format_of_file(path)
        if fmt is None:
            raise LongAdaptError(
                f"{path}: cannot tell the corpus format from the file name; set format to one of "
                "text, jsonl, parquet"
            )
        return fmt
    if _is_saved_dataset(path):
        return "disk"
    files = corpus_files(spec, "auto-scan")
    if path.is_dir() and any(path.rglob("*.ann")) and all(f.suffix == ".txt" for f in files):
        return "brat"
    formats = {_format_of_file(f) for f in files}
    if len(formats) != 1:
        kinds = ", ".join(sorted(str(f) for f in formats))
        raise LongAdaptError(
            f"{spec.path} holds files of several formats ({kinds}); set format explicitly or point "
            "the path at one kind of file (a glob such as dir/*.jsonl.gz works)"
        )
    return formats.pop()


def corpus_files(spec: CorpusSpec, fmt: str) -> list[Path]:
    """The files a file-based corpus consists of, sorted (a folder is searched recursively)."""
    if fmt in ("hub", "disk"):
        return []
    if globlib.has_magic(spec.path):
        files = sorted(Path(p) for p in globlib.glob(spec.path, recursive=True) if Path(p).is_file())
        if fmt == "auto-scan":
            files = [p for p in files if _format_of_file(p)]
        if not files:
            raise LongAdaptError(f"corpus pattern {spec.path} matches no file. Check the path.")
    else:
        path = Path(spec.path)
        if not path.exists():
            raise LongAdaptError(f"corpus path {spec.path} does not exist. Check the path.")
        if path.is_file():
            return [path]
        if fmt == "brat":
            files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        elif fmt == "auto-scan":
            files = sorted(p for p in path.rglob("*") if p.is_file() and _format_of_file(p))
        else:
            suffixes = {"text": _TEXT_SUFFIXES, "jsonl": _JSONL_SUFFIXES, "parquet": _PARQUET_SUFFIXES}[fmt]
            files = sorted(p for p in path.rglob("*") if p.is_file() and _has_suffix(p, suffixes))
        files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(path).parts)]
    if not files:
        raise LongAdaptError(
            f"corpus folder {spec.path} holds no {fmt if fmt != 'auto-scan' else 'corpus'} files "
            "(.txt, .jsonl[.gz], .parquet). Check the path or set format."
        )
    return files


# ----------------------------------------------------------------------------------------------
# Readers: each yields raw (id, text) pairs; read_corpus cleans and de-duplicates them.
# ----------------------------------------------------------------------------------------------


def _open_binary(path: Path):
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _decode_error(path: Path, exc: UnicodeDecodeError, offset: int, line: int, encoding: str) -> LongAdaptError:
    where = " (after decompression)" if path.name.lower().endswith(".gz") else ""
    return LongAdaptError(
        f"{path}: not valid {encoding} at byte {offset}{where}, line {line} "
        f"(byte {exc.object[exc.start:exc.start + 1]!r}). Convert the file to UTF-8 "
        "(for example `iconv -f latin1 -t utf-8`), or give its encoding: corpus.encoding=cp1252 (an `adapt` or "
        "`pretrain` override, or the corpus section of a recipe or config; never guessed)."
    )


def _read_whole(path: Path, encoding: str) -> str:
    try:
        with _open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise LongAdaptError(f"{path}: cannot be read ({exc}). Check that the file is complete.") from exc
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _decode_error(path, exc, exc.start, line, encoding) from exc


def _read_text(spec: CorpusSpec, files: list[Path], fmt: str) -> Iterator[tuple[str, str]]:
    for path in files:
        # line endings as Python's text mode reads them (clean_text does the same for cleaned corpora)
        text = _read_whole(path, spec.encoding).replace("\r\n", "\n").replace("\r", "\n")
        stem = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
        stem = Path(stem).stem
        if spec.text_documents == "file" or fmt == "brat":
            yield stem, text
        elif spec.text_documents == "line":
            for lineno, line in enumerate(text.split("\n"), start=1):
                if line.strip():
                    yield f"{stem}:{lineno}", line
        else:
            for i, block in enumerate(_BLOCK_SEPARATOR.split(text)):
                yield f"{stem}:{i + 1}", block


def _text_of(record: Any, spec: CorpusSpec, where: str) -> str:
    if not isinstance(record, dict):
        raise LongAdaptError(
            f"{where}: expected a JSON object with a {spec.text_field!r} field, found {type(record).__name__}"
        )
    if spec.text_field not in record:
        keys = ", ".join(sorted(map(str, record))) or "none"
        raise LongAdaptError(
            f"{where}: no field {spec.text_field!r} (keys: {keys}). Set text_field to the key "
            "that holds the text, or fix the record."
        )
    text = record[spec.text_field]
    if not isinstance(text, str):
        raise LongAdaptError(
            f"{where}: field {spec.text_field!r} is {type(text).__name__}, not a string. Fix the record."
        )
    return text


def _read_jsonl(spec: CorpusSpec, files: list[Path]) -> Iterator[tuple[str, str]]:
    for path in files:
        offset = 0
        try:
            with _open_binary(path) as fh:
                for lineno, raw in enumerate(fh, start=1):
                    try:
                        line = raw.decode(spec.encoding)
                    except UnicodeDecodeError as exc:
                        raise _decode_error(path, exc, offset + exc.start, lineno, spec.encoding) from exc
                    offset += len(raw)
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise LongAdaptError(
                            f"{path}, line {lineno}: invalid JSON ({exc.msg} at column {exc.colno}). "
                            "Each line must be one JSON object; fix or remove the line."
                        ) from exc
                    where = f"{path}, line {lineno}"
                    text = _text_of(record, spec, where)
                    doc_id = record.get(spec.id_field)
                    yield (str(doc_id) if doc_id is not None else f"{path.name}:{lineno}"), text
        except (OSError, EOFError, zlib.error) as exc:
            raise LongAdaptError(f"{path}: cannot be read ({exc}). Check that the file is complete.") from exc


def check_corpus(spec: CorpusSpec, max_files: int = 8, head_bytes: int = 1 << 16) -> None:
    """Cheap checks of a corpus, run before any model is built (seconds, whatever its size): the path gives
    files of a known format; the first record of the first JSON Lines files is JSON with the text field; the
    start of the first text files decodes in the corpus encoding. Every error names the file and line, as
    reading the whole corpus later would."""
    fmt = resolve_format(spec)
    if fmt in ("hub", "disk", "parquet"):  # checked by the libraries that open them
        return
    for path in corpus_files(spec, fmt)[:max_files]:
        if fmt == "jsonl":
            next(_read_jsonl(spec, [path]), None)
            continue
        try:
            with _open_binary(path) as fh:
                head = fh.read(head_bytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise LongAdaptError(f"{path}: cannot be read ({exc}). Check that the file is complete.") from exc
        try:  # final=False: a character cut at the end of the head is not an error
            codecs.getincrementaldecoder(spec.encoding)().decode(head, final=False)
        except UnicodeDecodeError as exc:
            raise _decode_error(path, exc, exc.start, head.count(b"\n", 0, exc.start) + 1, spec.encoding) from exc


def _check_columns(columns: list[str], spec: CorpusSpec, where: str) -> None:
    if spec.text_field not in columns:
        raise LongAdaptError(
            f"{where}: no column {spec.text_field!r} (columns: {', '.join(columns)}). "
            "Set text_field to the column that holds the text."
        )


def _read_parquet(spec: CorpusSpec, files: list[Path]) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    for path in files:
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise LongAdaptError(f"{path}: not a readable Parquet file ({exc})") from exc
        columns = pf.schema_arrow.names
        _check_columns(columns, spec, str(path))
        wanted = [spec.text_field] + ([spec.id_field] if spec.id_field in columns else [])
        row = 0
        for batch in pf.iter_batches(columns=wanted, batch_size=1024):
            texts = batch.column(spec.text_field).to_pylist()
            ids = batch.column(spec.id_field).to_pylist() if spec.id_field in columns else [None] * len(texts)
            for doc_id, text in zip(ids, texts):
                if not isinstance(text, str):
                    raise LongAdaptError(
                        f"{path}, row {row}: column {spec.text_field!r} is {type(text).__name__}, "
                        "not a string. Fix the row or filter it out."
                    )
                yield (str(doc_id) if doc_id is not None else f"{path.name}:{row}"), text
                row += 1


def load_hf_dataset(spec: CorpusSpec, fmt: str):
    """The ``datasets.Dataset`` behind a ``hub`` or ``disk`` corpus (:func:`longadapt.data.hf.load_split`)."""
    from longadapt.data.hf import load_split

    ds = load_split(spec.path, spec.dataset_split, name=spec.hub_config, revision=spec.revision,
                    data_files=spec.data_files, hub=fmt == "hub")
    _check_columns(list(ds.column_names), spec, spec.path)
    return ds


def _read_hf(spec: CorpusSpec, fmt: str) -> Iterator[tuple[str, str]]:
    ds = load_hf_dataset(spec, fmt)
    has_id = spec.id_field in ds.column_names
    columns = [spec.text_field] + ([spec.id_field] if has_id else [])
    row = 0
    for batch in ds.select_columns(columns).iter(batch_size=1024):
        ids = batch[spec.id_field] if has_id else [None] * len(batch[spec.text_field])
        for doc_id, text in zip(ids, batch[spec.text_field]):
            if not isinstance(text, str):
                raise LongAdaptError(
                    f"{spec.path}, row {row}: {spec.text_field!r} is {type(text).__name__}, not a string"
                )
            yield (str(doc_id) if doc_id is not None else f"row:{row}"), text
            row += 1


def _raw_documents(spec: CorpusSpec) -> Iterator[tuple[str, str]]:
    fmt = resolve_format(spec)
    if fmt in ("hub", "disk"):
        yield from _read_hf(spec, fmt)
        return
    files = corpus_files(spec, fmt)
    logger.info("reading %d %s file(s) from %s", len(files), fmt, spec.path)
    if fmt in ("text", "brat"):
        yield from _read_text(spec, files, fmt)
    elif fmt == "jsonl":
        yield from _read_jsonl(spec, files)
    elif fmt == "parquet":
        yield from _read_parquet(spec, files)
    else:  # pragma: no cover - resolve_format only returns the formats above
        raise AssertionError(fmt)


def read_corpus(spec: CorpusSpec, *, language: str | None = None) -> Iterator[Document]:
    """Yield the cleaned, de-duplicated documents of ``spec`` in file order.

    ``language`` (a language pack code) supplies the Unicode normal form and lower-casing when the
    spec leaves ``normalization`` unset. Documents empty after cleaning are skipped; a corpus with
    no document at all raises LongAdaptError.
    """
    normalization = spec.normalization
    lowercase = spec.lowercase
    if language is not None:
        from longadapt.languages import load_language

        pack = load_language(language)
        if normalization is None:
            normalization = pack.normalization
        lowercase = lowercase or pack.lowercase
    normalization = normalization or "NFC"

    seen: set[bytes] = set()
    n_raw = n_empty = n_dup = n_out = 0
    for doc_id, raw in _raw_documents(spec):
        n_raw += 1
        text = clean_text(raw, normalization, lowercase) if spec.clean else (raw if raw.strip() else "")
        if not text:
            n_empty += 1
            continue
        if spec.deduplicate:
            key = hashlib.sha256(text.encode("utf-8")).digest()
            if key in seen:
                n_dup += 1
                continue
            seen.add(key)
        n_out += 1
        yield Document(doc_id, text)
    logger.info(
        "%s: %d documents read, %d kept, %d empty, %d exact duplicates dropped",
        spec.path, n_raw, n_out, n_empty, n_dup,
    )
    if n_out == 0:
        empty = "all empty after cleaning" if spec.clean else "all blank"
        detail = f"{n_raw} record(s) read, {empty}" if n_raw else "no record found"
        raise LongAdaptError(f"corpus {spec.path} holds no documents ({detail}). Check the path and text_field.")


def iter_texts(source: str | Path | Iterable[str], text_field: str = "text",
               max_documents: int | None = None) -> Iterator[str]:
    """The texts of a corpus exactly as stored, streaming: what the vocabulary analysis measures and the
    tokenizer trainer learns from (no cleaning, no de-duplication; blank documents are skipped).

    ``source``: a ``.jsonl``/``.jsonl.gz`` file (the ``text_field`` of each line), a ``.txt``/``.txt.gz``
    file (one document per non-empty line), a folder (of ``.txt`` files: one document per file; of
    JSON Lines or Parquet files), a glob, or any iterable of strings. Files are read by
    :func:`read_corpus`, so every format and error message is the pipeline's.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists() and not globlib.has_magic(str(source)):
            raise LongAdaptError(
                f"corpus {path} does not exist; pass a .jsonl(.gz) or .txt(.gz) file, a folder of them, or a list of texts"
            )
        one_text_file = path.is_file() and _format_of_file(path) == "text"
        spec = CorpusSpec(str(source), text_field=text_field, text_documents="line" if one_text_file else "file",
                          deduplicate=False, clean=False)
        texts: Iterable[str] = (doc.text for doc in read_corpus(spec))
    else:
        texts = source
    n = 0
    for text in texts:
        if max_documents is not None and n >= max_documents:
            return
        if not isinstance(text, str):
            raise LongAdaptError(f"corpus items must be strings, got {type(text).__name__}")
        if text.strip():
            n += 1
            yield text
