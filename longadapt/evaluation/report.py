"""Aggregation of runs (mean ± std over seeds) and comparison reports (Markdown + PNG plots).

``longadapt compare DIR [DIR ...] --out report.md`` reads every ``run.json`` under the result
directories written by ``longadapt evaluate`` and writes:

- a table models x tasks of the task's main metric (x 100), mean ± sample standard deviation over
  seeds, the best mean of each column in bold;
- a paired t-test (scipy) of every model against the column's best model, pairing runs by seed,
  when both have at least :data:`MIN_PAIRED_RUNS` runs with the same seeds; cells significantly
  below the best (p < 0.05) are marked with ``*``;
- per task, the main metric per document-length bucket (words) per model, as a table and a PNG.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longadapt.errors import LongAdaptError
from longadapt.io import atomic_write_text

logger = logging.getLogger(__name__)

MIN_PAIRED_RUNS = 3
ALPHA = 0.05


def mean_std(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()) if len(arr) else float("nan"),
            "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
            "n": int(len(arr)), "values": [float(v) for v in arr]}


BUDGET_KEYS = ("protocol", "epochs", "batch", "limits", "data")
STEPS_TOLERANCE = 1.25  # optimizer steps of two rows in one ranking may differ by at most this factor


def budget(run: dict[str, Any]) -> dict[str, Any]:
    """What a run was trained and scored under: the comparable part (``BUDGET_KEYS``: protocol, epochs,
    batch unit, limits, data fingerprints) and what is shown beside it (steps, tokens, window, coverage)."""
    cfg = run.get("config", {})
    training = cfg.get("training", {})
    data = run.get("data", {})
    ents = run.get("entities") or {}
    return {
        "protocol": cfg.get("protocol", "default"),
        "epochs": training.get("epochs"),
        "batch": (f"{training['batch_words']} words" if training.get("batch_words")
                  else f"{training['batch_tokens']} tokens" if training.get("batch_tokens")
                  else f"{training.get('batch_size')} examples") if training else None,
        "limits": cfg.get("limits", {}),
        "data": {s: (_scope(d, "split").get("sha256"), _scope(d, "used").get("examples")) for s, d in data.items()},
        "optimizer_steps": run.get("timing", {}).get("optimizer_steps"),
        "train_tokens": run.get("diagnostics", {}).get("train_tokens"),  # one epoch of the model's items
        "train_tokens_seen": run.get("diagnostics", {}).get("train_tokens_seen"),  # every pass, every epoch run
        "epochs_run": run.get("diagnostics", {}).get("epochs_run"),
        "batch_plan": run.get("diagnostics", {}).get("batch_plan_sha256"),
        "max_length": cfg.get("max_length"), "stride": cfg.get("stride"), "truncate": cfg.get("truncate", False),
        "test_documents": _scope(data.get("test", {}), "used").get("documents"),
        "longest_item": run.get("diagnostics", {}).get("longest_train_item_tokens"),
        "batch_tokens": training.get("batch_tokens") if training else None,
        "coverage": (ents.get("coverage") or {}).get("test"),
    }


def _scope(split: dict[str, Any], scope: str) -> dict[str, Any]:
    """One scope of a run.json ``data.<split>`` (``split``: the whole split, ``used``: what the run used). Runs
    written before the scopes were named held both in one flat dict (the fingerprint whole, the counts used)."""
    return split[scope] if scope in split else split


def budget_key(b: dict[str, Any]) -> str:
    return json.dumps({k: b.get(k) for k in BUDGET_KEYS}, sort_keys=True, default=str)


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summary of the runs (seeds) of one model on one task."""
    if not runs:
        raise ValueError("no run to aggregate")
    first = runs[0]
    runs = sorted(runs, key=lambda r: r["seed"])
    budgets = [budget(r) for r in runs]
    test = {k: mean_std([r["test"][k] for r in runs]) for k in first["test"]}
    dev_keys = [k for k in first["dev"] if all(k in r["dev"] for r in runs)]
    buckets: dict[str, Any] = {}
    for name in first.get("buckets", {}):
        rows = [r["buckets"][name] for r in runs if name in r.get("buckets", {})]
        buckets[name] = {"n": rows[0]["n"], "words": rows[0].get("words"),
                         **{k: mean_std([row[k] for row in rows]) for k in rows[0] if k not in ("n", "words")}}
    return {
        "kind": "longadapt.evaluate.summary",
        "task": first["task"], "task_type": first["task_type"], "model": first["model"],
        "main_metric": first["main_metric"], "seeds": [r["seed"] for r in runs],
        "score": mean_std([r["score"] for r in runs]),
        "test": test,
        "dev": {k: mean_std([r["dev"][k] for r in runs]) for k in dev_keys},
        "buckets": buckets,
        "best_epochs": [r["best_epoch"] for r in runs],
        # what differs between seeds (steps after early stopping, tokens read) is listed per seed
        "budget": {**budgets[0], **{k: [b[k] for b in budgets] if len({b[k] for b in budgets}) > 1 else budgets[0][k]
                                    for k in ("optimizer_steps", "train_tokens_seen", "epochs_run")}},
        "mixed_budget": len({budget_key(b) for b in budgets}) > 1,
        "warnings": sorted({w for r in runs for w in r.get("warnings", [])}),
        "baseline": _baseline_of(runs),
    }


