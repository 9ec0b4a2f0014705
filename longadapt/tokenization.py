"""Tokenizer conventions shared by the vocabulary analysis and the recipes.

One canonical form for vocabulary entries across word-start conventions: word starts begin with
"▁", continuations do not, and bytes that are not text on their own are written ``<0xHH>``.
"""

from __future__ import annotations

import functools

from longadapt.errors import LongAdaptError

#: SentencePiece word-start marker; also the marker of canonical vocabulary entries.
SP_MARK = "\u2581"
#: Word-start conventions understood by :func:`canonical_token`.
SCHEMES = ("metaspace", "byte_level", "wordpiece", "none")


def round_up(n: int, multiple: int = 64) -> int:
    """Smallest multiple of ``multiple`` that is >= ``n``."""
    return -(-int(n) // multiple) * multiple


@functools.lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level symbol -> byte."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}


def canonical_token(token: str, scheme: str, continuing_prefix: str = "##") -> str:
    """Write a vocabulary entry in the canonical convention.

    - ``metaspace`` (SentencePiece, byte fallback) and ``none``: unchanged ("▁x", "x", "<0xC3>").
    - ``byte_level`` (GPT-2, RoBERTa, ModernBERT): symbols decoded to bytes, a leading space becomes
      "▁" ("Ġx" -> "▁x"); bytes that are not valid UTF-8 on their own become ``<0xHH>`` ("Ã" ->
      "<0xC3>"), as byte-fallback vocabularies write them, so single bytes compare across schemes.
    - ``wordpiece``: "##x" -> "x"; any other entry is a word start ("x" -> "▁x").
    """
    if scheme in ("metaspace", "none"):
        return token
    if scheme == "wordpiece":
        if continuing_prefix and token.startswith(continuing_prefix) and len(token) > len(continuing_prefix):
            return token[len(continuing_prefix):]
        return SP_MARK + token
    if scheme == "byte_level":
        decoder = byte_decoder()
        try:
            data = bytes(decoder[ch] for ch in token)
        except KeyError:  # not a byte-level string (an added token): keep it
            return token
        start = data.startswith(b" ")
        body = data[1:] if start else data
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = "".join(f"<0x{b:02X}>" for b in body)
        return (SP_MARK if start else "") + text
    raise LongAdaptError(f"unknown word-start scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
