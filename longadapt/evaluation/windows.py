"""Long documents, fairly: sliding windows for short models, one window for long ones.

A sequence (sentence or whole document) is tokenized once without special tokens. When it fits
in the model (``max_length`` minus the special tokens) it is one window: a long model sees the
whole document. Otherwise it is cut into windows of ``max_content`` tokens whose starts are
``stride`` tokens apart (the last window is aligned on the end of the sequence), each wrapped in
the model's special tokens.

Merging predictions back onto the sequence:

- token classification: every token receives exactly one logit vector, either from the window in
  which it has the most context on both sides (``max_context``: the window maximising
  ``min(tokens before, tokens after)``, ties to the earlier window) or the mean of the logits of
  every window that contains it (``average``). A word's prediction is its first sub-token's;
- sequence classification: the logits of the windows are pooled (``mean`` or ``max``).

Scores are then computed on words (or documents), never on sub-tokens, so that models with
different tokenizers are compared on the same units; :func:`length_bucket` groups documents by
their length in words.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longadapt.errors import LongAdaptError
from longadapt.evaluation.metrics import bucket_order, length_bucket  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)


@dataclass
class Encoded:
    """One sequence tokenized without special tokens."""

    input_ids: list[int]
    word_ids: list[int | None]  # the word of each token (None when not from words)
    n_words: int

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Window:
    """A slice ``[start, end)`` of a sequence's tokens, wrapped in special tokens."""

    seq: int  # index of the sequence it comes from
    start: int
    end: int
    input_ids: list[int]
    offset: int  # position of the sequence's token ``start`` in ``input_ids``
    labels: list[int] | None = None  # token-classification training labels (-100 = ignored)
    type_ids: list[int] | None = None  # segment ids (text pairs only)


