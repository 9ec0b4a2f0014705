"""What the strategies share: the engine's defaults, the recipe's seed, and the corpus texts that shape
a vocabulary (never the documents the engine holds out for validation)."""

from __future__ import annotations

from typing import Any

from longadapt.config import ConfigSource, from_dict


def train_default(name: str) -> Any:
    """The training engine's default for a ``train:`` key the recipe did not set (defaults live only in
    :class:`~longadapt.training.config.TrainConfig`)."""
    import dataclasses

    from longadapt.training.config import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def recipe_seed(cfg) -> int:
    """The recipe's ``train.seed`` (the engine's default when unset): model initialisation, tokenizer
    sampling and calibration draw from it, so a resumed build is the same build."""
    return int(cfg.train.get("seed", train_default("seed")))


def default_validation_fraction() -> float:
    """The data pipeline's validation fraction (``data.validation_fraction: null`` keeps it), so that the
    held-out documents here are the ones the engine holds out."""
    import inspect

    from longadapt.data.pipeline import build_packed_dataset

    return float(inspect.signature(build_packed_dataset).parameters["validation_fraction"].default)


def corpus_texts(spec: dict[str, Any], language: str, max_documents: int | None,
                 train: dict[str, Any] | None = None) -> list[str]:
    """The first ``max_documents`` documents of the corpus (cleaned, de-duplicated) for tokenizer
    training, vocabulary extension and bias calibration. With ``train`` (the recipe's training
    options), the documents the engine will hold out for validation are left out, by the same rule
    (hash of the text, ``data.validation_fraction``, ``seed``, ``data.max_documents``,
    ``data.packing.min_validation_documents``): held-out text never shapes the vocabulary that is
    scored on it."""
    from longadapt.data import CorpusSpec, read_corpus
    from longadapt.training.resolve import resolve_corpus

    resolved = resolve_corpus(from_dict(CorpusSpec, spec, "corpus"), ConfigSource())
    if train is None:
        texts = []
        for doc in read_corpus(resolved, language=language):
            texts.append(doc.text)
            if max_documents and len(texts) >= max_documents:
                break
        return texts
    texts = _split_corpus(resolved, language, train)[0]
    return texts[:max_documents] if max_documents else texts


def held_out_texts(spec: dict[str, Any], language: str, train: dict[str, Any], max_documents: int) -> list[str]:
    """The first ``max_documents`` of the documents the engine holds out for validation (same rule as
    :func:`corpus_texts`): what the recipe's representation check reads."""
    from longadapt.data import CorpusSpec
    from longadapt.training.resolve import resolve_corpus

    resolved = resolve_corpus(from_dict(CorpusSpec, spec, "corpus"), ConfigSource())
    return _split_corpus(resolved, language, train)[1][:max_documents]


def _split_corpus(resolved: Any, language: str, train: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of the corpus, by the engine's rule."""
    from longadapt.data import read_corpus
    from longadapt.data.corpus import text_hash
    from longadapt.data.packing import PackingConfig
    from longadapt.data.split import validation_mask

    data = dict(train.get("data") or {})
    engine_docs = data.get("max_documents")
    docs = []
    for doc in read_corpus(resolved, language=language):
        docs.append(doc.text)
        if engine_docs and len(docs) >= engine_docs:
            break
    fraction = data.get("validation_fraction")
    packing = from_dict(PackingConfig, dict(data.get("packing") or {}), "train.data.packing")
    held_out = validation_mask(
        [text_hash(t) for t in docs], default_validation_fraction() if fraction is None else float(fraction),
        int(train.get("seed", train_default("seed"))),
        packing.min_validation_documents,
    )
    return [t for t, v in zip(docs, held_out) if not v], [t for t, v in zip(docs, held_out) if v]


def options_texts(options: dict[str, Any], cfg, corpus: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split a ``tokenizer:`` / ``extend:`` options dict into (the options without ``max_documents``,
    the training texts it asks for)."""
    opts = dict(options)
    max_docs = opts.pop("max_documents", None)
    return opts, corpus_texts(corpus, cfg.language, max_docs, cfg.train)


def calibrate_new_head(model: Any, tokenizer: Any, cfg: Any, corpus: dict[str, Any], options: dict[str, Any],
                       texts: list[str] | None = None, max_documents: int = 400) -> dict[str, Any]:
    """Fit the MLM decoder bias of ``model`` to ``tokenizer``'s token frequencies on the corpus's training
    documents (:func:`longadapt.recipes.calibration.calibrate_output_bias`; ``texts`` when the strategy has
    them already). For a head that the base model does not ship: at zero bias its first steps teach the
    unigram prior, and with the decoder tied to the embeddings they push every token's representation
    towards the frequent tokens' direction. Returns the calibration report."""
    from longadapt.recipes.calibration import calibrate_output_bias

    if not texts:
        texts = corpus_texts(corpus, cfg.language, max_documents, cfg.train)
    return calibrate_output_bias(model, tokenizer, texts, **{"seed": recipe_seed(cfg), **options}).to_dict()
