"""Encoder speed and memory: the core against transformers ModernBERT, Longformer and BERT.

Every (model, length, mode) measurement runs in a fresh subprocess, so that peak memory is a clean
high-water mark: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the process's
peak resident set size during the timed runs (activations and workspaces, weights excluded).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

MODELS = ("core", "hf-modernbert", "hf-longformer", "hf-bert", "core-bert")


@dataclass
class Shape:
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 384
    window: int = 128
    global_every: int = 3
    vocab_size: int = 1024


def split_name(name: str) -> tuple[str, str | None]:
    """``core:sdpa`` -> (``core``, ``sdpa``): a model with an attention backend forced (the core's
    ``attention_backend``: eager | sdpa | flash; transformers' ``attn_implementation`` for ``hf-*``)."""
    base, _, backend = name.partition(":")
    return base, backend or None


def build_model(name: str, shape: Shape, length: int):
    import transformers

    import longadapt  # noqa: F401  (registers the core)
    from longadapt.modeling import LongAdaptConfig, LongAdaptModel

    s = shape
    name, backend = split_name(name)
    if name == "core":
        cfg = LongAdaptConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=s.intermediate_size,
            max_position_embeddings=max(length, 512), local_attention=s.window,
            global_attn_every_n_layers=s.global_every, attention_backend=backend or "auto",
        )
        return LongAdaptModel(cfg)
    if name == "core-bert":  # a BERT-style core, as an imported BERT is
        cfg = LongAdaptConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=4 * s.hidden_size, mlp_type="mlp",
            norm_position="post", norm_bias=True, attention_bias=True, mlp_bias=True, final_norm=False,
            position_embedding_type="absolute", type_vocab_size=2, max_position_embeddings=max(length, 512),
            global_attn_every_n_layers=1, norm_eps=1e-12,
        )
        return LongAdaptModel(cfg)
    if name == "hf-modernbert":
        cfg = transformers.ModernBertConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=s.intermediate_size,
            max_position_embeddings=max(length, 512), local_attention=s.window,
            global_attn_every_n_layers=s.global_every if s.global_every > 0 else s.num_layers + 1,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
        )
        if s.global_every == 0:
            cfg.layer_types = ["sliding_attention"] * s.num_layers
        cfg._attn_implementation = backend or "sdpa"
        return transformers.ModernBertModel(cfg)
    if name == "hf-longformer":
        cfg = transformers.LongformerConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=s.intermediate_size,
            max_position_embeddings=max(length, 512) + 2, attention_window=s.window, pad_token_id=1,
        )
        return transformers.LongformerModel(cfg)
    if name == "hf-bert":
        cfg = transformers.BertConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=4 * s.hidden_size, max_position_embeddings=512,
        )
        cfg._attn_implementation = "sdpa"
        return transformers.BertModel(cfg)
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def model_flops_per_token(name: str, shape: Shape, length: int) -> float:
    """Forward FLOPs per token (matmuls only): projections, MLP and attention scores/values."""
    s = shape
    d = s.hidden_size
    name, _ = split_name(name)
    if name in ("hf-bert", "core-bert"):
        mlp = 2 * d * 4 * d
    else:
        mlp = 3 * d * s.intermediate_size
    linear = 2 * (4 * d * d + mlp)
    total = 0.0
    for i in range(s.num_layers):
        is_global = name in ("hf-bert", "core-bert") or (s.global_every > 0 and i % s.global_every == 0)
        if name == "hf-longformer":
            ctx = min(length, s.window + 1)
        else:
            ctx = length if is_global else min(length, s.window + 1)
        total += linear + 4 * d * ctx
    return total


class PeakMemory:
    """Peak memory above the moment of creation, in MB: ``torch.cuda.max_memory_allocated`` on CUDA,
    else the process's RSS high-water mark (meaningful in a fresh process per measurement)."""

    def __init__(self, device: str):
        import torch

        self.cuda = str(device).startswith("cuda")
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def extra_mb(self) -> float:
        import torch

        if self.cuda:
            return torch.cuda.max_memory_allocated() / 2**20 - self.base
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - self.base