def special_tokens(tok) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single sequence."""
    probe = "x"
    inner = tok(probe, add_special_tokens=False)["input_ids"]
    outer = tok(probe, add_special_tokens=True)["input_ids"]
    for i in range(len(outer) - len(inner) + 1):
        if outer[i : i + len(inner)] == inner:
            return outer[:i], outer[i + len(inner) :]
    raise LongAdaptError(f"cannot locate the special tokens of {type(tok).__name__}")


def model_max_length(tok, config: Any = None, requested: int | None = None) -> int:
    """The number of tokens (special tokens included) the model accepts."""
    limits = []
    if config is not None:
        mpe = getattr(config, "max_position_embeddings", None)
        if mpe:
            # RoBERTa-style positions start after the padding index
            offset = (config.pad_token_id + 1) if getattr(config, "model_type", "") in (
                "roberta", "camembert", "xlm-roberta", "longformer") and config.pad_token_id is not None else 0
            limits.append(int(mpe) - offset)
    tml = getattr(tok, "model_max_length", None)
    if tml and tml < 10**7:
        limits.append(int(tml))
    limit = min(limits) if limits else 512
    if requested is not None:
        if requested > limit:
            raise LongAdaptError(f"max_length {requested} exceeds what the model accepts ({limit})")
        return requested
    return limit


def encode_words(tok, sequences: Sequence[Sequence[str]], batch_size: int = 256) -> list[Encoded]:
    """Tokenize pre-split word sequences (no special tokens, no truncation)."""
    out: list[Encoded] = []
    for i in range(0, len(sequences), batch_size):
        chunk = [list(s) for s in sequences[i : i + batch_size]]
        enc = tok(chunk, is_split_into_words=True, add_special_tokens=False, truncation=False)
        for j, words in enumerate(chunk):
            out.append(Encoded(list(enc["input_ids"][j]), list(enc.word_ids(j)), len(words)))
    return out


def encode_texts(tok, texts: Sequence[str], batch_size: int = 256) -> list[Encoded]:
    """Tokenize running texts (no special tokens, no truncation)."""
    out: list[Encoded] = []
    for i in range(0, len(texts), batch_size):
        enc = tok(list(texts[i : i + batch_size]), add_special_tokens=False, truncation=False)
        for ids in enc["input_ids"]:
            out.append(Encoded(list(ids), [None] * len(ids), 0))
    return out


def window_spans(n_tokens: int, max_content: int, stride: int, truncate: bool = False) -> list[tuple[int, int]]:
    """``[start, end)`` of the windows covering ``n_tokens`` tokens; with ``truncate`` only the first
    ``max_content`` tokens, in one window (the rest is never seen)."""
    if max_content < 1:
        raise LongAdaptError("the model leaves no room for content after its special tokens")
    if not 1 <= stride <= max_content:
        raise LongAdaptError(f"stride {stride} must be between 1 and the window content size {max_content}")
    if n_tokens <= max_content or truncate:
        return [(0, min(n_tokens, max_content))]
    spans = []
    start = 0
    while start + max_content < n_tokens:
        spans.append((start, start + max_content))
        start += stride
    spans.append((n_tokens - max_content, n_tokens))
    return spans


def make_windows(encoded: Sequence[Encoded], max_length: int, prefix: list[int], suffix: list[int],
                 stride: int | None = None, word_labels: Sequence[Any] | None = None,
                 truncate: bool = False) -> list[Window]:
    """Windows of every sequence; with ``word_labels`` each window carries token labels: the label
    of a word on its first sub-token, -100 on other sub-tokens and on special tokens. A word's label is
    an int, or a row of ints (one per layer of a multi-layer scheme; ignored tokens then get a row of
    -100). A token is labelled in one window only (the first that holds it): where windows overlap (with
    a stride, or the last window aligned on the sequence's end) the later window sees the token as context
    but does not count it in the loss again, so every word weighs the same for a windowed and a
    whole-document model. With ``truncate`` each sequence is one window of its first tokens."""
    max_content = max_length - len(prefix) - len(suffix)
    stride = stride or max(1, max_content // 2)
    stride = min(stride, max_content)
    windows = []
    for s, enc in enumerate(encoded):
        first_tokens = _first_token_mask(enc.word_ids)
        labelled_until = 0  # tokens before this one already carry their label in an earlier window
        rows = word_labels[s] if word_labels is not None else None
        width = None if rows is None or not len(rows) or np.ndim(rows[0]) == 0 else len(rows[0])
        ignore: Any = -100 if width is None else [-100] * width
        for start, end in window_spans(len(enc), max_content, stride, truncate):
            labels = None
            if rows is not None:
                labels = [ignore] * len(prefix)
                for t in range(start, end):
                    w = enc.word_ids[t]
                    keep = first_tokens[t] and w is not None and t >= labelled_until
                    labels.append((rows[w] if width is None else [int(v) for v in rows[w]]) if keep else ignore)
                labels += [ignore] * len(suffix)
                labelled_until = max(labelled_until, end)
            windows.append(Window(s, start, end, prefix + enc.input_ids[start:end] + suffix, len(prefix), labels))
    return windows


def _first_token_mask(word_ids: Sequence[int | None]) -> list[bool]:
    seen: set[int] = set()
    mask = []
    for w in word_ids:
        mask.append(w is not None and w not in seen)
        if w is not None:
            seen.add(w)
    return mask


def merge_token_logits(n_tokens: int, windows: Sequence[Window], logits: Sequence[np.ndarray],
                       mode: str = "max_context") -> tuple[np.ndarray, np.ndarray]:
    """One logit vector per token of a sequence from the logits of its windows.

    ``logits[k]`` has one row per position of ``windows[k].input_ids``. Returns
    ``(token_logits, source)`` where ``source[t]`` is the window chosen for token ``t``
    (``max_context``) or the number of windows averaged (``average``).
    """
    if not windows:
        raise ValueError("no window")
    n_classes = logits[0].shape[-1]
    if mode == "max_context":
        best = np.full(n_tokens, -1.0)
        source = np.full(n_tokens, -1, dtype=int)
        out = np.zeros((n_tokens, n_classes), dtype=np.float32)
        for k, (win, lg) in enumerate(zip(windows, logits)):
            pos = np.arange(win.start, win.end)
            context = np.minimum(pos - win.start, win.end - 1 - pos).astype(float)
            better = context > best[pos]
            idx = pos[better]
            out[idx] = lg[win.offset + (idx - win.start)]
            best[idx] = context[better]
            source[idx] = k
    elif mode == "average":
        out = np.zeros((n_tokens, n_classes), dtype=np.float64)
        source = np.zeros(n_tokens, dtype=int)
        for win, lg in zip(windows, logits):
            out[win.start : win.end] += lg[win.offset : win.offset + (win.end - win.start)]
            source[win.start : win.end] += 1
        out = (out / np.maximum(source, 1)[:, None]).astype(np.float32)
    else:
        raise LongAdaptError(f"unknown merge mode {mode!r}: use max_context or average")
    if (source < 0).any() or (mode == "average" and (source == 0).any()):
        raise ValueError("some tokens are in no window")
    return out, source


def word_logits(token_logits: np.ndarray, word_ids: Sequence[int | None], n_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Each word's logits are those of its first sub-token. Returns ``(logits, has_token)``; a
    word without any sub-token (a character the tokenizer drops) has zeros and ``has_token`` False."""
    out = np.zeros((n_words, token_logits.shape[-1]), dtype=np.float32)
    has = np.zeros(n_words, dtype=bool)
    for t, w in enumerate(word_ids):
        if w is not None and not has[w]:
            out[w] = token_logits[t]
            has[w] = True
    return out, has


def pool_logits(logits: Sequence[np.ndarray], mode: str = "mean") -> np.ndarray:
    """Document logits from the logits of its windows."""
    stacked = np.stack(list(logits))
    if mode == "mean":
        return stacked.mean(axis=0)
    if mode == "max":
        return stacked.max(axis=0)
    raise LongAdaptError(f"unknown pooling {mode!r}: use mean or max")


def group_by_sequence(windows: Sequence[Window]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for k, w in enumerate(windows):
        groups.setdefault(w.seq, []).append(k)
    return groups
