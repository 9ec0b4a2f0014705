"""Per-language tokenizer analysis: one streaming pass per corpus, every tokenizer at once.

Speed: words repeat massively, so the corpus is first counted as whitespace-separated chunks; each
distinct chunk goes through spaCy's rule-based tokenizer once (the tokenizer works on each
whitespace-separated substring independently, so the word counts are those of tokenizing the whole
text), and each distinct word through each subword tokenizer once, in batches, weighted by counts.
Running-text metrics (characters per token, document lengths, piece distribution) come from
tokenizing every document with the fast tokenizers' batch call in the same pass.
"""

from __future__ import annotations

import itertools
import logging
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from longadapt.errors import LongAdaptError
from longadapt.languages import LanguagePack, load_language
from longadapt.vocab import metrics as M
from longadapt.vocab.corpus import fingerprint, iter_documents, read_terms
from longadapt.vocab.tokenizer import DEFAULT_PROBE, TokenizerHandle, case_accent_behaviour, tokenizer_handle

logger = logging.getLogger(__name__)


@dataclass
class VocabConfig:
    """What to analyse. ``corpora`` and ``terms`` are given per language, in the order of ``languages``."""

    languages: list[str]
    # a path, or a list of document strings
    corpora: list[Any]
    # sources for tokenizer_handle, or loaded tokenizers
    tokenizers: list[Any]
    # per language: a path, a list of terms, or None
    terms: list[Any] = field(default_factory=list)
    terms_format: str = "auto"
    max_lengths: list[int] = field(default_factory=lambda: [512, 4096])
    alpha: float = 2.5
    # analyse only the first N documents of each corpus
    max_docs: int | None = None
    # documents per tokenizer batch call
    batch_docs: int = 32
    text_field: str = "text"
    probe: str = DEFAULT_PROBE
    progress: bool = True


@dataclass
class WordSegmentation:
    """How one tokenizer splits each distinct word (arrays aligned with the word list)."""

    pieces: np.ndarray  # pieces per word, special tokens removed
    has_unk: np.ndarray  # the word contains the unknown token
    byte_pieces: np.ndarray  # byte-fallback pieces per word


@dataclass
class RunningText:
    """One tokenizer on the running text of one corpus."""

    piece_counts: np.ndarray  # occurrences of each id
    doc_lengths: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_tokens(self) -> int:
        return int(self.piece_counts.sum())


@dataclass
class CorpusScan:
    language: str
    source: str
    n_docs: int
    n_chars: int
    n_spacy_tokens: int
    words: list[str]  # distinct kept words, most frequent first
    word_counts: np.ndarray
    running: dict[str, RunningText]
    seconds: float

    @property
    def n_words(self) -> int:
        return int(self.word_counts.sum())


@dataclass
class VocabAnalysis:
    """The result of :func:`analyze`: one row per (language, tokenizer), one pair row per
    (language, tokenizer A, tokenizer B), plus what the plots and the report need."""

    config: dict[str, Any]
    rows: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    corpora: list[dict[str, Any]]
    tokenizers: list[dict[str, Any]]
    doc_lengths: dict[str, dict[str, list[int]]]
    examples: dict[str, dict[str, dict[str, str]]]
    timings: dict[str, float] = field(default_factory=dict)

    def row(self, language: str, tokenizer: str) -> dict[str, Any]:
        for r in self.rows:
            if r["language"] == language and r["tokenizer"] == tokenizer:
                return r
        raise KeyError(f"no row for language {language!r} and tokenizer {tokenizer!r}")

    def table(self):
        """The metrics as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (NaN written as null)."""
        return _json_safe({
            "protocol": M.PROTOCOL,
            "config": self.config,
            "corpora": self.corpora,
            "tokenizers": self.tokenizers,
            "metrics": self.rows,
            "pairs": self.pairs,
            "examples": self.examples,
            "timings_s": self.timings,
        })


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


# -- building blocks ------------------------------------------------------------------------------


