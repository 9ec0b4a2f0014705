"""Running one stage of a study, and knowing whether a stage is done.

A stage is done when its record (``OUT/stages/<stage>.json``) holds the fingerprint the stage would have
now: for an adaptation, the checked recipe at its budget, the base model's files, the corpus file, the
package versions and the code that can change its weights; for a fine-tuning run, the evaluation's own run
fingerprint (model weights, tokenizer, task after overrides and the learning rate, data, seed, limits,
versions, code). A stage whose inputs changed is stale and runs again; nothing stale is ever reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.io import atomic_dir, atomic_write_json, set_aside
from longadapt.study.plan import Plan, Stage
from longadapt.study.spec import StudySpec, load_study_task

logger = logging.getLogger(__name__)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_limits(spec: StudySpec):
    from longadapt.evaluation.finetune import RunLimits

    return RunLimits(spec.limits.max_train_docs, spec.limits.max_eval_docs, spec.limits.max_steps)


def read_record(plan: Plan, sid: str) -> dict[str, Any] | None:
    path = plan.record_path(sid)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_record(plan: Plan, sid: str, record: dict[str, Any]) -> None:
    atomic_write_json(plan.record_path(sid), {"stage": sid, **record})


# ------------------------------------------------------------------------------------------------
# fingerprints


def _source_fingerprint(src: str) -> str:
    """A model source's files (a directory or installed package), or its hub id when it is not local."""
    from longadapt.evaluation.fingerprint import model_fingerprint
    from longadapt.sources import installed_model_package

    p = Path(src).expanduser()
    local = p if p.is_dir() else installed_model_package(src)
    return model_fingerprint(local)["sha256"] if local is not None else f"hub:{src}"


def adapt_fingerprint(plan: Plan, name: str) -> dict[str, Any]:
    from longadapt.evaluation.fingerprint import versions
    from longadapt.evaluation.fingerprint import code_fingerprint, file_sha256
    from longadapt.languages import load_language

    _, tokens, recipe = plan.spec.recipes[name]
    pack = load_language(plan.spec.language)
    corpus = (recipe.get("corpus") or {}).get("path") or (pack.corpora[0].path if pack.corpora else None)
    corpus_sha = None
    if corpus:
        from longadapt.dataroot import data_root

        root = data_root()
        p = Path(corpus) if Path(corpus).is_absolute() or root is None else root / corpus
        corpus_sha = file_sha256(p) if p.is_file() else str(corpus)
    parts = {"recipe": _digest({k: v for k, v in recipe.items() if k != "out"}), "tokens": tokens,
             "base": _source_fingerprint(str(recipe["base"])) if recipe.get("base") else None,
             "corpus": corpus_sha, "language": plan.spec.language, "versions": _digest(versions()),
             "code": code_fingerprint("adapt")}
    return {"sha256": _digest(parts), "parts": parts}


def baseline_fingerprint(plan: Plan, name: str) -> dict[str, Any]:
    from longadapt.evaluation.fingerprint import versions
    from longadapt.evaluation.fingerprint import code_fingerprint

    b = next(x for x in plan.spec.baselines if x.name == name)
    parts = {"source": _source_fingerprint(b.model), "make_long": b.make_long, "versions": _digest(versions()),
             "code": code_fingerprint("import")}
    return {"sha256": _digest(parts), "parts": parts}


def finetune_fingerprint(plan: Plan, task: str, model: str, lr: float, seed: int) -> str | None:
    """The evaluation's run fingerprint of (model, task at ``lr``, seed); None while the model does not exist."""
    try:
        model_dir = plan.model_dir(model)
    except LongAdaptError:
        return None
    if not (Path(model_dir) / "config.json").is_file():
        return None
    return _finetune_fp(plan, task, str(model_dir), float(lr), int(seed))


