"""longadapt.tokenizers: every tokenizer idea in one place.

- :mod:`.conventions`: how tokenizers mark word starts (:func:`detect_scheme`, one for the whole
  package) and the canonical form of vocabulary entries across conventions (:func:`canonical_token`);
- :mod:`.loading`: :func:`load_tokenizer`, the one loader (directories, ``tokenizer.json`` files,
  installed model packages, hub ids, objects in memory);
- :mod:`.training`: :func:`train_tokenizer`, training a target-language tokenizer (BPE or Unigram with
  byte fallback, or byte-level BPE) for the continue and scratch strategies.

Names are imported on first use (see :mod:`longadapt._lazy`), so importing the package is cheap.
"""

from longadapt._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["SCHEMES", "SP_MARK", "byte_decoder", "canonical_token", "detect_scheme", "round_up",
                     "tokenizer_json"], "conventions"),
    **dict.fromkeys(["ensure_prefix_space", "load_tokenizer"], "loading"),
    **dict.fromkeys(["BYTE_TOKENS", "SPECIAL_TOKENS", "TokenizerTrainingConfig", "fertility",
                     "save_tokenizer", "split_sentences", "train_tokenizer"], "training"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
