"""Task metrics, computed with seqeval, scikit-learn and scipy.

============================  =================================================================
task type                     metrics (the first one selects checkpoints)
============================  =================================================================
``ner``                       entity F1 (micro) against every gold mention (exact span and type),
                              precision, recall, macro F1; seqeval F1 on the scheme's word tags
``pos``                       word accuracy
``classification``            weighted F1, macro F1, accuracy
``multilabel``                weighted F1 at a threshold chosen on validation, macro/micro F1,
                              Hamming score, exact match ratio
``regression`` (STS)          Spearman, EDRM, Pearson
``mcqa``                      Hamming score, exact match ratio
============================  =================================================================

Formulas that are easy to get wrong:

- **Hamming score** (multi-label, MCQA) = mean over examples of
  ``|pred ∩ gold| / |pred ∪ gold|``; an example with empty prediction and empty gold scores 1.
- **Exact match ratio** = share of examples with ``pred == gold``.
- **EDRM** (DEFT's relative-distance accuracy, used by DrBenchmark for STS) =
  ``mean_i (1 - |p_i - g_i| / dmax(g_i))`` with ``dmax(g) = max(g - lo, hi - g)``: the largest
  distance any prediction on the score scale ``[lo, hi]`` can be from that *gold* score, so that
  each term lies in [0, 1]. Predictions are clipped to the scale first. DrBenchmark normalises by
  the prediction (``dmax(p_i)``) instead, which rewards predictions in the middle of the scale.
- **NER**: models label the first sub-token of each word; word classes become mentions again
  (:mod:`.entities`) and are scored against every gold mention, whatever the scheme can represent;
  seqeval scores the flat word tags as a cross-check (equal on flat data, tested). ``f1`` counts scoring
  units (a discontinuous mention's fragments, duplicates once); ``clef_f1`` (``count: clef``) counts as
  the CLEF eHealth BRATEval scorer does, every gold ``T`` line one entity (:func:`.entities.clef_scores`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def word_labels_from_subtokens(subtoken_labels: Sequence[Any], word_ids: Sequence[int | None],
                               n_words: int | None = None, fill: Any = "O") -> list[Any]:
    """Word-level labels from sub-token labels: each word takes the label of its first sub-token.

    ``word_ids[i]`` is the word of sub-token ``i`` (None for special tokens), as returned by a
    fast tokenizer's ``word_ids()``. A word with no sub-token gets ``fill``.
    """
    if len(subtoken_labels) != len(word_ids):
        raise ValueError(f"{len(subtoken_labels)} labels for {len(word_ids)} sub-tokens")
    n = n_words if n_words is not None else 1 + max((w for w in word_ids if w is not None), default=-1)
    out: list[Any] = [None] * n
    for lab, w in zip(subtoken_labels, word_ids):
        if w is not None and out[w] is None:
            out[w] = lab
    return [fill if x is None else x for x in out]


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """seqeval entity-level micro precision/recall/F1 on word-level BIO tag sequences."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    _check_lengths(gold, pred)
    gold, pred = [list(g) for g in gold], [list(p) for p in pred]
    return {
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
    }


