"""Fine-tuning throughput of ``longadapt evaluate`` against ``longadapt bench encoder`` at the same shapes.

The fine-tuning side is the real thing: ``evaluation.finetune.run`` on a registry task (whole documents,
the task's own batching, dropout, the head, the loss, AdamW, gradient clipping, data collation), timed
over its training epochs only (dev scoring excluded), as ``timing.train_tokens_per_s`` in run.json.
The encoder side is ``bench encoder``'s train mode on the same model configuration and on exactly the
forward/backward passes the fine-tuning made (the rows of each micro-batch, padded to its longest row).
The two alternate over ``--rounds`` rounds, each in a fresh process, and the ratio fine-tuning / encoder
of each round is paired: the summary gives the median and min-max; the target (``--target``, 0.8) is met
only when the minimum clears it. Peak resident memory of the fine-tuning process is reported against
``--memory-target-mb``.

    python benchmarks/bench_finetune.py --model m4k=runs/minilm-4096 --task fr-quaero-emea-ner \\
        --rounds 3 --json benchmarks/results/finetune-quaero-emea.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def pass_shapes(model_dir: str, task_name: str, max_train_docs: int | None, seed: int = 0) -> list[list[int]]:
    """The row lengths of every forward/backward pass of one fine-tuning epoch (the task's batches cut
    into micro-batches exactly as ``finetune.train_step`` cuts them)."""
    from longadapt.evaluation import finetune as ft
    from longadapt.evaluation.batching import item_rows, micro_batches
    from longadapt.evaluation.tasks import load_task

    task = load_task(task_name)
    cfg = task.config.training.resolved(task.type, task.document_task)
    data = task.load_data()
    train = data.limited("train", max_train_docs)
    loaded = ft._load_for_task(model_dir, task, cfg, data, train, None)
    _, loader = ft._train_loader(loaded.adapter, train, cfg, seed)
    shapes = []
    for batch in loader:
        for group in micro_batches(batch, cfg.micro_batch_tokens):
            shapes.append([n for i in group for n in item_rows(batch[i])])
    return shapes


def finetune_worker(args: dict) -> dict:
    from longadapt.evaluation.finetune import RunLimits, run
    from longadapt.evaluation.tasks import load_task

    task = load_task(args["task"])
    training = dataclasses.replace(task.config.training, epochs=args["epochs"])
    res = run(args["model"], task, seed=0, training=training,
              limits=RunLimits(max_train_docs=args["max_train_docs"], max_eval_docs=1))
    return {"train_tokens_per_s": res.timing["train_tokens_per_s"], "train_s": res.timing["train_s"],
            "optimizer_steps": res.timing["optimizer_steps"], "peak_rss_mb": res.timing["peak_rss_mb"],
            "forward_passes": res.diagnostics["train_forward_passes"], "train_tokens": res.diagnostics["train_tokens"]}


def _worker(kind: str, payload: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, json.dumps(payload)], capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def encoder_measure(name: str, source: str, shapes: list[list[int]], min_time: float, dropout: str) -> dict:
    """``bench encoder``'s train mode over the fine-tuning's passes, in a fresh process. It times whole
    passes over all the shapes unless it runs past ``4 * min_time``: the caller sets ``min_time`` from
    the fine-tuning epoch's time so that the cap is never what stops it (checked here)."""
    from longadapt.bench.encoder import Shape, run_benchmark

    longest = max(max(s) for s in shapes)
    (rec,) = run_benchmark([longest], [name], ["train"], Shape(), min_time=min_time, batches={longest: shapes},
                           sources={name: source}, dropout=dropout)
    if "error" in rec:
        raise SystemExit(f"bench encoder failed: {rec['error']}")
    if rec["runs"] % len(shapes):
        raise SystemExit(f"bench encoder timed {rec['runs']} passes, not whole epochs of {len(shapes)}: raise --min-time")
    return rec


