"""Packing: the algorithm, then build_packed_dataset on a sample of the real French corpus."""

from __future__ import annotations

import logging

import json
from collections import defaultdict

import numpy as np
import pytest

from longadapt.data import (
    CorpusSpec,
    PackingConfig,
    build_packed_dataset,
    data_fingerprint,
    encode_corpus,
    packing_stats,
)
from longadapt.data.encode import dense_word_ids, marker_word_ids
from longadapt.data.packing import chunk_document, cut_point, pack_pieces
from longadapt.errors import LongAdaptError

# ---------------------------------------------------------------------------------------------
# algorithm
# ---------------------------------------------------------------------------------------------


def test_cut_point_prefers_sentences_within_slack():
    sentences, words = [10, 50], list(range(1, 100, 3))
    assert cut_point(sentences, words, 0, 55, slack=8) == (50, "sentence")
    assert cut_point(sentences, words, 0, 70, slack=8) == (70, "word")  # 20 tokens lost at 50: cut a word start
    assert cut_point([], [], 0, 70, slack=8) == (70, "hard")
    assert cut_point([], [], 0, 70, slack=8, allow_hard=False) is None
    assert cut_point([], [80], 0, 70, slack=8, allow_hard=False) is None


def test_chunk_document_covers_the_document():
    rng = np.random.default_rng(0)
    words = sorted(set(rng.integers(1, 5000, 2000).tolist()))
    sentences = words[::17]
    cuts = {"sentence": 0, "word": 0, "hard": 0}
    chunks = chunk_document(5000, sentences, words, budget=510, slack=10, cuts=cuts)
    assert chunks[0][0] == 0 and chunks[-1][1] == 5000
    assert all(a < b <= a + 510 for a, b in chunks)
    assert all(chunks[i][1] == chunks[i + 1][0] for i in range(len(chunks) - 1))
    assert all(a in words for a, _ in chunks[1:])  # never inside a word
    assert cuts["hard"] == 0 and cuts["sentence"] > 0 and sum(cuts.values()) == len(chunks) - 1
    assert chunk_document(300, [], [], budget=510, slack=10) == [(0, 300)]


def test_pack_pieces_best_fit_and_gap_filling():
    capacity, overhead = 100, 2
    pieces = [(0, 0, 60), (1, 0, 30), (2, 0, 35), (3, 0, 5), (4, 0, 90)]
    rows = pack_pieces(pieces, capacity, overhead, tolerance=4)
    assert sorted(p for r in rows for p in r) == sorted(pieces)
    assert all(sum(b - a + overhead for _, a, b in r) <= capacity for r in rows)
    assert len(rows) == 3  # 90+5 | 60+35 | 30

    # gap filling cuts a piece to fill the gaps of other rows (here at any token)
    def cutter(doc, start, limit):
        return (limit, "word") if limit > start else None

    docs = [(d, 0, 70) for d in range(6)]
    rows = pack_pieces(docs, capacity, overhead, tolerance=4, cutter=cutter)
    assert len(rows) == 5  # 6 x 72 tokens = 432 <= 500: one row dissolved into the gaps of five
    per_doc = defaultdict(list)
    for r in rows:
        assert sum(b - a + overhead for _, a, b in r) <= capacity
        for d, a, b in r:
            per_doc[d].append((a, b))
    for d, spans in per_doc.items():  # every document is still covered exactly once
        spans.sort()
        assert spans[0][0] == 0 and spans[-1][1] == 70
        assert all(spans[i][1] == spans[i + 1][0] for i in range(len(spans) - 1))


def test_word_ids_from_pre_tokenizer_or_markers():
    assert dense_word_ids([0, 0, 3, 3, None, 4]).tolist() == [0, 0, 1, 1, 2, 3]
    assert marker_word_ids(["▁écho", "cardio", "▁du", "Ġx", "y"], None).tolist() == [0, 0, 1, 2, 2]
    assert marker_word_ids(["echo", "##card", "du", "##x"], "##").tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------------------------------------
# the real French corpus
# ---------------------------------------------------------------------------------------------

MAX_LENGTH = 1024
N_DOCS = 400


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(scope="module")
def fr_spec(shared_data):
    return CorpusSpec(str(shared_data / "corpora" / "fr.jsonl.gz"))


@pytest.fixture(scope="module")
def packed(fr_spec, tokenizer, cache):
    return build_packed_dataset(
        fr_spec, tokenizer, "fr", MAX_LENGTH, split="all", cache_dir=cache, max_documents=N_DOCS
    )


@pytest.fixture(scope="module")
def encoded(fr_spec, tokenizer, cache, packed):
    ds, _ = encode_corpus(fr_spec, tokenizer, "fr", cache_dir=cache, max_documents=N_DOCS)
    return ds


