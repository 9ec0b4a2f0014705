"""Tokenizer training (longadapt.tokenizers.training) on a sample of the real French corpus."""

from __future__ import annotations

import gzip
import itertools
import json
import time
import unicodedata

import pytest
import torch

from longadapt.errors import LongAdaptError
from longadapt.tokenizers.training import (
    BYTE_TOKENS,
    SPECIAL_TOKENS,
    TRAINING_INFO,
    TokenizerTrainingConfig,
    fertility,
    split_sentences,
    train_tokenizer,
)
from longadapt.tokenizers import load_tokenizer

CLINICAL = (
    "Patiente de 72 ans, poids 64,5 kg, surface corporelle 1,73 m². Traitement : 2,5 µg/kg/min, "
    "PAS ≥ 140 mmHg, ½ comprimé matin et soir, T° 38,5 °C → apyrexie à J3.\n"
    "Échocardiographie transthoracique : FEVG à 55 % ; « pas d’épanchement ».\n\n"
    "Conclusion: amélioration clinique."
)
SYMBOLS = ["µg", "m²", "≥", "½", "°C", "→", "«", "’"]


def _docs(shared_data, n: int, skip: int = 0) -> list[str]:
    out = []
    with gzip.open(shared_data / "corpora" / "fr.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in itertools.islice(fh, skip, skip + n):
            out.append(json.loads(line)["text"])
    return out


@pytest.fixture(scope="module")
def fr_docs(shared_data) -> list[str]:
    return _docs(shared_data, 120)


@pytest.fixture(scope="module")
def bpe(fr_docs):
    start = time.process_time()
    tok = train_tokenizer(fr_docs, "fr", 3000)
    tok.cpu_seconds = time.process_time() - start
    return tok


@pytest.fixture(scope="module")
def variants(fr_docs, bpe):
    """The three kinds: byte-fallback BPE, byte-fallback Unigram, byte-level BPE."""
    return {
        "bpe": bpe,
        "unigram": train_tokenizer(fr_docs[:60], "fr", 1500, model="unigram"),
        "byte_level": train_tokenizer(fr_docs[:60], "fr", 1500, byte_level=True),
    }


def test_training_on_real_french_sample_is_fast(bpe, fr_docs):
    info = bpe.training_info
    assert info["corpus"]["documents"] == len(fr_docs)
    assert info["corpus"]["sentences"] > 2 * len(fr_docs)  # trained on sentences, not documents
    assert info["pieces"]["byte"] == 256 and info["pieces"]["reserved"] == 0
    assert bpe.cpu_seconds < 20, f"training took {bpe.cpu_seconds:.1f} CPU seconds"


@pytest.mark.parametrize("kind", ["bpe", "unigram", "byte_level"])
def test_no_unknown_piece_on_clinical_symbols(variants, kind):
    tok = variants[kind]
    ids = tok(CLINICAL, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    for symbol in SYMBOLS:
        assert tok.unk_token_id not in tok(symbol, add_special_tokens=False)["input_ids"], symbol


@pytest.mark.parametrize("kind", ["bpe", "unigram", "byte_level"])
def test_decode_encode_round_trips_french_clinical_text(variants, kind, fr_docs):
    tok = variants[kind]
    held_out = [CLINICAL, "Suite :\nle patient\tsort à J+2.", *fr_docs[-3:]]
    for text in held_out:
        text = unicodedata.normalize("NFC", text).strip()
        ids = tok(text)["input_ids"]
        assert tok.decode(ids, skip_special_tokens=True) == text


def test_unseen_characters_fall_back_to_bytes(bpe):
    text = "dose 5 mg ✓ 🩺"
    tokens = bpe.tokenize(text)
    assert "<0xF0>" in tokens  # the stethoscope emoji is written as its 4 UTF-8 bytes
    assert bpe.decode(bpe(text)["input_ids"], skip_special_tokens=True) == text


@pytest.mark.parametrize("kind", ["bpe", "unigram", "byte_level"])
def test_vocab_size_is_a_multiple_of_64(variants, kind):
    tok = variants[kind]
    assert len(tok) % 64 == 0
    assert len(tok) == len(tok.get_vocab())


def test_short_corpus_is_padded_with_reserved_pieces_never_produced():
    tok = train_tokenizer(["Le patient va bien. La patiente aussi.", "Fièvre à 39 °C."], "fr", 1000, sentences="lines")
    assert len(tok) == 1024
    assert tok.training_info["pieces"]["reserved"] > 0
    reserved = {i for t, i in tok.get_vocab().items() if t.startswith("[unused")}
    assert reserved and max(reserved) == 1023
    for text in ["[unused0] [unused12]", "x[unused3]y", CLINICAL]:
        assert not reserved & set(tok(text)["input_ids"])


@pytest.mark.parametrize("kind", ["bpe", "unigram", "byte_level"])
def test_digits_are_split_individually(variants, kind):
    tok = variants[kind]
    text = "Le 12/03/2024 à 14h30, 1250 mg puis 37,5 °C ; 100000 UI."
    digit_counts = [sum(ch.isdigit() for ch in t) for t in tok.tokenize(text)]
    assert max(digit_counts) == 1
    assert sum(digit_counts) == sum(ch.isdigit() for ch in text) == 25


def test_nfc_normalisation_keeps_clinical_symbols(bpe):
    nfd = unicodedata.normalize("NFD", "échographie sévère")
    nfc = unicodedata.normalize("NFC", nfd)
    assert bpe(nfd)["input_ids"] == bpe(nfc)["input_ids"]
    decoded = bpe.decode(bpe("1,73 m² ; 2 µg ; ½")["input_ids"], skip_special_tokens=True)
    assert decoded == "1,73 m² ; 2 µg ; ½"  # NFKC would give "m2", "μg" and "1⁄2"
    with pytest.raises(LongAdaptError, match="NFKC"):
        train_tokenizer(["un texte"], "fr", 1000, normalization="NFKC")


def test_bert_style_special_tokens_post_processor_and_word_ids(bpe):
    assert [bpe.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (bpe.pad_token_id, bpe.unk_token_id, bpe.cls_token_id, bpe.sep_token_id, bpe.mask_token_id) == (0, 1, 2, 3, 4)
    assert bpe.convert_tokens_to_ids(BYTE_TOKENS[0]) == 5 and bpe.convert_tokens_to_ids(BYTE_TOKENS[-1]) == 260
    enc = bpe("Le patient tousse.")
    assert enc["input_ids"][0] == bpe.cls_token_id and enc["input_ids"][-1] == bpe.sep_token_id
    words = enc.word_ids()
    assert words[0] is None and words[-1] is None
    assert sorted(set(w for w in words if w is not None)) == [0, 1, 2, 3]  # Le / patient / tousse / .
    pair = bpe("Question ?", "Réponse.", return_token_type_ids=True)
    assert pair["input_ids"].count(bpe.sep_token_id) == 2
    assert set(pair["token_type_ids"]) == {0, 1}


def test_works_with_the_mlm_collator(bpe, fr_docs):
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer=bpe, mlm_probability=0.3, seed=0)
    features = [bpe(text, truncation=True, max_length=64) for text in fr_docs[:4]]
    batch = collator([{"input_ids": f["input_ids"]} for f in features])
    assert batch["input_ids"].shape == batch["labels"].shape
    assert (batch["input_ids"] == bpe.mask_token_id).any()
    masked = batch["labels"] != -100
    assert masked.any()
    specials = torch.isin(batch["input_ids"], torch.tensor([bpe.cls_token_id, bpe.sep_token_id, bpe.pad_token_id]))
    assert not (masked & specials).any()


def test_saved_directory_loads_with_autotokenizer(fr_docs, tmp_path):
    from transformers import AutoTokenizer

    out = tmp_path / "tok"
    tok = train_tokenizer(fr_docs[:40], "fr", 1000, model_max_length=4096, out_dir=out)
    assert (out / "tokenizer.json").is_file()
    info = json.loads((out / TRAINING_INFO).read_text())
    assert info["vocab_size"] == 1024 and info["normalization"] == "NFC" and info["scheme"] == "metaspace"
    loaded = AutoTokenizer.from_pretrained(out)
    assert loaded.model_max_length == 4096
    assert loaded(CLINICAL)["input_ids"] == tok(CLINICAL)["input_ids"]
    assert loaded.decode(loaded(CLINICAL)["input_ids"], skip_special_tokens=True) == CLINICAL
    assert load_tokenizer(out)(CLINICAL)["input_ids"] == tok(CLINICAL)["input_ids"]


def test_corpus_file_is_read_and_split_into_sentences(shared_data):
    tok = train_tokenizer(shared_data / "corpora" / "fr.jsonl.gz", "fr", 1000, max_documents=20, sentences="lines")
    assert tok.training_info["corpus"]["documents"] == 20
    long_doc = ("Le patient va bien. " * 400) + "\n" + "x" * 5000
    sentences = list(split_sentences([long_doc], "fr", mode="rule", max_chars=300))
    assert len(sentences) > 400
    assert all(len(s) <= 300 and "\n" not in s for s in sentences)


def test_fertility_on_held_out_text(bpe, shared_data):
    held_out = _docs(shared_data, 5, skip=2200)
    assert 1.0 <= fertility(bpe, held_out) < 4.0


def test_user_errors():
    with pytest.raises(LongAdaptError, match="empty"):
        train_tokenizer(["", "   "], "fr", 1000)
    with pytest.raises(LongAdaptError, match="unknown; use one of bpe, unigram, wordpiece"):
        train_tokenizer(["texte"], "fr", 1000, model="sentencepiece")
    with pytest.raises(LongAdaptError, match="WordPiece model has no byte fallback: pass byte_fallback=False"):
        train_tokenizer(["texte"], "fr", 1000, model="wordpiece")
    with pytest.raises(LongAdaptError, match="unknown_token=False needs model='bpe'"):
        train_tokenizer(["texte"], "fr", 1000, model="unigram", unknown_token=False)
    with pytest.raises(LongAdaptError, match="pass sentences='lines'"):
        train_tokenizer(["texte"], None, 1000)
    with pytest.raises(LongAdaptError, match="when_short='pad' is unknown; use one of reserve, shrink"):
        train_tokenizer(["texte"], "fr", 1000, when_short="pad")
    with pytest.raises(LongAdaptError, match="byte_fallback"):
        train_tokenizer(["texte"], "fr", 1000, byte_fallback=False)
    with pytest.raises(LongAdaptError, match="byte_level=True needs"):
        train_tokenizer(["texte"], "fr", 1000, model="unigram", byte_level=True)
    with pytest.raises(LongAdaptError, match="unknown tokenizer option"):
        train_tokenizer(["texte"], "fr", 1000, vocabulary=5)
    with pytest.raises(LongAdaptError, match="too small"):
        train_tokenizer(["texte"], "fr", 100)
    with pytest.raises(LongAdaptError, match="corpus.jsonl.gz does not exist"):
        train_tokenizer("/nonexistent/corpus.jsonl.gz", "fr", 1000)
    with pytest.raises(LongAdaptError, match="unknown language"):
        train_tokenizer(["texte"], "xx", 1000)
    with pytest.raises(LongAdaptError, match="no such file or directory"):
        load_tokenizer("/nonexistent/tokenizer")
    assert TokenizerTrainingConfig().vocab_size % 64 == 0


def test_wordpiece_is_bert_style_and_says_that_unseen_characters_are_unknown(fr_docs, tmp_path):
    from longadapt.tokenizers import detect_scheme

    wp = train_tokenizer(fr_docs[:60], "fr", 1500, model="wordpiece", byte_fallback=False, out_dir=tmp_path / "wp")
    assert len(wp) == 1536 and len(wp) % 64 == 0
    assert detect_scheme(wp) == ("wordpiece", "##")
    assert [wp.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert wp.unk_token_id == 1
    pieces = wp.tokenize("hospitalisation 37,5")
    assert pieces[0] != "[UNK]" and all(p.startswith("##") for p in pieces[1:pieces.index("3")])
    assert pieces[-4:] == ["3", "7", ",", "5"]  # digits one by one, punctuation a word of its own
    assert wp.tokenize("Ω") == ["[UNK]"]  # never seen: no byte fallback in WordPiece
    info = json.loads((tmp_path / "wp" / TRAINING_INFO).read_text())
    assert info["scheme"] == "wordpiece" and "[UNK]" in info["unknown"]
    enc = wp("Le patient tousse.")
    assert enc["input_ids"][0] == wp.cls_token_id and enc["input_ids"][-1] == wp.sep_token_id


def test_shrink_trains_again_at_the_size_the_text_supports_and_reserve_pads(fr_docs):
    small = fr_docs[:2]
    reserved = train_tokenizer(small, "fr", 8192)
    assert len(reserved) == 8192 and reserved.training_info["pieces"]["reserved"] > 0
    shrunk = train_tokenizer(small, "fr", 8192, when_short="shrink")
    learned = reserved.training_info["pieces"]["learned"]
    assert len(shrunk) % 64 == 0 and len(shrunk) <= 5 + 256 + learned < len(shrunk) + 64
    assert shrunk.training_info["pieces"]["reserved"] < 64