def verdict(ratios: list[float], target: float) -> str:
    if min(ratios) >= target:
        return "met"
    return "not met" if max(ratios) < target else "unclear (spread)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="[NAME=]SRC: a model folder or installed model package")
    p.add_argument("--task", default="fr-quaero-emea-ner", help="a registry task")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-train-docs", type=int, help="train on the first N documents only")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=1.0, help="bench encoder: at least this many seconds, whole passes")
    p.add_argument("--target", type=float, default=0.8, help="fine-tuning / encoder tokens/s to reach")
    p.add_argument("--memory-target-mb", type=float, default=3072.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--json", dest="json_path")
    p.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        kind, payload = args.worker[0], json.loads(args.worker[1])
        out = finetune_worker(payload) if kind == "finetune" else {
            "shapes": pass_shapes(payload["model"], payload["task"], payload["max_train_docs"])}
        print(json.dumps(out))
        return 0

    if not args.model:
        p.error("--model is required")
    from longadapt.bench.encoder import machine_info
    from longadapt.io import atomic_write_json
    from longadapt.sources import resolve_model_source

    name, sep, src = args.model.partition("=")
    if not sep:
        name, src = Path(args.model).name, args.model
    source = str(resolve_model_source(src, what="--model"))
    base = {"model": source, "task": args.task, "max_train_docs": args.max_train_docs}
    shapes = _worker("shapes", base, args.timeout)["shapes"]
    per_epoch = sum(map(sum, shapes))
    docs = "every training document" if args.max_train_docs is None else f"the first {args.max_train_docs} documents"
    print(f"{args.task}, {args.epochs} epoch(s) on {docs}, the task's batching: {len(shapes)} forward/backward passes "
          f"per epoch, {per_epoch} real tokens, rows of "
          f"{min(min(s) for s in shapes)}-{max(max(s) for s in shapes)} tokens, "
          f"{statistics.median(len(s) for s in shapes):g} rows per pass (median)")
    rounds = []
    for r in range(args.rounds):
        rec: dict = {"round": r}
        kinds = ["finetune", "encoder", "encoder-dropout"]
        for kind in kinds[r % 3:] + kinds[:r % 3]:  # the starting measurement rotates each round
            t0 = time.perf_counter()
            if kind == "finetune":
                rec["finetune"] = _worker("finetune", {**base, "epochs": args.epochs}, args.timeout)
            else:  # time at least half an epoch's worth, so that whole epochs are timed (cap: 4 x min_time)
                last = rec.get("finetune") or (rounds[-1]["finetune"] if rounds else None)
                min_time = max(args.min_time, last["train_s"] / 2) if last else args.min_time
                rec[kind] = encoder_measure(name, source, shapes, min_time, "model" if kind != "encoder" else "off")
            print(f"round {r + 1} {kind}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for kind in kinds[1:]:
            rec[f"ratio_{kind}"] = rec["finetune"]["train_tokens_per_s"] / rec[kind]["tokens_per_s"]
        rounds.append(rec)

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"

    ratios = [r["ratio_encoder"] for r in rounds]
    like = [r["ratio_encoder-dropout"] for r in rounds]
    ft_speed = statistics.median(r["finetune"]["train_tokens_per_s"] for r in rounds)
    enc_speed = statistics.median(r["encoder"]["tokens_per_s"] for r in rounds)
    drop_speed = statistics.median(r["encoder-dropout"]["tokens_per_s"] for r in rounds)
    peak = max(r["finetune"]["peak_rss_mb"] or 0 for r in rounds)
    print(f"| model | task | fine-tuning tok/s | bench encoder train tok/s (no dropout / model's dropout) "
          f"| fine-tuning / encoder: median [min-max] | >= {args.target:g}x | fine-tuning / encoder with the "
          f"model's dropout | fine-tuning peak RSS | <= {args.memory_target_mb:,.0f} MB |")
    print("|---|---|---:|---:|---|---|---|---:|---|")
    print(f"| {name} | {args.task} | {ft_speed:,.0f} | {enc_speed:,.0f} / {drop_speed:,.0f} | {spread(ratios)} "
          f"| {verdict(ratios, args.target)} | {spread(like)} | {peak:,.0f} MB | "
          f"{'met' if peak <= args.memory_target_mb else 'not met'} |")
    if args.json_path:
        atomic_write_json(args.json_path, {"model": name, "source": source, "task": args.task, "epochs": args.epochs,
                                           "max_train_docs": args.max_train_docs, "pass_shapes": shapes,
                                           "rounds": rounds, "target": args.target, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
