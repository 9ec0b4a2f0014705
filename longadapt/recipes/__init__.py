"""longadapt.recipes: building a model and a tokenizer for each strategy (convert / continue / scratch).

The vocabulary arms of the continue strategy (:mod:`longadapt.recipes.vocab_transfer`) are re-exported
here, imported on first use (see :mod:`longadapt._lazy`). Tokenizers (loading, conventions, training)
live in :mod:`longadapt.tokenizers`.
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys([
        "ARMS", "TransferReport", "TransferResult", "canonical_token", "extend_vocabulary",
        "keep_vocabulary", "piece_length_weights", "replace_vocabulary", "select_words",
        "transfer_vocabulary", "vector_similarity_weights"
    ], "vocab_transfer"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