def _pieces(dataset, cls_id, sep_id):
    """Every piece of every row: (content ids, content word ids, content token bytes)."""
    out = []
    for row in dataset:
        ids, docs = np.array(row["input_ids"]), np.array(row["document_ids"])
        words, nbytes = np.array(row["word_ids"]), np.array(row["token_bytes"])
        for d in np.unique(docs):
            idx = np.flatnonzero(docs == d)
            assert ids[idx[0]] == cls_id and ids[idx[-1]] == sep_id
            inner = idx[1:-1]
            out.append((tuple(ids[inner].tolist()), words[inner], nbytes[inner]))
    return out


def _tile(documents, pieces):
    """Match pieces to the documents they came from; every piece is used exactly once."""
    index = defaultdict(list)
    for k, (ids, _, _) in enumerate(pieces):
        index[ids[:4]].append(k)
    used = [False] * len(pieces)
    tiling = []
    for doc in documents:
        pos, mine = 0, []
        while pos < len(doc):
            for k in index[tuple(doc[pos:pos + 4])]:
                ids = pieces[k][0]
                if not used[k] and tuple(doc[pos:pos + len(ids)]) == ids:
                    used[k] = True
                    mine.append(k)
                    pos += len(ids)
                    break
            else:
                raise AssertionError(f"no piece continues a document at token {pos}")
        tiling.append(mine)
    assert all(used), "a piece matches no document"
    return tiling


def test_rows_respect_documents(packed, tokenizer):
    stats = packing_stats(packed)
    assert stats.rows == len(packed) and stats.documents == N_DOCS
    assert set(packed.column_names) == {"input_ids", "document_ids", "word_ids", "token_bytes"}
    special = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    real = 0
    for row in packed:
        ids, docs = np.array(row["input_ids"]), np.array(row["document_ids"])
        words, nbytes = np.array(row["word_ids"]), np.array(row["token_bytes"])
        assert len(ids) == len(docs) == len(words) == len(nbytes) <= MAX_LENGTH
        real += len(ids)
        # document ids start at 1, never 0, and only step up by one: contiguous, never interleaved
        assert docs[0] == 1 and np.all(np.diff(docs) >= 0) and np.all(np.diff(docs) <= 1)
        starts = np.flatnonzero(np.r_[True, np.diff(docs) == 1])
        ends = np.r_[starts[1:] - 1, len(ids) - 1]
        assert np.all(ids[starts] == tokenizer.cls_token_id) and np.all(ids[ends] == tokenizer.sep_token_id)
        is_special = np.isin(ids, list(special))
        assert np.array_equal(words == -1, is_special) and np.all(nbytes[is_special] == 0)
        for a, b in zip(starts, ends):  # word ids restart at 0 in every piece and step by 0 or 1
            w = words[a + 1:b]
            assert w[0] == 0 and np.all(np.isin(np.diff(w), [0, 1]))
    assert real == stats.tokens
    assert stats.segments >= stats.documents


def test_every_token_appears_exactly_once(packed, encoded, tokenizer):
    pieces = _pieces(packed, tokenizer.cls_token_id, tokenizer.sep_token_id)
    documents = [tuple(x) for x in encoded["input_ids"]]
    tiling = _tile(documents, pieces)
    n_bytes = encoded["n_bytes"]
    for doc, (mine, total) in enumerate(zip(tiling, n_bytes)):
        # bits per byte: the bytes of a document's tokens add up to its UTF-8 length
        assert sum(int(pieces[k][2].sum()) for k in mine) == total
    assert sum(len(m) for m in tiling) == packing_stats(packed).segments


def test_padding_share_under_one_percent(packed):
    stats = packing_stats(packed)
    assert stats.padding_share < 0.01
    assert stats.cuts["hard"] == 0
    lengths = np.array([len(x) for x in packed["input_ids"]])
    assert 1 - lengths.sum() / (len(lengths) * MAX_LENGTH) == pytest.approx(stats.padding_share)


def test_cache_and_fingerprint(fr_spec, tokenizer, cache, packed, caplog):
    # the second build reads the cache (said in the log; no test may depend on how fast the machine is)
    caplog.set_level(logging.INFO, logger="longadapt.data.pipeline")
    again = build_packed_dataset(fr_spec, tokenizer, "fr", MAX_LENGTH, split="all", cache_dir=cache, max_documents=N_DOCS)
    assert "packed all rows found in the cache" in caplog.text
    assert data_fingerprint(again) == data_fingerprint(packed)
    assert (cache / f"packed-{data_fingerprint(packed)}" / "longadapt_data.json").is_file()
    other = build_packed_dataset(fr_spec, tokenizer, "fr", 512, split="all", cache_dir=cache, max_documents=N_DOCS)
    assert data_fingerprint(other) != data_fingerprint(packed)
    assert max(len(x) for x in other["input_ids"]) <= 512


