"""longadapt.vocab: how well a tokenizer fits a language, measured on a corpus.

``analyze(...)`` runs the whole analysis (see :mod:`longadapt.vocab.metrics` for the protocol);
each metric is also a small function of counts in :mod:`longadapt.vocab.metrics`.
"""

from longadapt.vocab.analysis import (
    VocabAnalysis,
    VocabConfig,
    analyze,
    analyze_config,
    count_words,
    scan_corpus,
    segment_words,
    word_counts,
)
from longadapt.vocab.corpus import iter_documents, read_terms
from longadapt.vocab.metrics import (
    PROTOCOL,
    byte_fallback_share,
    chars_per_token,
    continued_share,
    effective_context,
    fertility,
    flagged_share,
    is_word,
    renyi_efficiency,
    renyi_entropy,
    share_longer,
    term_coverage,
    vocab_overlap,
    vocab_used_share,
    weighted_overlap,
)
from longadapt.vocab.report import write_outputs
from longadapt.vocab.tokenizer import (
    DEFAULT_PROBE,
    TokenizerHandle,
    canonical_token,
    case_accent_behaviour,
    detect_scheme,
    tokenizer_handle,
)

__all__ = [
    "word_counts",
    "DEFAULT_PROBE", "PROTOCOL", "TokenizerHandle", "VocabAnalysis", "VocabConfig", "analyze", "analyze_config",
    "byte_fallback_share", "canonical_token", "case_accent_behaviour", "chars_per_token", "continued_share",
    "count_words", "detect_scheme", "effective_context", "fertility", "flagged_share", "is_word", "iter_documents",
    "tokenizer_handle", "read_terms", "renyi_efficiency", "renyi_entropy", "scan_corpus", "segment_words",
    "share_longer", "term_coverage", "vocab_overlap", "vocab_used_share", "weighted_overlap", "write_outputs",
]
