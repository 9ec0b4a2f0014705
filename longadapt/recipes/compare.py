"""Compare adaptation runs: validation bits per byte against tokens seen and against position.

Reads the directories written by :func:`longadapt.recipes.adapt.run_recipe` (``run.json`` and each
phase's ``metrics.jsonl``). Bits per byte is the only loss comparable across tokenizers.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from longadapt.errors import LongAdaptError

_POS = re.compile(r"^bpb_pos_(\d+)_(\d+)$")


@dataclass
class RunSummary:
    name: str
    path: Path
    strategy: str
    arm: str
    tokens_seen: int  # real (non-padding) training tokens, all phases
    wall_seconds: float
    initial_bpb: float | None
    final_bpb: float
    positions: dict[tuple[int, int], float]  # final bits per byte per position bucket
    curve: list[tuple[int, float]] = field(default_factory=list)  # (tokens seen, validation bpb)


def load_run(path: str | Path, name: str | None = None) -> RunSummary:
    path = Path(path)
    run_file = path / "run.json"
    if not run_file.is_file():
        raise LongAdaptError(f"{path} is not a finished adaptation run (no run.json); run `longadapt adapt` first")
    run = json.loads(run_file.read_text())
    strategy = run.get("strategy", "?")
    arm = (run.get("build") or {}).get("vocab_arm") or ("new" if strategy == "scratch" else "kept")
    curve: list[tuple[int, float]] = []
    offset = 0
    initial = None
    for phase in run.get("phases", []):
        metrics = Path(phase["run_dir"]) / "metrics.jsonl"
        if not metrics.is_file():  # the run directory moved: look next to run.json
            metrics = path / "phases" / phase["name"] / "metrics.jsonl"
        last = 0
        for line in metrics.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("kind") != "eval":
                continue
            if initial is None:
                initial = rec["bpb"]
            last = rec.get("tokens", last)
            point = (offset + int(rec.get("tokens", 0)), float(rec["bpb"]))
            if not curve or point != curve[-1]:
                curve.append(point)
        offset += last
    final = run.get("final_metrics") or {}
    positions = {}
    for key, value in final.items():
        m = _POS.match(key)
        if m and isinstance(value, (int, float)) and not math.isnan(value):
            positions[(int(m.group(1)), int(m.group(2)))] = float(value)
    return RunSummary(
        name=name or path.name, path=path, strategy=strategy, arm=arm, tokens_seen=offset,
        wall_seconds=float(run.get("wall_seconds", float("nan"))), initial_bpb=initial,
        final_bpb=float(final.get("bpb", float("nan"))), positions=dict(sorted(positions.items())), curve=curve,
    )


def comparison_table(runs: list[RunSummary], buckets: list[tuple[int, int]] | None = None) -> str:
    """Markdown: strategy, arm, tokens seen, wall time, bits per byte at step 0 and at the end,
    and per position bucket (the best value per column in bold)."""
    if buckets is None:
        buckets = sorted({b for r in runs for b in r.positions})
    head = ["run", "strategy", "vocabulary", "tokens seen", "wall time", "bpb at step 0", "bpb final"]
    head += [f"bpb pos {lo}-{hi}" for lo, hi in buckets]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    columns: list[list[float | None]] = [[r.final_bpb for r in runs]] + [[r.positions.get(b) for r in runs] for b in buckets]
    best = [min((v for v in col if v is not None and not math.isnan(v)), default=None) for col in columns]

    def cell(v: float | None, b: float | None) -> str:
        if v is None or math.isnan(v):
            return "–"
        return f"**{v:.3f}**" if b is not None and v == b else f"{v:.3f}"

    for i, r in enumerate(runs):
        vals = [cell(r.final_bpb, best[0])] + [cell(r.positions.get(b), best[j + 1]) for j, b in enumerate(buckets)]
        init = "–" if r.initial_bpb is None else f"{r.initial_bpb:.3f}"
        rows.append(f"| {r.name} | {r.strategy} | {r.arm} | {r.tokens_seen:,} | {r.wall_seconds / 60:.1f} min | {init} | " + " | ".join(vals) + " |")
    return "\n".join(rows)


def _plot(series: list[tuple[str, list[float], list[float]]], path: str | Path, xlabel: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, xs, ys in series:
        if xs:
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation bits per byte")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(runs: list[RunSummary], path: str | Path) -> Path:
    """Validation bits per byte against training tokens seen, one line per run."""
    series = [(r.name, [x for x, _ in r.curve], [y for _, y in r.curve]) for r in runs]
    return _plot(series, path, "training tokens seen", "Bits per byte against tokens seen")


def plot_positions(runs: list[RunSummary], path: str | Path) -> Path:
    """Final validation bits per byte per position bucket in the document."""
    series = [(r.name, [lo for lo, _ in r.positions], list(r.positions.values())) for r in runs]
    return _plot(series, path, "position in the document (start of the 512-token bucket)",
                 "Does the model use the positions beyond 512?")


#: The runs of a strategy comparison: (name, strategy, vocabulary arm of continue).
COMPARISON = [("convert", "convert", None),
              *((f"continue-{arm}", "continue", arm) for arm in ("keep", "replace", "extend")),  # VOCAB_ARMS' order
              ("scratch", "scratch", None)]


def run_comparison(runs_dir: str | Path, language: str = "fr", preset: str = "tiny", small: bool = False,
                   recipes_dir: str | Path | None = None) -> list[RunSummary]:
    """Train (or load, when already finished) every run of :data:`COMPARISON` for ``language`` and
    return their summaries. ``small`` shrinks each run to seconds (same code path)."""
    import logging

    from longadapt.recipes.adapt import recipe_from_dict, run_recipe, smoke_recipe
    from longadapt.recipes.files import load_recipe

    log = logging.getLogger(__name__)
    runs_dir = Path(runs_dir)
    summaries = []
    for name, strategy, arm in COMPARISON:
        out = runs_dir / name
        if not (out / "run.json").is_file():
            data, path = load_recipe(strategy, language, preset, Path(recipes_dir) if recipes_dir else None)
            if arm:
                data.setdefault("continue", {})["vocab_arm"] = arm
            if small:
                data = smoke_recipe(data)
            data["out"] = str(out)
            log.info("training %s", name)
            run_recipe(recipe_from_dict(data, path), resume=True)  # a stopped comparison run continues
            print(f"{name}: trained")
        else:
            print(f"{name}: loaded")
        summaries.append(load_run(out, name))
    return summaries
