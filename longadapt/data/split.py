"""Stable document-level train/validation split by a hash of the text.

Each document gets a number ``u`` in [0, 1) from a hash of its cleaned text and the seed; it is in
validation when ``u < validation_fraction``. A document's side depends only on its own text, so
adding documents never moves an existing one across the split.

``min_validation_documents`` (for small corpora) lowers the bar to the k-th smallest ``u`` when the
fraction alone selects fewer than k documents. Only those extra documents can move when documents
are added later (a new document with a smaller ``u`` takes the place of one), and they can only move
from validation to train, never the other way.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from longadapt.errors import LongAdaptError

SPLITS = ("train", "validation", "all")


def split_value(text_hash: str, seed: int = 0) -> float:
    """The number in [0, 1) that places a document (``text_hash`` = sha256 hex of its text)."""
    digest = hashlib.sha256(f"{seed}:{text_hash}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def validation_mask(
    text_hashes: Sequence[str],
    validation_fraction: float = 0.01,
    seed: int = 0,
    min_validation_documents: int = 0,
) -> np.ndarray:
    """Boolean array: which documents are in validation."""
    if not 0.0 <= validation_fraction < 1.0:
        raise LongAdaptError(f"validation_fraction={validation_fraction} must be in [0, 1)")
    if min_validation_documents < 0:
        raise LongAdaptError("min_validation_documents must be >= 0")
    u = np.array([split_value(h, seed) for h in text_hashes], dtype=np.float64)
    mask = u < validation_fraction
    k = min(min_validation_documents, len(u))
    if k and mask.sum() < k:
        threshold = np.partition(u, k - 1)[k - 1]
        mask = u <= threshold
    return mask

