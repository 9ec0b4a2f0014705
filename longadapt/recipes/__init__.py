"""longadapt.recipes: building a model and a tokenizer for each strategy (convert / continue / scratch).

Tokenizer training (:mod:`longadapt.recipes.tokenizers`) and the vocabulary arms of the continue
strategy (:mod:`longadapt.recipes.vocab_transfer`) are re-exported here.
"""

from longadapt.recipes.tokenizers import TokenizerTrainingConfig, load_tokenizer, save_tokenizer, train_tokenizer
from longadapt.recipes.vocab_transfer import (
    ARMS,
    TransferReport,
    TransferResult,
    canonical_token,
    detect_scheme,
    extend_vocabulary,
    keep_vocabulary,
    piece_length_weights,
    replace_vocabulary,
    select_words,
    transfer_vocabulary,
    vector_similarity_weights,
)

__all__ = [
    "ARMS",
    "TokenizerTrainingConfig",
    "TransferReport",
    "TransferResult",
    "canonical_token",
    "detect_scheme",
    "extend_vocabulary",
    "keep_vocabulary",
    "load_tokenizer",
    "piece_length_weights",
    "replace_vocabulary",
    "save_tokenizer",
    "select_words",
    "train_tokenizer",
    "transfer_vocabulary",
    "vector_similarity_weights",
]
