"""longadapt.data: corpora -> cleaned documents -> tokens -> packed masked-LM rows -> batches.

Public API (imported by longadapt.training):

- :class:`CorpusSpec`, :class:`Document`, :func:`read_corpus`, :func:`clean_text`
- :func:`build_packed_dataset` -> ``datasets.Dataset`` with ``input_ids``, ``document_ids``,
  ``word_ids``, ``token_bytes``; :func:`packing_stats` / :func:`data_fingerprint` read what it
  attached; :class:`PackingStats`, :class:`PackingConfig`
- :class:`MLMCollator`
- :func:`validation_mask` (hash-based, stable document split)

Names are imported on first use (see :mod:`longadapt._lazy`): the corpus readers, which the vocabulary
analysis and the tokenizer trainer use, load without torch.
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    "MLMCollator": "collator",
    **dict.fromkeys(["CorpusSpec", "Document", "clean_text", "read_corpus"], "corpus"),
    **dict.fromkeys(["PackingConfig", "PackingStats"], "packing"),
    **dict.fromkeys(["build_packed_dataset", "corpus_fingerprint", "data_fingerprint", "default_cache_dir",
                     "encode_corpus", "packing_metadata", "packing_stats"], "pipeline"),
    "validation_mask": "split",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