def measure_one(name: str, shape: Shape, length: int, mode: str, device: str, dtype: str,
                min_time: float, batch: int) -> dict[str, Any]:
    """Run in the current process; returns one record."""
    import torch

    torch.manual_seed(0)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    model = build_model(name, shape, length).to(device=device, dtype=dt)
    model.train(mode == "train")
    for module in model.modules():  # no dropout noise in timings
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ids = torch.randint(3, shape.vocab_size, (batch, length), device=device)
    mask = torch.ones_like(ids)
    cuda = device.startswith("cuda")

    def step():
        if mode == "forward":
            with torch.inference_mode():
                model(input_ids=ids, attention_mask=mask)
        else:
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            out.float().pow(2).mean().backward()
            model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()

    memory = PeakMemory(device)
    step()  # warm-up (also the first peak)
    runs, start = 0, time.perf_counter()
    while True:
        step()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and runs >= 2 or elapsed >= 4 * min_time:
            break
    seconds = elapsed / runs
    peak = memory.extra_mb()
    tokens = batch * length
    flops = model_flops_per_token(name, shape, length) * (3 if mode == "train" else 1)
    return {
        "model": name,
        "length": length,
        "mode": mode,
        "batch": batch,
        "tokens_per_s": tokens / seconds,
        "seconds_per_step": seconds,
        "peak_mem_mb": round(peak, 1),
        "tflops_per_s": flops * tokens / seconds / 1e12,
        "device": device,
        "dtype": dtype,
        "runs": runs,
    }


def run_benchmark(
    lengths: list[int],
    models: list[str],
    modes: list[str],
    shape: Shape,
    device: str = "cpu",
    dtype: str = "fp32",
    min_time: float = 3.0,
    tokens_per_batch: int = 0,
    peak_tflops: float | None = None,
    timeout: float = 900.0,
) -> list[dict[str, Any]]:
    """Measure every combination, each in a subprocess. hf-bert and core-bert run at <= 512 only."""
    records = []
    for length in lengths:
        for name in models:
            if split_name(name)[0] in ("hf-bert", "core-bert") and length > 512:
                continue
            for mode in modes:
                batch = max(1, tokens_per_batch // length) if tokens_per_batch else 1
                payload = json.dumps({"name": name, "shape": asdict(shape), "length": length, "mode": mode,
                                      "device": device, "dtype": dtype, "min_time": min_time, "batch": batch})
                logger.info("bench %s L=%d %s batch=%d", name, length, mode, batch)
                try:
                    res = subprocess.run(
                        [sys.executable, "-m", "longadapt.bench.encoder", payload],
                        capture_output=True, text=True, timeout=timeout,
                    )
                except subprocess.TimeoutExpired:
                    records.append({"model": name, "length": length, "mode": mode, "error": f"timeout after {timeout}s"})
                    continue
                if res.returncode != 0:
                    tail = res.stderr.strip().splitlines()[-1:] or ["?"]
                    records.append({"model": name, "length": length, "mode": mode, "error": tail[0]})
                    logger.warning("%s L=%d %s failed: %s", name, length, mode, tail[0])
                    continue
                rec = json.loads(res.stdout.strip().splitlines()[-1])
                if peak_tflops:
                    rec["mfu"] = rec["tflops_per_s"] / peak_tflops
                rec["shape"] = asdict(shape)
                records.append(rec)
                logger.info("  %.0f tokens/s, peak %.0f MB", rec["tokens_per_s"], rec["peak_mem_mb"])
    return records


def machine_info() -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def summarize(records: list[dict[str, Any]]) -> str:
    """A Markdown table: tokens/s and peak memory per model, length and mode."""
    rows = ["| model | length | mode | tokens/s | peak MB | TFLOP/s |", "|---|---:|---|---:|---:|---:|"]
    for r in records:
        if "error" in r:
            rows.append(f"| {r['model']} | {r['length']} | {r['mode']} | error: {r['error']} | | |")
            continue
        rows.append(f"| {r['model']} | {r['length']} | {r['mode']} | {r['tokens_per_s']:.0f} | {r['peak_mem_mb']:.0f} | {r['tflops_per_s']:.3f} |")
    return "\n".join(rows)


if __name__ == "__main__":  # worker entry: one measurement, JSON on the last stdout line
    args = json.loads(sys.argv[1])
    rec = measure_one(args["name"], Shape(**args["shape"]), args["length"], args["mode"], args["device"],
                      args["dtype"], args["min_time"], args["batch"])
    print(json.dumps(rec))