def _baseline_of(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The constant baseline of a model's runs on a task (it depends on the data and limits only, so the seeds
    share it); None when the runs have none (entity tasks, runs written before it existed)."""
    found = [r.get("baseline") for r in runs if r.get("baseline")]
    if not found:
        return None
    main = runs[0]["main_metric"]
    return {**found[0], "score": float(np.mean([b["test"][main] for b in found]))}


def load_runs(dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every run.json under ``dirs``. A model name found in several directories stays one row when it
    names the same model directory and no task of it appears in two result directories (the usual case:
    one evaluate per task or language); otherwise each is prefixed with its result directory's name."""
    runs: list[dict[str, Any]] = []
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)  # (model name, task) -> result dirs
    model_dirs: dict[str, set[str]] = defaultdict(set)  # model name -> model directories
    per_dir: list[tuple[Path, list[dict[str, Any]]]] = []
    unique: list[Path] = []
    for d in dirs:
        if Path(d).resolve() not in [u.resolve() for u in unique]:
            unique.append(Path(d))
    for d in unique:
        if not d.is_dir():
            raise LongAdaptError(f"{d}: not a result directory (expected the --out of longadapt evaluate)")
        found = []
        for f in sorted(d.rglob("run.json")):
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise LongAdaptError(f"{f}:{exc.lineno}: invalid JSON ({exc.msg}); remove or re-run it") from None
            if data.get("kind") != "longadapt.evaluate.run":
                continue
            data["_file"] = str(f)
            found.append(data)
            owners[(data["model"]["name"], data["task"])].add(str(d.resolve()))
            model_dirs[data["model"]["name"]].add(str(Path(data["model"].get("dir", "")).resolve()))
        if not found:
            raise LongAdaptError(f"{d}: no run.json from longadapt evaluate under this directory")
        per_dir.append((d, found))
    clashing = {name for name, ds in model_dirs.items() if len(ds) > 1}
    clashing |= {name for (name, _), ds in owners.items() if len(ds) > 1}
    for d, found in per_dir:
        for r in found:
            if r["model"]["name"] in clashing:
                r["model"] = {**r["model"], "name": f"{d.name}/{r['model']['name']}"}
            runs.append(r)
    return runs


def _baseline_cell(b: dict[str, Any] | None) -> str:
    if b is None:
        return "–"
    pred = b["prediction"]
    what = ", ".join(map(str, pred)) if isinstance(pred, list) else f"{pred:.3g}"
    return f"*{100 * b['score']:.2f}* (always {what})"


def _fmt(ms: dict[str, Any]) -> str:
    """``mean ± std`` x 100, or the value alone for one run (a spread of one run is not zero)."""
    if ms.get("n", 0) < 2:
        return f"{100 * ms['mean']:.2f}"
    return f"{100 * ms['mean']:.2f} ± {100 * ms['std']:.2f}"


