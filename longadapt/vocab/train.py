"""The analysis's comparison tokenizers: :func:`longadapt.tokenizers.train_tokenizer` with plain settings.

Two kinds, both without any unknown piece:

* ``byte_fallback``: SentencePiece-style BPE ("▁" word starts, no normalisation of the text) whose
  vocabulary holds the 256 byte pieces ``<0x00>``..``<0xFF>``; a character never seen in training is
  written as its UTF-8 bytes.
* ``byte_level``: GPT-2/RoBERTa-style byte-level BPE ("Ġ" word starts).

Only white space splits words (no digit or punctuation rules), the special tokens are RoBERTa's
(``<pad>`` ``<unk>`` ``<s>`` ``</s>`` ``<mask>``; ``<unk>`` is never produced and is not declared as
the unknown token), and a text too small for the size asked for gives
the largest multiple of 64 it supports (trained again; a warning says so) rather than reserved pieces
that would count as unused vocabulary. Train on sentences, not whole documents: each string is one
training line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from longadapt.errors import LongAdaptError
from longadapt.tokenizers.conventions import round_up  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

KINDS = ("byte_fallback", "byte_level")


def train_bpe(
    sentences: Iterable[str] | Sequence[str],
    vocab_size: int,
    kind: str = "byte_fallback",
    min_frequency: int = 2,
    out_dir: str | Path | None = None,
    show_progress: bool = False,
) -> "PreTrainedTokenizerFast":
    """Train a BPE tokenizer of ``kind`` on ``sentences``; return it (saved to ``out_dir`` if given).

    The vocabulary (special tokens and, for ``byte_fallback``, the 256 byte pieces included) has
    ``vocab_size`` rounded up to a multiple of 64 entries.
    """
    from longadapt.tokenizers.training import train_tokenizer

    if kind not in KINDS:
        raise LongAdaptError(f"tokenizer kind {kind!r} unknown; use byte_fallback or byte_level")
    return train_tokenizer(
        sentences, None, vocab_size, out_dir=out_dir,
        byte_level=kind == "byte_level", byte_fallback=kind == "byte_fallback",
        pre_tokenization="words", special_tokens="roberta", when_short="shrink", unknown_token=False,
        normalization="none", lowercase=False, sentences="lines", max_sentence_chars=10**9,
        limit_alphabet=None, min_frequency=min_frequency, show_progress=show_progress,
    )
