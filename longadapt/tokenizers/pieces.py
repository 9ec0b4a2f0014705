"""The old tokenizer's pieces for a surface string, as a word start or as a word continuation: how the
vocabulary arms (:mod:`longadapt.recipes.vocab_transfer`) find the old rows a new token is made from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.tokenizers.conventions import SP_MARK, canonical_token, detect_scheme, to_byte_level, tokenizer_json


def word_start_scheme(tokenizer) -> str:
    """The word-start convention (``wordpiece``, ``byte_level`` or ``metaspace``; anything else is an error)."""
    return detect_scheme(tokenizer, strict=True)[0]


def require_fast(tokenizer):
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise LongAdaptError(
            f"{type(tokenizer).__name__} is not a fast tokenizer; load it with AutoTokenizer.from_pretrained(...)"
        )
    return tokenizer


class OldPieces:
    """Segments surface strings with an old tokenizer, as a word start or as a continuation.

    Word starts go through the whole tokenizer (normaliser, pre-tokeniser, model; a space is put
    before the text for byte-level models); continuations go through the normaliser and the model
    only, without a word-start marker (WordPiece: a model whose first piece must be a "##" piece).
    Unknown pieces and special tokens are left out.
    """

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer, models

        tok = require_fast(tokenizer)
        data = tokenizer_json(tok)
        self.scheme = word_start_scheme(data)
        self.backend = Tokenizer.from_str(tok.backend_tokenizer.to_str())
        self.backend.no_padding()
        self.backend.no_truncation()
        self.normalizer = self.backend.normalizer
        self.drop = set(tok.all_special_ids)
        if tok.unk_token_id is not None:
            self.drop.add(tok.unk_token_id)
        self.vocab = tok.get_vocab()
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.continuation_model = None
        if self.scheme == "wordpiece":
            model = data["model"]
            prefix = model.get("continuing_subword_prefix") or "##"
            self.prefix = prefix
            unk = model.get("unk_token", "[UNK]")
            helper = {t[len(prefix):]: i for t, i in model["vocab"].items() if t.startswith(prefix) and len(t) > len(prefix)}
            helper.update({t: i for t, i in model["vocab"].items() if t.startswith(prefix) and len(t) > len(prefix)})
            helper.setdefault(unk, model["vocab"].get(unk, 0))
            self.continuation_model = models.WordPiece(
                helper, unk_token=unk, continuing_subword_prefix=prefix,
                max_input_chars_per_word=model.get("max_input_chars_per_word", 100),
            )
        else:
            self.prefix = ""

    def normalize(self, text: str) -> str:
        """``text`` as the old tokenizer's normaliser writes it (no word-start marker added)."""
        if self.normalizer is None:
            return text
        out = self.normalizer.normalize_str(text)
        if self.scheme == "metaspace" and out.startswith(SP_MARK) and not text.startswith((" ", SP_MARK)):
            out = out[1:]  # a normaliser that prepends "▁" (Llama-style): not for a continuation
        return out

    def word_start(self, texts: Sequence[str]) -> list[list[int]]:
        """Pieces of each text as a word (or words) of running text."""
        if not texts:
            return []
        prepared = [(" " + t) if self.scheme == "byte_level" else t for t in texts]
        encodings = self.backend.encode_batch(prepared, add_special_tokens=False)
        return [[i for i in e.ids if i not in self.drop] for e in encodings]

    def continuation(self, text: str) -> list[int]:
        """Pieces of ``text`` as the continuation of a word; falls back to word-start pieces when
        the old tokenizer has no continuation pieces for it."""
        norm = self.normalize(text)
        if not norm or any(c.isspace() for c in norm):
            return self.word_start([text])[0]
        if self.scheme == "wordpiece":
            ids = [t.id for t in self.continuation_model.tokenize(norm)]
        elif self.scheme == "byte_level":
            ids = [t.id for t in self.backend.model.tokenize(to_byte_level(norm))]
        else:
            ids = [t.id for t in self.backend.model.tokenize(norm)]
        if not ids or any(i in self.drop for i in ids):
            return self.word_start([text])[0]
        return ids

    def piece_text(self, piece_id: int) -> str:
        """The surface string of an old piece, without its word-start marker."""
        canon = canonical_token(self.id_to_token.get(piece_id, ""), self.scheme, self.prefix or "##")
        return canon[1:] if canon.startswith(SP_MARK) else canon


#: ``(text, piece_ids, piece_texts) -> one non-negative weight per piece``: how the old pieces of a new
#: token are weighted in its initial row (None: the plain mean).
SimilarityWeights = Callable[[str, Sequence[int], Sequence[str]], Sequence[float]]


def piece_length_weights(text: str, piece_ids: Sequence[int], piece_texts: Sequence[str]) -> list[float]:
    """Weight each old piece by the number of characters it covers (at least 1)."""
    return [float(max(1, len(p))) for p in piece_texts]


def vector_similarity_weights(
    lookup: Callable[[str], Any], temperature: float = 0.1
) -> SimilarityWeights:
    """FOCUS-style weights from an auxiliary embedding space: ``lookup(text)`` returns a vector
    (or ``None``) for any surface string, e.g. fastText vectors (which also cover unseen strings
    through character n-grams) trained on the target corpus. Each old piece gets
    ``softmax(cos(v(token), v(piece)) / temperature)``; pieces without a vector get the smallest
    weight given to a piece with one, and when the token itself has no vector the weights are
    uniform."""
    if temperature <= 0:
        raise LongAdaptError("temperature must be > 0")

    def weights(text: str, piece_ids: Sequence[int], piece_texts: Sequence[str]) -> list[float]:
        target = lookup(text)
        if target is None:
            return [1.0] * len(piece_ids)
        import torch

        target = torch.as_tensor(target, dtype=torch.float32)
        sims: list[float | None] = []
        for p in piece_texts:
            v = lookup(p)
            if v is None:
                sims.append(None)
                continue
            v = torch.as_tensor(v, dtype=torch.float32)
            sims.append(float(torch.nn.functional.cosine_similarity(target, v, dim=0)))
        known = [s for s in sims if s is not None]
        if not known:
            return [1.0] * len(piece_ids)
        floor = min(known)
        scores = torch.tensor([floor if s is None else s for s in sims]) / temperature
        return torch.softmax(scores, dim=0).tolist()

    weights.__name__ = f"vector_similarity_weights(T={temperature})"
    return weights