def tied_best(cands: Sequence[tuple[float, str]]) -> set[str]:
    """The models whose mean (a fraction) equals the best one's as printed (x 100, two decimals): a tie is
    shown as a tie, not as one arbitrary winner."""
    top = round(100 * max(c[0] for c in cands), 2)
    return {m for v, m in cands if round(100 * v, 2) == top}


def paired_test(a: dict[int, float], b: dict[int, float]) -> tuple[float | None, int]:
    """Two-sided paired t-test on the seeds both runs share; ``(p, n_pairs)``, p None when too few
    pairs or when every difference is the same."""
    from scipy.stats import ttest_rel

    seeds = sorted(set(a) & set(b))
    if len(seeds) < MIN_PAIRED_RUNS:
        return None, len(seeds)
    x = np.array([a[s] for s in seeds])
    y = np.array([b[s] for s in seeds])
    diff = x - y
    if np.allclose(diff, diff[0]):
        return (1.0 if np.allclose(diff, 0) else 0.0), len(seeds)
    p = float(ttest_rel(x, y).pvalue)
    return (None if math.isnan(p) else p), len(seeds)


def _steps(b: dict[str, Any]) -> list[int]:
    v = b.get("optimizer_steps")
    return [x for x in (v if isinstance(v, list) else [v]) if x]


def _budget_groups(summaries: dict[tuple[str, str], dict[str, Any]], task: str) -> list[list[str]]:
    """Models of ``task`` grouped by comparable budget (same budget key and steps within STEPS_TOLERANCE)."""
    groups: list[tuple[str, list[int], list[str]]] = []
    for (m, t), s in sorted(summaries.items()):
        if t != task:
            continue
        key, steps = budget_key(s["budget"]), _steps(s["budget"])
        for g in groups:
            all_steps = g[1] + steps
            if g[0] == key and (not all_steps or max(all_steps) <= STEPS_TOLERANCE * min(all_steps)):
                g[1].extend(steps)
                g[2].append(m)
                break
        else:
            groups.append((key, list(steps), [m]))
    return [g[2] for g in groups]


def _describe_budget(b: dict[str, Any]) -> str:
    limits = ", ".join(f"{k}={v}" for k, v in (b.get("limits") or {}).items() if v is not None) or "none"
    steps = b.get("optimizer_steps")
    return (f"protocol {b.get('protocol')}, {b.get('epochs')} epochs, batches of {b.get('batch')}, "
            f"{steps if not isinstance(steps, list) else '/'.join(map(str, steps))} steps, limits {limits}")


