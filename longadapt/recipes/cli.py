"""``longadapt adapt convert|continue|scratch --language fr [--preset tiny] ...`` or ``longadapt adapt FILE.yaml``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)


def recipes_dir() -> Path:
    env = os.environ.get("LONGADAPT_RECIPES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "recipes"


def add_arguments_adapt(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="convert | continue | scratch, or a recipe YAML file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the recipe (e.g. phases.0.steps=10 is not "
                   "supported; use train.steps or a recipe file) ")
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


def load_recipe_file(args: argparse.Namespace) -> tuple[dict, str]:
    from longadapt.config import load_yaml
    from longadapt.recipes.adapt import STRATEGIES

    if args.recipe in STRATEGIES:
        language = args.language or "fr"
        preset = args.preset or "tiny"
        path = recipes_dir() / args.recipe / f"{language}-{preset}.yaml"
        if not path.is_file():
            have = sorted(p.stem for p in (recipes_dir() / args.recipe).glob("*.yaml"))
            raise LongAdaptError(
                f"no recipe {path}; available {args.recipe} recipes: {', '.join(have) or 'none'}. "
                "Write one (copy a similar file) or pass a recipe file."
            )
    else:
        path = Path(args.recipe)
        if not path.is_file():
            raise LongAdaptError(f"{args.recipe} is neither a strategy (convert, continue, scratch) nor a recipe file")
    data = load_yaml(path)
    if args.language and data.get("language", args.language) != args.language and args.recipe not in STRATEGIES:
        data["language"] = args.language
    return data, str(path)


def run_adapt(args: argparse.Namespace) -> int:
    from longadapt.config import deep_merge, parse_overrides
    from longadapt.recipes.adapt import recipe_from_dict, recipe_out, run_recipe

    data, where = load_recipe_file(args)
    data = deep_merge(data, parse_overrides(args.overrides))
    if args.base:
        data["base"] = args.base
    if args.corpus:
        data["corpus"] = {**(data.get("corpus") or {}), "path": str(Path(args.corpus).resolve())}
    if args.out:
        data["out"] = args.out
    if args.steps:
        for phase in data.get("phases", []):
            phase["steps"] = args.steps
        data.pop("token_budget", None)
    cfg = recipe_from_dict(data, where)
    if args.force_new:
        from longadapt.training.cli import _set_aside_if_used

        _set_aside_if_used(recipe_out(cfg), args.resume)
    result = run_recipe(cfg, resume=args.resume)
    logger.info("wrote %s; final validation metrics: %s", result.out,
                {k: round(v, 4) for k, v in result.final_metrics.items() if isinstance(v, float) and "pos" not in k})
    return 0
