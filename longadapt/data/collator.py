"""Masked-LM batches from packed rows: dynamic padding, token or whole-word masking, 80/10/10."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from longadapt.errors import LongAdaptError


class MLMCollator:
    """Turn packed rows (``input_ids``, ``document_ids``, ``word_ids``, ``token_bytes``) into a batch.

    Returns torch ``long`` tensors of shape ``(B, L)``: ``input_ids`` (masked), ``attention_mask`` (1
    on real tokens), ``document_ids`` (0 on padding), ``labels`` (the original id at masked positions,
    -100 elsewhere) and ``token_bytes`` (0 on padding). ``L`` is the longest row of the batch, rounded
    up to ``pad_to_multiple_of``.

    Masking: each maskable token (not a special token, i.e. ``word_ids != -1``, not padding) is
    selected with probability ``mlm_probability``; with ``whole_word_masking`` each word (consecutive
    tokens with the same word id in the same document) is selected with that probability and all its
    tokens together, so the expected share of masked tokens is the same. A selected token becomes the
    mask token with probability ``mask_replace_prob``, a random non-special token with probability
    ``random_replace_prob``, and stays unchanged otherwise (0.8/0.1/0.1 by default; 1.0/0/0 for
    all-[MASK]).

    Randomness (``seed``):
    - ``None``: torch's global generator (seed it with ``torch.manual_seed``) - for training;
    - an ``int``: the masks of a row are a function of the seed and the row's tokens only, so every
      evaluation masks the validation rows identically, whatever the batch order, batch size or
      number of DataLoader workers - for validation;
    - a ``torch.Generator``: drawn from in order (reproducible for a fixed data order).
    """

    def __init__(
        self,
        tokenizer: Any,
        mlm_probability: float = 0.3,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        whole_word_masking: bool = False,
        pad_to_multiple_of: int | None = None,
        seed: int | torch.Generator | None = None,
    ) -> None:
        if not 0.0 < mlm_probability < 1.0:
            raise LongAdaptError(f"mlm_probability={mlm_probability} must be between 0 and 1 (e.g. 0.15-0.4)")
        if mask_replace_prob < 0 or random_replace_prob < 0 or mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
            raise LongAdaptError(
                f"mask_replace_prob={mask_replace_prob} and random_replace_prob={random_replace_prob} "
                "must be >= 0 and sum to at most 1 (0.8 and 0.1 is the usual 80/10/10 split)"
            )
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise LongAdaptError("pad_to_multiple_of must be a positive integer or None")
        self.mask_token_id = getattr(tokenizer, "mask_token_id", None)
        if self.mask_token_id is None and mask_replace_prob > 0:
            raise LongAdaptError(
                f"the tokenizer ({type(tokenizer).__name__}) has no mask token: add one "
                "(tokenizer.add_special_tokens({'mask_token': '<mask>'})) and resize the model's embeddings"
            )
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id = int(pad) if pad is not None else 0
        self.mlm_probability = float(mlm_probability)
        self.mask_replace_prob = float(mask_replace_prob)
        self.random_replace_prob = float(random_replace_prob)
        self.whole_word_masking = whole_word_masking
        self.pad_to_multiple_of = pad_to_multiple_of
        special = set(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
        self.special_ids = torch.tensor(sorted(special), dtype=torch.long)
        vocab_size = len(tokenizer)
        allowed = torch.ones(vocab_size, dtype=torch.bool)
        allowed[[i for i in special if i < vocab_size]] = False
        self.random_ids = torch.nonzero(allowed).flatten()
        if isinstance(seed, torch.Generator):
            self.generator: torch.Generator | None = seed
            self.seed: int | None = None
        else:
            self.generator = None
            self.seed = seed

    # ------------------------------------------------------------------------------------------
    def _row_generator(self, ids: torch.Tensor) -> torch.Generator | None:
        if self.seed is None:
            return self.generator
        h = hashlib.blake2b(ids.numpy().astype(np.int64).tobytes(), digest_size=8, key=str(self.seed).encode())
        return torch.Generator().manual_seed(int.from_bytes(h.digest(), "little") & ((1 << 63) - 1))

    def _mask_row(self, ids: torch.Tensor, word_ids: torch.Tensor, doc_ids: torch.Tensor):
        """Masked ids and labels for one row (no padding in it)."""
        gen = self._row_generator(ids)
        n = ids.numel()
        maskable = word_ids >= 0
        if len(self.special_ids):
            maskable &= ~torch.isin(ids, self.special_ids)
        if self.whole_word_masking:
            new_word = torch.ones(n, dtype=torch.bool)
            new_word[1:] = (word_ids[1:] != word_ids[:-1]) | (doc_ids[1:] != doc_ids[:-1]) | ~maskable[:-1]
            group = torch.cumsum(new_word.long(), 0) - 1
            chosen = torch.rand(int(group[-1]) + 1 if n else 0, generator=gen) < self.mlm_probability
            selected = chosen[group] & maskable
        else:
            selected = (torch.rand(n, generator=gen) < self.mlm_probability) & maskable
        labels = torch.where(selected, ids, torch.full_like(ids, -100))
        draw = torch.rand(n, generator=gen)
        to_mask = selected & (draw < self.mask_replace_prob)
        to_random = selected & (draw >= self.mask_replace_prob) & (draw < self.mask_replace_prob + self.random_replace_prob)
        out = ids.clone()
        if to_mask.any():
            out[to_mask] = self.mask_token_id
        k = int(to_random.sum())
        if k:
            pick = torch.randint(len(self.random_ids), (k,), generator=gen)
            out[to_random] = self.random_ids[pick]
        return out, labels

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not rows:
            raise LongAdaptError("MLMCollator got an empty batch")
        tensors = []
        for row in rows:
            ids = torch.as_tensor(np.asarray(row["input_ids"]), dtype=torch.long)
            n = ids.numel()
            doc = row.get("document_ids")
            doc = torch.as_tensor(np.asarray(doc), dtype=torch.long) if doc is not None else torch.ones(n, dtype=torch.long)
            words = row.get("word_ids")
            if words is not None:
                words = torch.as_tensor(np.asarray(words), dtype=torch.long)
            else:  # no word information: every non-special token is a word of its own
                words = torch.arange(n, dtype=torch.long)
            nbytes = row.get("token_bytes")
            nbytes = torch.as_tensor(np.asarray(nbytes), dtype=torch.long) if nbytes is not None else torch.zeros(n, dtype=torch.long)
            if not (doc.numel() == words.numel() == nbytes.numel() == n):
                raise LongAdaptError("a row's input_ids, document_ids, word_ids and token_bytes differ in length")
            tensors.append((ids, doc, words, nbytes))
        length = max(t[0].numel() for t in tensors)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            length = (length + m - 1) // m * m
        batch = len(rows)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        document_ids = torch.zeros((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), -100, dtype=torch.long)
        token_bytes = torch.zeros((batch, length), dtype=torch.long)
        for i, (ids, doc, words, nbytes) in enumerate(tensors):
            n = ids.numel()
            masked, row_labels = self._mask_row(ids, words, doc)
            input_ids[i, :n] = masked
            attention_mask[i, :n] = 1
            document_ids[i, :n] = doc
            labels[i, :n] = row_labels
            token_bytes[i, :n] = nbytes
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "document_ids": document_ids,
            "labels": labels,
            "token_bytes": token_bytes,
        }
