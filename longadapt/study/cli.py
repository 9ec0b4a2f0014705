"""``longadapt study FILE [--dry-run] [--jobs N] [--shard i/n] [--gather]``."""

from __future__ import annotations

import argparse


def add_arguments_study(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a study file (YAML; see docs/study.md)")
    p.add_argument("--out", default=None, help="the study folder (default: the file's out:, else runs/study-<name>)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the stages, their budgets and what is done; run nothing")
    p.add_argument("--jobs", type=int, default=1, help="stages run at once, each in its own process (default 1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per stage (default: the machine's cores / --jobs)")
    p.add_argument("--shard", default=None, metavar="i/n",
                   help="run shard i of n (counted from 0): a deterministic share of the models with all their "
                        "stages, e.g. one per SLURM array task (--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); "
                        "then --gather writes the report")
    p.add_argument("--gather", action="store_true", help="write the report from the finished stages of every shard")
    p.add_argument("--models", default=None, metavar="NAMES",
                   help="only the stages of these models (comma-separated names or glob patterns, e.g. 'convert-*'); "
                        "then --gather writes the report")
    p.add_argument("--launcher", default=None,
                   help="a command prefix for adaptation stages, e.g. 'accelerate launch --multi_gpu --num_processes 4'")
    p.add_argument("--stage", default=None, help=argparse.SUPPRESS)  # the worker side: one stage


def run_study(args: argparse.Namespace) -> int:
    from longadapt.study.runner import run, run_one_stage

    if args.stage:
        return run_one_stage(args.file, args.stage, args.out, args.threads)
    return run(args.file, args.out, args.jobs, args.threads, args.shard, args.dry_run, args.gather, args.launcher,
               args.models)
