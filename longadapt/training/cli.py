"""``longadapt pretrain CONFIG.yaml [key.sub=value ...] [--resume]``.

Works unchanged under ``accelerate launch [--multi_gpu | --num_processes N | --num_machines N ...]
-m longadapt pretrain ...``: accelerate's launcher sets the environment and the engine picks it up.
Relative corpus paths in the YAML file are resolved against the file's folder, then against the
``LONGADAPT_DATA`` data root; ``output_dir`` is relative to the current directory.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from longadapt.config import deep_merge, load_yaml, parse_overrides, source_for

logger = logging.getLogger(__name__)


def add_arguments_pretrain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="YAML file of a TrainConfig (see recipes/pretrain/)")
    parser.add_argument(
        "overrides", nargs="*", metavar="key.sub=value",
        help="override config values, e.g. steps=300 optimizer.weight_decay=0.0 output_dir=runs/x",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the run in output_dir from its newest complete checkpoint (same config required; the "
             "folder may have been moved or copied)",
    )
    parser.add_argument(
        "--force-new", action="store_true",
        help="output_dir holds another run: rename it to OUTPUT_DIR.set-aside-<time> (nothing is deleted) and "
             "start this run there",
    )


def build_config(config_path: Path, overrides: list[str], resume: bool = False):
    """TrainConfig and its ConfigSource from a YAML file plus ``key.sub=value`` overrides."""
    from longadapt.training.config import train_config_from_dict

    data = load_yaml(config_path)
    source = source_for(config_path, overrides)
    merged = deep_merge(data, parse_overrides(overrides))
    if resume:
        merged["resume"] = True
    return train_config_from_dict(merged, source), source


def run_pretrain(args: argparse.Namespace) -> int:
    from longadapt.training.engine import train

    if not getattr(args, "verbose", False):  # accelerate logs every file of every checkpoint at INFO
        logging.getLogger("accelerate").setLevel(logging.WARNING)
    cfg, source = build_config(args.config, list(args.overrides), resume=args.resume)
    if getattr(args, "force_new", False):
        _set_aside_if_used(Path(cfg.output_dir), args.resume)
    result = train(cfg, source=source)
    logger.info(
        "final validation: %.4f nats per masked token, %.4f bits per byte (model: %s)",
        result.metrics.get("loss", float("nan")), result.metrics.get("bpb", float("nan")), result.model_dir,
    )
    return 0


def _set_aside_if_used(folder: Path, resume: bool) -> None:
    """``--force-new``: a folder that holds anything is renamed aside (never deleted)."""
    from longadapt.errors import LongAdaptError
    from longadapt.io import set_aside

    if resume:
        raise LongAdaptError("--force-new starts a new run and --resume continues one: pass one of them")
    if folder.is_dir() and any(folder.iterdir()):
        set_aside(folder)
