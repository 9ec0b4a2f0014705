"""longadapt.recipes: building a model and a tokenizer for each strategy (convert / continue / scratch).

Tokenizer training (:mod:`longadapt.recipes.tokenizers`) and the vocabulary arms of the continue
strategy (:mod:`longadapt.recipes.vocab_transfer`) are re-exported here, imported on first use
(see :mod:`longadapt._lazy`).
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys([
        "TokenizerTrainingConfig", "load_tokenizer", "save_tokenizer", "train_tokenizer"
    ], "tokenizers"),
    **dict.fromkeys([
        "ARMS", "TransferReport", "TransferResult", "canonical_token", "detect_scheme", "extend_vocabulary",
        "keep_vocabulary", "piece_length_weights", "replace_vocabulary", "select_words",
        "transfer_vocabulary", "vector_similarity_weights"
    ], "vocab_transfer"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
