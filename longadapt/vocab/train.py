"""Train a small subword tokenizer with the ``tokenizers`` library, for comparison in the analysis.

Two kinds, both without any unknown token:

* ``byte_fallback``: SentencePiece-style BPE ("▁" word starts, no normalisation of the text) whose
  vocabulary holds the 256 byte pieces ``<0x00>``..``<0xFF>``; a character never seen in training is
  written as its UTF-8 bytes.
* ``byte_level``: GPT-2/RoBERTa-style byte-level BPE ("Ġ" word starts).

The vocabulary size is rounded up to a multiple of 64. Train on sentences, not whole documents.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

from typing import TYPE_CHECKING

from longadapt.errors import LongAdaptError
from longadapt.tokenizers.conventions import round_up  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<mask>"]




def train_bpe(
    sentences: Iterable[str] | Sequence[str],
    vocab_size: int,
    kind: str = "byte_fallback",
    min_frequency: int = 2,
    out_dir: str | Path | None = None,
    show_progress: bool = False,
) -> "PreTrainedTokenizerFast":
    """Train a BPE tokenizer; return it as a transformers fast tokenizer (saved to ``out_dir`` if given).

    The final vocabulary (special tokens and, for ``byte_fallback``, the 256 byte pieces included)
    has ``vocab_size`` rounded up to a multiple of 64 entries. When the text is too small to learn
    that many merges, the tokenizer is trained again with the largest multiple of 64 it supports
    (a warning says so); pass a list, not a one-shot iterator, for that case.
    """
    sentences = sentences if isinstance(sentences, (list, tuple)) else list(sentences)
    target = round_up(int(vocab_size))
    tok = _train(sentences, target, kind, min_frequency, show_progress)
    size = tok.get_vocab_size(with_added_tokens=True)
    smaller = size // 64 * 64
    if size < target and smaller > _minimum(kind):
        logger.warning("the text supports only %d vocabulary entries, not %d: training again with %d", size, target, smaller)
        tok = _train(sentences, smaller, kind, min_frequency, show_progress)
        size = tok.get_vocab_size(with_added_tokens=True)
    if size % 64:
        logger.warning("trained vocabulary has %d entries, not a multiple of 64", size)

    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        mask_token="<mask>", cls_token="<s>", sep_token="</s>",
    )
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def _minimum(kind: str) -> int:
    """Entries present before any merge: special tokens plus the 256 bytes."""
    return len(SPECIAL_TOKENS) + 256


def _train(sentences: Sequence[str], target: int, kind: str, min_frequency: int, show_progress: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    if kind == "byte_fallback":
        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
        if target <= _minimum(kind):
            raise LongAdaptError(f"vocab_size {target} is too small for a byte-fallback BPE (need more than {_minimum(kind)})")
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
        trainer = trainers.BpeTrainer(
            vocab_size=target - len(byte_tokens),
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=show_progress,
        )
        tok.train_from_iterator(sentences, trainer)
        # Add the byte pieces to the model's vocabulary (not as added tokens, so that they are never
        # matched in raw text and count as ordinary pieces).
        vocab = tok.get_vocab()
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in _merges(tok)]
        next_id = len(vocab)
        for b in byte_tokens:
            if b not in vocab:
                vocab[b] = next_id
                next_id += 1
        model = models.BPE(vocab=vocab, merges=merges, byte_fallback=True, unk_token=None)
        new = Tokenizer(model)
        new.pre_tokenizer = tok.pre_tokenizer
        new.add_special_tokens(SPECIAL_TOKENS)
        new.decoder = decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        tok = new
    elif kind == "byte_level":
        tok = Tokenizer(models.BPE(unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=target,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
        tok.train_from_iterator(sentences, trainer)
    else:
        raise LongAdaptError(f"tokenizer kind {kind!r} unknown; use byte_fallback or byte_level")

    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    return tok


def _merges(tok) -> list:
    import json

    return json.loads(tok.to_str())["model"]["merges"]
