"""The corpus -> packed masked-LM rows pipeline, cached by a fingerprint of corpus, tokenizer and settings.

Stage 1 (per corpus + tokenizer + segmentation settings, independent of ``max_length`` and of the
split): read and clean the documents, then tokenize and sentence-segment them with
``datasets.Dataset.map(batched=True, num_proc=...)``; saved under ``<cache_dir>/tokens-<fp1>``.
Stage 2 (per split and ``max_length``): chunk, pack and assemble rows; saved under
``<cache_dir>/packed-<fp2>``. A second call with the same inputs loads the saved dataset
(memory-mapped) instead of recomputing; a change to a corpus file, the tokenizer or any setting
changes the fingerprint.

Memory: stage 2 holds the token columns of the corpus in memory while packing (about 16 bytes per
token: ids, word ids, byte counts, sentence starts), e.g. 150 MB for the 4M-word French corpus.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from longadapt.data.corpus import CorpusSpec, corpus_files, load_hf_dataset, read_corpus, resolve_format
from longadapt.data.encode import DocumentEncoder, encoded_features, tokenizer_fingerprint
from longadapt.data.packing import PackingConfig, PackingStats, chunk_document, cut_point, pack_pieces
from longadapt.data.split import SPLITS, validation_mask
from longadapt.errors import LongAdaptError
from longadapt import cache
from longadapt.io import atomic_dir, atomic_write_json, clean_stale_in, temporary_dir

logger = logging.getLogger(__name__)

PIPELINE_VERSION = "1"  # bump when a change to this package changes the rows it produces
METADATA_KEY = "longadapt_data"
SIDECAR = "longadapt_data.json"


def default_cache_dir() -> Path:
    """``$LONGADAPT_CACHE/data``, else ``~/.cache/longadapt/data`` (see :mod:`longadapt.cache`)."""
    from longadapt.cache import data_cache_dir

    return data_cache_dir()


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def corpus_fingerprint(spec: CorpusSpec) -> str:
    """A hash of the corpus content (every file's bytes, or the ``datasets`` fingerprint of a hub or
    saved dataset) and of the reading options."""
    fmt = resolve_format(spec)
    h = hashlib.sha256(_hash(dataclasses.asdict(spec), fmt).encode())
    if fmt in ("hub", "disk"):
        ds = load_hf_dataset(spec, fmt)
        h.update(str(ds._fingerprint).encode())
        return h.hexdigest()
    root = Path(spec.path)
    for path in corpus_files(spec, fmt):
        name = str(path.relative_to(root)) if root.is_dir() else path.name
        h.update(f"{name}\x00{path.stat().st_size}\x00".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _document_rows(spec: CorpusSpec, max_documents: int | None):
    for i, doc in enumerate(read_corpus(spec)):
        if max_documents is not None and i >= max_documents:
            break
        yield {"id": doc.id, "text": doc.text}


def _unwrap_generation_error(exc: BaseException) -> BaseException:
    cause = exc
    while cause is not None:
        if isinstance(cause, LongAdaptError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return exc


def encode_corpus(
    spec: CorpusSpec,
    tokenizer: Any,
    language: str,
    *,
    packing: PackingConfig | None = None,
    num_proc: int = 1,
    cache_dir: str | Path | None = None,
    max_documents: int | None = None,
):
    """Stage 1: one row per document with the columns of :class:`DocumentEncoder` (cached)."""
    import datasets
    import spacy

    from longadapt.languages import load_language

    packing = packing or PackingConfig()
    pack = load_language(language)
    spec = dataclasses.replace(
        spec,
        normalization=spec.normalization or pack.normalization,
        lowercase=spec.lowercase or pack.lowercase,
    )
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    settings = {
        "version": PIPELINE_VERSION,
        "language": language,
        "splitter": packing.sentence_splitter,
        "pipeline": pack.spacy_pipeline if packing.sentence_splitter == "pipeline" else None,
        "sentence_min_tokens": packing.sentence_min_tokens,
        "spacy": spacy.__version__,
        "max_documents": max_documents,
    }
    fp = _hash(corpus_fingerprint(spec), tokenizer_fingerprint(tokenizer), settings)
    out_dir = cache_dir / f"tokens-{fp[:24]}"
    if (out_dir / "state.json").is_file():
        logger.info("tokenized corpus found in the cache: %s", out_dir)
        cache.touch(out_dir)
        return datasets.load_from_disk(str(out_dir)), fp

    encoder = DocumentEncoder(tokenizer, language, packing.sentence_splitter, packing.sentence_min_tokens)
    cache_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_in(cache_dir)  # work folders of stopped earlier builds (writer dead on this host)
    work = temporary_dir(cache_dir / "work")
    try:
        try:
            docs = datasets.Dataset.from_generator(
                _document_rows,
                gen_kwargs={"spec": spec, "max_documents": max_documents},
                features=datasets.Features({"id": datasets.Value("string"), "text": datasets.Value("string")}),
                cache_dir=str(work / "documents"),
                fingerprint=f"{fp[:40]}-documents",
            )
        except Exception as exc:  # datasets wraps errors raised by the generator
            cause = _unwrap_generation_error(exc)
            if cause is exc:
                raise
            raise cause from None
        encoded = docs.map(
            encoder,
            batched=True,
            batch_size=32,
            num_proc=num_proc if num_proc > 1 else None,
            remove_columns=["text"],
            features=encoded_features(),
            cache_file_name=str(work / "encoded.arrow"),
            new_fingerprint=fp[:40],
            desc="Tokenizing and segmenting",
        )
        with atomic_dir(out_dir) as tmp:
            encoded.save_to_disk(str(tmp))
        del encoded, docs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cache.touch(out_dir)
    cache.enforce_limit(keep=out_dir, folder=cache_dir)
    return datasets.load_from_disk(str(out_dir)), fp


class _FlatColumn:
    """A list<int> column as one numpy array plus the start of every row (all chunks joined)."""

    def __init__(self, column) -> None:
        values, starts, total = [], [], 0
        for chunk in column.chunks:
            offsets = chunk.offsets.to_numpy()
            vals = chunk.values.to_numpy(zero_copy_only=False)[offsets[0]:offsets[-1]]
            starts.append(offsets[:-1] - offsets[0] + total)
            values.append(vals)
            total += len(vals)
        self.values = np.concatenate(values) if values else np.zeros(0, dtype=np.int32)
        self.starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def _special_ids(tokenizer: Any) -> tuple[int | None, int | None]:
    first = getattr(tokenizer, "cls_token_id", None)
    if first is None:
        first = getattr(tokenizer, "bos_token_id", None)
    last = getattr(tokenizer, "sep_token_id", None)
    if last is None:
        last = getattr(tokenizer, "eos_token_id", None)
    return first, last


def _assemble(rows, first_id, last_id, flat, n_rows_per_batch: int = 4096):
    """Build the arrow table of packed rows from lists of pieces (vectorised with numpy)."""
    import pyarrow as pa

    has_first, has_last = int(first_id is not None), int(last_id is not None)
    overhead = has_first + has_last
    ids_col, words_col, bytes_col = flat
    batches = []
    for r0 in range(0, len(rows), n_rows_per_batch):
        chunk = rows[r0:r0 + n_rows_per_batch]
        pieces = np.array([p for row in chunk for p in row], dtype=np.int64).reshape(-1, 3)
        row_of_piece = np.repeat(np.arange(len(chunk)), [len(row) for row in chunk])
        plen = pieces[:, 2] - pieces[:, 1] + overhead
        piece_first = np.concatenate([[0], np.cumsum(plen)[:-1]])
        tok_piece = np.repeat(np.arange(len(pieces)), plen)
        pos = np.arange(int(plen.sum())) - piece_first[tok_piece]
        content_start = ids_col.starts[pieces[:, 0]] + pieces[:, 1]
        is_first = (pos == 0) if has_first else np.zeros(len(pos), dtype=bool)
        is_last = (pos == plen[tok_piece] - 1) if has_last else np.zeros(len(pos), dtype=bool)
        special = is_first | is_last
        src = np.where(special, 0, content_start[tok_piece] + pos - has_first)
        input_ids = ids_col.values[src].astype(np.int32)
        input_ids[is_first] = first_id if has_first else 0
        input_ids[is_last] = last_id if has_last else 0
        word_ids = (words_col.values[src] - words_col.values[content_start][tok_piece]).astype(np.int32)
        word_ids[special] = -1
        token_bytes = bytes_col.values[src].astype(np.int32)
        token_bytes[special] = 0
        first_piece_of_row = np.concatenate([[0], np.cumsum(np.bincount(row_of_piece, minlength=len(chunk)))[:-1]])
        document_ids = (np.arange(len(pieces)) - first_piece_of_row[row_of_piece] + 1).astype(np.int32)[tok_piece]
        row_len = np.bincount(row_of_piece, weights=plen, minlength=len(chunk)).astype(np.int64)
        offsets = pa.array(np.concatenate([[0], np.cumsum(row_len)]).astype(np.int32))
        arrays = [pa.ListArray.from_arrays(offsets, pa.array(v)) for v in (input_ids, document_ids, word_ids, token_bytes)]
        batches.append(pa.RecordBatch.from_arrays(arrays, names=["input_ids", "document_ids", "word_ids", "token_bytes"]))
    return pa.Table.from_batches(batches)


def _packed_features():
    from datasets import Features, List, Value

    ints = List(Value("int32"))
    return Features({"input_ids": ints, "document_ids": ints, "word_ids": ints, "token_bytes": ints})


def build_packed_dataset(
    spec: CorpusSpec,
    tokenizer: Any,
    language: str,
    max_length: int,
    *,
    split: str = "train",
    validation_fraction: float = 0.01,
    seed: int = 0,
    num_proc: int = 1,
    cache_dir: str | Path | None = None,
    max_documents: int | None = None,
    packing: PackingConfig | None = None,
):
    """Read, clean, split, tokenize, segment and pack a corpus into masked-LM rows.

    Returns a ``datasets.Dataset`` with one row per packed sequence and the columns
    ``input_ids``, ``document_ids`` (1, 2, 3... per piece within the row, never 0), ``word_ids``
    (word index within the piece, -1 on special tokens) and ``token_bytes`` (UTF-8 bytes each token
    accounts for, 0 on special tokens; summed over a document they give its byte length), all
    ``list[int]`` of the same length ``<= max_length``. Positions are not stored: they restart at
    every new document id.

    ``split`` is ``train``, ``validation`` or ``all`` (documents are split by a hash of their text,
    see :mod:`longadapt.data.split`). ``max_documents`` keeps the first N documents of the corpus
    (after de-duplication), before the split. ``packing`` holds segmentation and packing options.

    Statistics and fingerprint: the returned dataset's ``info.description`` is a JSON object whose
    ``"longadapt_data"`` entry holds ``fingerprint`` (hash of the corpus files, the tokenizer and every
    setting) and ``stats`` (a
    :class:`PackingStats`); read them with :func:`data_fingerprint` and :func:`packing_stats`. The
    same entry is written next to the cached dataset as ``longadapt_data.json``.
    """
    import datasets

    if split not in SPLITS:
        raise LongAdaptError(f"split={split!r} must be one of: {', '.join(SPLITS)}")
    packing = packing or PackingConfig()
    first_id, last_id = _special_ids(tokenizer)
    overhead = int(first_id is not None) + int(last_id is not None)
    if max_length < overhead + 8:
        raise LongAdaptError(f"max_length={max_length} is too small; use at least {overhead + 8}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    encoded, fp1 = encode_corpus(
        spec, tokenizer, language, packing=packing, num_proc=num_proc, cache_dir=cache_dir,
        max_documents=max_documents,
    )
    slack, tolerance = packing.slack_for(max_length), packing.tolerance_for(max_length)
    settings = {
        "version": PIPELINE_VERSION, "split": split, "validation_fraction": validation_fraction,
        "seed": seed, "max_length": max_length, "packing": dataclasses.asdict(packing),
        "specials": [first_id, last_id],
    }
    fingerprint = _hash(fp1, settings)[:32]
    out_dir = cache_dir / f"packed-{fingerprint}"
    if (out_dir / "state.json").is_file():
        logger.info("packed %s rows found in the cache: %s", split, out_dir)
        cache.touch(out_dir)
        return datasets.load_from_disk(str(out_dir))

    table = encoded.data
    n_tokens = table.column("n_tokens").to_numpy()
    in_validation = validation_mask(
        table.column("text_hash").to_pylist(), validation_fraction, seed, packing.min_validation_documents
    )
    if split == "all":
        selected = np.ones(len(n_tokens), dtype=bool)
    else:
        selected = in_validation if split == "validation" else ~in_validation
    selected &= n_tokens > 0
    docs = np.flatnonzero(selected)
    if len(docs) == 0:
        raise LongAdaptError(
            f"the {split} split of {spec.path} is empty ({len(n_tokens)} documents in the corpus, "
            f"{int(in_validation.sum())} in validation). Change validation_fraction "
            "(or packing.min_validation_documents), or add documents."
        )

    ids_col = _FlatColumn(table.column("input_ids"))
    words_col = _FlatColumn(table.column("word_ids"))
    bytes_col = _FlatColumn(table.column("token_bytes"))
    sent_col = _FlatColumn(table.column("sentence_starts"))

    boundary_cache: dict[int, tuple[list[int], list[int]]] = {}

    def boundaries(doc: int) -> tuple[list[int], list[int]]:
        if doc not in boundary_cache:
            a = int(ids_col.starts[doc])
            w = words_col.values[a:a + int(n_tokens[doc])]
            word_starts = (np.flatnonzero(w[1:] != w[:-1]) + 1).tolist()
            s = int(sent_col.starts[doc])
            end = int(sent_col.starts[doc + 1]) if doc + 1 < len(sent_col.starts) else len(sent_col.values)
            boundary_cache[doc] = (sent_col.values[s:end].tolist(), word_starts)
        return boundary_cache[doc]

    budget = max_length - overhead
    cuts = {"sentence": 0, "word": 0, "hard": 0}
    pieces: list[tuple[int, int, int]] = []
    for doc in tqdm(docs.tolist(), desc=f"Chunking ({split})", unit="doc", disable=len(docs) < 20_000):
        n = int(n_tokens[doc])
        if n <= budget:
            pieces.append((doc, 0, n))
            continue
        sentence_starts, word_starts = boundaries(doc)
        for a, b in chunk_document(n, sentence_starts, word_starts, budget, slack, cuts):
            pieces.append((doc, a, b))

    def cutter(doc: int, start: int, limit: int):
        sentence_starts, word_starts = boundaries(doc)
        return cut_point(sentence_starts, word_starts, start, limit, tolerance, allow_hard=False)

    rows = pack_pieces(
        pieces, max_length, overhead, tolerance, cutter if packing.gap_filling else None, cuts
    )
    if packing.shuffle_rows:
        order = np.random.default_rng(seed).permutation(len(rows))
        rows = [rows[i] for i in order]
    packed = _assemble(rows, first_id, last_id, (ids_col, words_col, bytes_col))

    real = sum(b - a + overhead for row in rows for _, a, b in row)
    stats = PackingStats(
        documents=len(docs),
        segments=sum(len(r) for r in rows),
        rows=len(rows),
        tokens=real,
        padding_share=1.0 - real / (len(rows) * max_length),
        words=int(table.column("n_words").to_numpy()[docs].sum()),
        bytes=int(table.column("n_bytes").to_numpy()[docs].sum()),
        max_length=max_length,
        split=split,
        cuts=cuts,
    )
    metadata = {
        "fingerprint": fingerprint,
        "stats": dataclasses.asdict(stats),
        "corpus": spec.path,
        "language": language,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "settings": settings,
    }
    logger.info(
        "%s: %d documents -> %d pieces in %d rows of %d, %d tokens, padding %.2f%%",
        split, stats.documents, stats.segments, stats.rows, max_length, stats.tokens, 100 * stats.padding_share,
    )
    info = datasets.DatasetInfo(
        description=json.dumps({METADATA_KEY: metadata}), features=_packed_features()
    )
    ds = datasets.Dataset(packed, info=info, fingerprint=fingerprint)
    with atomic_dir(out_dir) as tmp:
        ds.save_to_disk(str(tmp))
        atomic_write_json(tmp / SIDECAR, metadata)
    cache.touch(out_dir)
    cache.enforce_limit(keep=out_dir, folder=cache_dir)
    return datasets.load_from_disk(str(out_dir))


def packing_metadata(dataset) -> dict[str, Any]:
    """The metadata :func:`build_packed_dataset` attached to ``dataset``."""
    try:
        return json.loads(dataset.info.description)[METADATA_KEY]
    except (ValueError, KeyError, TypeError) as exc:
        raise LongAdaptError(
            "this dataset was not made by longadapt.data.build_packed_dataset (no packing metadata)"
        ) from exc


def packing_stats(dataset) -> PackingStats:
    """The :class:`PackingStats` of a dataset returned by :func:`build_packed_dataset`."""
    return PackingStats(**packing_metadata(dataset)["stats"])


def data_fingerprint(dataset) -> str:
    """The data fingerprint (corpus files + tokenizer + settings) of a packed dataset."""
    return packing_metadata(dataset)["fingerprint"]