def normalize_text(text: str, form: str | None) -> str:
    """Unicode normalisation named by the language pack (NFC, NFKC, ...; None/"none": unchanged)."""
    if not form or form.lower() == "none":
        return text
    try:
        return unicodedata.normalize(form.upper(), text)
    except ValueError as exc:
        raise LongAdaptError(f"language pack: normalization {form!r} unknown; use NFC, NFD, NFKC, NFKD or none") from exc


def count_words(chunk_counts: Counter, pack: LanguagePack, batch_size: int = 2000) -> Counter:
    """spaCy rule-based tokens (all of them, unfiltered) from counts of whitespace-separated chunks.

    spaCy's tokenizer splits text at whitespace and then works on each substring alone, so tokenizing
    each distinct chunk once and weighting by its count gives the counts of the whole text.
    """
    nlp = pack.word_tokenizer()
    words: Counter = Counter()
    chunks = list(chunk_counts)
    for chunk, doc in zip(chunks, nlp.tokenizer.pipe(chunks, batch_size=batch_size)):
        n = chunk_counts[chunk]
        for tok in doc:
            words[tok.text] += n
    return words


def word_counts(texts: Iterable[str], pack: LanguagePack) -> Counter:
    """Kept words (see :func:`longadapt.vocab.metrics.is_word`) and their counts in ``texts``."""
    chunks: Counter = Counter()
    for text in texts:
        chunks.update(text.split())
    return Counter({w: c for w, c in count_words(chunks, pack).items() if M.is_word(w)})


def segment_words(handle: TokenizerHandle, words: Sequence[str], batch: int = 8192) -> WordSegmentation:
    """Tokenize each word alone (with the handle's word prefix, normally a space)."""
    n = len(words)
    pieces = np.zeros(n, dtype=np.int64)
    has_unk = np.zeros(n, dtype=bool)
    byte_pieces = np.zeros(n, dtype=np.int64)
    drop = handle.special_ids - ({handle.unk_id} if handle.unk_id is not None else set())
    byte_ids = handle.byte_piece_ids
    for start in range(0, n, batch):
        encoded = handle.encode_batch([handle.space_prefix + w for w in words[start:start + batch]])
        for k, ids in enumerate(encoded, start):
            if drop:
                ids = [i for i in ids if i not in drop]
            pieces[k] = len(ids)
            if handle.unk_id is not None:
                has_unk[k] = handle.unk_id in ids
            if byte_ids:
                byte_pieces[k] = sum(1 for i in ids if i in byte_ids)
    return WordSegmentation(pieces, has_unk, byte_pieces)


