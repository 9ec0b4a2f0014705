"""longadapt.recipes: building a model and a tokenizer for each strategy (convert / continue / scratch).

Tokenizer training (:mod:`longadapt.recipes.tokenizers`) and the vocabulary arms of the continue
strategy (:mod:`longadapt.recipes.vocab_transfer`) are re-exported here, imported on first use
(see :mod:`longadapt._lazy`).
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    "TokenizerTrainingConfig": "tokenizers",
    "load_tokenizer": "tokenizers",
    "save_tokenizer": "tokenizers",
    "train_tokenizer": "tokenizers",
    "ARMS": "vocab_transfer",
    "TransferReport": "vocab_transfer",
    "TransferResult": "vocab_transfer",
    "canonical_token": "vocab_transfer",
    "detect_scheme": "vocab_transfer",
    "extend_vocabulary": "vocab_transfer",
    "keep_vocabulary": "vocab_transfer",
    "piece_length_weights": "vocab_transfer",
    "replace_vocabulary": "vocab_transfer",
    "select_words": "vocab_transfer",
    "transfer_vocabulary": "vocab_transfer",
    "vector_similarity_weights": "vocab_transfer",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
