"""``longadapt study FILE``: run every missing stage in order, in worker processes, then the report.

Each stage runs in its own process (``longadapt study FILE --stage ID``), its output in
``OUT/logs/<stage>.log``, at most ``--jobs`` at a time with ``--threads`` torch threads each. A stage is
skipped when its record matches (:func:`longadapt.study.stages.status`); a stage that fails does not stop
the others (those that depend on it are blocked): the study lists the failures with their logs at the end
and exits non-zero, and a re-run retries exactly those. Killed at any point, the study is run again with
the same command: finished stages are reused, an interrupted adaptation resumes from its last checkpoint,
an interrupted fine-tuning run starts again (its folder appears only when complete).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.io import atomic_write_json
from longadapt.study.plan import Plan, Stage, build_plan, describe, owners, parse_shard
from longadapt.study.spec import load_study, load_study_task
from longadapt.study.stages import chosen_rate, read_record, run_stage, status

logger = logging.getLogger(__name__)


def run(study_file: str, out: str | None = None, jobs: int = 1, threads: int | None = None, shard: str | None = None,
        dry_run: bool = False, gather: bool = False, launcher: str | None = None, models: str | None = None) -> int:
    spec = load_study(study_file, out)
    plan = build_plan(spec)
    where = parse_shard(shard)
    if jobs < 1:
        raise LongAdaptError("--jobs must be at least 1")
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    chosen = select_models(plan, models)
    mine = [s for s in plan.stages.values()
            if s.kind != "report" and (where is None or plan.shard_of(s, where[1]) == where[0])
            and (chosen is None or s.model in chosen)]
    if dry_run:
        print(dry_run_table(plan, mine, where))
        return 0
    if gather:
        return write_report(plan)
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(plan.out / "plan.json", plan_record(plan))
    if spec.search.method != "none":
        from longadapt.study.search import open_storage

        open_storage(plan)
    code = Scheduler(plan, mine, jobs, threads, launcher).run()
    if chosen is not None:
        logger.info("the stages of %s are done or failed; the report needs every model: longadapt study %s --gather",
                    ", ".join(sorted(chosen)), study_file)
    elif where is None:
        if code == 0:
            return write_report(plan)
        logger.warning("the report is not written while stages are missing; fix the failures and run again")
    else:
        logger.info("shard %d/%d finished; when every shard has, write the report with: longadapt study %s --gather",
                    where[0], where[1], study_file)
    return code


def select_models(plan: Plan, patterns: str | None) -> set[str] | None:
    """The models named by ``--models`` (comma-separated names or glob patterns); None: every model."""
    if not patterns:
        return None
    import fnmatch

    chosen: set[str] = set()
    for pattern in (p.strip() for p in patterns.split(",") if p.strip()):
        found = fnmatch.filter(plan.models, pattern)
        if not found:
            raise LongAdaptError(f"--models {pattern}: no model of the study matches; its models: {', '.join(plan.models)}")
        chosen.update(found)
    return chosen


def plan_record(plan: Plan) -> dict[str, Any]:
    return {"kind": "longadapt.study.plan", "study": str(plan.spec.path), "name": plan.spec.name,
            "models": {n: vars(m) for n, m in plan.models.items()},
            "stages": [{"id": s.id, "kind": s.kind, "deps": s.deps} for s in plan.stages.values()]}


def _trials_text(plan: Plan) -> str:
    counts = sorted({plan.trial_count(name) for name in plan.models})
    return f"{' or '.join(map(str, counts)) or 0} trials"


def dry_run_table(plan: Plan, stages: list[Stage], where: tuple[int, int] | None) -> str:
    lines = [f"study {plan.spec.name} ({plan.spec.path}) -> {plan.out}",
             f"{len(plan.models)} models, {len(plan.spec.tasks)} tasks, {plan.spec.seeds} seeds, search "
             f"{plan.spec.search.method} ({_trials_text(plan)} per model and task)"]
    if where is not None:
        lines.append(f"shard {where[0]}/{where[1]}: models {', '.join(owners(plan, where[1]).get(where[0], []))}")
    lines += ["", "| stage | budget | status |", "|---|---|---|"]
    done = 0
    for s in stages:
        ok, why = status(plan, s)
        done += ok
        lines.append(f"| {s.id} | {describe(plan, s)} | {why} |")
    lines += ["", f"{done} of {len(stages)} stages done, {len(stages) - done} to run"]
    return "\n".join(lines)


class Scheduler:
    """Runs the stages whose dependencies are done, ``jobs`` at a time, in plan order."""

    def __init__(self, plan: Plan, stages: list[Stage], jobs: int, threads: int, launcher: str | None):
        self.plan, self.jobs, self.threads, self.launcher = plan, jobs, threads, launcher
        self.todo: list[Stage] = []
        self.done: set[str] = set()
        for s in stages:
            ok, why = status(plan, s)
            if ok:
                self.done.add(s.id)
            else:
                self.todo.append(s)
        self.ids = {s.id for s in stages}
        self.failed: dict[str, str] = {}
        self.blocked: dict[str, str] = {}
        self.running: dict[str, tuple[subprocess.Popen, float]] = {}

    def _deps_done(self, s: Stage) -> bool:
        return all(d in self.done or (d not in self.ids and status(self.plan, self.plan.stages[d])[0]) for d in s.deps)

    def _blocked_by(self, s: Stage) -> str | None:
        for d in s.deps:
            if d in self.failed or d in self.blocked:
                return d
        return None

    def run(self) -> int:
        total = len(self.todo)
        logger.info("%d stages to run (%d already done), %d at a time with %d thread(s) each", total, len(self.done),
                    self.jobs, self.threads)
        while self.todo or self.running:
            for s in list(self.todo):
                culprit = self._blocked_by(s)
                if culprit:
                    self.blocked[s.id] = culprit
                    self.todo.remove(s)
                    logger.warning("%s: not run, it needs %s, which failed", s.id, culprit)
                elif len(self.running) < self.jobs and self._deps_done(s):
                    self.todo.remove(s)
                    self._start(s)
            if not self.running:
                if self.todo:  # waiting on stages that belong to no one here (another shard's, not done)
                    waiting = {d for s in self.todo for d in s.deps if d not in self.done}
                    for s in self.todo:
                        self.blocked[s.id] = ", ".join(sorted(d for d in s.deps if d not in self.done))
                    logger.warning("%d stages wait for stages not run here: %s", len(self.todo), ", ".join(sorted(waiting)))
                    self.todo = []
                break
            self._wait_one()
        return self._summary()

    def _start(self, s: Stage) -> None:
        plan = self.plan
        log = plan.log_path(s.id)
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "longadapt", "study", str(plan.spec.path), "--stage", s.id, "--out", str(plan.out),
               "--threads", str(self.threads)]
        if self.launcher and s.kind == "adapt":
            cmd = shlex.split(self.launcher) + cmd[1:]  # e.g. accelerate launch --multi_gpu --num_processes 4 -m longadapt ...
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(shlex.quote(c) for c in cmd)}\n")
            fh.flush()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.running[s.id] = (proc, time.time())
        logger.info("started %s (%s; log %s)", s.id, describe(plan, s), log)

    def _wait_one(self) -> None:
        while True:
            for sid, (proc, t0) in list(self.running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del self.running[sid]
                stage = self.plan.stages[sid]
                minutes = (time.time() - t0) / 60
                ok = rc == 0 and status(self.plan, stage)[0]
                if ok:
                    self.done.add(sid)
                    self.plan.record_path(sid).with_suffix(".failed").unlink(missing_ok=True)
                    logger.info("done %s in %.1f min", sid, minutes)
                else:
                    why = f"exit status {rc}" if rc else "it ended without a valid record"
                    self.failed[sid] = why
                    atomic_write_json(self.plan.record_path(sid).with_suffix(".failed"),
                                      {"stage": sid, "why": why, "log": str(self.plan.log_path(sid))})
                    logger.error("FAILED %s (%s) after %.1f min; log: %s", sid, why, minutes, self.plan.log_path(sid))
                return
            time.sleep(0.5)

    def _summary(self) -> int:
        if not self.failed and not self.blocked:
            logger.info("every stage is done")
            return 0
        lines = [f"{len(self.failed)} stage(s) failed, {len(self.blocked)} not run because of them:"]
        lines += [f"  FAILED {sid}: {why}; log {self.plan.log_path(sid)}" for sid, why in sorted(self.failed.items())]
        lines += [f"  not run {sid}: needs {d}" for sid, d in sorted(self.blocked.items())]
        lines.append("Run the same command again to retry them (finished stages are reused).")
        logger.error("\n".join(lines))
        return 1


def run_one_stage(study_file: str, stage_id: str, out: str | None = None, threads: int | None = None) -> int:
    """The worker side: ``longadapt study FILE --stage ID``."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    plan = build_plan(load_study(study_file, out))
    if stage_id not in plan.stages:
        raise LongAdaptError(f"{stage_id} is not a stage of {study_file} (longadapt study {study_file} --dry-run lists them)")
    stage = plan.stages[stage_id]
    missing = [d for d in stage.deps if not status(plan, plan.stages[d])[0]]
    if missing:
        raise LongAdaptError(f"{stage_id} needs {', '.join(missing)} first")
    run_stage(plan, stage)
    return 0