def _batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def scan_corpus(
    docs: Iterable[str],
    pack: LanguagePack,
    handles: Sequence[TokenizerHandle],
    *,
    source: str = "<texts>",
    batch_docs: int = 32,
    progress: bool = True,
) -> CorpusScan:
    """One streaming pass: chunk counts for the words, every tokenizer on the running text."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    chunks: Counter = Counter()
    running = {h.name: RunningText(np.zeros(h.vocab_size, dtype=np.int64)) for h in handles}
    n_docs = n_chars = n_empty = 0
    bar = tqdm(desc=f"{pack.code}: documents", unit="doc", disable=not progress)
    for batch in _batched(docs, batch_docs):
        texts = []
        for raw in batch:
            text = normalize_text(raw, pack.normalization)
            if not text.strip():
                n_empty += 1
                continue
            texts.append(text)
            chunks.update(text.split())
            n_chars += len(text)
        n_docs += len(texts)
        for h in handles:
            t = time.perf_counter()
            run = running[h.name]
            encoded = h.encode_batch(texts)
            run.doc_lengths.extend(len(ids) for ids in encoded)
            if encoded:
                flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int64)
                counts = np.bincount(flat, minlength=len(run.piece_counts))
                if len(counts) > len(run.piece_counts):  # ids beyond the declared size
                    counts[: len(run.piece_counts)] += run.piece_counts
                    run.piece_counts = counts
                else:
                    run.piece_counts += counts
            run.seconds += time.perf_counter() - t
        bar.update(len(batch))
    bar.close()
    if n_empty:
        logger.info("%s: %d empty documents skipped", source, n_empty)
    if n_docs == 0:
        raise LongAdaptError(
            f"corpus {source} ({pack.code}) has no documents with text; check the path, the format and the text field"
        )
    all_words = count_words(chunks, pack)
    kept = sorted(((w, c) for w, c in all_words.items() if M.is_word(w)), key=lambda x: (-x[1], x[0]))
    if not kept:
        raise LongAdaptError(f"corpus {source} ({pack.code}) has no words with letters: nothing to analyse")
    return CorpusScan(
        language=pack.code,
        source=source,
        n_docs=n_docs,
        n_chars=n_chars,
        n_spacy_tokens=sum(c for w, c in all_words.items() if w.strip()),
        words=[w for w, _ in kept],
        word_counts=np.array([c for _, c in kept], dtype=np.int64),
        running=running,
        seconds=time.perf_counter() - t0,
    )


def canonical_frequencies(handle: TokenizerHandle, piece_counts: np.ndarray) -> dict[str | None, int]:
    """Running-text token counts by canonical form (None for the unknown token and specials)."""
    out: dict[str | None, int] = {}
    canon = handle.canonical_by_id
    for idx in np.flatnonzero(piece_counts):
        form = canon[idx] if idx < len(canon) and idx != handle.unk_id else None
        out[form] = out.get(form, 0) + int(piece_counts[idx])
    return out


def tokenizer_metrics(
    handle: TokenizerHandle,
    scan: CorpusScan,
    seg: WordSegmentation,
    max_lengths: Sequence[int],
    alpha: float = 2.5,
    term_pieces: np.ndarray | None = None,
) -> dict[str, Any]:
    """The metric row of one tokenizer on one corpus."""
    run = scan.running[handle.name]
    counts = scan.word_counts
    fert = M.fertility(seg.pieces, counts)
    row: dict[str, Any] = {
        "language": scan.language,
        "tokenizer": handle.name,
        "scheme": handle.scheme,
        "vocab_size": handle.vocab_size,
        "docs": scan.n_docs,
        "words": scan.n_words,
        "word_types": len(scan.words),
        "fertility": fert,
        "continued_words": M.continued_share(seg.pieces, counts),
        "unk_words": M.flagged_share(seg.has_unk, counts) if handle.unk_id is not None else None,
        "byte_fallback_pieces": M.byte_fallback_share(seg.byte_pieces, seg.pieces, counts) if handle.byte_fallback else None,
        "tokens": run.n_tokens,
        "chars_per_token": M.chars_per_token(scan.n_chars, run.n_tokens),
        "renyi_efficiency": M.renyi_efficiency(run.piece_counts, handle.vocab_size, alpha),
        "vocab_used": M.vocab_used_share(run.piece_counts, handle.vocab_size),
    }
    lengths = np.asarray(run.doc_lengths)
    for L in max_lengths:
        row[f"effective_context_words@{L}"] = M.effective_context(L, fert)
        row[f"docs_longer@{L}"] = M.share_longer(lengths, L, handle.num_special_tokens)
    row["median_doc_tokens"] = float(np.median(lengths))
    if term_pieces is not None:
        whole, mean = M.term_coverage(term_pieces)
        row.update({"terms": int(len(term_pieces)), "term_whole": whole, "term_pieces": mean})
    else:
        row.update({"terms": None, "term_whole": None, "term_pieces": None})
    return row


# -- the entry point ------------------------------------------------------------------------------


def _per_language(values: Sequence[Any] | Any, languages: list[str], what: str, allow_empty: bool) -> list[Any]:
    if values is None or (isinstance(values, (list, tuple)) and len(values) == 0):
        if allow_empty:
            return [None] * len(languages)
        raise LongAdaptError(f"give one {what} per language ({', '.join(languages)})")
    if isinstance(values, (str, Path)):
        values = [values]
    values = list(values)
    if len(values) != len(languages):
        raise LongAdaptError(
            f"{len(values)} {what} value(s) for {len(languages)} language(s) ({', '.join(languages)}): "
            f"give one {what} per language, in the same order"
        )
    return [None if isinstance(v, str) and v.lower() in ("-", "none", "") else v for v in values]


def analyze(
    languages: str | Sequence[str],
    corpora: Any,
    tokenizers: Sequence[Any],
    terms: Any = None,
    *,
    max_lengths: Sequence[int] = (512, 4096),
    alpha: float = 2.5,
    max_docs: int | None = None,
    terms_format: str = "auto",
    batch_docs: int = 32,
    text_field: str = "text",
    probe: str = DEFAULT_PROBE,
    progress: bool = True,
) -> VocabAnalysis:
    """Analyse tokenizers on per-language corpora.

    ``languages``: codes ("fr" or "fr,de" or a list); ``corpora``: one per language (a path to a
    .jsonl(.gz)/.txt(.gz) file or a directory of .txt files, or a list of document strings, e.g.
    ``corpora=[["doc 1", "doc 2"]]`` for one language);
    ``tokenizers``: sources for :func:`~longadapt.vocab.tokenizer.tokenizer_handle` (``"name=path"`` sets the label) or loaded
    tokenizers; ``terms``: one per language (a term file, a BRAT/IOB annotation path, a list of
    strings, or None). See ``longadapt.vocab.metrics.PROTOCOL`` for the definitions.
    """
    t_start = time.perf_counter()
    if isinstance(languages, str):
        languages = [c.strip() for c in languages.split(",") if c.strip()]
    languages = list(languages)
    if not languages:
        raise LongAdaptError("no language given; use e.g. --language fr or --language fr,de,es")
    if len(set(languages)) != len(languages):
        raise LongAdaptError(f"language list {languages} repeats a language")
    packs = [load_language(code) for code in languages]
    corpora_l = _per_language(corpora, languages, "corpus", allow_empty=False)
    terms_l = _per_language(terms, languages, "terms", allow_empty=True)
    max_lengths = [int(x) for x in max_lengths]
    if any(L <= 0 for L in max_lengths):
        raise LongAdaptError(f"max lengths must be positive, got {max_lengths}")
    if not tokenizers:
        raise LongAdaptError("no tokenizer given; use --tokenizer PATH_OR_HUB_ID (repeatable)")

    handles = [tokenizer_handle(t) for t in tokenizers]
    names = [h.name for h in handles]
    for i, h in enumerate(handles):  # make labels unique
        if names.count(h.name) > 1:
            h.name = f"{h.name}#{names[: i + 1].count(names[i])}"
    timings: dict[str, float] = {"load_tokenizers": time.perf_counter() - t_start}

    tok_info = []
    for h in handles:
        info = h.describe()
        info.update(case_accent_behaviour(h, probe).to_dict())
        tok_info.append(info)
        if info["lowercases"] or info["strips_accents"]:
            logger.warning(
                "%s %s: %r decodes to %r; accented and capital letters of French/German/Spanish are merged",
                h.name,
                "lower-cases and strips accents" if info["lowercases"] and info["strips_accents"] else
                ("lower-cases" if info["lowercases"] else "strips accents"),
                probe,
                info["decoded"],
            )

    rows: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    corpora_info: list[dict[str, Any]] = []
    doc_lengths: dict[str, dict[str, list[int]]] = {}
    examples: dict[str, dict[str, dict[str, str]]] = {}
    for pack, corpus, term_src in zip(packs, corpora_l, terms_l):
        if isinstance(corpus, (str, Path)):
            source = str(corpus)
            docs: Iterable[str] = iter_documents(corpus, text_field=text_field, max_documents=max_docs)
            info: dict[str, Any] = fingerprint(corpus) if Path(corpus).exists() else {"path": source}
        else:
            source = "<texts>"
            docs = list(corpus)[:max_docs] if max_docs else list(corpus)
            info = {"path": source}
        scan = scan_corpus(docs, pack, handles, source=source, batch_docs=batch_docs, progress=progress)
        timings[f"scan_{pack.code}"] = scan.seconds
        info.update(
            language=pack.code,
            docs=scan.n_docs,
            characters=scan.n_chars,
            words=scan.n_words,
            word_types=len(scan.words),
            spacy_tokens=scan.n_spacy_tokens,
            max_docs=max_docs,
            normalization=pack.normalization,
        )
        corpora_info.append(info)

        term_list: list[str] | None = None
        if term_src is not None:
            term_list = list(term_src) if isinstance(term_src, (list, tuple)) else read_terms(term_src, terms_format)
            term_list = [normalize_text(t, pack.normalization) for t in term_list]
            info["terms_source"] = str(term_src) if isinstance(term_src, (str, Path)) else "<list>"
            info["terms"] = len(term_list)

        t = time.perf_counter()
        doc_lengths[pack.code] = {}
        for h in handles:
            seg = segment_words(h, scan.words)
            tp = segment_words(h, term_list).pieces if term_list else None
            rows.append(tokenizer_metrics(h, scan, seg, max_lengths, alpha, tp))
            doc_lengths[pack.code][h.name] = list(scan.running[h.name].doc_lengths)
        timings[f"words_{pack.code}"] = time.perf_counter() - t

        for a, b in itertools.combinations(handles, 2):
            jac, shared = M.vocab_overlap(a.canonical_vocab, b.canonical_vocab)
            fa = canonical_frequencies(a, scan.running[a.name].piece_counts)
            fb = canonical_frequencies(b, scan.running[b.name].piece_counts)
            pairs.append(
                {
                    "language": pack.code,
                    "tokenizer_a": a.name,
                    "tokenizer_b": b.name,
                    "vocab_a": len(a.canonical_vocab),
                    "vocab_b": len(b.canonical_vocab),
                    "shared": shared,
                    "jaccard": jac,
                    "weighted_a_in_b": M.weighted_overlap(fa, b.canonical_vocab),
                    "weighted_b_in_a": M.weighted_overlap(fb, a.canonical_vocab),
                }
            )
        examples[pack.code] = _examples(handles, scan, probe, term_list)

    timings["total"] = time.perf_counter() - t_start
    config = {
        "languages": languages,
        "corpora": [str(c) if isinstance(c, (str, Path)) else "<texts>" for c in corpora_l],
        "tokenizers": [h.source for h in handles],
        "terms": [None if t is None else (str(t) if isinstance(t, (str, Path)) else "<list>") for t in terms_l],
        "terms_format": terms_format,
        "max_lengths": max_lengths,
        "alpha": alpha,
        "max_docs": max_docs,
        "probe": probe,
        "versions": _versions(),
    }
    return VocabAnalysis(config, rows, pairs, corpora_info, tok_info, doc_lengths, examples, timings)


def _examples(handles: Sequence[TokenizerHandle], scan: CorpusScan, probe: str, terms: list[str] | None) -> dict[str, dict[str, str]]:
    """Segmentations of a few frequent long words (and terms) for the report."""
    picks = [w for w in scan.words if len(w) >= 12 and w.isalpha()][:6]
    if terms:
        picks += [t for t in terms if t not in picks][:3]
    out: dict[str, dict[str, str]] = {}
    for word in picks:
        out[word] = {h.name: " ".join(h.canonical(t) for t in h.tokens(h.space_prefix + word)) for h in handles}
    return out


def _versions() -> dict[str, str]:
    from longadapt.runinfo import package_versions

    found = package_versions(("longadapt", "transformers", "tokenizers", "spacy", "numpy"), platform_name=False)
    return {k: v for k, v in found.items() if v is not None and k != "python"}


def analyze_config(cfg: VocabConfig) -> VocabAnalysis:
    """:func:`analyze` from a :class:`VocabConfig`."""
    return analyze(
        cfg.languages,
        cfg.corpora,
        cfg.tokenizers,
        cfg.terms or None,
        max_lengths=cfg.max_lengths,
        alpha=cfg.alpha,
        max_docs=cfg.max_docs,
        terms_format=cfg.terms_format,
        batch_docs=cfg.batch_docs,
        text_field=cfg.text_field,
        probe=cfg.probe,
        progress=cfg.progress,
    )
