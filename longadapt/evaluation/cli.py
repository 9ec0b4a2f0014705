"""``longadapt evaluate`` and ``longadapt compare``.

evaluate: fine-tune every ``--model`` on every task (``--tasks`` from the registry in
languages/tasks/, ``--task-file`` for your own YAML) with ``--seeds`` seeds, and write::

    OUT/results.json                           one summary per (model, task)
    OUT/<model>/<task>/summary.json            mean ± std over seeds, per length bucket
    OUT/<model>/<task>/seed-<s>/run.json       one run: config, versions, data fingerprints, scores
    OUT/<model>/<task>/seed-<s>/model/         with --save-models: the selected fine-tuned model

A run whose run.json already exists is skipped (re-run the same command to resume), unless
``--force``.

compare: a Markdown report (and PNG plots) from one or more evaluate output directories.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from longadapt.config import parse_overrides
from longadapt.errors import LongAdaptError
from longadapt.io import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

GENERIC_DIR_NAMES = {"model", "models", "final", "best", "checkpoint", "output", "hf"}


def add_arguments_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]DIR",
                        help="a model directory (transformers format); repeat for several; NAME= names it in reports")
    parser.add_argument("--tasks", default="", help="comma-separated registry tasks, e.g. fr-e3c-ner,fr-morfitt")
    parser.add_argument("--task-file", action="append", default=[], metavar="T.yaml",
                        help="a user-defined task YAML (see docs/evaluation.md); repeat for several")
    parser.add_argument("--seeds", type=int, default=3, help="runs per model and task, seeds 0..N-1 (default 3)")
    parser.add_argument("--data-root", default=None,
                        help="root of the task data (default: $LONGADAPT_DATA, else ../shared/data)")
    parser.add_argument("--epochs", type=int, default=None, help="override the tasks' number of epochs")
    parser.add_argument("--max-train-docs", type=int, default=None, help="train on the first N examples only")
    parser.add_argument("--max-eval-docs", type=int, default=None, help="dev and test on the first N examples only")
    parser.add_argument("--max-steps", type=int, default=None, help="stop training after N optimizer steps")
    parser.add_argument("--max-length", type=int, default=None,
                        help="window length in tokens (default: the model's maximum)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a task YAML key for every task, e.g. training.batch_size=8")
    parser.add_argument("--save-models", action="store_true",
                        help="keep each run's selected fine-tuned model in OUT/<model>/<task>/seed-<s>/model")
    parser.add_argument("--force", action="store_true", help="re-run runs whose run.json exists")
    parser.add_argument("--list-tasks", action="store_true", help="list the registry's tasks and exit")
    parser.add_argument("--out", required=False, help="output directory")


def _model_specs(values: list[str]) -> list[tuple[str, str]]:
    specs: list[tuple[str, str]] = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or Path(value).exists():
            path, name = value, ""
        p = Path(path)
        if not (p / "config.json").is_file():
            raise LongAdaptError(f"--model {path}: no config.json there; give a transformers model directory")
        if not name:
            name = p.resolve().name
            if name.lower() in GENERIC_DIR_NAMES:
                name = f"{p.resolve().parent.name}-{name}"
        if not re.fullmatch(r"[\w.+-]+", name):
            raise LongAdaptError(f"--model {value}: the name {name!r} may hold letters, digits, '.', '+', '-', '_' only")
        if any(name == n for n, _ in specs):
            raise LongAdaptError(f"--model: two models are named {name!r}; name them with NAME=DIR")
        specs.append((name, str(p)))
    return specs


def _refuse_several_processes() -> None:
    """evaluate is one process: under a multi-process launcher every process would fine-tune on its shard
    and score its shard of the test set only, and all would write the same files."""
    from longadapt.launch import env_world_size

    world = env_world_size()
    if world > 1:
        raise LongAdaptError(
            f"longadapt evaluate runs as one process, but it was started as {world} (accelerate launch / torchrun / "
            "mpirun): run it without a launcher; to use several GPUs, start one evaluate per GPU "
            "(CUDA_VISIBLE_DEVICES=i) with its own --model or --tasks and its own --out, then longadapt compare "
            "OUT1 OUT2 ..."
        )


def run_evaluate(args: argparse.Namespace) -> int:
    from longadapt.evaluation.finetune import RunLimits, run
    from longadapt.evaluation.report import aggregate
    from longadapt.evaluation.tasks import available_tasks, load_task

    if args.list_tasks:
        for name in available_tasks():
            try:
                task = load_task(name, args.data_root)
                print(f"{name}\t{task.type}\t{task.config.description}")
            except LongAdaptError:  # no data root: the name is still useful
                print(name)
        return 0
    if not args.out:
        raise LongAdaptError("--out is required")
    _refuse_several_processes()
    models = _model_specs(args.model)
    if not models:
        raise LongAdaptError("give at least one --model DIR")
    overrides = parse_overrides(args.set)
    if args.epochs is not None:
        overrides.setdefault("training", {})["epochs"] = args.epochs
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] + list(args.task_file)
    if not names:
        raise LongAdaptError(f"give --tasks and/or --task-file; registry tasks: {', '.join(available_tasks())}")
    tasks = [load_task(n, args.data_root, overrides) for n in names]
    if len({t.name for t in tasks}) != len(tasks):
        raise LongAdaptError("two tasks have the same name; give each task file a distinct 'name'")
    if args.seeds < 1:
        raise LongAdaptError("--seeds must be at least 1")
    limits = RunLimits(args.max_train_docs, args.max_eval_docs, args.max_steps)
    out = Path(args.out)
    summaries: list[dict[str, Any]] = []
    for task in tasks:
        logger.info("task %s: loading data from %s", task.name, task.data_root)
        data = {s: task.load_split(s) for s in ("train", "dev", "test")}
        for model_name, model_dir in models:
            runs = []
            for seed in range(args.seeds):
                run_dir = out / model_name / task.name / f"seed-{seed}"
                if (run_dir / "run.json").is_file() and not args.force:
                    logger.info("%s / %s / seed %d: run.json exists, skipped (--force re-runs)", model_name, task.name, seed)
                    runs.append(json.loads((run_dir / "run.json").read_text(encoding="utf-8")))
                    continue
                logger.info("%s / %s / seed %d: fine-tuning", model_name, task.name, seed)
                with atomic_dir(run_dir) as tmp:  # run.json (and the model) appear only when the run is complete
                    result = run(model_dir, task, seed, data=data, limits=limits, max_length=args.max_length,
                                 model_name=model_name,
                                 save_dir=tmp / "model" if args.save_models else None).to_json()
                    atomic_write_json(tmp / "run.json", result)
                logger.info("%s / %s / seed %d: test %s = %.4f", model_name, task.name, seed,
                            result["main_metric"], result["score"])
                runs.append(result)
            summary = aggregate(runs)
            atomic_write_json(out / model_name / task.name / "summary.json", summary)
            summaries.append(summary)
            s = summary["score"]
            logger.info("%s / %s: %s = %.4f ± %.4f over %d seeds", model_name, task.name,
                        summary["main_metric"], s["mean"], s["std"], s["n"])
    atomic_write_json(out / "results.json", {"kind": "longadapt.evaluate.results", "summaries": summaries})
    logger.info("results in %s (longadapt compare %s --out report.md)", out, out)
    return 0


def add_arguments_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULT_DIR", help="output directories of longadapt evaluate")
    parser.add_argument("--out", required=True, help="the Markdown report to write (PNG plots go next to it)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")


def run_compare(args: argparse.Namespace) -> int:
    from longadapt.evaluation.report import compare

    path = compare(args.results, args.out, plots=not args.no_plots)
    logger.info("report written to %s", path)
    return 0
