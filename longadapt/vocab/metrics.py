"""The metrics of the vocabulary analysis, each a small function on counts.

The protocol (also written into every report, see ``PROTOCOL``):

* **Words** are the tokens of spaCy's rule-based tokenizer for the language (``spacy.blank``).
  A word is kept only if it contains at least one letter (:func:`is_word`): punctuation-only,
  symbol-only and pure-number tokens ("12", "3,5", "2019-2020", "[6]", "%") are dropped.
* Each distinct word is tokenized **alone, with a leading space** (so byte-level BPE sees it as a
  word inside running text), special tokens removed (the unknown token is kept and counted).
  Word-level metrics are averages over running words: each word type weighted by its frequency.
* **Running text**: each document is tokenized whole, without special tokens; this gives
  characters per token, document lengths, and the unigram distribution of pieces.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import numpy as np

PROTOCOL = """\
- Words: spaCy rule-based tokenizer of the language (spacy.blank); a word is kept only if it contains
  at least one letter (punctuation-only, symbol-only and pure-number tokens such as "12", "3,5",
  "2019-2020" are dropped).
- Each distinct word is tokenized alone with a leading space; special tokens are removed (the unknown
  token is kept). Word metrics are weighted by word frequency on the corpus.
- fertility = pieces per word; continued_words = share of words in >= 2 pieces; unk_words = share of
  words with at least one unknown-token piece; byte_fallback_pieces = share of word pieces that are
  byte-fallback pieces (<0xHH>), only for tokenizers with byte fallback.
- Running text: each document tokenized whole, no special tokens. chars_per_token = Unicode characters
  (whitespace included) / tokens.
- renyi_efficiency = H_2.5(p) / log|V|, with H_a(p) = log(sum_i p_i^a) / (1 - a), p the unigram
  distribution of pieces on the running text, |V| the full vocabulary size with added tokens
  (Zouhar et al., 2023).
- vocab_used = distinct pieces seen on the running text / |V|.
- effective_context_words@L = L / fertility; docs_longer@L = share of documents whose token count plus
  the tokenizer's special tokens for one sequence exceeds L.
- terms: each distinct term tokenized alone with a leading space; term_whole = share of terms in one
  piece; term_pieces = mean pieces per term.
- overlap: vocabularies canonicalised (word-initial pieces written "▁x": SentencePiece "▁x", byte-level
  "Ġx", WordPiece "x"; continuations "x": "x", "x", "##x"); special tokens excluded. jaccard =
  |A∩B| / |A∪B|; shared = |A∩B|; weighted_a_in_b = share of A's running-text tokens whose canonical
  form is in B's vocabulary.
- lowercases / strips_accents: "Électrocardiogramme Ä ñ" tokenized then decoded and compared.
"""


def is_word(token: str) -> bool:
    """True if ``token`` counts as a word: it has at least one letter (``str.isalpha``)."""
    return any(ch.isalpha() for ch in token)


def _weights(counts: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    if counts is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(counts, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"counts has shape {w.shape}, expected ({n},)")
    return w


def fertility(pieces_per_word: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray | None = None) -> float:
    """Mean number of pieces per word (weighted by ``counts`` when given)."""
    p = np.asarray(pieces_per_word, dtype=np.float64)
    w = _weights(counts, len(p))
    total = w.sum()
    return float((p * w).sum() / total) if total > 0 else float("nan")


def continued_share(pieces_per_word: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray | None = None) -> float:
    """Share of words split into two pieces or more."""
    p = np.asarray(pieces_per_word)
    w = _weights(counts, len(p))
    total = w.sum()
    return float(w[p >= 2].sum() / total) if total > 0 else float("nan")


def flagged_share(flags: Sequence[bool] | np.ndarray, counts: Sequence[int] | np.ndarray | None = None) -> float:
    """Share of words whose flag is set (e.g. the word contains the unknown token)."""
    f = np.asarray(flags, dtype=bool)
    w = _weights(counts, len(f))
    total = w.sum()
    return float(w[f].sum() / total) if total > 0 else float("nan")


def byte_fallback_share(
    byte_pieces_per_word: Sequence[int] | np.ndarray,
    pieces_per_word: Sequence[int] | np.ndarray,
    counts: Sequence[int] | np.ndarray | None = None,
) -> float:
    """Share of word pieces that are byte-fallback pieces."""
    b = np.asarray(byte_pieces_per_word, dtype=np.float64)
    p = np.asarray(pieces_per_word, dtype=np.float64)
    w = _weights(counts, len(p))
    total = (p * w).sum()
    return float((b * w).sum() / total) if total > 0 else float("nan")


def chars_per_token(n_chars: int, n_tokens: int) -> float:
    return n_chars / n_tokens if n_tokens else float("nan")


def renyi_entropy(counts: Sequence[float] | np.ndarray, alpha: float = 2.5) -> float:
    """Rényi entropy (natural log) of the distribution proportional to ``counts``.

    H_a(p) = log(sum_i p_i^a) / (1 - a); alpha = 1 gives the Shannon entropy.
    """
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return float("nan")
    p = c / c.sum()
    if alpha == 1:
        return float(-(p * np.log(p)).sum())
    if math.isinf(alpha):
        return float(-np.log(p.max()))
    return float(np.log(np.power(p, alpha).sum()) / (1.0 - alpha))


def renyi_efficiency(counts: Sequence[float] | np.ndarray, vocab_size: int, alpha: float = 2.5) -> float:
    """Rényi efficiency H_alpha(p) / log|V| (Zouhar et al., 2023), |V| the full vocabulary size."""
    if vocab_size < 2:
        return float("nan")
    return renyi_entropy(counts, alpha) / math.log(vocab_size)


def vocab_used_share(counts: Sequence[int] | np.ndarray, vocab_size: int) -> float:
    """Share of the vocabulary seen at least once."""
    c = np.asarray(counts)
    return float(np.count_nonzero(c) / vocab_size) if vocab_size else float("nan")


def effective_context(max_tokens: int, fertility_value: float) -> float:
    """How many words fit in ``max_tokens`` tokens: max_tokens / fertility."""
    return max_tokens / fertility_value if fertility_value and fertility_value > 0 else float("nan")


def share_longer(doc_lengths: Sequence[int] | np.ndarray, max_tokens: int, special_tokens: int = 0) -> float:
    """Share of documents with more than ``max_tokens`` tokens once ``special_tokens`` are added."""
    lengths = np.asarray(doc_lengths)
    if lengths.size == 0:
        return float("nan")
    return float(np.mean(lengths + special_tokens > max_tokens))


def term_coverage(pieces_per_term: Sequence[int] | np.ndarray) -> tuple[float, float]:
    """(share of terms in a single piece, mean pieces per term)."""
    p = np.asarray(pieces_per_term, dtype=np.float64)
    if p.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(p == 1)), float(p.mean())


def vocab_overlap(a: Iterable[str], b: Iterable[str]) -> tuple[float, int]:
    """(Jaccard index, shared count) of two canonical vocabularies."""
    sa, sb = set(a), set(b)
    union = len(sa | sb)
    shared = len(sa & sb)
    return (shared / union if union else float("nan")), shared


def weighted_overlap(freq_a: Mapping[str, float], vocab_b: Iterable[str]) -> float:
    """Share of A's token frequency mass (canonical form -> count) whose form is in B's vocabulary."""
    sb = vocab_b if isinstance(vocab_b, (set, frozenset)) else set(vocab_b)
    total = float(sum(freq_a.values()))
    if total <= 0:
        return float("nan")
    return float(sum(v for k, v in freq_a.items() if k in sb) / total)