def pos_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Share of words whose tag is right."""
    _check_lengths(gold, pred)
    total = sum(len(g) for g in gold)
    right = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return {"accuracy": right / total if total else 0.0}


def _check_lengths(gold: Sequence[Sequence[Any]], pred: Sequence[Sequence[Any]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold words but {len(p)} predictions")


def classification_scores(gold: Sequence[int], pred: Sequence[int], n_labels: int) -> dict[str, float]:
    """Single-label classification: weighted F1 (DrBenchmark's metric), macro F1, accuracy."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = list(range(n_labels))
    return {
        # weighted by gold support: a label absent from the gold weighs 0
        "weighted_f1": float(f1_score(gold, pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(gold, pred)),
    }


def hamming_score(gold: Iterable[Iterable[Any]], pred: Iterable[Iterable[Any]]) -> float:
    """Mean over examples of ``|pred ∩ gold| / |pred ∪ gold|`` (1 when both are empty)."""
    scores = []
    for g, p in zip(gold, pred, strict=True):
        g, p = set(g), set(p)
        union = g | p
        scores.append(len(g & p) / len(union) if union else 1.0)
    return float(np.mean(scores)) if scores else 0.0


def exact_match_ratio(gold: Iterable[Iterable[Any]], pred: Iterable[Iterable[Any]]) -> float:
    """Share of examples whose predicted set equals the gold set."""
    pairs = [(set(g), set(p)) for g, p in zip(gold, pred, strict=True)]
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0


def _sets(matrix: np.ndarray) -> list[set[int]]:
    return [set(np.flatnonzero(row).tolist()) for row in matrix]


def multilabel_scores(gold: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Multi-label scores from 0/1 matrices (examples x labels)."""
    from sklearn.metrics import f1_score

    gold, pred = np.asarray(gold, dtype=int), np.asarray(pred, dtype=int)
    if gold.shape != pred.shape:
        raise ValueError(f"gold {gold.shape} and predictions {pred.shape} differ in shape")
    return {
        "weighted_f1": float(f1_score(gold, pred, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "hamming_score": hamming_score(_sets(gold), _sets(pred)),
        "exact_match": exact_match_ratio(_sets(gold), _sets(pred)),
    }


def apply_threshold(probs: np.ndarray, threshold: float, at_least_one: bool = False) -> np.ndarray:
    """0/1 predictions ``probs >= threshold``; with ``at_least_one`` an empty row takes its argmax."""
    probs = np.asarray(probs, dtype=float)
    pred = (probs >= threshold).astype(int)
    if at_least_one and len(probs):
        empty = pred.sum(axis=1) == 0
        pred[empty, probs[empty].argmax(axis=1)] = 1
    return pred


DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def fast_multilabel_metric(gold: np.ndarray, pred: np.ndarray, metric: str) -> float:
    """One metric of :func:`multilabel_scores` in vectorised NumPy (same values as scikit-learn with
    ``zero_division=0``); used to scan thresholds quickly."""
    gold, pred = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    if metric in ("hamming_score", "exact_match"):
        inter = (gold & pred).sum(1)
        union = (gold | pred).sum(1)
        if metric == "exact_match":
            return float((gold == pred).all(1).mean()) if len(gold) else 0.0
        return float(np.where(union > 0, inter / np.maximum(union, 1), 1.0).mean()) if len(gold) else 0.0
    tp = (gold & pred).sum(0).astype(float)
    fp = (~gold & pred).sum(0).astype(float)
    fn = (gold & ~pred).sum(0).astype(float)
    if metric == "micro_f1":
        denom = 2 * tp.sum() + fp.sum() + fn.sum()
        return float(2 * tp.sum() / denom) if denom else 0.0
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    if metric == "macro_f1":
        return float(f1.mean())
    if metric == "weighted_f1":
        support = gold.sum(0)
        return float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    raise ValueError(f"unknown multi-label metric {metric!r}")


def choose_threshold(gold: np.ndarray, probs: np.ndarray, metric: str = "weighted_f1",
                     grid: Sequence[float] = DEFAULT_THRESHOLDS, at_least_one: bool = False) -> tuple[float, float]:
    """The threshold of ``grid`` that maximises ``metric`` on validation; ties go to the threshold
    closest to 0.5 (then the lower one). Returns ``(threshold, score)``."""
    best: tuple[float, float] | None = None
    for t in sorted(grid, key=lambda x: (abs(x - 0.5), x)):
        score = fast_multilabel_metric(gold, apply_threshold(probs, t, at_least_one), metric)
        if best is None or score > best[1] + 1e-12:
            best = (float(t), score)
    assert best is not None
    return best


def edrm(gold: Sequence[float], pred: Sequence[float], scale: tuple[float, float] = (0.0, 5.0)) -> float:
    """DEFT's relative-distance accuracy, normalised by the gold score (see the module docstring).

    ``EDRM = mean_i (1 - |p_i - g_i| / max(g_i - lo, hi - g_i))`` with ``p_i`` clipped to ``[lo, hi]``.
    """
    lo, hi = scale
    if not hi > lo:
        raise ValueError(f"bad score scale {scale}")
    g = np.asarray(gold, dtype=float)
    p = np.clip(np.asarray(pred, dtype=float), lo, hi)
    if g.shape != p.shape:
        raise ValueError(f"{g.shape} gold scores but {p.shape} predictions")
    if ((g < lo) | (g > hi)).any():
        raise ValueError(f"gold scores outside the scale {scale}")
    dmax = np.maximum(g - lo, hi - g)
    return float(np.mean(1.0 - np.abs(p - g) / dmax)) if len(g) else 0.0


def regression_scores(gold: Sequence[float], pred: Sequence[float],
                      scale: tuple[float, float] | None = (0.0, 5.0)) -> dict[str, float]:
    """STS scores: Spearman (selects checkpoints), EDRM on ``scale``, Pearson, RMSE."""
    from scipy.stats import pearsonr, spearmanr

    g, p = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    constant = len(g) < 2 or np.ptp(p) == 0 or np.ptp(g) == 0
    out = {
        "spearman": 0.0 if constant else float(spearmanr(g, p).statistic),
        "pearson": 0.0 if constant else float(pearsonr(g, p).statistic),
        "rmse": float(math.sqrt(np.mean((g - p) ** 2))) if len(g) else 0.0,
    }
    if scale is not None:
        out["edrm"] = edrm(g, p, scale)
    return out


def mcqa_scores(gold: Sequence[Iterable[str]], pred: Sequence[Iterable[str]]) -> dict[str, float]:
    """MCQA: Hamming score (selects checkpoints) and exact match ratio over answer sets."""
    return {"hamming_score": hamming_score(gold, pred), "exact_match": exact_match_ratio(gold, pred)}


def length_bucket(n_words: int, edges: Sequence[int]) -> str:
    """The bucket of a length in words: ``"0-256"``, ``"257-512"``, ..., ``">2048"``.

    ``edges`` are the inclusive upper bounds of the buckets, ascending.
    """
    lower = 0
    for edge in edges:
        if n_words <= edge:
            return f"{lower}-{edge}"
        lower = edge + 1
    return f">{edges[-1]}" if edges else "all"


def auto_length_edges(n_words: Sequence[int], parts: int = 3) -> list[int]:
    """Bucket edges that cut the documents (their word counts) into ``parts`` groups of about equal size: the
    word counts of the documents at the 1/3 and 2/3 points (for 3 parts), so that each edge is a real document's
    length and a bucket ``lower-edge`` holds that document. Repeated edges are merged: documents all of one length
    give one bucket."""
    if not n_words:
        return []
    ordered = sorted(int(n) for n in n_words)
    edges = [ordered[(len(ordered) - 1) * k // parts] for k in range(1, parts)]
    return sorted(set(e for e in edges if e < ordered[-1]))


def bucket_order(edges: Sequence[int]) -> list[str]:
    labels, lower = [], 0
    for edge in edges:
        labels.append(f"{lower}-{edge}")
        lower = edge + 1
    labels.append(f">{edges[-1]}" if edges else "all")
    return labels
