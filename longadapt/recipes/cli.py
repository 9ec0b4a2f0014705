"""``longadapt adapt convert|continue|scratch --language fr [--preset tiny] ...`` or ``longadapt adapt FILE.yaml``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


logger = logging.getLogger(__name__)


def add_arguments_adapt(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a strategy (convert | continue | scratch, or one with a recipes/<name>/ folder), or a recipe YAML file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the recipe, anywhere after the command (e.g. train.lr=1e-4, "
                   "phases.1.steps=10, continue.vocab_arm=replace)")
    p.add_argument("--language", default=None, help="language code (languages/<code>.yaml); default fr")
    p.add_argument("--preset", default=None, help="recipe preset: tiny (CPU minutes) or base (multi-GPU); default tiny")
    p.add_argument("--base", help="base model: directory, installed model package or hub id")
    p.add_argument("--corpus", help="corpus path (jsonl[.gz], text, parquet, BRAT folder...)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--steps", type=int, help="override the steps of every phase (smoke runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped run in --out: finished phases are reused, the interrupted one continues "
                        "from its newest checkpoint (same recipe and overrides required; the folder may have "
                        "been moved or copied)")
    p.add_argument("--force-new", action="store_true",
                   help="--out holds another run: rename it to OUT.set-aside-<time> (nothing is deleted) and start "
                        "this run there")


def _recipe_and_source(args: argparse.Namespace):
    """The recipe a command names, its ``key=value`` overrides and ``--base`` merged, and where each key came from."""
    from longadapt.config import deep_merge, parse_overrides, source_for
    from longadapt.recipes.files import load_recipe

    data, source = load_recipe(args.recipe, args.language, args.preset)
    data = deep_merge(data, parse_overrides(args.overrides))
    source.overrides.update(source_for(None, args.overrides).overrides)
    if args.base:
        data["base"] = args.base
        source.overrides["base"] = f"command-line override '--base {args.base}'"
    return data, source


def run_adapt(args: argparse.Namespace) -> int:
    from longadapt.recipes.adapt import recipe_from_dict, recipe_out, run_recipe

    data, source = _recipe_and_source(args)
    if args.corpus:
        data["corpus"] = {**(data.get("corpus") or {}), "path": str(Path(args.corpus).resolve())}
    if args.out:
        data["out"] = args.out
    if args.steps:
        for i, phase in enumerate(data.get("phases", [])):
            phase["steps"] = args.steps
            source.overrides[f"phases.{i}.steps"] = f"command-line override '--steps {args.steps}'"
        data.pop("token_budget", None)
    cfg = recipe_from_dict(data, source)
    if args.force_new:
        from longadapt.training.cli import _set_aside_if_used

        _set_aside_if_used(recipe_out(cfg), args.resume)
    result = run_recipe(cfg, resume=args.resume)
    logger.info("wrote %s; final validation metrics: %s", result.out,
                {k: round(v, 4) for k, v in result.final_metrics.items() if isinstance(v, float) and "pos" not in k})
    return 0


def add_arguments_plan(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a strategy (convert | continue | scratch) or a recipe YAML file, as adapt takes it")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the recipe, as adapt takes them")
    p.add_argument("--language", default=None, help="language code; default fr")
    p.add_argument("--preset", default="base", help="recipe preset (default base: the multi-GPU recipes)")
    p.add_argument("--base", help="base model: a local folder, an installed package or a known hub id")
    p.add_argument("--gpus", type=int, default=8, help="number of GPUs (default 8)")
    p.add_argument("--gpu", default="h100", help="h100 | h200 | a100 | l4 (default h100)")
    p.add_argument("--mfu", type=float, default=0.35, help="assumed model-FLOP utilisation (default 0.35)")
    p.add_argument("--fsdp", action="store_true", help="shard weights, gradients and optimizer state over the GPUs")
    p.add_argument("--json", help="also write the plan as JSON to this file")


def run_plan(args: argparse.Namespace) -> int:
    from longadapt.io import atomic_write_json
    from longadapt.recipes.adapt import recipe_from_dict
    from longadapt.recipes.plan import plan, render

    data, source = _recipe_and_source(args)
    cfg = recipe_from_dict(data, source)
    result = plan(cfg, args.gpus, args.gpu.lower(), args.mfu, args.fsdp, str(source.path))
    print(render(result))
    if args.json:
        atomic_write_json(Path(args.json), result)
    return 0
