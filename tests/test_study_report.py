"""The verdict report on small hand-made studies (no training): every number checked below was computed
by hand from the counts in this file (the comments show the arithmetic)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from longadapt.study.report import compare, render

# one task "t", four test documents: gold mentions per document, and how many windows the 512-token
# model needed for each (d2 and d4 are the long documents)
GOLD = {"d1": 10, "d2": 20, "d3": 5, "d4": 15}  # 50 in all
WINDOWS_512 = {"d1": 1, "d2": 3, "d3": 1, "d4": 2}

# correct mentions per seed and document; predicted = gold unless PREDICTED says otherwise
CORRECT = {
    # F1 = 2 c / (p + g) = c / 50: seed 0: 27 -> 0.54, seed 1: 31 -> 0.62, seed 2: 26 -> 0.52
    "minilm-512": [{"d1": 8, "d2": 10, "d3": 4, "d4": 5}, {"d1": 8, "d2": 12, "d3": 4, "d4": 7},
                   {"d1": 8, "d2": 8, "d3": 4, "d4": 6}],
    # 32 -> 0.64, 35 -> 0.70, 31 -> 0.62
    "minilm-4096": [{"d1": 9, "d2": 14, "d3": 1, "d4": 8}, {"d1": 9, "d2": 16, "d3": 1, "d4": 9},
                    {"d1": 9, "d2": 13, "d3": 1, "d4": 8}],
    # predicts 24 on d2: p = 54, F1 = 2 c / 104: 36 -> 72/104, 37 -> 74/104, 36 -> 72/104
    "convert-2000": [{"d1": 5, "d2": 18, "d3": 1, "d4": 12}, {"d1": 5, "d2": 18, "d3": 1, "d4": 13},
                     {"d1": 5, "d2": 18, "d3": 1, "d4": 12}],
}
CORRECT["convert-1000"] = copy.deepcopy(CORRECT["minilm-4096"])  # the same runs as the un-adapted model
PREDICTED = {"convert-2000": {"d2": 24}}


def _run(model: str, seed: int, correct: dict[str, int], gold: dict[str, int], windows: dict[str, int],
         predicted: dict[str, int], tokens: int) -> dict[str, Any]:
    rows = [{"id": d, "n_words": 100 * windows.get(d, 1), "n_windows": windows.get(d, 1), "gold": g,
             "representable": g, "predicted": predicted.get(d, g), "correct": correct[d], "bucket": "x"}
            for d, g in gold.items()]
    c, p, g = (sum(r[k] for r in rows) for k in ("correct", "predicted", "gold"))
    score = 2 * c / (p + g)
    return {"seed": seed, "score": score, "main_metric": "f1", "test": {"f1": score}, "dev": {"f1": score},
            "buckets": {}, "best_epoch": 1, "per_example": rows,
            "timing": {"total_s": 36.0, "optimizer_steps": 10},
            "diagnostics": {"train_tokens": tokens, "train_tokens_seen": tokens, "device": "cpu"},
            "config": {"training": {"learning_rate": 3e-4, "epochs": 1}}, "_dir": f"finetune/t/{model}/seed-{seed}"}


def _collected(correct: dict[str, list[dict[str, int]]], gold: dict[str, int] = GOLD,
               published: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    def adapt(seconds: float, seen: int, final_bpb: float) -> dict[str, Any]:
        return {"seconds": seconds, "threads": 2, "tokens_seen": seen, "initial_bpb": 3.0, "final_bpb": final_bpb,
                "precision": "fp32"}

    models = [
        {"name": "minilm-512", "kind": "baseline", "tasks": ["t"], "stage": None, "source": "m", "tokens": 0,
         "final": False, "untrained_of": []},
        {"name": "minilm-4096", "kind": "baseline", "tasks": ["t"], "stage": "baseline/minilm-4096", "tokens": 0,
         "final": False, "untrained_of": ["convert"]},
        {"name": "convert-2000", "kind": "adaptation", "tasks": ["t"], "stage": "adapt/convert-2000",
         "adaptation": "convert", "strategy": "convert", "arm": None, "tokens": 2000, "final": True,
         "untrained_of": [], "adapt": adapt(7200.0, 2048, 2.2)},
        {"name": "convert-1000", "kind": "adaptation", "tasks": ["t"], "stage": "adapt/convert-1000",
         "adaptation": "convert", "strategy": "convert", "arm": None, "tokens": 1000, "final": False,
         "untrained_of": [], "adapt": adapt(3600.0, 1024, 2.5)},
    ]
    results = {}
    for name, seeds in correct.items():
        tokens = 1000 if name == "minilm-512" else 1200
        windows = WINDOWS_512 if name == "minilm-512" else {}
        results[name] = {"lr": 3e-4, "trials": [{"slot": 1, "lr": 3e-4, "dev": 0.6, "metric": "f1", "test": 0.6},
                                                {"slot": 0, "lr": 1e-4, "dev": 0.5, "metric": "f1", "test": 0.5}],
                         "runs": [_run(name, s, c, gold, windows, PREDICTED.get(name, {}), tokens)
                                  for s, c in enumerate(seeds)]}
    return {"kind": "longadapt.study.collected",
            "study": {"name": "tiny", "language": "fr", "file": "tiny.yaml", "seeds": 3,
                      "search": {"method": "grid", "learning_rates": [1e-4, 3e-4], "trials": 2, "seed": 0},
                      "tasks": ["t"], "curve_task": "t", "reference": "minilm-4096", "windowed": "minilm-512",
                      "bootstrap": 1000, "bootstrap_seed": 0, "limits": {}, "finetune": {}},
            "models": models,
            "tasks": {"t": {"name": "t", "metric": "f1", "published": published or [], "results": results}}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, dict[str, Any], str]:
    published = [{"model": "DrBERT", "score": 0.8, "metric": "f1", "source": "a paper", "note": "sentences"}]
    path = render(_collected(CORRECT, published=published), tmp_path_factory.mktemp("report"))
    return path, json.loads((path.parent / "report.json").read_text(encoding="utf-8")), path.read_text(encoding="utf-8")


def _row(report: dict[str, Any], model: str) -> dict[str, Any]:
    return next(r for r in report["tasks"]["t"]["rows"] if r["model"] == model)


def _cmp(report: dict[str, Any], model: str, role: str) -> dict[str, Any]:
    return next(c for c in report["tasks"]["t"]["comparisons"] if c["model"] == model and c["role"] == role)


def test_rows_mean_sd_and_order(rendered) -> None:
    _, report, md = rendered
    assert [r["model"] for r in report["tasks"]["t"]["rows"]] == ["minilm-512", "minilm-4096", "convert-1000",
                                                                   "convert-2000"]
    # 0.54, 0.62, 0.52: mean 0.56; deviations -0.02, 0.06, -0.04 -> sd sqrt(0.0056 / 2) = 0.052915
    row = _row(report, "minilm-512")
    assert row["mean"] == pytest.approx(0.56) and row["sd"] == pytest.approx(0.052915, abs=1e-6) and row["n"] == 3
    assert row["role"] == "windowed" and _row(report, "minilm-4096")["role"] == "reference"
    assert "56.00 ± 5.29 (3 seeds)" in md
    # trials in slot order with their dev scores; 1200 tokens read against the windowed model's 1000: +20 %
    assert "0.0001: 50.00; 0.0003: 60.00" in md
    assert _row(report, "convert-2000")["tokens_vs_windowed_pct"] == pytest.approx(20.0)
    assert "+20.0 %" in md and row["tokens_vs_windowed_pct"] is None


def test_long_documents_are_those_the_windowed_model_split(rendered) -> None:
    _, report, md = rendered
    ld = report["tasks"]["t"]["long_documents"]
    assert ld["ids"] == ["d2", "d4"] and ld["documents"] == 2 and ld["skipped"] is None
    rows = {r["model"]: r for r in ld["rows"]}
    # minilm-512 on d2 + d4 (35 gold, 35 predicted): correct 15, 19, 14 -> F1 30/70, 38/70, 28/70;
    # mean 32/70 = 0.457143, sd of (15, 19, 14) = sqrt(7) = 2.6458 -> x 2/70 = 0.075593
    assert rows["minilm-512"]["mean"] == pytest.approx(32 / 70)
    assert rows["minilm-512"]["sd"] == pytest.approx(0.075593, abs=1e-6)
    # convert-2000: predicted 24 + 15 = 39, gold 35; correct 30, 31, 30 -> F1 60/74, 62/74, 60/74
    assert rows["convert-2000"]["mean"] == pytest.approx((60 + 62 + 60) / 3 / 74)
    assert "45.71 ± 7.56 (3 seeds)" in md and "81.98 ± 1.56 (3 seeds)" in md


def test_bootstrap_observed_difference_and_identical_models(rendered) -> None:
    _, report, md = rendered
    c = _cmp(report, "convert-2000", "reference")
    # per seed F1(convert-2000) - F1(minilm-4096): 72/104 - 0.64, 74/104 - 0.70, 72/104 - 0.62;
    # mean = 218/312 - 1.96/3 = 0.698718 - 0.653333 = 0.045385
    assert c["method"] == "bootstrap" and c["documents"] == 4 and c["seeds"] == [0, 1, 2]
    assert c["diff"] == pytest.approx(218 / 312 - 1.96 / 3)
    assert c["low"] <= c["diff"] <= c["high"]
    # worse on d1 and d3, better on d2 and d4: a resample of d1 / d3 alone (1 in 16) goes the other way
    assert c["p"] >= 0.05
    same = _cmp(report, "convert-1000", "reference")
    assert same["diff"] == 0.0 and same["p"] == 1.0 and same["low"] == same["high"] == 0.0
    assert "paired bootstrap over test documents" in md


def test_better_on_every_document_is_significant_and_said_so(tmp_path: Path) -> None:
    gold = {f"d{i:02d}": 4 + i % 3 for i in range(20)}
    perfect = [{d: g for d, g in gold.items()} for _ in range(3)]
    half = [{d: g // 2 for d, g in gold.items()} for _ in range(3)]
    collected = _collected({"minilm-512": half, "minilm-4096": half, "convert-1000": half, "convert-2000": perfect},
                           gold=gold)
    c = compare(collected["tasks"]["t"], "convert-2000", "minilm-4096", 1000, 0)
    assert c["diff"] > 0 and c["p"] < 0.05 and c["low"] > 0 and c["documents"] == 20
    report = json.loads((render(collected, tmp_path).parent / "report.json").read_text(encoding="utf-8"))
    summary = report["summary"][0]
    assert summary["best"] == "convert-2000" and summary["beats_reference"] == ["convert-2000"]
    assert "beating the un-adapted model" in summary["text"] and "no adaptation beats" not in summary["text"]
    # the long-document subset: no document of this task needed two windows
    assert report["tasks"]["t"]["long_documents"]["skipped"]


def test_summary_says_no_adaptation_beats(rendered) -> None:
    _, report, md = rendered
    summary = report["summary"][0]
    assert summary["best"] == "convert-2000" and summary["beats_reference"] == []
    assert "no adaptation beats the un-adapted model at this budget" in summary["text"]
    assert md.index("## Summary") < md.index("## Verdict curve") < md.index("## t (f1)")
    assert summary["text"] in md


def test_curve_figures_published_and_cost(rendered) -> None:
    path, report, md = rendered
    png = path.parent / "curve_t.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (path.parent / "bpb.png").is_file()
    curve = report["curve"]
    # the 0-token point of convert is the baseline it is the untrained form of
    assert [(p["model"], p["tokens"]) for p in curve["points"]] == [("minilm-4096", 0), ("convert-1000", 1000),
                                                                     ("convert-2000", 2000)]
    assert [b["role"] for b in curve["baselines"]] == ["reference", "windowed"]
    assert [(b["tokens"], b["bpb"]) for b in curve["bpb"]] == [(0, 3.0), (1000, 2.5), (2000, 2.2)]
    assert "### Published numbers: other models, other budgets (not comparable to the rows above)" in md
    assert "| DrBERT |" in md
    cost = {a["model"]: a for a in report["cost"]["adaptation"]}
    assert cost["convert-1000"]["cpu_hours"] == pytest.approx(2.0)  # 3600 s x 2 threads
    ft = {f["model"]: f for f in report["cost"]["finetune"]}
    assert ft["minilm-512"]["cpu_hours"] == pytest.approx(3 * 36 / 3600) and ft["minilm-512"]["threads_assumed"]


def test_a_figure_of_another_study_files_report_is_removed(tmp_path: Path) -> None:
    (tmp_path / "curve_other-task.png").write_bytes(b"\x89PNG another study file's curve")
    (tmp_path / "notes.png").write_bytes(b"\x89PNG not a report figure")
    render(_collected(CORRECT), tmp_path)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["bpb.png", "curve_t.png", "notes.png"]


def test_same_input_gives_identical_bytes(rendered, tmp_path: Path) -> None:
    path, _, _ = rendered
    published = [{"model": "DrBERT", "score": 0.8, "metric": "f1", "source": "a paper", "note": "sentences"}]
    again = render(_collected(CORRECT, published=published), tmp_path / "again")
    assert again.read_bytes() == path.read_bytes()
    assert (again.parent / "report.json").read_bytes() == (path.parent / "report.json").read_bytes()


def test_runs_without_document_counts_fall_back_to_a_t_test() -> None:
    task = _collected(CORRECT)["tasks"]["t"]
    for res in task["results"].values():
        for run in res["runs"]:
            run["per_example"] = []
    c = compare(task, "convert-2000", "minilm-512", 1000, 0)
    assert c["method"] == "t-test" and c["documents"] is None and c["p"] is not None
    for res in task["results"].values():
        res["runs"] = res["runs"][:2]
    assert compare(task, "convert-2000", "minilm-512", 1000, 0)["p"] is None  # fewer than 3 shared seeds


def test_a_collapsed_adaptation_says_so_beside_its_score(tmp_path: Path) -> None:
    collected = _collected(CORRECT)
    convert = next(m for m in collected["models"] if m["name"] == "convert-2000")
    convert["adapt"]["representations"] = {"before": {"mean_token_cosine": 0.01, "top_component_share": 0.05},
                                           "after": {"mean_token_cosine": 0.94, "top_component_share": 0.57},
                                           "warning": "the encoder's token representations collapsed ..."}
    next(m for m in collected["models"] if m["name"] == "convert-1000")["adapt"]["representations"] = {
        "before": {"mean_token_cosine": 0.01, "top_component_share": 0.05},
        "after": {"mean_token_cosine": 0.30, "top_component_share": 0.10}, "warning": None}
    path = render(collected, tmp_path)
    report, md = json.loads((path.parent / "report.json").read_text(encoding="utf-8")), path.read_text(encoding="utf-8")
    assert _row(report, "convert-2000")["collapse"] == {"cosine_before": 0.01, "cosine_after": 0.94}
    assert _row(report, "convert-1000")["collapse"] is None and _row(report, "minilm-4096")["collapse"] is None
    note = "representations collapsed in adaptation (token cosine 0.01 -> 0.94)"
    row = next(line for line in md.splitlines() if line.startswith("| convert-2000 | 2,000 |"))
    assert note in row
    assert [b.get("collapse") is not None for b in report["curve"]["bpb"]] == [False, False, True]
    assert md.count(note) == 2  # the models table and the bits-per-byte table


def test_an_adaptation_with_its_own_untrained_model_is_compared_with_it(tmp_path: Path) -> None:
    """Scratch's 0-token point is its random network, not the reference: each budget is also compared with it."""
    correct = {**CORRECT, "convert-0": copy.deepcopy(CORRECT["minilm-4096"])}
    collected = _collected(correct)
    next(m for m in collected["models"] if m["name"] == "minilm-4096")["untrained_of"] = []
    collected["models"].append({"name": "convert-0", "kind": "adaptation", "tasks": ["t"], "stage": "adapt/convert-0",
                                "adaptation": "convert", "strategy": "convert", "arm": None, "tokens": 0,
                                "final": False, "untrained_of": [], "adapt": {"seconds": 1.0, "threads": 1,
                                                                              "tokens_seen": 0, "precision": "fp32"}})
    path = render(collected, tmp_path)
    report = json.loads((path.parent / "report.json").read_text(encoding="utf-8"))
    own = {c["model"]: c for c in report["tasks"]["t"]["comparisons"] if c["role"] == "untrained"}
    assert sorted(own) == ["convert-1000", "convert-2000"] and {c["against"] for c in own.values()} == {"convert-0"}
    assert own["convert-1000"]["diff"] == 0.0 and own["convert-1000"]["p"] == 1.0  # the same runs
    # seeds: 72/104 - 32/50, 74/104 - 35/50, 72/104 - 31/50, averaged
    assert own["convert-2000"]["diff"] == pytest.approx((72 / 104 - 0.64 + 74 / 104 - 0.70 + 72 / 104 - 0.62) / 3)
    assert [p["model"] for p in report["curve"]["points"]][0] == "convert-0"
    summary = report["summary"][0]
    assert summary["beats_untrained"] == []  # +4.54 points on 4 documents is not significant (p = 0.738)
    assert summary["text"].endswith("no adaptation beats the strategy's own untrained model (convert-1000 +0.00 "
                                    "vs convert-0, p = 1.000; convert-2000 +4.54 vs convert-0, p = 0.738).")
    assert "| convert-2000 | convert-0 (untrained) | bootstrap | 3 | 4 |" in path.read_text(encoding="utf-8")