def compare(dirs: Sequence[str | Path], out: str | Path, plots: bool = True, allow_mixed: bool = False) -> Path:
    """Write the Markdown report ``out`` (and its PNG plots next to it).

    Rows of one task column are ranked together only when they share a budget (protocol, epochs, batch
    unit, limits, data, and optimizer steps within a factor of 1.25); otherwise the comparison is refused
    unless ``allow_mixed``, and then every row outside the largest budget group (every row, when no group is
    the largest) is marked ``†``.
    """
    runs = load_runs(dirs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["model"]["name"], r["task"])].append(r)
    summaries = {k: aggregate(v) for k, v in groups.items()}
    models = sorted({m for m, _ in groups})
    tasks = sorted({t for _, t in groups})
    metric_of = {t: next(s["main_metric"] for (m, tt), s in summaries.items() if tt == t) for t in tasks}

    mixed_rows: set[tuple[str, str]] = set()
    problems: list[str] = []
    for (m, t), s in sorted(summaries.items()):
        if s["mixed_budget"]:
            problems.append(f"{m} / {t}: its seeds were run under different budgets")
            mixed_rows.add((m, t))
    for t in tasks:
        budget_groups = _budget_groups(summaries, t)
        if len(budget_groups) > 1:
            sizes = sorted((len(g) for g in budget_groups), reverse=True)
            main = max(budget_groups, key=len) if sizes[0] > sizes[1] else None  # a tie: every row is marked
            desc = "; ".join(f"{', '.join(g)}: {_describe_budget(summaries[(g[0], t)]['budget'])}" for g in budget_groups)
            longest = [(summaries[(m, t)]["budget"].get("longest_item") or 0, summaries[(m, t)]["budget"].get("batch_tokens"))
                       for g in budget_groups for m in g]
            over = max((n for n, bt in longest if bt and n > bt), default=0)
            if over:
                desc += (f" (a training example of {over} tokens is longer than the batch of "
                         f"{max(bt for _, bt in longest if bt)} tokens, so it fills a batch alone and the steps differ: "
                         f"set training.batch_tokens to at least {over} to give both the same steps)")
            problems.append(f"{t}: {desc}")
            mixed_rows |= {(m, t) for g in budget_groups if g is not main for m in g}
    if problems and not allow_mixed:
        raise LongAdaptError("these results were not trained under one budget, so they are not ranked together: "
                             + " | ".join(problems) + ". Compare like with like (same epochs, limits, data and "
                             "protocol), or pass --allow-mixed to rank them anyway with the rows marked")

    lines = ["# longadapt comparison", "",
             f"Runs read from: {', '.join(str(d) for d in dirs)}. Scores x 100 on the test split, "
             "mean ± sample std over n seeds (one seed: the value alone); **bold** = best mean of the column (every "
             "row that ties it at the printed precision); `*` = "
             f"significantly below the best (paired t-test over seeds, p < {ALPHA}; needs {MIN_PAIRED_RUNS}+ shared "
             "seeds). Entity scores count every gold mention of the test split; the coverage column of the budget "
             "table says how many of them the scheme could represent.", ""]
    if mixed_rows:
        lines += ["**Mixed budgets (--allow-mixed)**: `†` marks rows trained under another budget than the rest of "
                  "their column; their ranks are not comparable. " + " | ".join(problems), ""]
    header = "| model | " + " | ".join(f"{t} ({metric_of[t]})" for t in tasks) + " |"
    lines += [header, "|" + "---|" * (len(tasks) + 1)]
    best: dict[str, str] = {}
    bold: dict[str, set[str]] = {}
    for t in tasks:
        cands = [(summaries[(m, t)]["score"]["mean"], m) for m in models if (m, t) in summaries]
        best[t] = max(cands)[1]
        bold[t] = tied_best(cands)
    pvalues: dict[tuple[str, str], tuple[float | None, int]] = {}
    for t in tasks:
        ref = {r["seed"]: r["score"] for r in groups[(best[t], t)]}
        for m in models:
            if (m, t) in groups and m != best[t]:
                pvalues[(m, t)] = paired_test(ref, {r["seed"]: r["score"] for r in groups[(m, t)]})
    for m in models:
        cells = []
        for t in tasks:
            if (m, t) not in summaries:
                cells.append("–")
                continue
            s = summaries[(m, t)]["score"]
            cell = _fmt(s) + (f" (n={s['n']})" if s["n"] > 1 else "")
            if m in bold[t]:
                cell = f"**{cell}**"
            p, _ = pvalues.get((m, t), (None, 0))
            if p is not None and p < ALPHA:
                cell += " *"
            if (m, t) in mixed_rows:
                cell += " †"
            base = summaries[(m, t)].get("baseline")
            if base is not None and s["mean"] <= base["score"]:
                cell += " ‡"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    baselines = {t: next((summaries[(m, t)]["baseline"] for m in models
                          if (m, t) in summaries and summaries[(m, t)].get("baseline")), None) for t in tasks}
    if any(baselines.values()):
        lines.append("| *constant baseline* | " + " | ".join(_baseline_cell(baselines[t]) for t in tasks) + " |")
        lines += ["", "`‡`: not above the constant baseline of its task (the best prediction that ignores the input, "
                  "chosen without test: the most frequent class, the top-k training labels, the best answer set, the "
                  "mean score); such a model has not learned the task at its budget."]

    lines += ["", "## Budget and coverage", "",
              "What each row was trained and scored under. Epochs run (per seed where they differ: a step limit or "
              "a stop) of the epochs set; tokens read in training: the real tokens of every training pass actually "
              "made, windows' overlap included. Coverage: the share of the test split's gold mentions the "
              "task's scheme can represent (entity tasks; the rest count as misses).", "",
              "| task | model | protocol | seeds | epochs run / set | batches | optimizer steps | tokens read in "
              "training | limits | window / stride | test documents | coverage | warnings |",
              "|---|---|---|---|---:|---|---:|---:|---|---|---:|---:|---|"]
    for (m, t), s in sorted(summaries.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        b = s["budget"]
        limits = ", ".join(f"{k}={v}" for k, v in (b.get("limits") or {}).items() if v is not None) or "none"
        def per_seed(v: Any) -> str:
            return "/".join(map(str, v)) if isinstance(v, list) else str(v if v is not None else "–")

        steps = b.get("optimizer_steps")
        epochs = f"{per_seed(b.get('epochs_run'))} / {b.get('epochs')}"
        window = f"{b.get('max_length')} / {b.get('stride')}" + (" (truncated)" if b.get("truncate") else "")
        cov = f"{100 * b['coverage']:.2f} %" if b.get("coverage") is not None else "–"
        lines.append(f"| {t} | {m}{' †' if (m, t) in mixed_rows else ''} | {b.get('protocol')} | {s['seeds']} | "
                     f"{epochs} | {b.get('batch')} | {per_seed(steps)} | {per_seed(b.get('train_tokens_seen'))} | "
                     f"{limits} | {window} | {b.get('test_documents')} | {cov} | {len(s['warnings']) or '–'} |")
    warned = [(m, t, w) for (m, t), s in sorted(summaries.items()) for w in s["warnings"]]
    if warned:
        lines += ["", "Warnings:", ""] + [f"- {m} / {t}: {w}" for m, t, w in warned]

    lines += ["", "## Paired t-tests against the best model of each task", "",
              "| task | best | model | shared seeds | p-value |", "|---|---|---|---|---|"]
    for (m, t), (p, n) in sorted(pvalues.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        ptxt = f"{p:.4f}" if p is not None else f"n/a (needs {MIN_PAIRED_RUNS} shared seeds)"
        lines.append(f"| {t} | {best[t]} | {m} | {n} | {ptxt} |")
    if not pvalues:
        lines.append("| – | – | – | – | only one model per task |")

    lines += ["", "## Scores per document length (words)", ""]
    for t in tasks:
        bucket_names: list[str] = []
        for m in models:
            for b in summaries.get((m, t), {}).get("buckets", {}):
                if b not in bucket_names:
                    bucket_names.append(b)
        metric = metric_of[t]
        lines += [f"### {t} ({metric})", "", "| model | " + " | ".join(bucket_names) + " |",
                  "|" + "---|" * (len(bucket_names) + 1)]
        counts = []
        for m in models:
            bks = summaries.get((m, t), {}).get("buckets", {})
            if (m, t) not in summaries:
                continue
            lines.append(f"| {m} | " + " | ".join(_fmt(bks[b][metric]) if b in bks else "–" for b in bucket_names) + " |")
            counts = [str(bks[b]["n"]) if b in bks else "–" for b in bucket_names]
        lines.append("| *test documents* | " + " | ".join(counts) + " |")
        if plots and bucket_names:
            png = out.with_name(f"{out.stem}_{t}.png")
            _plot(png, t, metric, models, bucket_names, summaries)
            lines += ["", f"![{t} per length bucket]({png.name})"]
        lines.append("")
    lines += ["## Runs", "", "| model | task | seeds | best epochs | model dir |", "|---|---|---|---|---|"]
    for (m, t), s in sorted(summaries.items()):
        lines.append(f"| {m} | {t} | {s['seeds']} | {s['best_epochs']} | {s['model'].get('dir', '')} |")
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def _plot(path: Path, task: str, metric: str, models: Sequence[str], buckets: Sequence[str],
          summaries: dict[tuple[str, str], dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(buckets))
    for m in models:
        s = summaries.get((m, task))
        if s is None:
            continue
        bks = s["buckets"]
        ys = [100 * bks[b][metric]["mean"] if b in bks else np.nan for b in buckets]
        es = [100 * bks[b][metric]["std"] if b in bks else 0.0 for b in buckets]
        ax.errorbar(x, ys, yerr=es, marker="o", capsize=3, label=m)
    ax.set_xticks(x, buckets)
    ax.set_xlabel("document length (words)")
    ax.set_ylabel(f"{metric} x 100")
    ax.set_title(task)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
