"""A study as stages: what to run, in which order, on which shard, and where each result lives.

Stages (``Stage.id``):

- ``baseline/<name>``: a baseline made long (``make_long``); a baseline used as it is needs no stage;
- ``adapt/<model>``: one adaptation at one token budget (``longadapt adapt`` with the recipe's phases
  scaled to the budget; budget 0: the strategy's model before any training step);
- ``trial/<task>/<model>/lr-<rate>`` (grid) or ``trial/<task>/<model>/<k>`` (TPE): a trial of the
  learning-rate search of a model on a task (dev score, the search's seed); TPE trials depend on the ones
  before them, grid trials on none. A grid trial is named by its rate, so that two study files with different
  grids in one folder share the trials of the rates they share and never overwrite each other's records;
- ``seed/<task>/<model>/<s>``: the model fine-tuned with the rate chosen on dev, seed ``s`` (the search's
  seed reuses its trial's run: same fingerprint, same folder);
- ``report``: the verdict report, from every stage's record.

The study folder (``OUT``)::

    OUT/models/<model>/                            adapted and made-long models
    OUT/finetune/<task>/<model>/lr-<lr>/seed-<s>/  fine-tuning runs (run.json, predictions), as evaluate writes them
    OUT/stages/<stage>.json                        what each finished stage produced, with its fingerprint
    OUT/logs/<stage>.log                           each stage's log
    OUT/search.db                                  the Optuna storage of the searches (default)
    OUT/report/                                    report.md, report.json, PNG curves

Shards (``--shard i/n``) take whole models (a model's adaptation or baseline stage, its trials and its
seeds), assigned once by a deterministic balanced rule, so no shard waits for another; ``report`` is the
gather step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.study.spec import StudySpec, load_study_task, model_name, study_dir


@dataclass
class ModelEntry:
    """One model of the study: a baseline, or an adaptation at one budget."""

    name: str
    kind: str  # baseline | adaptation
    tasks: list[str]
    stage: str | None  # the stage that makes it (None: a baseline used as it is)
    source: str | None = None  # baselines: the model as given
    adaptation: str | None = None  # adaptations: the adaptation's name
    strategy: str | None = None
    arm: str | None = None
    tokens: int = 0  # adaptation tokens (0: not adapted)
    final: bool = False  # the adaptation's largest budget (every task), or a smaller one (curve tasks)
    untrained_of: list[str] = field(default_factory=list)  # adaptations whose 0-token point this baseline is
    learning_rates: list[float] | None = None  # the model's own grid (the study file's), else search.learning_rates


@dataclass
class Stage:
    id: str
    kind: str  # baseline | adapt | trial | seed | report
    model: str | None = None
    task: str | None = None
    slot: int | None = None  # trial
    seed: int | None = None  # seed
    deps: list[str] = field(default_factory=list)


@dataclass
class Plan:
    spec: StudySpec
    out: Path
    models: dict[str, ModelEntry]
    stages: dict[str, Stage]  # in plan order
    cache: dict[Any, Any] = field(default_factory=dict)  # fingerprints computed in this process

    def model_dir(self, name: str) -> Path:
        m = self.models[name]
        if m.kind == "baseline" and m.stage is None:
            from longadapt.sources import resolve_model_source

            return resolve_model_source(m.source, f"baseline {name}")
        return self.out / "models" / name

    def run_dir(self, task: str, model: str, lr: float, seed: int) -> Path:
        return self.out / "finetune" / task / model / f"lr-{lr:.3g}" / f"seed-{seed}"

    def record_path(self, stage_id: str) -> Path:
        return self.out / "stages" / (stage_id.replace("/", "__") + ".json")

    def log_path(self, stage_id: str) -> Path:
        return self.out / "logs" / (stage_id.replace("/", "__") + ".log")

    def shard_of(self, stage: Stage, n: int) -> int | None:
        """The shard (0..n-1) that runs ``stage``; None for the report (the gather step)."""
        if stage.model is None:
            return None
        return assign_shards(self, n)[stage.model]

    def grid(self, model: str) -> list[float]:
        return _grid(self.spec, self.models[model])

    def trial_count(self, model: str) -> int:
        return _trial_count(self.spec, self.models[model])

    def trials_of(self, task: str, model: str) -> list[Stage]:
        return [s for s in self.stages.values() if s.kind == "trial" and s.task == task and s.model == model]


def _grid(spec: StudySpec, m: ModelEntry) -> list[float]:
    """The learning rates a grid search tries for a model: its own, else the search's."""
    return list(m.learning_rates or spec.search.learning_rates or [])


def _trial_count(spec: StudySpec, m: ModelEntry) -> int:
    return len(_grid(spec, m)) if spec.search.method == "grid" else (spec.search.trials or 0)


