"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from longadapt.evaluation import metrics as M


def test_edrm_is_normalised_by_the_gold_score() -> None:
    gold, pred = [1.0, 4.0, 2.5], [2.0, 4.0, 0.0]
    # dmax(1)=max(1,4)=4 -> 1-1/4; dmax(4)=4 -> 1; dmax(2.5)=2.5 -> 1-2.5/2.5=0
    assert M.edrm(gold, pred) == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    # DrBenchmark's variant (normalised by the prediction) would give (1-1/3 + 1 + 1-2.5/5)/3 = 0.722
    assert M.edrm(gold, pred) != pytest.approx((2 / 3 + 1 + 0.5) / 3)
    # predictions outside the scale are clipped: 7 -> 5, distance 4 from gold 1
    assert M.edrm([1.0], [7.0]) == pytest.approx(0.0)
    assert M.edrm([3.0], [3.0], scale=(1.0, 5.0)) == 1.0
    assert M.regression_scores([0.0, 1.0, 2.0, 5.0], [0.5, 0.7, 3.0, 4.0])["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        M.edrm([6.0], [1.0])


def test_spearman_hand_value() -> None:
    # gold ranks 1..4; predicted ranks 2,1,3,4: d^2 = 1+1 -> rho = 1 - 6*2/(4*15) = 0.8
    assert M.regression_scores([1, 2, 3, 4], [0.2, 0.1, 3.0, 4.0])["spearman"] == pytest.approx(0.8)


def test_hamming_score_and_exact_match() -> None:
    gold = [{"a"}, {"a", "b"}, {"c"}, set()]
    pred = [{"a"}, {"b", "c"}, set(), set()]
    # 1, |{b}|/|{a,b,c}| = 1/3, 0/1, both empty = 1
    assert M.hamming_score(gold, pred) == pytest.approx((1 + 1 / 3 + 0 + 1) / 4)
    assert M.exact_match_ratio(gold, pred) == pytest.approx(2 / 4)
    assert M.mcqa_scores([["a", "c"]], [["c", "a"]]) == {"hamming_score": 1.0, "exact_match": 1.0}


def test_multilabel_threshold_chosen_on_validation() -> None:
    dev_gold = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    dev_probs = np.array([[0.9, 0.2, 0.6], [0.3, 0.7, 0.1], [0.8, 0.4, 0.2], [0.1, 0.3, 0.55]])
    # at 0.5 label 1 misses row 2: F1 per label 1, 2/3, 1 (supports 2, 2, 2) -> 0.8889
    at_half = M.multilabel_scores(dev_gold, M.apply_threshold(dev_probs, 0.5))
    assert at_half["weighted_f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    # 0.35 and 0.4 are perfect; 0.3 adds a false positive; the tie goes to the one nearest 0.5
    assert M.choose_threshold(dev_gold, dev_probs) == (0.4, pytest.approx(1.0))

    test_gold = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    test_probs = np.array([[0.45, 0.5, 0.1], [0.2, 0.35, 0.9], [0.6, 0.1, 0.42]])
    s = M.multilabel_scores(test_gold, M.apply_threshold(test_probs, 0.4))
    # label 0: P 1/2 R 1 -> 2/3 (support 1); label 1: 0 (support 1); label 2: 1 (support 2)
    assert s["weighted_f1"] == pytest.approx((2 / 3 + 0 + 2 * 1) / 4)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert s["hamming_score"] == pytest.approx(0.5)
    assert s["exact_match"] == 0.0
    # at_least_one gives an empty row its best label
    assert M.apply_threshold(np.array([[0.1, 0.3]]), 0.5, at_least_one=True).tolist() == [[0, 1]]


def test_seqeval_on_word_labels_rebuilt_from_subtokens() -> None:
    # words: Le | diabète | non-insulinodépendant | sévère ; [CLS] and [SEP] have no word
    word_ids = [None, 0, 1, 1, 2, 2, 2, 3, None]
    sub_pred = ["O", "O", "B-ety", "O", "I-ety", "B-ety", "O", "O", "O"]  # only first sub-tokens count
    words_pred = M.word_labels_from_subtokens(sub_pred, word_ids)
    assert words_pred == ["O", "B-ety", "I-ety", "O"]
    gold = [["O", "B-ety", "I-ety", "B-ety"], ["B-ety", "O", "B-ety", "I-ety"]]
    pred = [words_pred, ["B-ety", "O", "I-ety", "I-ety"]]  # an I- after O opens an entity (conlleval)
    s = M.ner_scores(gold, pred)
    # gold: 4 entities; predicted: 3, all correct -> P 1, R 3/4, F1 6/7
    assert s["precision"] == pytest.approx(1.0)
    assert s["recall"] == pytest.approx(0.75)
    assert s["f1"] == pytest.approx(6 / 7)
    # a word with no sub-token (stripped by the tokenizer) gets "O"
    assert M.word_labels_from_subtokens(["O", "B-x", "O"], [None, 1, None], n_words=3) == ["O", "B-x", "O"]
    with pytest.raises(ValueError):
        M.ner_scores([["O"]], [["O", "O"]])


def test_classification_and_pos() -> None:
    gold, pred = [0, 0, 1, 2], [0, 1, 1, 2]
    s = M.classification_scores(gold, pred, 3)
    # label 0: P1 R.5 F.667 (support 2); label 1: P.5 R1 F.667 (1); label 2: 1 (1)
    assert s["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    assert s["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert s["accuracy"] == 0.75
    assert M.pos_accuracy([["N", "V"], ["D"]], [["N", "N"], ["D"]])["accuracy"] == pytest.approx(2 / 3)


def test_length_buckets() -> None:
    edges = [256, 512, 1024]
    assert [M.length_bucket(n, edges) for n in (0, 256, 257, 1024, 5000)] == ["0-256", "0-256", "257-512", "513-1024", ">1024"]
    assert M.bucket_order(edges) == ["0-256", "257-512", "513-1024", ">1024"]


def test_auto_length_edges_cut_the_documents_in_thirds() -> None:
    # 15 documents (QUAERO EMEA's test split has 15): the 5th and 10th lengths are the edges, 5 documents a bucket
    words = [2100, 2300, 2200, 2500, 2400, 3100, 2900, 2600, 2800, 2700, 3300, 3000, 3200, 3400, 3500]
    edges = M.auto_length_edges(words)
    assert edges == [2500, 3000]
    counts = {b: sum(M.length_bucket(n, edges) == b for n in words) for b in M.bucket_order(edges)}
    assert counts == {"0-2500": 5, "2501-3000": 5, ">3000": 5}
    assert M.auto_length_edges([100] * 4) == []  # one length: one bucket ("all")
    assert M.auto_length_edges([10, 10, 10, 50]) == [10]
    assert M.auto_length_edges([]) == []


def test_fast_threshold_metric_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        gold = rng.random((30, 6)) < 0.3
        gold[:, 5] = False  # a label without support
        pred = rng.random((30, 6)) < 0.4
        ref = M.multilabel_scores(gold, pred)
        for metric, value in ref.items():
            assert M.fast_multilabel_metric(gold, pred, metric) == pytest.approx(value), metric
