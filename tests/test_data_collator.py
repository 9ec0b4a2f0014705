"""MLMCollator: masking rate, 80/10/10, whole words, labels, padding, reproducible validation masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longadapt.data import MLMCollator
from longadapt.errors import LongAdaptError


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_dir)


def _rows(tokenizer, n_rows=64, seed=0, min_len=200, max_len=512):
    """Packed-looking rows: several documents per row, words of 1-4 tokens, CLS/SEP per document."""
    rng = np.random.default_rng(seed)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows = []
    for _ in range(n_rows):
        length = int(rng.integers(min_len, max_len + 1))
        ids, docs, words, nbytes = [], [], [], []
        doc = 0
        while len(ids) < length - 8:
            doc += 1
            doc_len = int(rng.integers(8, 200))
            ids.append(cls), docs.append(doc), words.append(-1), nbytes.append(0)
            w = 0
            while len(ids) < length - 1 and doc_len > 0:
                k = int(rng.integers(1, 5))
                for _ in range(k):
                    ids.append(int(rng.integers(1000, 29000))), docs.append(doc), words.append(w), nbytes.append(int(rng.integers(1, 6)))
                w += 1
                doc_len -= k
            ids.append(sep), docs.append(doc), words.append(-1), nbytes.append(0)
        rows.append({"input_ids": ids, "document_ids": docs, "word_ids": words, "token_bytes": nbytes})
    return rows


def _check_batch(batch, rows, tokenizer):
    b, length = batch["input_ids"].shape
    assert all(t.dtype == torch.long and t.shape == (b, length) for t in batch.values())
    assert set(batch) == {"input_ids", "attention_mask", "document_ids", "labels", "token_bytes"}
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        orig = torch.tensor(row["input_ids"])
        assert batch["attention_mask"][i, :n].eq(1).all() and batch["attention_mask"][i, n:].eq(0).all()
        assert batch["document_ids"][i, :n].tolist() == row["document_ids"] and batch["document_ids"][i, n:].eq(0).all()
        assert batch["token_bytes"][i, :n].tolist() == row["token_bytes"]
        labels = batch["labels"][i]
        masked = labels != -100
        assert not masked[n:].any()  # never on padding
        assert labels[:n][masked[:n]].equal(orig[masked[:n]])  # labels are the original ids
        special = torch.tensor(row["word_ids"]) == -1
        assert not masked[:n][special].any()  # never on special tokens
        unmasked = ~masked[:n]
        assert batch["input_ids"][i, :n][unmasked].equal(orig[unmasked])  # only masked positions change
        assert batch["input_ids"][i, n:].eq(tokenizer.pad_token_id).all()


def test_rate_and_80_10_10(tokenizer):
    rows = _rows(tokenizer, n_rows=200)
    collator = MLMCollator(tokenizer, mlm_probability=0.3)
    torch.manual_seed(0)
    batch = collator(rows)
    _check_batch(batch, rows, tokenizer)
    maskable = sum(sum(w >= 0 for w in r["word_ids"]) for r in rows)
    masked = batch["labels"] != -100
    assert masked.sum().item() / maskable == pytest.approx(0.3, abs=0.01)
    labels, inputs = batch["labels"][masked], batch["input_ids"][masked]
    share_mask = (inputs == tokenizer.mask_token_id).float().mean().item()
    share_same = (inputs == labels).float().mean().item()
    share_random = 1 - share_mask - share_same
    assert share_mask == pytest.approx(0.8, abs=0.02)
    assert share_same == pytest.approx(0.1, abs=0.015)
    assert share_random == pytest.approx(0.1, abs=0.015)
    special = set(tokenizer.all_special_ids)
    randomised = inputs[(inputs != tokenizer.mask_token_id) & (inputs != labels)]
    assert not any(int(t) in special for t in randomised)


@pytest.mark.parametrize("rate", [0.15, 0.4])
def test_configurable_rate_and_all_mask(tokenizer, rate):
    rows = _rows(tokenizer, n_rows=100, seed=1)
    collator = MLMCollator(tokenizer, mlm_probability=rate, mask_replace_prob=1.0, random_replace_prob=0.0, seed=3)
    batch = collator(rows)
    masked = batch["labels"] != -100
    maskable = sum(sum(w >= 0 for w in r["word_ids"]) for r in rows)
    assert masked.sum().item() / maskable == pytest.approx(rate, abs=0.015)
    assert batch["input_ids"][masked].eq(tokenizer.mask_token_id).all()


def test_whole_word_masking_never_splits_a_word(tokenizer):
    rows = _rows(tokenizer, n_rows=100, seed=2)
    collator = MLMCollator(tokenizer, mlm_probability=0.3, whole_word_masking=True)
    torch.manual_seed(1)
    batch = collator(rows)
    _check_batch(batch, rows, tokenizer)
    n_masked = n_maskable = 0
    multi_token_words = 0
    for i, row in enumerate(rows):
        masked = (batch["labels"][i, : len(row["input_ids"])] != -100).tolist()
        groups = {}
        for m, d, w in zip(masked, row["document_ids"], row["word_ids"]):
            if w >= 0:
                groups.setdefault((d, w), set()).add(m)
                n_masked += m
                n_maskable += 1
        assert all(len(v) == 1 for v in groups.values())  # all tokens of a word share one decision
        multi_token_words += sum(1 for (d, w) in groups if row["word_ids"].count(w) > 1)
    assert multi_token_words > 0
    assert n_masked / n_maskable == pytest.approx(0.3, abs=0.02)


def test_dynamic_padding_and_multiple(tokenizer):
    rows = _rows(tokenizer, n_rows=3, min_len=50, max_len=70)
    longest = max(len(r["input_ids"]) for r in rows)
    assert MLMCollator(tokenizer)(rows)["input_ids"].shape == (3, longest)
    padded = MLMCollator(tokenizer, pad_to_multiple_of=64)(rows)
    assert padded["input_ids"].shape == (3, 128 if longest > 64 else 64)
    _check_batch(padded, rows, tokenizer)


def test_seeded_masks_are_the_same_every_evaluation(tokenizer):
    rows = _rows(tokenizer, n_rows=8, seed=4)
    first = MLMCollator(tokenizer, seed=123)(rows)
    # another collator, another batch order and batch size, torch's global RNG disturbed: same masks
    torch.manual_seed(999)
    collator = MLMCollator(tokenizer, seed=123)
    order = [5, 2, 7, 0, 1, 3, 6, 4]
    later = {}
    for chunk in (order[:3], order[3:]):
        out = collator([rows[i] for i in chunk])
        for j, i in enumerate(chunk):
            n = len(rows[i]["input_ids"])
            later[i] = (out["input_ids"][j, :n], out["labels"][j, :n])
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert later[i][0].equal(first["input_ids"][i, :n]) and later[i][1].equal(first["labels"][i, :n])
    assert not MLMCollator(tokenizer, seed=124)(rows)["labels"].equal(first["labels"])
    # a torch.Generator is drawn from in order: reproducible from the same state
    a = MLMCollator(tokenizer, seed=torch.Generator().manual_seed(5))(rows)
    b = MLMCollator(tokenizer, seed=torch.Generator().manual_seed(5))(rows)
    assert a["labels"].equal(b["labels"])


def test_accepts_dataset_rows(tokenizer):
    import datasets

    rows = _rows(tokenizer, n_rows=4, min_len=30, max_len=40)
    ds = datasets.Dataset.from_list(rows)
    batch = MLMCollator(tokenizer, seed=0)([ds[i] for i in range(4)])
    _check_batch(batch, rows, tokenizer)
    batch = MLMCollator(tokenizer, seed=0)([ds.with_format("torch")[i] for i in range(4)])
    _check_batch(batch, rows, tokenizer)


def test_bad_settings(tokenizer):
    with pytest.raises(LongAdaptError, match="mlm_probability"):
        MLMCollator(tokenizer, mlm_probability=0.0)
    with pytest.raises(LongAdaptError, match="sum to at most 1"):
        MLMCollator(tokenizer, mask_replace_prob=0.8, random_replace_prob=0.3)
    with pytest.raises(LongAdaptError, match="empty batch"):
        MLMCollator(tokenizer)([])