def build_plan(spec: StudySpec) -> Plan:
    out = study_dir(spec)
    curve = spec.curve_tasks or [spec.report.curve_task or spec.tasks[0]]
    models: dict[str, ModelEntry] = {}
    stages: dict[str, Stage] = {}

    def add(stage: Stage) -> None:
        stages[stage.id] = stage

    for b in spec.baselines:
        sid = f"baseline/{b.name}" if b.make_long is not None else None
        models[b.name] = ModelEntry(b.name, "baseline", list(spec.tasks), sid, source=b.model,
                                    learning_rates=b.learning_rates)
        if sid:
            add(Stage(sid, "baseline", model=b.name))
    for a in spec.adaptations:
        budgets = sorted({b for (ad, b, _) in spec.recipes.values() if ad is a} | ({0} if a.untrained and
                                                                                  0 in (a.budgets or []) else set()))
        largest = max(budgets)
        for b in budgets:
            if b == 0 and a.untrained:
                models[a.untrained].untrained_of.append(a.name)
                continue
            name = model_name(a, b)
            tasks = list(a.tasks or spec.tasks) if b == largest else [t for t in spec.tasks if t in curve]
            recipe = spec.recipes[name][2]
            strategy = str(recipe.get("strategy"))
            arm = (recipe.get("continue") or {}).get("vocab_arm", "keep") if strategy == "continue" else None
            models[name] = ModelEntry(name, "adaptation", tasks, f"adapt/{name}", adaptation=a.name,
                                      strategy=strategy, arm=arm, tokens=b, final=b == largest,
                                      learning_rates=a.learning_rates)
            add(Stage(f"adapt/{name}", "adapt", model=name))
    for task in spec.tasks:
        for name, m in models.items():
            if task not in m.tasks:
                continue
            made = [m.stage] if m.stage else []
            trial_ids = []
            grid = _grid(spec, m) if spec.search.method == "grid" else None
            for k in range(_trial_count(spec, m)):
                deps = made + ([trial_ids[-1]] if spec.search.method == "tpe" and trial_ids else [])
                sid = f"trial/{task}/{name}/" + (f"lr-{grid[k]:g}" if grid else str(k))
                add(Stage(sid, "trial", model=name, task=task, slot=k, deps=deps))
                trial_ids.append(sid)
            for s in range(spec.seeds):
                add(Stage(f"seed/{task}/{name}/{s}", "seed", model=name, task=task, seed=s, deps=made + trial_ids))
    add(Stage("report", "report", deps=[s for s in stages]))
    return Plan(spec, out, models, stages)


def _cost(plan: Plan, m: ModelEntry) -> float:
    """A rough, deterministic cost of a model's stages (minutes on the 2-core machine; only their ratios
    matter): adaptation tokens, and a fine-tuning run per trial and seed of each of its tasks."""
    runs = len(m.tasks) * (plan.trial_count(m.name) + plan.spec.seeds)
    return m.tokens / 131072 * 4 + runs * 5 + (1 if m.stage else 0)


def assign_shards(plan: Plan, n: int) -> dict[str, int]:
    """Models to shards 0..n-1: largest cost first, each to the least loaded shard (ties: the lower shard,
    then by name), so the assignment depends on the study file alone."""
    if n < 1:
        raise LongAdaptError("--shard i/n needs n >= 1")
    load = [0.0] * n
    out: dict[str, int] = {}
    for m in sorted(plan.models.values(), key=lambda m: (-_cost(plan, m), m.name)):
        i = min(range(n), key=lambda k: (load[k], k))
        out[m.name] = i
        load[i] += _cost(plan, m)
    return out


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise LongAdaptError(f"--shard {text}: write i/n, e.g. 0/2 (shard i of n, counted from 0)") from None
    if not (n >= 1 and 0 <= i < n):
        raise LongAdaptError(f"--shard {text}: i must be between 0 and n-1 (e.g. 0/2 and 1/2)")
    return i, n


def describe(plan: Plan, stage: Stage) -> str:
    """The budget of a stage, for --dry-run."""
    spec = plan.spec
    if stage.kind == "adapt":
        _, tokens, recipe = spec.recipes[stage.model]
        if not tokens:
            return "0 tokens: the strategy's model before any training step"
        phases = recipe.get("phases") or []
        per = int((recipe.get("train") or {}).get("tokens_per_step", 0))
        shape = " + ".join(f"{p.get('steps')} x {int(p.get('tokens_per_step') or per):,}" for p in phases)
        return f"{tokens:,} tokens ({shape}); {recipe.get('strategy')}"
    if stage.kind == "baseline":
        b = next(x for x in spec.baselines if x.name == stage.model)
        return f"{b.model} made long: {b.make_long}"
    if stage.kind == "trial":
        s = spec.search
        lr = f"lr {plan.grid(stage.model)[stage.slot]:g}" if s.method == "grid" else f"lr from TPE over {s.range}"
        return f"{lr}, seed {s.seed}, dev {_task_budget(plan, stage.task)}"
    if stage.kind == "seed":
        how = "lr chosen on dev" if spec.search.method != "none" else "the task's lr"
        return f"{how}, seed {stage.seed}, test {_task_budget(plan, stage.task)}"
    return "the verdict report (Markdown, JSON, PNG)"


def _task_budget(plan: Plan, task: str) -> str:
    t = load_study_task(plan.spec, task)
    cfg = t.training()
    from longadapt.evaluation.finetune import batch_unit

    return f"({cfg.epochs} epochs, batches of {batch_unit(cfg)})"


def owners(plan: Plan, n: int) -> dict[str, Any]:
    """Which shard runs which models (for --dry-run)."""
    shards = assign_shards(plan, n)
    out: dict[int, list[str]] = {}
    for name, i in shards.items():
        out.setdefault(i, []).append(name)
    return {i: sorted(v) for i, v in sorted(out.items())}