def _finetune_fp(plan: Plan, task: str, model_dir: str, lr: float, seed: int) -> str:
    """Cached per plan on the model's files' modification times (a re-adapted model has new ones)."""
    from longadapt.evaluation.fingerprint import run_fingerprint

    d = Path(model_dir)
    stamp = tuple(p.stat().st_mtime_ns for p in sorted(d.glob("*")) if p.suffix in (".json", ".safetensors", ".bin"))
    key = (task, model_dir, lr, seed, stamp)
    if key not in plan.cache:
        t = load_study_task(plan.spec, task, lr)
        plan.cache[key] = run_fingerprint(model_dir, t, seed, run_limits(plan.spec), None)["sha256"]
    return plan.cache[key]


# ------------------------------------------------------------------------------------------------
# what is done


def trial_rate(plan: Plan, stage: Stage) -> float | None:
    """A trial's learning rate: the grid's value, or (TPE) the rate its record holds."""
    s = plan.spec.search
    if s.method == "grid":
        return float(plan.grid(stage.model)[stage.slot])
    rec = read_record(plan, stage.id)
    return float(rec["lr"]) if rec and "lr" in rec else None


def _history(plan: Plan, task: str, model: str, before: int) -> str:
    """The (rate, dev value) of a search's trials before slot ``before`` (a TPE trial's rate depends on them)."""
    rows = []
    for k in range(before):
        rec = read_record(plan, f"trial/{task}/{model}/{k}") or {}
        rows.append((k, rec.get("lr"), rec.get("value")))
    return _digest(rows)


def status(plan: Plan, stage: Stage) -> tuple[bool, str]:
    """``(done, why)``: whether ``stage``'s record matches what it would produce now, and what is missing or
    changed otherwise."""
    rec = read_record(plan, stage.id)
    if stage.kind == "report":
        return False, "written at the end of every full run and by --gather"
    if rec is None:
        return False, "not run yet"
    if stage.kind == "adapt":
        now = adapt_fingerprint(plan, stage.model)["sha256"]
        ok = rec.get("fingerprint") == now and (plan.model_dir(stage.model) / "config.json").is_file()
        return ok, "done" if ok else "stale: the recipe, base model, corpus, versions or code changed"
    if stage.kind == "baseline":
        ok = rec.get("fingerprint") == baseline_fingerprint(plan, stage.model)["sha256"] and \
            (plan.model_dir(stage.model) / "config.json").is_file()
        return ok, "done" if ok else "stale: the source model, options, versions or code changed"
    if stage.kind == "trial":
        lr = trial_rate(plan, stage)
        fp = finetune_fingerprint(plan, stage.task, stage.model, lr, plan.spec.search.seed) if lr else None
        if fp is None or rec.get("fingerprint") != fp:
            return False, "stale: the model, task, data, versions or code changed"
        if plan.spec.search.method == "tpe" and rec.get("history") != _history(plan, stage.task, stage.model, stage.slot):
            return False, "stale: an earlier trial of this TPE search changed"
        return True, f"done (lr {lr:g}: dev {rec.get('value'):.4f})"
    if stage.kind == "seed":
        chosen = chosen_rate(plan, stage.task, stage.model)
        if chosen is None:
            return False, "waits for its search"
        fp = finetune_fingerprint(plan, stage.task, stage.model, chosen, stage.seed)
        ok = fp is not None and rec.get("fingerprint") == fp
        return ok, f"done (lr {chosen:g}: test {rec.get('score', float('nan')):.4f})" if ok else "stale"
    raise ValueError(stage.kind)


def chosen_rate(plan: Plan, task: str, model: str) -> float | None:
    """The learning rate of a (model, task): the search's best dev value (ties: the lower rate), or the
    task's own rate without a search; None while a trial is not done."""
    trials = plan.trials_of(task, model)
    if not trials:
        return float(load_study_task(plan.spec, task).training().learning_rate)
    rows = []
    for t in trials:
        done, _ = status(plan, t)
        if not done:
            return None
        rec = read_record(plan, t.id)
        rows.append((float(rec["value"]), -float(rec["lr"])))
    best = max(rows)
    return -best[1]


# ------------------------------------------------------------------------------------------------
# running


