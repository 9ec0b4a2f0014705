"""The verdict report of a study: which adaptation, at which budget, beats the models it must beat.

:func:`render` reads what :func:`longadapt.study.runner.collect` gathered and writes into ``OUT/report/``:
``report.md`` (led by a plain-words summary and the verdict curve), ``report.json`` (the same numbers),
``curve_<task>.png`` and ``bpb.png``. The same input gives byte-identical report.md and report.json
(sorted keys, no timestamps, a fixed bootstrap seed), so a re-run of a finished study changes nothing.

Scores in report.json are fractions (0-1, as run.json has them); report.md shows them x 100. Layout:

- ``kind``: ``"longadapt.study.report"``; ``study``: name, language, file, seeds, tasks, curve_task,
  reference, windowed, bootstrap, bootstrap_seed, alpha.
- ``tasks[task]``: ``metric``; ``published`` (as the task file gives it); ``rows``: one per model (baselines
  first, then adaptations by increasing tokens) with ``model, kind, role`` (reference | windowed | null),
  ``adaptation, tokens, seeds, n, mean, sd, lr, trials`` ([{lr, dev}]), ``optimizer_steps`` and
  ``train_tokens_seen`` (per seed), ``tokens_vs_windowed_pct`` (null when equal or not comparable),
  ``collapse`` ({cosine_before, cosine_after} when the adaptation's representation check warned, else null);
  ``comparisons``: ``model, against, role, method`` (bootstrap | t-test | null), ``seeds, documents, diff,
  low, high, p`` (diff = model - against, mean over shared seeds); ``long_documents``: ``windowed,
  documents, ids, skipped`` (why, or null) and ``rows`` [{model, n, mean, sd, documents}] (n: seeds).
- ``curve``: ``task, metric, budgets``; ``points`` [{adaptation, model, tokens, tokens_seen, n, mean, sd}];
  ``baselines`` [{model, role, n, mean, sd}]; ``bpb`` [{adaptation, model, tokens, tokens_seen, bpb, what, collapse}] (collapse: final points only).
- ``cost``: ``adaptation`` [{model, tokens_seen, seconds, threads, threads_assumed, cpu_hours, precision}];
  ``finetune`` [{model, task, runs, trials, trials_timed, seconds, cpu_hours, threads_assumed, devices}].
- ``summary``: [{task, best, best_mean, reference, windowed, beats_reference, beats_windowed, beats_untrained,
  text}]; comparisons of role ``untrained``: an adaptation against its own 0-token model where that is not
  the reference (scratch's random network).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from longadapt.io import atomic_write_text

logger = logging.getLogger(__name__)

ALPHA = 0.05
BOOTSTRAP = "bootstrap"
TTEST = "t-test"
MIN_TTEST_SEEDS = 3
COUNT_KEYS = ("correct", "predicted", "gold")
PUBLISHED_LABEL = "other models, other budgets (not comparable to the rows above)"
ROLE_WORDS = {"reference": "the un-adapted model", "windowed": "the windowed baseline",
              "untrained": "the strategy's own untrained model"}


# --- statistics

def _spread(values: list[float]) -> dict[str, Any]:
    """Mean and sample sd (ddof 1). One value gets sd 0 here, and no ± in the Markdown: its spread is unknown."""
    arr = np.asarray(values, dtype=float)
    return {"n": int(arr.size), "mean": float(arr.mean()) if arr.size else None,
            "sd": float(arr.std(ddof=1)) if arr.size > 1 else (0.0 if arr.size else None)}


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """F1 = 2 correct / (predicted + gold) over the last axis (correct, predicted, gold); 0 when nothing
    was predicted nor expected."""
    den = counts[..., 1] + counts[..., 2]
    return np.divide(2.0 * counts[..., 0], den, out=np.zeros(den.shape), where=den > 0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> dict[str, float | None]:
    """Paired bootstrap over documents of the micro-F1 difference A - B, averaged over seeds.

    ``a``, ``b``: (seeds, documents, 3) counts (correct, predicted, gold) on the same documents and seeds.
    Written by hand: scipy.stats.bootstrap resamples each sample independently (or pairs scalar rows) and
    cannot resample documents once, then sum counts per seed and model before taking F1 of the sums."""
    observed = float((micro_f1(a.sum(1)) - micro_f1(b.sum(1))).mean())
    docs = a.shape[1]
    if resamples <= 0 or docs == 0:
        return {"diff": observed, "low": None, "high": None, "p": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, docs, size=(resamples, docs))
    weights = np.zeros((resamples, docs))
    np.add.at(weights, (np.arange(resamples)[:, None], idx), 1.0)  # how often each document is drawn
    stats = (micro_f1(np.einsum("rd,sdk->srk", weights, a))
             - micro_f1(np.einsum("rd,sdk->srk", weights, b))).mean(0)
    low, high = np.percentile(stats, [2.5, 97.5])
    p = min(1.0, 2.0 * min(float(np.mean(stats <= 0)), float(np.mean(stats >= 0))))
    return {"diff": observed, "low": float(low), "high": float(high), "p": p}


def _ttest(x: np.ndarray, y: np.ndarray) -> float | None:
    """Two-sided paired t-test over seeds (None under MIN_TTEST_SEEDS pairs). A constant difference has no
    variance, where scipy warns and rounds: it is decided here, 1 when it is zero and 0 otherwise."""
    from scipy.stats import ttest_rel

    d = x - y
    if len(d) < MIN_TTEST_SEEDS:
        return None
    if np.allclose(d, d[0]):
        return 1.0 if np.allclose(d, 0) else 0.0
    p = float(ttest_rel(x, y).pvalue)
    return None if np.isnan(p) else p


# --- reading the runs

def _by_seed(result: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    return {int(r["seed"]): r for r in (result or {}).get("runs", [])}


def _counts(run: dict[str, Any]) -> dict[str, tuple[int, int, int]] | None:
    """Per test document (correct, predicted, gold); None for runs without per-document entity counts."""
    rows = run.get("per_example") or []
    if not rows or not all(all(k in r for k in COUNT_KEYS) for r in rows):
        return None
    return {str(r["id"]): tuple(int(r[k]) for k in COUNT_KEYS) for r in rows}


def _stack(counts: list[dict[str, tuple[int, int, int]]], ids: list[str]) -> np.ndarray:
    return np.array([[c[i] for i in ids] for c in counts], dtype=float).reshape(len(counts), len(ids), 3)


def _ordered(collected: dict[str, Any]) -> list[dict[str, Any]]:
    """Baselines in study order, then adaptations grouped by adaptation in increasing tokens."""
    models = collected["models"]
    order = list(dict.fromkeys(m.get("adaptation") for m in models if m["kind"] == "adaptation"))
    return ([m for m in models if m["kind"] == "baseline"]
            + sorted((m for m in models if m["kind"] == "adaptation"),
                     key=lambda m: (order.index(m.get("adaptation")), m.get("tokens") or 0)))


# --- the sections, as numbers

def _rows(collected: dict[str, Any], task: dict[str, Any]) -> list[dict[str, Any]]:
    study, results = collected["study"], task["results"]
    win = _by_seed(results.get(study.get("windowed")))
    win_tokens = [r.get("diagnostics", {}).get("train_tokens_seen") for r in win.values()]
    win_mean = float(np.mean(win_tokens)) if win_tokens and None not in win_tokens else None
    roles = {study.get(role): role for role in ("windowed", "reference")}
    rows = []
    for m in _ordered(collected):
        if m["name"] not in results:
            continue
        res, runs = results[m["name"]], list(_by_seed(results[m["name"]]).values())
        tokens = [r.get("diagnostics", {}).get("train_tokens_seen") for r in runs]
        pct = None
        if win_mean and tokens and None not in tokens and m["name"] != study.get("windowed"):
            pct = 100.0 * (float(np.mean(tokens)) - win_mean) / win_mean
            pct = None if abs(pct) < 1e-9 else pct
        rows.append({"model": m["name"], "kind": m["kind"], "role": roles.get(m["name"]),
                     "adaptation": m.get("adaptation"), "tokens": m.get("tokens") or 0,
                     "seeds": [int(r["seed"]) for r in runs], **_spread([r["score"] for r in runs]),
                     "lr": res.get("lr"), "trials": [{"lr": t["lr"], "dev": t["dev"]}
                                                     for t in sorted(res.get("trials", []), key=lambda t: t["slot"])],
                     "optimizer_steps": [r.get("timing", {}).get("optimizer_steps") for r in runs],
                     "train_tokens_seen": tokens, "tokens_vs_windowed_pct": pct, "collapse": _collapse(m)})
    return rows


def _collapse(model: dict[str, Any]) -> dict[str, float] | None:
    """The adaptation's own collapse check (run.json ``representations``) when it warned, else None: a score
    is not read without it (collapsed pretrained encoders learned nothing at their start's rate)."""
    rep = (model.get("adapt") or {}).get("representations") or {}
    if not rep.get("warning"):
        return None
    return {"cosine_before": rep["before"]["mean_token_cosine"], "cosine_after": rep["after"]["mean_token_cosine"]}


def compare(task: dict[str, Any], model: str, against: str, resamples: int, seed: int) -> dict[str, Any]:
    """``model`` against ``against`` on one task: the paired bootstrap over test documents when every
    shared seed has per-document counts, else a paired t-test over seeds (scores)."""
    ra, rb = _by_seed(task["results"].get(model)), _by_seed(task["results"].get(against))
    seeds = sorted(set(ra) & set(rb))
    out: dict[str, Any] = {"model": model, "against": against, "method": None, "seeds": seeds, "documents": None,
                           "diff": None, "low": None, "high": None, "p": None}
    if not seeds:
        return out
    ca, cb = [_counts(ra[s]) for s in seeds], [_counts(rb[s]) for s in seeds]
    if all(c is not None for c in ca + cb):
        ids = sorted(set.intersection(*(set(c) for c in ca + cb)))
        if len(ids) < max(len(c) for c in ca + cb):
            logger.warning("%s: %s and %s were not scored on the same documents; comparing the %d they share",
                           task["name"], model, against, len(ids))
        if ids:
            res = paired_bootstrap(_stack(ca, ids), _stack(cb, ids), resamples, seed)
            return {**out, "method": BOOTSTRAP, "documents": len(ids), **res}
    x = np.array([ra[s]["score"] for s in seeds], dtype=float)
    y = np.array([rb[s]["score"] for s in seeds], dtype=float)
    return {**out, "method": TTEST, "diff": float(np.mean(x - y)), "p": _ttest(x, y)}


def _comparisons(collected: dict[str, Any], task: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    study, out = collected["study"], []
    for role in ("reference", "windowed"):
        against = study.get(role)
        if against is None or against not in task["results"]:
            continue
        for row in rows:
            if row["model"] != against:
                out.append({**compare(task, row["model"], against, int(study.get("bootstrap") or 0),
                                      int(study.get("bootstrap_seed") or 0)), "role": role})
    # an adaptation whose 0-token point is not the reference (scratch's random network, a vocabulary arm's
    # transferred rows): does training help the strategy's own model?
    for row in rows:
        zero = _zero_of(collected, row["adaptation"]) if row["kind"] == "adaptation" and row["tokens"] else None
        if zero and zero["name"] not in (study.get("reference"), row["model"]) and zero["name"] in task["results"]:
            out.append({**compare(task, row["model"], zero["name"], int(study.get("bootstrap") or 0),
                                  int(study.get("bootstrap_seed") or 0)), "role": "untrained"})
    return out


def _zero_of(collected: dict[str, Any], adaptation: str) -> dict[str, Any] | None:
    """An adaptation's 0-token model: its own budget 0, or the baseline that is its model before training."""
    own = [m for m in collected["models"] if m.get("adaptation") == adaptation and m["kind"] == "adaptation"
           and not m.get("tokens")]
    return (own or [m for m in collected["models"] if adaptation in (m.get("untrained_of") or [])] or [None])[0]


def _long_documents(collected: dict[str, Any], task: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Micro-F1 on the test documents the windowed baseline read as more than one window."""
    windowed = collected["study"].get("windowed")
    out: dict[str, Any] = {"windowed": windowed, "documents": 0, "ids": [], "rows": [], "skipped": None}
    if windowed is None or windowed not in task["results"]:
        return {**out, "skipped": "the study has no windowed baseline on this task"}
    ids = sorted({str(r["id"]) for run in _by_seed(task["results"][windowed]).values()
                  for r in run.get("per_example") or [] if (r.get("n_windows") or 0) > 1})
    if not ids:
        return {**out, "skipped": f"{windowed} read every test document as one window (or has no per-document rows)"}
    for row in rows:
        f1s, docs = [], set()
        for run in _by_seed(task["results"][row["model"]]).values():
            counts = _counts(run) or {}
            found = [i for i in ids if i in counts]
            docs |= set(found)
            if found:
                f1s.append(float(micro_f1(np.array([counts[i] for i in found], dtype=float).sum(0))))
        out["rows"].append({"model": row["model"], **_spread(f1s), "documents": len(docs)})
    if not any(r["n"] for r in out["rows"]):
        return {**out, "rows": [], "skipped": "the runs have no per-document entity counts"}
    return {**out, "documents": len(ids), "ids": ids}


def _curve(collected: dict[str, Any]) -> dict[str, Any]:
    study = collected["study"]
    name = study["curve_task"]
    task = collected["tasks"].get(name, {"results": {}, "metric": None})
    results = task["results"]
    adaptations = [m for m in _ordered(collected) if m["kind"] == "adaptation"]
    points, bpb = [], []
    for a in dict.fromkeys(m["adaptation"] for m in adaptations):
        own = [m for m in adaptations if m["adaptation"] == a]
        zero = [m for m in [_zero_of(collected, a)] if m]
        for m in zero + [m for m in own if m.get("tokens")]:
            if (results.get(m["name"]) or {}).get("runs"):
                seen = (m.get("adapt") or {}).get("tokens_seen") or (m.get("tokens") or 0)
                points.append({"adaptation": a, "model": m["name"], "tokens": m.get("tokens") or 0, "tokens_seen": seen,
                               **_spread([r["score"] for r in results[m["name"]]["runs"]])})
        trained = [m for m in own if m.get("tokens") and m.get("adapt")]
        initial = next((m["adapt"]["initial_bpb"] for m in trained if m["adapt"].get("initial_bpb") is not None), None)
        if initial is not None:
            bpb.append({"adaptation": a, "model": (zero or [{"name": None}])[0]["name"], "tokens": 0,
                        "tokens_seen": 0, "bpb": initial, "what": "initial"})
        bpb += [{"adaptation": a, "model": m["name"], "tokens": m["tokens"], "tokens_seen": m["adapt"].get("tokens_seen"),
                 "bpb": m["adapt"]["final_bpb"], "what": "final", "collapse": _collapse(m)}
                for m in trained if m["adapt"].get("final_bpb") is not None]
    baselines = [{"model": study[role], "role": role, **_spread([r["score"] for r in results[study[role]]["runs"]])}
                 for role in ("reference", "windowed") if (results.get(study.get(role)) or {}).get("runs")]
    return {"task": name, "metric": task.get("metric"), "budgets": sorted({p["tokens"] for p in points}),
            "points": points, "baselines": baselines, "bpb": bpb}


def _cost(collected: dict[str, Any]) -> dict[str, Any]:
    """CPU-hours = wall seconds x threads / 3600. run.json does not record fine-tuning threads: a run dict
    without ``threads`` counts as one thread, and the row says it was assumed."""
    adaptation, finetune = [], []
    for m in _ordered(collected):
        ad = m.get("adapt")
        if ad:
            sec, threads = ad.get("seconds"), ad.get("threads")
            adaptation.append({"model": m["name"], "tokens_seen": ad.get("tokens_seen"), "seconds": sec,
                               "threads": threads or 1, "threads_assumed": threads is None,
                               "cpu_hours": sec * (threads or 1) / 3600 if sec is not None else None,
                               "precision": ad.get("precision")})
        for tname, task in collected["tasks"].items():
            res = task["results"].get(m["name"])
            if res is None:
                continue
            # a copy of another model's run (the same weights and settings: model.same_run_as) cost nothing here
            runs = [(0.0 if r.get("model", {}).get("same_run_as") else r.get("timing", {}).get("total_s") or 0.0,
                     r.get("threads")) for r in res["runs"]]
            seed_dirs = {r.get("_dir") for r in res["runs"]}
            timed = [t for t in res.get("trials", []) if t.get("seconds") is not None and t.get("run") not in seed_dirs]
            runs += [(0.0 if t.get("copy_of") else t["seconds"], t.get("threads")) for t in timed]
            finetune.append({"model": m["name"], "task": tname, "runs": len(res["runs"]),
                             "trials": len(res.get("trials", [])), "trials_timed": len(timed),
                             "seconds": float(sum(s for s, _ in runs)),
                             "cpu_hours": float(sum(s * (t or 1) for s, t in runs)) / 3600,
                             "threads_assumed": any(t is None for _, t in runs),
                             "devices": sorted({str(r.get("diagnostics", {}).get("device")) for r in res["runs"]})})
    return {"adaptation": adaptation, "finetune": finetune}


def _summary(study: dict[str, Any], name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The plain words of one task, derived from the rows and comparisons (nothing is hard-coded)."""
    scored = [r for r in entry["rows"] if r["n"]]
    best = max(scored, key=lambda r: r["mean"]) if scored else None  # max keeps the first of equal means
    out: dict[str, Any] = {"task": name, "best": best and best["model"], "best_mean": best and best["mean"],
                           "reference": study.get("reference"), "windowed": study.get("windowed")}
    words = [f"**{name}** ({entry['metric']}): " + (f"the best model is {best['model']}, {_cell(best)}"
                                                     if best else "no model has a score")]
    kinds, tokens = {r["model"]: r["kind"] for r in entry["rows"]}, {r["model"]: r["tokens"] for r in entry["rows"]}
    for role in ("reference", "windowed"):
        cmp = [{**c, "tokens": tokens[c["model"]]} for c in entry["comparisons"]
               if c["role"] == role and kinds.get(c["model"]) == "adaptation"]
        wins = [c for c in cmp if c["diff"] is not None and c["diff"] > 0 and c["p"] is not None and c["p"] < ALPHA]
        out[f"beats_{role}"] = [c["model"] for c in wins]
        if not cmp:
            words.append(f"no comparison with {ROLE_WORDS[role]} (it or the adaptations are missing on this task)")
        elif wins:
            words.append(f"beating {ROLE_WORDS[role]} ({study[role]}) with p < {ALPHA}: "
                         + ", ".join(f"{c['model']} by {_num(c['diff'], '+.2f')} points ({_method(c)}, p {_p(c['p'])})"
                                     for c in wins))
        else:
            top = max((c for c in cmp if c["diff"] is not None), key=lambda c: c["diff"], default=None)
            closest = (f"; closest: {top['model']}, {_num(top['diff'], '+.2f')} points, p {_p(top['p'])}, {_method(top)}"
                       if top else "")
            largest = max(c.get("tokens") or 0 for c in cmp)
            words.append(f"no adaptation beats {ROLE_WORDS[role]} at this budget ({study[role]}; adaptations of up to "
                         f"{largest:,} tokens{closest})")
    own = [c for c in entry["comparisons"] if c["role"] == "untrained"]
    better = [c for c in own if c["diff"] is not None and c["diff"] > 0 and c["p"] is not None and c["p"] < ALPHA]
    out["beats_untrained"] = [c["model"] for c in better]
    if own:
        listed = "; ".join(f"{c['model']} {_num(c['diff'], '+.2f')} vs {c['against']}, p {_p(c['p'])}"
                           for c in (better or own))
        words.append(f"beating {ROLE_WORDS['untrained']} with p < {ALPHA}: {listed}" if better
                     else f"no adaptation beats {ROLE_WORDS['untrained']} ({listed})")
    return {**out, "text": "; ".join(words) + "."}


# --- Markdown

def _num(x: float | None, spec: str = ".2f", scale: float = 100.0) -> str:
    return "–" if x is None else format(scale * x, spec)


def _p(p: float | None) -> str:
    return "n/a" if p is None else "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _method(c: dict[str, Any]) -> str:
    if c["method"] == BOOTSTRAP:
        return f"paired bootstrap, {_seeds(len(c['seeds']))}, {c['documents']} documents"
    return f"paired t-test, {_seeds(len(c['seeds']))}" if c["method"] == TTEST else "no shared seed"


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _cell(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "–"
    sd = f" ± {100 * s['sd']:.2f}" if s["n"] > 1 else ""
    return f"{100 * s['mean']:.2f}{sd} ({_seeds(s['n'])})"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""])


def _same(values: list[Any]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "–"
    return f"{vals[0]:,}" if len(set(vals)) == 1 else " / ".join(f"{v:,}" for v in vals)


def _model_row(r: dict[str, Any]) -> list[str]:
    return [f"**{r['model']}** ({r['role']})" if r["role"] else r["model"],
            f"{r['tokens']:,}" if r["kind"] == "adaptation" else "– (baseline)", _cell(r) + _collapsed_note(r.get("collapse")),
            "–" if r["lr"] is None else f"{r['lr']:g}",
            "; ".join(f"{t['lr']:g}: {_num(t['dev'])}" for t in r["trials"]) or "–",
            _same(r["optimizer_steps"]), _same(r["train_tokens_seen"]), _num(r["tokens_vs_windowed_pct"], "+.1f", 1)
            + " %" * (r["tokens_vs_windowed_pct"] is not None)]


def _collapsed_note(c: dict[str, float] | None) -> str:
    return "" if not c else f"; representations collapsed in adaptation (token cosine {c['cosine_before']:.2f} -> {c['cosine_after']:.2f})"


def _task_md(name: str, entry: dict[str, Any], study: dict[str, Any]) -> list[str]:
    metric = entry["metric"]
    lines = [f"## {name} ({metric})", "", "### Models", "",
             (f"Test {metric} x 100, mean ± sample sd over seeds; learning rate chosen on dev (trials: lr: dev "
              f"{metric} x 100); optimizer steps and tokens read in training per seed (diagnostics.train_tokens_seen, "
              "every pass of every epoch); the last column: tokens read compared with the windowed baseline."), ""]
    lines += _table(["model", "adaptation tokens", f"test {metric}", "lr", "trials (lr: dev)", "optimizer steps",
                     "training tokens read", "vs windowed"],
                    [_model_row(r) for r in entry["rows"]])
    lines += ["### Paired comparisons", "",
              (f"Difference = model - baseline in {metric} x 100 points. Entity tasks: paired bootstrap over "
               f"test documents ({study.get('bootstrap')} resamples, numpy default_rng("
               f"{study.get('bootstrap_seed')})): each resample draws the documents with replacement, and the "
               "statistic is the mean over the seeds both models share of micro-F1(model) - micro-F1(baseline), "
               "micro-F1 = 2 correct / (predicted + gold) of the summed counts; 95 % percentile interval; "
               "p = min(1, 2 min(share <= 0, share >= 0)). Runs without per-document counts: paired t-test over "
               f"seeds on the test scores (scipy ttest_rel; n/a under {MIN_TTEST_SEEDS} shared seeds), no interval."),
              ""]
    lines += _table(["model", "against", "method", "shared seeds", "test documents", "difference", "95 % interval", "p"],
                    [[c["model"], f"{c['against']} ({c['role']})", c["method"] or "–", len(c["seeds"]),
                      c["documents"] if c["documents"] is not None else "–", _num(c["diff"], "+.2f"),
                      f"[{_num(c['low'], '+.2f')}, {_num(c['high'], '+.2f')}]" if c["low"] is not None else "–",
                      _p(c["p"]).removeprefix("= ")] for c in entry["comparisons"]] or [["–"] * 8])
    ld = entry["long_documents"]
    lines += ["### Long documents", ""]
    if ld["skipped"]:
        lines += [f"Skipped: {ld['skipped']}.", ""]
    else:
        lines += [(f"Micro-F1 x 100 (summed counts) on the {ld['documents']} test documents that {ld['windowed']} "
                  "had to read as more than one window, mean ± sd over seeds: where a long model should win."), ""]
        lines += _table(["model", f"micro-F1, {ld['documents']} long documents", "documents found"],
                        [[r["model"], _cell(r), r["documents"]] for r in ld["rows"]])
    if entry["published"]:
        lines += [f"### Published numbers: {PUBLISHED_LABEL}", ""]
        lines += _table(["model", "score", "metric", "source", "note"],
                        [[p.get("model", "–"), p.get("score", "–"), p.get("metric", "–"), p.get("source", "–"),
                          p.get("note") or ""] for p in entry["published"]])
    return lines


def _curve_md(curve: dict[str, Any], figures: list[str]) -> list[str]:
    metric = curve["metric"]
    lines = [f"## Verdict curve: {curve['task']} ({metric})", "",
             (f"Test {metric} x 100 (mean ± sd over seeds) against the adaptation tokens; 0 = the adaptation's model "
              "before any training. Reference and windowed baselines: horizontal lines (sd as a band)."), ""]
    lines += [f"![{f}]({f})" for f in figures] + ([""] if figures else [])
    cols = curve["budgets"]
    by = {(p["adaptation"], p["tokens"]): p for p in curve["points"]}
    lines += _table(["adaptation"] + [f"{t:,} tokens" for t in cols],
                    [[a] + [_cell(by[(a, t)]) if (a, t) in by else "–" for t in cols]
                     for a in dict.fromkeys(p["adaptation"] for p in curve["points"])]
                    + [[f"{b['model']} ({b['role']})"] + [_cell(b)] * len(cols) for b in curve["baselines"]])
    if curve["bpb"]:
        lines += ["Validation bits per byte (the masked-LM loss, not the verdict): initial = before training.", ""]
        lines += _table(["adaptation", "tokens", "bits per byte", "what"],
                        [[b["adaptation"], f"{b['tokens']:,}", f"{b['bpb']:.4f}", b["what"] + _collapsed_note(b.get("collapse"))]
                         for b in curve["bpb"]])
    return lines


def _cost_md(cost: dict[str, Any]) -> list[str]:
    lines = ["## Cost per run", "",
             ("CPU-hours = wall seconds x threads / 3600. `*`: threads not recorded, 1 assumed (run.json does not "
              "record the fine-tuning threads). Fine-tuning: every seed run (timing.total_s) and the trials whose time "
              "the collected record carries (a trial that is a seed run counts once); a run copied from a model with "
              "the same weights and settings counts 0."), ""]
    lines += _table(["model", "adaptation tokens seen", "wall seconds", "threads", "CPU-hours", "precision"],
                    [[a["model"], _same([a["tokens_seen"]]), a["seconds"], str(a["threads"]) + "*" * a["threads_assumed"],
                      _num(a["cpu_hours"], ".3f", 1), a["precision"]] for a in cost["adaptation"]] or [["–"] * 6])
    lines += _table(["model", "task", "seed runs", "trials timed", "wall seconds", "fine-tuning CPU-hours", "device"],
                    [[f["model"], f["task"], f["runs"], f"{f['trials_timed']} of {f['trials']}", f"{f['seconds']:.1f}",
                      _num(f["cpu_hours"], ".3f", 1) + "*" * f["threads_assumed"], ", ".join(f["devices"])]
                     for f in cost["finetune"]])
    return lines


# --- figures

def _figure(path: Path, title: str, ylabel: str, xs: list[float], draw: Any) -> None:
    """One PNG, saved under a temporary name in the same folder and renamed, so no reader sees half of one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    draw(ax)
    positive = [x for x in xs if x]
    if positive:  # budgets grow geometrically from 0: linear up to the smallest, logarithmic above
        ax.set_xscale("symlog", linthresh=min(positive))
    ax.set(xlabel="adaptation tokens seen (0 = not adapted)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")  # created by savefig: mode from the umask
    try:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def _plot(curve: dict[str, Any], out_dir: Path) -> list[str]:
    """``curve_<task>.png`` (the verdict) and ``bpb.png`` (the masked-LM loss); returns the names written."""
    def verdict(ax: Any) -> None:
        for k, b in enumerate(curve["baselines"]):
            ax.axhline(100 * b["mean"], color=f"C{7 + k}", ls="--", label=f"{b['model']} ({b['role']})")
            ax.axhspan(100 * (b["mean"] - b["sd"]), 100 * (b["mean"] + b["sd"]), color=f"C{7 + k}", alpha=0.15)
        for a in dict.fromkeys(p["adaptation"] for p in curve["points"]):
            pts = [p for p in curve["points"] if p["adaptation"] == a]
            ax.errorbar([p["tokens_seen"] for p in pts], [100 * p["mean"] for p in pts],
                        yerr=[100 * p["sd"] for p in pts], marker="o", capsize=3, label=a)

    def loss(ax: Any) -> None:
        for a in dict.fromkeys(b["adaptation"] for b in curve["bpb"]):
            pts = [b for b in curve["bpb"] if b["adaptation"] == a]
            ax.plot([b["tokens_seen"] or b["tokens"] for b in pts], [b["bpb"] for b in pts], marker="o", label=a)

    names = []
    if curve["points"] or curve["baselines"]:
        names.append(f"curve_{curve['task']}.png")
        _figure(out_dir / names[-1], f"{curve['task']}: the verdict curve",
                f"test {curve['metric']} x 100 (mean ± sd over seeds)", [p["tokens_seen"] for p in curve["points"]],
                verdict)
    if curve["bpb"]:
        names.append("bpb.png")
        _figure(out_dir / "bpb.png", "masked-LM loss during adaptation (not the verdict)", "validation bits per byte",
                [b["tokens_seen"] or b["tokens"] for b in curve["bpb"]], loss)
    return names


def render(collected: dict[str, Any], out_dir: Path) -> Path:
    """Write report.md, report.json and the PNG figures of a collected study into ``out_dir``; returns
    the path of report.md."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    study = collected["study"]
    tasks: dict[str, Any] = {}
    for name in study["tasks"]:
        task = collected["tasks"].get(name)
        if task is None:
            logger.warning("%s: no results collected; left out of the report", name)
            continue
        rows = _rows(collected, task)
        tasks[name] = {"metric": task["metric"], "published": list(task.get("published") or []), "rows": rows,
                       "comparisons": _comparisons(collected, task, rows),
                       "long_documents": _long_documents(collected, task, rows)}
    curve = _curve(collected)
    summary = [_summary(study, name, entry) for name, entry in tasks.items()]
    report = {"kind": "longadapt.study.report", "tasks": tasks, "curve": curve, "cost": _cost(collected),
              "summary": summary,
              "study": {**{k: study.get(k) for k in ("name", "language", "file", "seeds", "tasks", "curve_task",
                                                     "reference", "windowed", "bootstrap", "bootstrap_seed")},
                        "alpha": ALPHA}}
    figures = _plot(curve, out_dir)
    # the report folder is shared by every study file written into one study folder: a figure that this report
    # did not draw belongs to another file's report and would be read as part of this one
    for stale in sorted({*out_dir.glob("curve_*.png"), *out_dir.glob("bpb.png")}):
        if stale.name not in figures:
            stale.unlink()
    lines = [f"# Verdict report: study {study['name']} ({study.get('language')})", "",
             (f"Study file {study.get('file')}; {_seeds(study.get('seeds') or 0)} per model and task; scores x 100 "
              f"on the test split. Reference (un-adapted long model): {study.get('reference') or 'none'}; windowed "
              f"baseline (512 tokens, reading windows): {study.get('windowed') or 'none'}. 'Beats' means a positive "
              f"difference with p < {ALPHA} (paired bootstrap over test documents; t-test over seeds where runs have "
              "no per-document counts)."), "", "## Summary", ""]
    lines += [f"- {s['text']}" for s in summary] + [""]
    lines += _curve_md(curve, figures)
    for name, entry in tasks.items():
        lines += _task_md(name, entry, study)
    lines += _cost_md(cost=report["cost"])
    atomic_write_text(out_dir / "report.json",
                      json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n")
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines).rstrip("\n") + "\n")
    logger.info("wrote %s (%d tasks, %d figures)", path, len(tasks), len(figures))
    return path
