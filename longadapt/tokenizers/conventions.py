"""Tokenizer conventions shared by the vocabulary analysis, the recipes and the evaluation.

How a tokenizer marks word starts (:func:`detect_scheme`), and one canonical form for vocabulary
entries across those conventions (:func:`canonical_token`): word starts begin with "▁", continuations
do not, and bytes that are not text on their own are written ``<0xHH>``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

from longadapt.errors import LongAdaptError

#: SentencePiece word-start marker; also the marker of canonical vocabulary entries.
SP_MARK = "\u2581"
#: Word-start conventions understood by :func:`canonical_token`.
SCHEMES = ("metaspace", "byte_level", "wordpiece", "none")


def round_up(n: int, multiple: int | None = 64) -> int:
    """Smallest multiple of ``multiple`` that is >= ``n`` (``n`` itself when ``multiple`` is 0 or None)."""
    if not multiple:
        return int(n)
    return -(-int(n) // multiple) * multiple


@functools.lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level symbol -> byte."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {ch: b for b, ch in bytes_to_unicode().items()}


@functools.lru_cache(maxsize=1)
def byte_encoder() -> dict[int, str]:
    """Byte -> GPT-2 byte-level symbol (the inverse of :func:`byte_decoder`)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return dict(bytes_to_unicode())


def to_byte_level(text: str) -> str:
    """``text`` written in GPT-2 byte-level symbols (" word" -> "Ġword")."""
    enc = byte_encoder()
    return "".join(enc[b] for b in text.encode("utf-8"))


def json_nodes(node: Any) -> Iterator[dict]:
    """Every dict in a (nested) tokenizers JSON component, itself first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from json_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from json_nodes(value)


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


def _types_in(node: Any) -> set[str]:
    """All ``type`` values in a (nested) tokenizers JSON component."""
    return {n["type"] for n in json_nodes(node) if isinstance(n.get("type"), str)}


def tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    """The ``tokenizer.json`` document of a fast transformers tokenizer, a ``tokenizers.Tokenizer``, or the
    document itself."""
    if isinstance(tokenizer, dict):
        return tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None) or tokenizer
    if not hasattr(backend, "to_str"):
        raise LongAdaptError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; load it with AutoTokenizer.from_pretrained(...)")
    return json.loads(backend.to_str())


def detect_scheme(tokenizer: Any, strict: bool = False) -> tuple[str, str]:
    """``(scheme, continuation prefix)`` of a tokenizer (a fast tokenizer, a ``tokenizers.Tokenizer`` or its
    ``tokenizer.json`` document): ``wordpiece`` (prefix "##" unless it says otherwise), ``byte_level``
    (GPT-2 "Ġ"), ``metaspace`` (SentencePiece "▁", also Llama-style normalisers that write "▁" for spaces),
    or ``none``; with ``strict``, ``none`` is an error."""
    data = tokenizer_json(tokenizer)
    model = data.get("model") or {}
    prefix = model.get("continuing_subword_prefix") or ""
    if model.get("type") == "WordPiece":
        return "wordpiece", prefix or "##"
    steps = _types_in(data.get("pre_tokenizer")) | _types_in(data.get("decoder"))
    if "ByteLevel" in steps:
        return "byte_level", ""
    if "Metaspace" in steps or SP_MARK in json.dumps(data.get("normalizer"), ensure_ascii=False):
        return "metaspace", ""
    if prefix:
        return "wordpiece", prefix
    if strict:
        raise LongAdaptError(
            "cannot tell how this tokenizer marks word starts (no WordPiece model, ByteLevel or Metaspace "
            "step); only WordPiece, byte-level BPE and SentencePiece-style tokenizers are supported")
    return "none", ""
