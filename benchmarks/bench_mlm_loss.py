"""The masked-LM loss with and without its logits: time per masked token and peak extra memory.

    python benchmarks/bench_mlm_loss.py                                   # V 30,528, hidden 64, CPU
    python benchmarks/bench_mlm_loss.py --vocab 50368 --hidden 768 --masked 4096,16384 --device cuda --dtype bf16

Arms, forward + backward of the decoder (tied weight + bias) and the mean cross-entropy over N masked
tokens:

* ``full``: ``F.cross_entropy(F.linear(h, W, b).float(), target)``, what a transformers MLM head does;
* ``chunked``: :func:`longadapt.modeling.loss.chunked_linear_cross_entropy` (what the training
  engine uses), with ``--chunk`` or its automatic chunk size.

Each measurement runs in a fresh process, so that the peak memory (RSS high-water mark on CPU,
``max_memory_allocated`` on CUDA) above the inputs belongs to that arm alone. Time is the best of the
timed repetitions after one warm-up. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(arm: str, vocab: int, hidden: int, masked: int, chunk: int | None, device: str, dtype: str,
            repeats: int, threads: int | None) -> dict:
    import torch
    import torch.nn.functional as F

    from longadapt.bench.encoder import PeakMemory
    from longadapt.modeling.loss import chunked_linear_cross_entropy, default_chunk_size

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    w = (torch.randn(vocab, hidden, device=dev) * 0.02).requires_grad_()
    b = torch.zeros(vocab, device=dev, requires_grad=True)
    h = torch.randn(masked, hidden, device=dev, requires_grad=True)
    t = torch.randint(0, vocab, (masked,), device=dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16")
    cuda = dev.type == "cuda"

    def step():
        with autocast:
            if arm == "full":
                loss = F.cross_entropy(F.linear(h, w, b).float(), t)
            else:
                loss = chunked_linear_cross_entropy(h, w, b, t, chunk)
        loss.backward()
        w.grad = b.grad = h.grad = None
        if cuda:
            torch.cuda.synchronize()

    memory = PeakMemory(device)
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = memory.extra_mb()
    best = min(times)
    return {
        "arm": arm, "vocab": vocab, "hidden": hidden, "masked": masked, "device": device, "dtype": dtype,
        "chunk": None if arm == "full" else (chunk or default_chunk_size(vocab, dev)),
        "seconds": best, "us_per_masked_token": 1e6 * best / masked, "peak_extra_mb": round(peak, 1),
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=30528)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--masked", default="96,307,614,1228,4096", help="masked tokens per batch, comma-separated")
    parser.add_argument("--chunk", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench-mlm-loss.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(**json.loads(args.worker))))
        return 0
    records = []
    for n in (int(x) for x in args.masked.split(",")):
        for arm in ("full", "chunked"):
            spec = {"arm": arm, "vocab": args.vocab, "hidden": args.hidden, "masked": n, "chunk": args.chunk,
                    "device": args.device, "dtype": args.dtype, "repeats": args.repeats, "threads": args.threads}
            res = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                                 capture_output=True, text=True)
            if res.returncode:
                raise SystemExit(f"{arm} at {n} masked tokens failed:\n{res.stderr}")
            records.append(json.loads(res.stdout.strip().splitlines()[-1]))
    import torch

    report = {"machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
                          "torch": torch.__version__}, "records": records}
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"vocab {args.vocab}, hidden {args.hidden}, {args.device} {args.dtype}, {args.threads} thread(s)")
    print(f"{'masked':>7} {'arm':<8} {'chunk':>6} {'us/token':>9} {'peak extra MB':>14}")
    for r in records:
        print(f"{r['masked']:>7} {r['arm']:<8} {str(r['chunk'] or '-'):>6} {r['us_per_masked_token']:>9.1f} "
              f"{r['peak_extra_mb']:>14.1f}")
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