def run_stage(plan: Plan, stage: Stage) -> None:
    """Run one stage (in its own process: ``longadapt study FILE --stage ID``) and write its record."""
    from longadapt import faults

    start = time.time()
    faults.reached(f"stage:{stage.id}")
    if stage.kind == "adapt":
        _run_adapt(plan, stage)
    elif stage.kind == "baseline":
        _run_baseline(plan, stage)
    elif stage.kind == "trial":
        _run_trial(plan, stage, start)
    elif stage.kind == "seed":
        _run_seed(plan, stage, start)
    else:
        raise LongAdaptError(f"stage {stage.id} is not run by --stage")


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _run_adapt(plan: Plan, stage: Stage) -> None:
    from longadapt.evaluation.fingerprint import STUDY_STAGE_MARKER
    from longadapt.recipes.adapt import build_untrained, recipe_from_dict, run_recipe

    from accelerate import PartialState

    name = stage.model
    _, tokens, recipe = plan.spec.recipes[name]
    fp = adapt_fingerprint(plan, name)
    out = plan.model_dir(name)
    marker = out / STUDY_STAGE_MARKER  # which stage fingerprint the folder's run belongs to (resume or set aside)
    state = PartialState()  # under --launcher, one process prepares the folder
    if state.is_main_process:
        if out.exists():
            try:
                held = json.loads(marker.read_text(encoding="utf-8")).get("fingerprint")
            except (OSError, ValueError):
                held = None
            if held != fp["sha256"]:
                set_aside(out)
        out.mkdir(parents=True, exist_ok=True)
        if not marker.is_file():
            atomic_write_json(marker, {"fingerprint": fp["sha256"]})
    state.wait_for_everyone()
    cfg = recipe_from_dict({**recipe, "out": str(out)}, f"{plan.spec.path} ({name})")
    t0 = time.time()
    result = build_untrained(cfg) if tokens == 0 else run_recipe(cfg, resume=True)
    if state.is_main_process:
        final = {k: v for k, v in (result.final_metrics or {}).items() if isinstance(v, (int, float))}
        write_record(plan, stage.id, {"fingerprint": fp["sha256"], "parts": fp["parts"], "dir": str(out),
                                      "tokens": tokens, "seconds": round(time.time() - t0, 1),
                                      "threads": _threads(), "final_metrics": final})


def _run_baseline(plan: Plan, stage: Stage) -> None:
    from longadapt.interop import import_checkpoint, make_long, resolve_source, save_core
    from longadapt.recipes.strategies.convert import ConvertOptions
    from longadapt.config import from_dict
    from longadapt.runinfo import run_record

    b = next(x for x in plan.spec.baselines if x.name == stage.model)
    fp = baseline_fingerprint(plan, b.name)
    opts = from_dict(ConvertOptions, dict(b.make_long or {}), plan.spec.path, f"baselines.{b.name}.make_long.")
    result = import_checkpoint(b.model)
    notes = list(result.notes) + make_long(result.model, opts.max_length, local_attention=opts.local_attention,
                                           global_attn_every_n_layers=opts.global_attn_every_n_layers,
                                           positions=opts.positions,
                                           global_rope_theta=opts.global_rope_theta,
                                           local_rope_theta=opts.local_rope_theta,
                                           global_first_token=opts.global_first_token)
    record = run_record("import", {"src": b.model, "make_long": b.make_long}, source=b.model,
                        source_type=result.source_type, mlm_head=result.mlm_head, notes=notes)
    save_core(result.model, plan.model_dir(b.name), resolve_source(b.model), record)
    write_record(plan, stage.id, {"fingerprint": fp["sha256"], "parts": fp["parts"], "dir": str(plan.model_dir(b.name))})


