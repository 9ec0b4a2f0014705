"""The analysis on the real corpora of ../shared/data (samples of documents, to stay fast)."""

from __future__ import annotations

import itertools
from collections import Counter

from longadapt.languages import load_language
from longadapt.vocab import analyze, count_words, iter_documents


def test_minilm_french_fertility_is_higher_than_english(shared_data, minilm_dir):
    corpora = shared_data / "corpora"
    res = analyze("fr,en", [corpora / "fr.jsonl.gz", corpora / "en.jsonl.gz"], [f"minilm={minilm_dir}"],
                  max_docs=120, progress=False)
    fr, en = res.row("fr", "minilm"), res.row("en", "minilm")
    assert fr["docs"] == 120 and en["docs"] == 120
    assert fr["words"] > 20_000 and en["words"] > 10_000
    # an English uncased WordPiece splits French words far more than English ones
    assert fr["fertility"] > en["fertility"] + 0.3
    assert 1.0 < en["fertility"] < fr["fertility"] < 3.0
    assert fr["continued_words"] > en["continued_words"]
    assert fr["chars_per_token"] < en["chars_per_token"]
    # the corpus fingerprint is recorded
    assert len(res.corpora[0]["sha256"]) == 64
    tok = res.tokenizers[0]
    assert tok["lowercases"] and tok["strips_accents"]


def test_chunked_word_counts_equal_whole_text_spacy(shared_data):
    """The speed-up (spaCy on distinct whitespace chunks, weighted) gives exactly the counts of
    running spaCy's tokenizer over whole documents."""
    pack = load_language("fr")
    docs = list(itertools.islice(iter_documents(shared_data / "corpora" / "fr.jsonl.gz"), 40))
    nlp = pack.word_tokenizer()
    whole = Counter(t.text for d in nlp.tokenizer.pipe(docs) for t in d if not t.is_space)
    chunks = Counter(w for d in docs for w in d.split())
    chunked = count_words(chunks, pack)
    assert sum(whole.values()) > 5_000
    assert chunked == whole