# ------------------------------------------------------------------------------------------------
# the report


def collect(plan: Plan) -> dict[str, Any]:
    """Everything the report shows, from the stage records and the runs they point to; refuses while a
    stage is missing (naming them)."""
    missing = [s.id for s in plan.stages.values() if s.kind != "report" and not status(plan, s)[0]]
    if missing:
        raise LongAdaptError(f"{len(missing)} stage(s) are not done: {', '.join(missing[:10])}"
                             f"{' ...' if len(missing) > 10 else ''}; run them (or every shard) first")

    spec = plan.spec
    models = []
    for name, m in plan.models.items():
        entry = {**vars(m)}
        if m.stage and m.kind == "adaptation":
            rec = read_record(plan, m.stage) or {}
            run = json.loads((plan.model_dir(name) / "run.json").read_text(encoding="utf-8"))
            phases = run.get("phases") or []
            entry["adapt"] = {"seconds": rec.get("seconds"), "threads": rec.get("threads"),
                              "tokens_seen": run.get("tokens_seen"),
                              "initial_bpb": (phases[0].get("initial_metrics") or {}).get("bpb") if phases else None,
                              "final_bpb": (phases[-1].get("final_metrics") or {}).get("bpb") if phases else None,
                              "precision": (run.get("config", {}).get("train") or {}).get("precision", "fp32"),
                              "representations": run.get("representations")}
        models.append(entry)
    tasks: dict[str, Any] = {}
    for task in spec.tasks:
        t = load_study_task(spec, task)
        results = {}
        for name, m in plan.models.items():
            if task not in m.tasks:
                continue
            lr = chosen_rate(plan, task, name)
            trials = []
            for st in plan.trials_of(task, name):
                rec = read_record(plan, st.id)
                run_rel = rec.get("run")
                stored = {}
                if run_rel and (plan.out / run_rel / "run.json").is_file():
                    stored = json.loads((plan.out / run_rel / "run.json").read_text(encoding="utf-8"))
                trials.append({"slot": st.slot, "lr": rec["lr"], "dev": rec["value"], "metric": rec.get("metric"),
                               "test": rec.get("score"), "run": run_rel,
                               "seconds": (stored.get("timing") or {}).get("total_s"), "threads": rec.get("threads"),
                               "copy_of": (stored.get("model") or {}).get("same_run_as")})
            runs = []
            for s in range(spec.seeds):
                rec = read_record(plan, f"seed/{task}/{name}/{s}")
                run = json.loads((plan.out / rec["run"] / "run.json").read_text(encoding="utf-8"))
                run.pop("fingerprint", None)
                runs.append({**run, "_dir": rec["run"], "threads": rec.get("threads")})
            results[name] = {"lr": lr, "trials": trials, "runs": runs}
        tasks[task] = {"name": task, "metric": t.metric, "published": list(getattr(t.config, "published", []) or []),
                       "results": results}
    return {"kind": "longadapt.study.collected", "study": {
        "name": spec.name, "language": spec.language, "file": str(spec.path), "seeds": spec.seeds,
        "search": {k: v for k, v in vars(spec.search).items() if k != "storage"}, "tasks": list(spec.tasks),
        "curve_task": spec.report.curve_task or spec.tasks[0], "reference": spec.report.reference,
        "windowed": spec.report.windowed, "bootstrap": spec.report.bootstrap,
        "bootstrap_seed": spec.report.bootstrap_seed, "limits": vars(spec.limits), "finetune": spec.finetune},
        "models": models, "tasks": tasks}


def write_report(plan: Plan) -> int:
    from longadapt.study.report import render

    collected = collect(plan)
    path = render(collected, plan.out / "report")
    logger.info("verdict report: %s", path)
    return 0