def test_train_and_validation_are_disjoint(fr_spec, tokenizer, cache, packed):
    kw = dict(cache_dir=cache, max_documents=N_DOCS, validation_fraction=0.05)
    train = build_packed_dataset(fr_spec, tokenizer, "fr", MAX_LENGTH, split="train", **kw)
    val = build_packed_dataset(fr_spec, tokenizer, "fr", MAX_LENGTH, split="validation", **kw)
    st, sv = packing_stats(train), packing_stats(val)
    assert st.documents + sv.documents == N_DOCS and 5 <= sv.documents <= 40
    assert st.bytes + sv.bytes == packing_stats(packed).bytes


# ---------------------------------------------------------------------------------------------
# tiny corpora: other tokenizers, fingerprint on content change, errors
# ---------------------------------------------------------------------------------------------


def _metaspace_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>", "<pad>", "<unk>", "<mask>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>"
    )


def test_sentencepiece_style_tokenizer_words_and_fingerprint(tmp_path):
    texts = [f"Le patient numéro {i} présente une fièvre à {37 + i % 3} degrés. Il va mieux." for i in range(60)]
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts), encoding="utf-8")
    tok = _metaspace_tokenizer(texts)
    ds = build_packed_dataset(CorpusSpec(str(path)), tok, "fr", 128, split="all", cache_dir=tmp_path / "cache")
    stats = packing_stats(ds)
    assert stats.documents == 60 and stats.words == sum(len(t.split()) for t in texts)
    n_words = 0
    for row in ds:
        ids, docs, words = np.array(row["input_ids"]), np.array(row["document_ids"]), np.array(row["word_ids"])
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        for d in np.unique(docs):
            w = words[docs == d]
            n_words += int(w.max()) + 1  # words of a Metaspace tokenizer are the white-space words
    assert n_words == stats.words
    assert sum(sum(x) for x in ds["token_bytes"]) == sum(len(t.encode()) for t in texts)
    # changing the corpus changes the fingerprint
    path.write_text("\n".join(json.dumps({"text": t}) for t in texts[:-1]), encoding="utf-8")
    ds2 = build_packed_dataset(CorpusSpec(str(path)), tok, "fr", 128, split="all", cache_dir=tmp_path / "cache")
    assert data_fingerprint(ds2) != data_fingerprint(ds) and packing_stats(ds2).documents == 59


def test_build_errors(tmp_path, tokenizer):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "un"}\n{"body": "deux"}\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match=r"c\.jsonl, line 2: no field 'text'"):
        build_packed_dataset(CorpusSpec(str(path)), tokenizer, "fr", 128, cache_dir=tmp_path / "cache")
    path.write_text('{"text": "un"}\n', encoding="utf-8")
    with pytest.raises(LongAdaptError, match="validation split .* is empty"):
        build_packed_dataset(
            CorpusSpec(str(path)), tokenizer, "fr", 128, split="validation", cache_dir=tmp_path / "cache",
            packing=PackingConfig(min_validation_documents=0),
        )
    with pytest.raises(LongAdaptError, match="split='dev'"):
        build_packed_dataset(CorpusSpec(str(path)), tokenizer, "fr", 128, split="dev", cache_dir=tmp_path / "cache")
    with pytest.raises(LongAdaptError, match="unknown language 'xx'"):
        build_packed_dataset(CorpusSpec(str(path)), tokenizer, "xx", 128, cache_dir=tmp_path / "cache")
    with pytest.raises(LongAdaptError, match="does not exist"):
        build_packed_dataset(CorpusSpec(str(tmp_path / "nope.jsonl")), tokenizer, "fr", 128, cache_dir=tmp_path / "cache")


def test_collator_on_real_packed_rows(packed, tokenizer):
    from longadapt.data import MLMCollator

    rows = [packed[i] for i in range(8)]
    batch = MLMCollator(tokenizer, mlm_probability=0.3, whole_word_masking=True, seed=0)(rows)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        masked = (batch["labels"][i, :n] != -100).numpy()
        words, docs = np.array(row["word_ids"]), np.array(row["document_ids"])
        assert not masked[words == -1].any()
        key = docs.astype(np.int64) * 1_000_000 + words
        for k in np.unique(key[words >= 0]):
            assert len(set(masked[key == k])) == 1  # a real word is masked whole or not at all
        assert batch["document_ids"][i, :n].tolist() == row["document_ids"]