def _finetune(plan: Plan, task_name: str, model: str, lr: float, seed: int) -> tuple[dict[str, Any], bool]:
    """One fine-tuning run of the study (evaluate's own run or reuse), or a copy of the run of another model
    of the study with the same weights and the same settings (the same fingerprint: offline, ``convert`` and
    ``continue`` with the ``keep`` arm train the same network the same way)."""
    from longadapt.evaluation.fingerprint import run_fingerprint
    from longadapt.evaluation.stored import run_or_reuse

    task = load_study_task(plan.spec, task_name, lr)
    run_dir = plan.run_dir(task_name, model, lr, seed)
    model_dir = plan.model_dir(model)
    fp = run_fingerprint(model_dir, task, seed, run_limits(plan.spec), None)
    twin = _twin(plan, fp["sha256"], run_dir)
    if twin is not None and not (run_dir / "run.json").is_file():
        return _copy_run(twin, run_dir, model, model_dir), True
    run, reused = run_or_reuse(model, model_dir, task, task.load_data(), seed, run_dir, run_limits(plan.spec))
    atomic_write_json(plan.out / "finetune" / ".by-fingerprint" / f"{fp['sha256']}.json",
                      {"run": str(run_dir.relative_to(plan.out))})
    return run, reused


def _twin(plan: Plan, sha: str, run_dir: Path) -> Path | None:
    """A finished run of the study with this fingerprint, in another folder."""
    try:
        rel = json.loads((plan.out / "finetune" / ".by-fingerprint" / f"{sha}.json").read_text(encoding="utf-8"))["run"]
        other = plan.out / rel
        stored = json.loads((other / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError):
        return None
    if other.resolve() == run_dir.resolve() or (stored.get("fingerprint") or {}).get("sha256") != sha:
        return None
    return other


def _copy_run(twin: Path, run_dir: Path, model: str, model_dir: Path) -> dict[str, Any]:
    import shutil


    logger.info("%s: the same weights and settings as %s (same fingerprint): its run is reused", model, twin)
    with atomic_dir(run_dir) as tmp:
        for item in twin.iterdir():
            if item.name == "run.json":
                continue
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
        run = json.loads((twin / "run.json").read_text(encoding="utf-8"))
        run["model"] = {**run["model"], "name": model, "dir": str(model_dir), "same_run_as": str(twin)}
        run["fingerprint"] = {**run["fingerprint"], "model_dir": str(model_dir)}
        atomic_write_json(tmp / "run.json", run)
    return run


def _dev_value(run: dict[str, Any]) -> float:
    select = (run.get("config") or {}).get("select_metric") or run["main_metric"]
    return float(run["dev"][select])


def _run_trial(plan: Plan, stage: Stage, start: float) -> None:
    from longadapt.study.search import record_trial, tpe_rate

    s = plan.spec.search
    if s.method == "grid":
        lr, handle = float(plan.grid(stage.model)[stage.slot]), None
    else:
        lr, handle = tpe_rate(plan, stage)
    run, reused = _finetune(plan, stage.task, stage.model, lr, s.seed)
    value = _dev_value(run)
    record_trial(plan, stage, lr, value, handle, run)
    fp = finetune_fingerprint(plan, stage.task, stage.model, lr, s.seed)
    write_record(plan, stage.id, {
        "fingerprint": fp, "lr": lr, "value": value, "metric": (run.get("config") or {}).get("select_metric"),
        "score": run["score"], "run": str(plan.run_dir(stage.task, stage.model, lr, s.seed).relative_to(plan.out)),
        "reused": reused, "threads": _threads(), "seconds": round(time.time() - start, 1),
        "history": _history(plan, stage.task, stage.model, stage.slot) if s.method == "tpe" else None})


def _run_seed(plan: Plan, stage: Stage, start: float) -> None:
    lr = chosen_rate(plan, stage.task, stage.model)
    if lr is None:
        raise LongAdaptError(f"{stage.id}: the search of {stage.model} on {stage.task} is not complete")
    run, reused = _finetune(plan, stage.task, stage.model, lr, stage.seed)
    write_record(plan, stage.id, {
        "fingerprint": finetune_fingerprint(plan, stage.task, stage.model, lr, stage.seed), "lr": lr,
        "score": run["score"], "run": str(plan.run_dir(stage.task, stage.model, lr, stage.seed).relative_to(plan.out)),
        "reused": reused, "threads": _threads(), "seconds": round(time.time() - start, 1)})
