"""Vocabulary arms (keep / replace / extend) on the real MiniLM checkpoint and the French corpus."""

from __future__ import annotations

import copy
import gzip
import json
import re

import pytest
import torch

from longadapt.errors import LongAdaptError
from longadapt.interop import import_checkpoint
from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
from longadapt.tokenizers.training import fertility, train_tokenizer
from longadapt.tokenizers import detect_scheme
from longadapt.recipes.vocab_transfer import (
    canonical_token,
    extend_vocabulary,
    piece_length_weights,
    replace_vocabulary,
    select_words,
    transfer_vocabulary,
    vector_similarity_weights,
)


@pytest.fixture(scope="module")
def fr_corpus(shared_data) -> list[str]:
    with gzip.open(shared_data / "corpora" / "fr.jsonl.gz", "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


@pytest.fixture(scope="module")
def fr_train(fr_corpus) -> list[str]:
    """Every 25th document (clinical cases and drug leaflets, about 1M characters)."""
    return fr_corpus[::25]


@pytest.fixture(scope="module")
def fr_small(fr_train) -> list[str]:
    return [doc[:3000] for doc in fr_train[:40]]


@pytest.fixture(scope="module")
def small_pair(fr_small):
    """A byte-level BPE (the old tokenizer) and a SentencePiece-style BPE (the new one), 1024 pieces each."""
    return train_tokenizer(fr_small, "fr", 1024, byte_level=True), train_tokenizer(fr_small, "fr", 1024)


@pytest.fixture(scope="module")
def fr_held_out(fr_corpus) -> list[str]:
    """16 documents outside the training sample, from both parts of the corpus."""
    return fr_corpus[12::25][::6][:16]


@pytest.fixture(scope="module")
def old_tok(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
    return import_checkpoint(minilm_dir).model.eval()


@pytest.fixture(scope="module")
def fr_tok(fr_train):
    return train_tokenizer(fr_train, "fr", 8000)


@pytest.fixture(scope="module")
def replaced(minilm, old_tok, fr_tok):
    return replace_vocabulary(copy.deepcopy(minilm), old_tok, fr_tok)


@pytest.fixture(scope="module")
def random_baseline(minilm, old_tok, fr_tok):
    """The same replacement with every non-special new row drawn at random."""
    return replace_vocabulary(copy.deepcopy(minilm), old_tok, fr_tok, init="random", seed=0)


def _emb(model) -> torch.Tensor:
    return model.model.embeddings.tok_embeddings.weight


def _tiny_model(vocab_size: int, pad: int = 0) -> LongAdaptForMaskedLM:
    torch.manual_seed(0)
    cfg = LongAdaptConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=128, local_attention=16, pad_token_id=pad,
    )
    model = LongAdaptForMaskedLM(cfg).eval()
    with torch.no_grad():
        model.decoder.bias.normal_()
    return model


# ---------------------------------------------------------------------------------------------------
# conventions


def test_canonical_token_for_each_scheme():
    assert canonical_token("▁patient", "metaspace") == "▁patient"
    assert canonical_token("ique", "metaspace") == "ique"
    assert canonical_token("<0xC3>", "metaspace") == "<0xC3>"
    assert canonical_token("Ġpatient", "byte_level") == "▁patient"
    assert canonical_token("ique", "byte_level") == "ique"
    assert canonical_token("ĠÃ©cho", "byte_level") == "▁écho"  # bytes decoded to text
    assert canonical_token("Ã", "byte_level") == "<0xC3>"  # half a character: a byte piece
    assert canonical_token("Ġ", "byte_level") == "▁"
    assert canonical_token("patient", "wordpiece") == "▁patient"
    assert canonical_token("##ique", "wordpiece") == "ique"
    assert canonical_token("##", "wordpiece") == "▁##"
    with pytest.raises(LongAdaptError, match="scheme"):
        canonical_token("x", "bytes")


def test_detect_scheme(old_tok, fr_tok, small_pair):
    assert detect_scheme(old_tok) == ("wordpiece", "##")
    assert detect_scheme(fr_tok) == ("metaspace", "")
    assert detect_scheme(small_pair[0]) == ("byte_level", "")
    # one detect_scheme for the whole package: the same answer from the tokenizer.json document, and an
    # error in strict mode (the vocabulary arms) for a tokenizer without a word-start marker
    assert detect_scheme(json.loads(fr_tok.backend_tokenizer.to_str())) == ("metaspace", "")
    from tokenizers import Tokenizer, models, pre_tokenizers

    plain = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    plain.pre_tokenizer = pre_tokenizers.Whitespace()
    assert detect_scheme(plain) == ("none", "")
    with pytest.raises(LongAdaptError, match="cannot tell how this tokenizer marks word starts"):
        detect_scheme(plain, strict=True)


# ---------------------------------------------------------------------------------------------------
# keep


def test_keep_changes_nothing(minilm, old_tok):
    before = _emb(minilm).detach().clone()
    result = transfer_vocabulary(minilm, old_tok, "keep")
    assert result.model is minilm and result.tokenizer is old_tok
    assert torch.equal(_emb(minilm), before)
    assert result.report.arm == "keep" and result.report.new_rows == result.report.old_rows == 30522


# ---------------------------------------------------------------------------------------------------
# replace


def test_replace_shapes_config_and_ties(replaced, fr_tok):
    model, report = replaced.model, replaced.report
    assert replaced.tokenizer is fr_tok
    n = len(fr_tok)
    assert n % 64 == 0 and report.new_rows == n and report.new_vocab_size == n
    assert _emb(model).shape == (n, 384)
    assert model.decoder.weight.shape == (n, 384) and model.decoder.bias.shape == (n,)
    assert model.decoder.weight is _emb(model)  # tied weights stay tied
    assert model.decoder.weight.data_ptr() == _emb(model).data_ptr()
    assert model.config.vocab_size == n
    assert (model.config.pad_token_id, model.config.cls_token_id, model.config.sep_token_id) == (0, 2, 3)
    assert model.model.embeddings.tok_embeddings.padding_idx == 0
    counts = (report.copied, report.mean_initialised, report.special, report.unmapped, report.reserved)
    assert sum(counts) == n
    assert report.copied > 500 and report.mean_initialised > 1000 and report.special == 5
    assert report.unmapped < 0.1 * n
    assert json.dumps(report.to_dict())  # JSON-ready summary


def test_replace_copies_rows_of_shared_tokens(replaced, minilm, old_tok, fr_tok):
    old_e, old_b = _emb(minilm), minilm.decoder.bias
    new_e, new_b = _emb(replaced.model), replaced.model.decoder.bias
    new_v, old_v = fr_tok.get_vocab(), old_tok.get_vocab()
    for new_token, old_token in [("▁patient", "patient"), ("▁de", "de"), ("▁diagnostic", "diagnostic"), ("ique", "##ique")]:
        i, j = new_v[new_token], old_v[old_token]
        assert replaced.report.sources[i] == "copy" and replaced.report.copied_from[i] == j
        assert torch.equal(new_e[i], old_e[j])
        assert torch.equal(new_b[i], old_b[j])  # the decoder bias follows
    old_tokens = {i: t for t, i in old_v.items()}
    new_tokens = {i: t for t, i in new_v.items()}
    for i, kind in enumerate(replaced.report.sources):
        if kind == "copy":
            j = replaced.report.copied_from[i]
            assert canonical_token(new_tokens[i], "metaspace") == canonical_token(old_tokens[j], "wordpiece")
            assert torch.equal(new_e[i], old_e[j]) and torch.equal(new_b[i], old_b[j])
    for role in ("cls", "sep", "pad", "mask", "unk"):
        i, j = getattr(fr_tok, f"{role}_token_id"), getattr(old_tok, f"{role}_token_id")
        assert replaced.report.sources[i] == "special"
        assert torch.equal(new_e[i], old_e[j]) and torch.equal(new_b[i], old_b[j])


def test_replace_mean_rows_equal_hand_computed_mean(replaced, minilm, old_tok, fr_tok):
    old_e, old_b = _emb(minilm), minilm.decoder.bias
    new_e, new_b = _emb(replaced.model), replaced.model.decoder.bias
    id_to_token = {i: t for t, i in fr_tok.get_vocab().items()}
    starts = conts = 0
    for i, kind in enumerate(replaced.report.sources):
        token = id_to_token.get(i, "")
        if kind != "mean" or not re.fullmatch(r"▁?[^\W\d_]{4,}", token):
            continue
        if token.startswith("▁"):
            # a word start: the old tokenizer's pieces for the word, tokenised on its own
            pieces = old_tok(token[1:], add_special_tokens=False)["input_ids"]
            starts += 1
        else:
            # a continuation: "##" pieces that spell the (lower-cased, accent-stripped) text
            pieces = replaced.report.pieces[i]
            spelled = "".join(t[2:] if t.startswith("##") else "<start>" for t in old_tok.convert_ids_to_tokens(pieces))
            assert spelled == old_tok.backend_tokenizer.normalizer.normalize_str(token), token
            conts += 1
        assert replaced.report.pieces[i] == pieces, token
        torch.testing.assert_close(new_e[i], old_e[pieces].mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(new_b[i], old_b[pieces].mean(0), rtol=1e-5, atol=1e-6)
        if starts >= 20 and conts >= 20:
            break
    assert starts >= 20 and conts >= 20


def test_unmapped_and_random_rows(replaced, random_baseline, minilm, old_tok, fr_tok):
    old_e = _emb(minilm)
    normal = [i for i in range(len(old_tok)) if i not in set(old_tok.all_special_ids)]
    i = fr_tok.convert_tokens_to_ids("<0xC3>")  # a lone byte >= 0x80: nothing in WordPiece covers it
    assert replaced.report.sources[i] == "unmapped"
    torch.testing.assert_close(_emb(replaced.model)[i], old_e[normal].mean(0))
    torch.testing.assert_close(replaced.model.decoder.bias[i], minilm.decoder.bias[normal].mean())
    baseline = random_baseline.report
    assert baseline.random > 7000 and baseline.copied == 0 and baseline.special == 5
    i = fr_tok.cls_token_id
    assert torch.equal(_emb(random_baseline.model)[i], old_e[old_tok.cls_token_id])


def test_similarity_weights(minilm, old_tok, fr_tok):
    result = replace_vocabulary(copy.deepcopy(minilm), old_tok, fr_tok, similarity_weights=piece_length_weights)
    old_e = _emb(minilm)
    i = fr_tok.convert_tokens_to_ids("▁patiente")
    pieces = result.report.pieces[i]
    assert old_tok.convert_ids_to_tokens(pieces) == ["patient", "##e"]
    expected = (7 * old_e[pieces[0]] + 1 * old_e[pieces[1]]) / 8
    torch.testing.assert_close(_emb(result.model)[i], expected, rtol=1e-5, atol=1e-6)
    assert result.report.similarity == "piece_length_weights"

    vectors = {"patiente": torch.tensor([1.0, 0.0]), "patient": torch.tensor([1.0, 0.0]), "e": torch.tensor([0.0, 1.0])}
    weights = vector_similarity_weights(vectors.get, temperature=0.5)
    w = weights("patiente", pieces, ["patient", "e"])
    expected_w = torch.softmax(torch.tensor([1.0, 0.0]) / 0.5, 0)
    assert torch.allclose(torch.tensor(w), expected_w)
    assert weights("inconnu", pieces, ["patient", "e"]) == [1.0, 1.0]
    with pytest.raises(LongAdaptError, match="one finite weight"):
        replace_vocabulary(copy.deepcopy(minilm), old_tok, fr_tok, similarity_weights=lambda t, ids, p: [-1.0] * len(ids))


def test_french_fertility_replace_lower_than_keep(fr_tok, old_tok, fr_held_out):
    assert fertility(fr_tok, fr_held_out) < fertility(old_tok, fr_held_out)


def _masked_batch(tok, texts: list[str], seed: int = 1, length: int = 96):
    enc = tok(texts, truncation=True, max_length=length, padding="max_length", return_tensors="pt")
    ids, labels = enc["input_ids"].clone(), enc["input_ids"].clone()
    g = torch.Generator().manual_seed(seed)
    special = torch.isin(ids, torch.tensor(tok.all_special_ids))
    mask = (torch.rand(ids.shape, generator=g) < 0.15) & ~special & (enc["attention_mask"] == 1)
    labels[~mask] = -100
    ids[mask] = tok.mask_token_id
    return ids, enc["attention_mask"], labels


def test_transfer_lowers_mlm_loss(replaced, random_baseline, minilm, old_tok, fr_tok, fr_held_out):
    """The replace arm with transferred rows learns French MLM faster than the same model with the new
    rows drawn at random. The MiniLM package has no MLM head (import_checkpoint initialises one), so
    a first-step loss would only compare two random heads: both models instead take the same 12
    optimisation steps on the same French batches, then are scored on held-out French text."""
    train_texts = fr_held_out[: len(fr_held_out) // 2]
    test_texts = fr_held_out[len(fr_held_out) // 2 :]
    losses = {}
    for name, source in (("transfer", replaced.model), ("random", random_baseline.model)):
        model = copy.deepcopy(source).train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        torch.manual_seed(0)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
        for step in range(12):
            ids, mask, labels = _masked_batch(fr_tok, train_texts, seed=100 + step)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        ids, mask, labels = _masked_batch(fr_tok, test_texts, seed=1)
        with torch.no_grad():
            losses[name] = model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    assert losses["transfer"] < losses["random"] - 0.1, losses
    random_init = random_baseline.model.eval()
    transferred = replaced.model.eval()

    # and the transferred model reads French much as the original read it through its own tokenizer
    def pooled(model, tok, texts):
        enc = tok(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            h = model.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    sentences = ["Le patient présente une douleur thoracique.", "La patiente est traitée par chimiothérapie.",
                 "Une échographie abdominale est normale.", "Le traitement est poursuivi pendant six mois."]
    reference = pooled(minilm, old_tok, sentences)
    cos_transfer = (pooled(transferred, fr_tok, sentences) * reference).sum(-1)
    cos_random = (pooled(random_init, fr_tok, sentences) * reference).sum(-1)
    assert cos_transfer.mean() > cos_random.mean() + 0.2, (cos_transfer, cos_random)


def test_replace_between_bpe_schemes(small_pair):
    """Byte-level old tokenizer -> SentencePiece-style new one: shared words are copied across schemes."""
    old, new = small_pair
    model = _tiny_model(len(old))
    old_e, old_b = _emb(model).detach().clone(), model.decoder.bias.detach().clone()
    result = replace_vocabulary(model, old, new)
    i, j = new.convert_tokens_to_ids("▁patient"), old.convert_tokens_to_ids("Ġpatient")
    assert result.report.sources[i] == "copy"
    assert torch.equal(_emb(result.model)[i], old_e[j]) and torch.equal(result.model.decoder.bias[i], old_b[j])
    k = new.convert_tokens_to_ids("<0xC3>")  # a lone byte: the byte-level symbol "Ã"
    assert result.report.sources[k] == "copy"
    assert torch.equal(_emb(result.model)[k], old_e[old.convert_tokens_to_ids("Ã")])
    assert result.report.unmapped < 0.05 * len(new)
    batch = new("Le patient va bien.", return_tensors="pt")
    logits = result.model(**batch).logits
    assert logits.shape[-1] == len(new)


def test_transferred_model_and_tokenizer_save_and_reload(small_pair, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    old, new = small_pair
    result = replace_vocabulary(_tiny_model(len(old)), old, new)
    result.model.save_pretrained(tmp_path)
    result.tokenizer.save_pretrained(tmp_path)
    model, tok = AutoModelForMaskedLM.from_pretrained(tmp_path).eval(), AutoTokenizer.from_pretrained(tmp_path)
    assert model.config.vocab_size == len(tok) and model.decoder.weight is _emb(model)
    batch = tok("Le patient va bien.", return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, result.model(**batch).logits)


def test_replace_with_an_untied_decoder(small_pair):
    old, new = small_pair
    torch.manual_seed(0)
    cfg = LongAdaptConfig(
        vocab_size=len(old), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
        max_position_embeddings=64, local_attention=16, tie_word_embeddings=False,
    )
    model = LongAdaptForMaskedLM(cfg)
    assert model.decoder.weight is not _emb(model)
    old_e, old_d = _emb(model).detach().clone(), model.decoder.weight.detach().clone()
    result = replace_vocabulary(model, old, new)
    i = next(k for k, kind in enumerate(result.report.sources) if kind == "mean" and len(result.report.pieces[k]) > 1)
    pieces = result.report.pieces[i]
    torch.testing.assert_close(_emb(result.model)[i], old_e[pieces].mean(0))
    torch.testing.assert_close(result.model.decoder.weight[i], old_d[pieces].mean(0))
    assert result.model.decoder.weight is not _emb(result.model)


# ---------------------------------------------------------------------------------------------------
# extend


WORD = "échocardiographie"


@pytest.fixture(scope="module")
def extended(minilm, old_tok, fr_train):
    words = select_words([doc[:4000] for doc in fr_train], "fr", old_tok, min_frequency=10, min_pieces=3, max_words=300)
    return extend_vocabulary(copy.deepcopy(minilm), old_tok, [WORD, *words]), words


def test_select_words_are_frequent_whole_words(extended, old_tok):
    _, words = extended
    assert 50 <= len(words) <= 300
    for w in words:
        assert w.isalpha() and len(w) >= 4 and w == w.lower()  # normalised as the uncased model does
        assert len(old_tok(w, add_special_tokens=False)["input_ids"]) >= 3


def test_extend_adds_whole_words_never_sub_words(extended, old_tok, fr_held_out):
    result, words = extended
    tok, report = result.tokenizer, result.report
    added = {tok.convert_tokens_to_ids(w) for w in report.added_words}
    assert len(added) == len(report.added_words) and min(added) >= len(old_tok)
    assert "echocardiographie" in report.added_words  # written in the uncased model's normal form
    wid = tok.convert_tokens_to_ids("echocardiographie")
    assert tok(WORD, add_special_tokens=False)["input_ids"] == [wid]
    assert wid in tok("Une échocardiographie normale.")["input_ids"]
    for longer in ["échocardiographiques", "échocardiographies", "pseudoéchocardiographie"]:
        assert wid not in tok(longer)["input_ids"], longer
    # on real text, every added token covers a whole word: letters on neither side
    text = " ".join(fr_held_out)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    seen = 0
    for token_id, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
        if token_id in added:
            seen += 1
            assert not (start > 0 and text[start - 1].isalpha()) and not (end < len(text) and text[end].isalpha())
    assert seen > 20
    # and the old vocabulary still segments everything else the same way
    assert tok.tokenize("la patiente présente une toux") == old_tok.tokenize("la patiente présente une toux")


def test_extend_rows(extended, minilm, old_tok):
    result, _ = extended
    model, tok, report = result.model, result.tokenizer, result.report
    n_old = len(old_tok)
    assert report.new_rows % 64 == 0 and report.new_rows >= len(tok) == n_old + len(report.added_words)
    assert _emb(model).shape[0] == report.new_rows == model.config.vocab_size
    assert model.decoder.weight is _emb(model)
    assert torch.equal(_emb(model)[:n_old], _emb(minilm))
    assert torch.equal(model.decoder.bias[:n_old], minilm.decoder.bias)
    wid = tok.convert_tokens_to_ids("echocardiographie")
    pieces = old_tok(WORD, add_special_tokens=False)["input_ids"]
    assert old_tok.convert_ids_to_tokens(pieces) == ["echo", "##card", "##io", "##graph", "##ie"]
    assert report.sources[wid] == "mean"
    torch.testing.assert_close(_emb(model)[wid], _emb(minilm)[pieces].mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.decoder.bias[wid], minilm.decoder.bias[pieces].mean(0), rtol=1e-5, atol=1e-6)
    assert report.kept == n_old and report.mean_initialised == len(report.added_words)
    assert report.kept + report.mean_initialised + report.reserved == report.new_rows
    out = model(**tok("Une échocardiographie normale.", return_tensors="pt"))
    assert out.logits.shape[-1] == report.new_rows


def test_extended_tokenizer_saves_and_reloads(extended, tmp_path):
    from transformers import AutoTokenizer

    result, _ = extended
    result.tokenizer.save_pretrained(tmp_path / "tok")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tok")
    wid = loaded.convert_tokens_to_ids("echocardiographie")
    assert loaded(WORD, add_special_tokens=False)["input_ids"] == [wid]
    assert wid not in loaded("échocardiographies")["input_ids"]


@pytest.mark.parametrize("byte_level", [True, False])
def test_extend_bpe_tokenizers_with_whole_word_entries(small_pair, byte_level):
    old = small_pair[0] if byte_level else small_pair[1]
    model = _tiny_model(len(old))
    old_e = _emb(model).detach().clone()
    result = extend_vocabulary(model, old, [WORD, "cardiologie", "hospitalisation"])
    tok = result.tokenizer
    wid = tok.convert_tokens_to_ids(("Ġ" + "Ã©chocardiographie") if byte_level else ("▁" + WORD))
    assert wid is not None and wid >= len(old)
    text = "Une échocardiographie normale.\nÉchocardiographies : échocardiographie"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids.count(wid) == 2  # not inside "Échocardiographies"
    assert tok.decode(ids) == text
    assert tok(f" {WORD}s", add_special_tokens=False)["input_ids"].count(wid) == 0
    pieces = old(" " + WORD if byte_level else WORD, add_special_tokens=False)["input_ids"]
    torch.testing.assert_close(_emb(result.model)[wid], old_e[pieces].mean(0), rtol=1e-5, atol=1e-6)
    # other text is segmented as before
    plain = "Le patient présente une toux sèche depuis 3 jours."
    assert tok(plain)["input_ids"] == old(plain)["input_ids"]


# ---------------------------------------------------------------------------------------------------
# errors


def test_user_errors(minilm, old_tok, fr_tok):
    with pytest.raises(LongAdaptError, match="unknown vocabulary arm"):
        transfer_vocabulary(minilm, old_tok, "translate")
    with pytest.raises(LongAdaptError, match="needs new_tokenizer"):
        transfer_vocabulary(minilm, old_tok, "replace")
    with pytest.raises(LongAdaptError, match="tokenizer /nonexistent/tokenizer: no such file or directory"):
        transfer_vocabulary(minilm, old_tok, "replace", new_tokenizer="/nonexistent/tokenizer")
    with pytest.raises(LongAdaptError, match="words="):
        transfer_vocabulary(minilm, old_tok, "extend")
    with pytest.raises(LongAdaptError, match="single words"):
        extend_vocabulary(minilm, old_tok, ["deux mots"])
    with pytest.raises(LongAdaptError, match="embedding rows"):
        replace_vocabulary(_tiny_model(100), old_tok, fr_tok)
    with pytest.raises(LongAdaptError, match="init"):
        replace_vocabulary(minilm, old_tok, fr_tok, init="zeros")
