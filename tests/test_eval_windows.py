"""Long documents, fairly: windows cover every token, each word gets exactly one prediction."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from longadapt.evaluation import entities as E
from longadapt.evaluation import windows as W
from longadapt.evaluation.testing import tiny_bert, tiny_roberta
from longadapt.tokenizers import ensure_prefix_space, load_tokenizer

SINGLE = "the patient had a fever and cough for three days with pain in the left leg after surgery".split()
MULTI = "échocardiographie thoracique insulinodépendant douleur".split()


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: oversubscribed threads are slower than one
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, minilm_dir: Path) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("tiny") / "model", minilm_dir, max_position_embeddings=128)


def _doc_of_tokens(tok, n_tokens: int, vocab: list[str]) -> list[str]:
    words: list[str] = []
    n = 0
    i = 0
    while True:
        w = vocab[i % len(vocab)]
        k = len(tok.tokenize(w))
        if n + k > n_tokens:
            break
        words.append(w)
        n += k
        i += 1
    while n < n_tokens:  # fill with single-piece words
        words.append("the")
        n += 1
    return words


def test_window_spans() -> None:
    spans = W.window_spans(1000, 126, 63)
    assert spans[0] == (0, 126) and spans[-1] == (874, 1000)
    assert all(e - s == 126 for s, e in spans)
    assert [s for s, _ in spans[:-1]] == list(range(0, 63 * len(spans[:-1]), 63))
    covered = np.zeros(1000, dtype=int)
    for s, e in spans:
        covered[s:e] += 1
    assert covered.min() >= 1 and covered.max() <= 3
    assert W.window_spans(100, 126, 63) == [(0, 100)]
    assert W.window_spans(126, 126, 63) == [(0, 126)]


def test_each_word_gets_exactly_one_prediction_with_128_token_windows(tiny_dir: Path) -> None:
    """Acceptance: a model limited to 128 tokens on 1,000-token documents."""
    tok = load_tokenizer(str(tiny_dir), for_words=True)
    assert W.model_max_length(tok, None) == 128
    prefix, suffix = W.special_tokens(tok)
    assert (len(prefix), len(suffix)) == (1, 1)
    docs = [_doc_of_tokens(tok, 1000, SINGLE), _doc_of_tokens(tok, 1000, SINGLE + MULTI), SINGLE]
    enc = W.encode_words(tok, docs)
    assert [len(e) for e in enc] == [1000, 1000, len(SINGLE)]
    wins = W.make_windows(enc, 128, prefix, suffix)
    assert all(len(w.input_ids) <= 128 for w in wins)
    groups = W.group_by_sequence(wins)
    assert len(groups[0]) > 1 and len(groups[2]) == 1
    for s, doc in enumerate(docs):
        ks = groups[s]
        # window k predicts "class k" everywhere: the merged class names the window a token was taken from
        fake = [np.tile(np.eye(len(wins), dtype=np.float32)[k], (len(wins[k].input_ids), 1)) for k in ks]
        tok_logits, source = W.merge_token_logits(len(enc[s]), [wins[k] for k in ks], fake, "max_context")
        word_lg, has = W.word_logits(tok_logits, enc[s].word_ids, len(doc))
        assert has.all() and word_lg.shape[0] == len(doc)
        assert np.allclose(word_lg.sum(1), 1.0)  # one window's one-hot per word: exactly one prediction
        for t in range(len(enc[s])):
            contexts = [min(t - wins[k].start, wins[k].end - 1 - t) if wins[k].start <= t < wins[k].end else -1
                        for k in ks]
            assert source[t] == int(np.argmax(contexts))  # the window where t has most context
            assert tok_logits[t].argmax() == ks[source[t]]
        avg, count = W.merge_token_logits(len(enc[s]), [wins[k] for k in ks], fake, "average")
        assert (count >= 1).all() and np.allclose(avg.sum(1), 1.0)
        assert np.allclose(avg.max(1), 1.0 / count)


@pytest.mark.parametrize("stride", [126, 63])  # training windows (end-aligned last one), and half-overlapping
def test_training_windows_label_every_word_exactly_once(tiny_dir: Path, stride: int) -> None:
    """Overlapping windows see a token as context again but never count its label twice, so a windowed
    model and a whole-document model train on the same labels."""
    tok = load_tokenizer(str(tiny_dir), for_words=True)
    prefix, suffix = W.special_tokens(tok)
    docs = [_doc_of_tokens(tok, 1000, SINGLE + MULTI), SINGLE]
    enc = W.encode_words(tok, docs)
    word_labels = [[1 + (i % 2) for i in range(len(d))] for d in docs]  # every word labelled, never 0
    wins = W.make_windows(enc, 128, prefix, suffix, stride=stride, word_labels=word_labels)
    groups = W.group_by_sequence(wins)
    assert len(groups[0]) > 1 and wins[groups[0][-1]].start < wins[groups[0][-2]].end  # windows overlap
    for s, doc in enumerate(docs):
        counts = np.zeros(len(doc), dtype=int)
        for k in groups[s]:
            win = wins[k]
            body = win.labels[len(prefix): len(win.labels) - len(suffix)]
            assert win.labels[: len(prefix)] == [-100] * len(prefix) and len(body) == win.end - win.start
            for t, lab in zip(range(win.start, win.end), body):
                if lab != -100:
                    w = enc[s].word_ids[t]
                    assert lab == word_labels[s][w] and enc[s].word_ids.index(w) == t  # on the first sub-token
                    counts[w] += 1
        assert (counts == 1).all()
    whole = W.make_windows(enc, 4096, prefix, suffix, word_labels=word_labels)
    assert sum(lab != -100 for w in whole for lab in w.labels) == sum(len(d) for d in docs)


def test_long_model_sees_the_whole_document(tiny_dir: Path) -> None:
    tok = load_tokenizer(str(tiny_dir), for_words=True)
    prefix, suffix = W.special_tokens(tok)
    enc = W.encode_words(tok, [_doc_of_tokens(tok, 1000, SINGLE + MULTI)])
    wins = W.make_windows(enc, 4096, prefix, suffix)
    assert len(wins) == 1 and wins[0].input_ids == prefix + enc[0].input_ids + suffix


def test_windowed_prediction_with_a_real_model(tiny_dir: Path, shared_data: Path) -> None:
    from accelerate import Accelerator
    from transformers import AutoModelForTokenClassification

    from longadapt.evaluation.data import TaggedSentence
    from longadapt.evaluation.adapters import TokenAdapter
    from longadapt.evaluation.batching import Runner as _Runner
    from longadapt.evaluation.tasks import load_task

    task = load_task("fr-e3c-ner-doc", data_root=shared_data)
    tok = load_tokenizer(str(tiny_dir), for_words=True)
    words = _doc_of_tokens(tok, 1000, SINGLE + MULTI)
    docs = [TaggedSentence("long", words, ["O"] * len(words)), TaggedSentence("short", SINGLE, ["O"] * len(SINGLE))]
    scheme = E.LayersScheme(["CLINENTITY"], {"CLINENTITY": 2})  # 2 layers x O/B/I
    adapter = TokenAdapter(task, tok, task.training(), 128, SimpleNamespace(scheme=scheme))
    model = AutoModelForTokenClassification.from_pretrained(tiny_dir, num_labels=adapter.n_layers * 3)
    out = adapter.predict(_Runner(Accelerator(cpu=True), model, 8), docs)
    assert [c.shape for c in out["classes"]] == [(len(words), scheme.n_layers), (len(SINGLE), scheme.n_layers)]
    assert all(s.all() for s in out["seen"])
    assert out["n_windows"][0] == len(W.window_spans(1000, 126, 63)) and out["n_windows"][1] == 1
    assert adapter.stats["words_without_subtoken"] == 0


def test_byte_level_tokenizer_gets_prefix_space(tmp_path: Path) -> None:
    texts = ["le patient présente une douleur thoracique et une fièvre"] * 20
    model_dir = tiny_roberta(tmp_path / "rob", texts)
    from transformers import AutoConfig, AutoTokenizer

    raw = AutoTokenizer.from_pretrained(model_dir)
    tok = load_tokenizer(str(model_dir), for_words=True)
    words = ["une", "douleur", "thoracique"]
    pieces = tok.convert_ids_to_tokens(W.encode_words(tok, [words])[0].input_ids)
    assert all(p.startswith("Ġ") for p in pieces if p != "Ġ")  # every word starts with a space
    raw_pieces = raw.convert_ids_to_tokens(raw(words, is_split_into_words=True, add_special_tokens=False)["input_ids"])
    assert pieces != raw_pieces  # without the fix the second word is cut as inside a word
    assert W.special_tokens(tok) == ([0], [2])
    assert W.model_max_length(tok, AutoConfig.from_pretrained(model_dir)) == 128  # 130 positions - (pad + 1)
    assert not ensure_prefix_space(tok)  # idempotent
