"""longadapt.data: corpora -> cleaned documents -> tokens -> packed masked-LM rows -> batches.

Public API (imported by longadapt.training):

- :class:`CorpusSpec`, :class:`Document`, :func:`read_corpus`, :func:`clean_text`
- :func:`build_packed_dataset` -> ``datasets.Dataset`` with ``input_ids``, ``document_ids``,
  ``word_ids``, ``token_bytes``; :func:`packing_stats` / :func:`data_fingerprint` read what it
  attached; :class:`PackingStats`, :class:`PackingConfig`
- :class:`MLMCollator`
- :func:`validation_mask` (hash-based, stable document split)
"""

from longadapt.data.collator import MLMCollator
from longadapt.data.corpus import CorpusSpec, Document, clean_text, read_corpus
from longadapt.data.packing import PackingConfig, PackingStats
from longadapt.data.pipeline import (
    build_packed_dataset,
    corpus_fingerprint,
    data_fingerprint,
    default_cache_dir,
    encode_corpus,
    packing_metadata,
    packing_stats,
)
from longadapt.data.split import validation_mask

__all__ = [
    "CorpusSpec",
    "Document",
    "MLMCollator",
    "PackingConfig",
    "PackingStats",
    "build_packed_dataset",
    "clean_text",
    "corpus_fingerprint",
    "data_fingerprint",
    "default_cache_dir",
    "encode_corpus",
    "packing_metadata",
    "packing_stats",
    "read_corpus",
    "validation_mask",
]
