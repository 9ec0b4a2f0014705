"""Encoder speed and memory: the core against transformers ModernBERT, Longformer and BERT.

Every (model, shape, mode) measurement runs in a fresh subprocess, so that peak memory is a clean
high-water mark: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the process's
peak resident set size during the timed runs (activations and workspaces, weights excluded).

A measurement you can believe: the models are measured interleaved (A B A B ..., the starting model
rotating each round) over ``rounds`` rounds, and each model's speed is compared with the reference
model's *of the same round* (neighbours in time share the machine's state). The summary prints the
median of these paired ratios with their min-max; a target counts as met only when the minimum
clears it.

Shapes: batch 1 at each length, ``tokens_per_batch // length`` rows of one length, or realistic
batches (``length_source``): rows whose lengths are drawn from a real length distribution of the data
bundle (E3C sentences, QUAERO MEDLINE titles, documents of the French corpus), as many as fit in
``tokens_per_batch`` tokens, padded to the longest row with an attention mask (what a user's padded
batch is; the core removes the padding itself). Speeds count real tokens, never padding.
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
    local_attention: int = 128
    global_attn_every_n_layers: int = 3
    vocab_size: int = 1024


def split_name(name: str) -> tuple[str, str | None]:
    """``core:sdpa`` -> (``core``, ``sdpa``): a model with an attention backend forced (the core's
    ``attention_backend``: eager | sdpa | flash; transformers' ``attn_implementation`` for ``hf-*``)."""
    base, _, backend = name.partition(":")
    return base, backend or None


def build_model(name: str, shape: Shape, length: int, source: str | None = None):
    """The encoder to time: one of :data:`MODELS` at ``shape``, or, with ``source`` (a model folder), that
    model's own configuration with random weights (speed does not depend on the weights)."""
    import transformers

    import longadapt  # noqa: F401  (registers the core)
    from longadapt.modeling import LongAdaptConfig, LongAdaptModel

    s = shape
    name, backend = split_name(name)
    if source is not None:
        config = transformers.AutoConfig.from_pretrained(source)
        limit = getattr(config, "max_position_embeddings", None)
        if getattr(config, "position_embedding_type", "absolute") == "absolute" and limit and length > limit:
            raise ValueError(f"{source}: length {length} is beyond the model's {limit} learned positions; "
                             f"benchmark it at --lengths {limit} or less")
        if getattr(config, "model_type", None) == "longadapt":
            if backend:
                config.attention_backend = backend
            return LongAdaptModel(config)
        if backend:
            config._attn_implementation = backend
        return transformers.AutoModel.from_config(config)
    if name == "core":
        cfg = LongAdaptConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=s.intermediate_size,
            max_position_embeddings=max(length, 512), local_attention=s.local_attention,
            global_attn_every_n_layers=s.global_attn_every_n_layers, attention_backend=backend or "auto",
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
            max_position_embeddings=max(length, 512), local_attention=s.local_attention,
            global_attn_every_n_layers=s.global_attn_every_n_layers if s.global_attn_every_n_layers > 0 else s.num_layers + 1,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
        )
        if s.global_attn_every_n_layers == 0:
            cfg.layer_types = ["sliding_attention"] * s.num_layers
        cfg._attn_implementation = backend or "sdpa"
        return transformers.ModernBertModel(cfg)
    if name == "hf-longformer":
        cfg = transformers.LongformerConfig(
            vocab_size=s.vocab_size, hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
            num_attention_heads=s.num_heads, intermediate_size=s.intermediate_size,
            max_position_embeddings=max(length, 512) + 2, attention_window=s.local_attention, pad_token_id=1,
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


def config_flops_per_token(config: Any, length: int) -> float:
    """Forward FLOPs per token (matmuls only) of a model folder's configuration: the core's (its layer
    types and window), ModernBERT's, or a BERT-like one (every layer global); see :mod:`longadapt.modeling.flops`."""
    from longadapt.modeling.flops import encoder_flops_per_token

    return encoder_flops_per_token(config, length)


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
        is_global = name in ("hf-bert", "core-bert") or (s.global_attn_every_n_layers > 0 and i % s.global_attn_every_n_layers == 0)
        if name == "hf-longformer":
            ctx = min(length, s.local_attention + 1)
        else:
            ctx = length if is_global else min(length, s.local_attention + 1)
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


def disable_dropout(model: Any) -> None:
    """No dropout anywhere in ``model``, train mode included: ``nn.Dropout`` modules, and the float
    probabilities that attention code reads itself (HF Longformer's ``self.dropout``, ModernBERT's
    ``attention_dropout``, the core's ``config.attention_dropout``)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for attr in ("dropout", "attention_dropout", "dropout_prob"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, 0.0)
    if isinstance(getattr(model.config, "attention_dropout", None), float):
        model.config.attention_dropout = 0.0


def measure_one(name: str, shape: Shape, length: int, mode: str, device: str, dtype: str,
                min_time: float, batch: int, batches: list[list[int]] | None = None,
                source: str | None = None, dropout: str = "off", compile_model: bool = False) -> dict[str, Any]:
    """Run in the current process; returns one record. ``batches``: realistic batches (each a list of
    row lengths), used in turn instead of ``batch`` rows of ``length`` tokens; ``source``: a model folder
    measured at its own configuration (:func:`build_model`); ``dropout``: ``off`` (no dropout noise in the
    timings) or ``model`` (the model's own dropout in train mode, as fine-tuning runs it); ``compile_model``:
    time ``torch.compile(model)`` (static shapes: every batch shape is compiled in the warm-up, whose time is
    recorded as ``warmup_s``)."""
    import torch

    torch.manual_seed(0)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    rows = batches or [[length] * batch]
    longest = max(max(b) for b in rows)
    model = build_model(name, shape, longest, source).to(device=device, dtype=dt)
    vocab = model.config.vocab_size
    model.train(mode == "train")
    if dropout == "off":
        disable_dropout(model)
    inputs = []
    for lengths in rows:
        width = max(lengths)
        ids = torch.randint(3, vocab, (len(lengths), width), device=device)
        mask = (torch.arange(width, device=device)[None, :] < torch.tensor(lengths, device=device)[:, None]).long()
        inputs.append((ids * mask, mask, sum(lengths)))
    cuda = device.startswith("cuda")
    run = torch.compile(model, dynamic=False) if compile_model else model

    def step(i: int) -> int:
        ids, mask, real = inputs[i % len(inputs)]
        if mode == "forward":
            with torch.inference_mode():
                run(input_ids=ids, attention_mask=mask)
        else:
            out = run(input_ids=ids, attention_mask=mask).last_hidden_state
            (out.float().pow(2) * mask[..., None]).mean().backward()
            model.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return real

    memory = PeakMemory(device)
    warm = time.perf_counter()
    for i in range(len(inputs) if compile_model else min(len(inputs), 2)):
        step(i)  # warm-up (also the first peak; compiling: every shape once)
    warmup_s = time.perf_counter() - warm
    runs, tokens, start = 0, 0, time.perf_counter()
    while True:
        tokens += step(runs)
        runs += 1
        elapsed = time.perf_counter() - start
        # whole passes over the realistic batches, so that every run sees the same mix
        if (elapsed >= min_time and runs >= max(2, len(inputs)) and runs % len(inputs) == 0) or elapsed >= 4 * min_time:
            break
    seconds = elapsed / runs
    peak = memory.extra_mb()
    padded = sum(int(m.numel()) for _, m, _ in inputs)
    real = sum(r for _, _, r in inputs)
    # FLOPs per real token at each row's own length (global attention costs more in longer rows)
    def flops_at(n: int) -> float:
        return config_flops_per_token(model.config, n) if source else model_flops_per_token(name, shape, n)

    per_token = sum(flops_at(n) * n for b in rows for n in b) / sum(n for b in rows for n in b)
    flops = per_token * (3 if mode == "train" else 1)
    return {
        "model": name,
        **({"source": source} if source else {}),
        "length": length,
        "mode": mode,
        "batch": batch if not batches else round(sum(len(b) for b in rows) / len(rows), 2),
        "tokens_per_s": tokens / elapsed,
        "seconds_per_step": seconds,
        "peak_mem_mb": round(peak, 1),
        "tflops_per_s": flops * tokens / elapsed / 1e12,
        "padding_share": round(1 - real / padded, 4),
        "device": device,
        "dtype": dtype,
        "dropout": dropout,
        "compiled": compile_model,
        "warmup_s": round(warmup_s, 2),
        "runs": runs,
    }


#: Realistic length distributions of the data bundle: (task or corpus, what its rows are).
LENGTH_SOURCES = {
    "e3c": ("fr-e3c-ner", "E3C French clinical-case sentences (all splits)"),
    "quaero-medline": ("fr-quaero-medline-ner", "QUAERO French MEDLINE titles (all splits)"),
    "fr-corpus": ("corpora/fr.jsonl.gz", "documents of the French corpus, cut at the longest length asked for"),
}


def length_pool(source: str, tokenizer: Any, max_length: int) -> list[int]:
    """Token counts (special tokens included, at most ``max_length``) of the rows of a length source."""
    from longadapt.errors import LongAdaptError

    if source not in LENGTH_SOURCES:
        raise LongAdaptError(f"--length-source {source!r} is unknown; choose from {', '.join(LENGTH_SOURCES)}")
    where, _ = LENGTH_SOURCES[source]
    if where.startswith("corpora/"):
        from longadapt.data.corpus import iter_texts
        from longadapt.dataroot import data_root

        root = data_root()
        if root is None:
            raise LongAdaptError("--length-source fr-corpus needs the data bundle: set LONGADAPT_DATA")
        texts = list(iter_texts(root / where))
    else:
        from longadapt.evaluation.tasks import load_task

        data = load_task(where).load_data()
        texts = [x.text for split in ("train", "dev", "test") for x in data[split]]
    enc = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    return [min(len(ids), max_length) for ids in enc]


def draw_batches(pool: list[int], tokens_per_batch: int, n_batches: int, seed: int = 0) -> list[list[int]]:
    """``n_batches`` batches of row lengths drawn (with replacement, seeded) from ``pool``: rows are added
    while their total stays within ``tokens_per_batch`` (a batch holds at least one row)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n_batches):
        batch: list[int] = []
        while True:
            n = rng.choice(pool)
            if batch and sum(batch) + n > tokens_per_batch:
                break
            batch.append(n)
            if sum(batch) >= tokens_per_batch:
                break
        out.append(batch)
    return out


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
    rounds: int = 1,
    batches: dict[int, list[list[int]]] | None = None,
    length_source: str | None = None,
    sources: dict[str, str] | None = None,
    dropout: str = "off",
    compile_model: bool = False,
) -> list[dict[str, Any]]:
    """Measure every combination, each in a subprocess, ``rounds`` times with the models interleaved
    (round ``r`` starts with model ``r mod len(models)``). hf-bert and core-bert run at <= 512 only.
    ``batches``: realistic batches per length (the length is then their longest row's cap); ``sources``:
    model name -> model folder, for models measured at their own configuration."""
    records = []
    for length in lengths:
        names = [n for n in models if not (split_name(n)[0] in ("hf-bert", "core-bert") and length > 512)]
        for mode in modes:
            for r in range(rounds):
                order = names[r % len(names):] + names[:r % len(names)] if names else []
                for name in order:
                    batch = max(1, tokens_per_batch // length) if tokens_per_batch else 1
                    payload = {"name": name, "shape": asdict(shape), "length": length, "mode": mode,
                               "device": device, "dtype": dtype, "min_time": min_time, "batch": batch,
                               "batches": (batches or {}).get(length), "source": (sources or {}).get(name),
                               "dropout": dropout, "compile": compile_model}
                    records.append(_measure_in_subprocess(payload, timeout, peak_tflops, shape, r, length_source))
    return records


def _measure_in_subprocess(payload: dict[str, Any], timeout: float, peak_tflops: float | None, shape: Shape,
                           round_: int, length_source: str | None) -> dict[str, Any]:
    name, length, mode = payload["name"], payload["length"], payload["mode"]
    head = {"model": name, "length": length, "mode": mode, "round": round_, "length_source": length_source}
    logger.info("bench %s L=%d %s batch=%s round %d", name, length, mode,
                payload["batch"] if not payload["batches"] else "realistic", round_ + 1)
    try:
        res = subprocess.run([sys.executable, "-m", "longadapt.bench.encoder", json.dumps(payload)],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**head, "error": f"timeout after {timeout}s"}
    if res.returncode != 0:
        tail = res.stderr.strip().splitlines()[-1:] or ["?"]
        logger.warning("%s L=%d %s failed: %s", name, length, mode, tail[0])
        return {**head, "error": tail[0]}
    rec = {**json.loads(res.stdout.strip().splitlines()[-1]), "round": round_, "length_source": length_source}
    if peak_tflops:
        rec["mfu"] = rec["tflops_per_s"] / peak_tflops
    if not payload.get("source"):
        rec["shape"] = asdict(shape)
    logger.info("  %.0f tokens/s, peak %.0f MB", rec["tokens_per_s"], rec["peak_mem_mb"])
    return rec


def machine_info() -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def summarize(records: list[dict[str, Any]], reference: str | None = None, target: float | None = None) -> str:
    """A Markdown table per (length, mode) and model: median tokens/s over the rounds, median peak memory,
    and, against ``reference``, the median of the per-round ratios with their min-max (``target``: met
    only when the minimum clears it)."""
    import statistics

    groups: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    errors = []
    for r in records:
        if "error" in r:
            errors.append(f"| {r['model']} | {r['length']} | {r['mode']} | error: {r['error']} | | | | |")
            continue
        groups.setdefault((r["length"], r["mode"], r["model"]), []).append(r)
    head = "| model | length | mode | batch | real tokens/s (median) | peak MB | rounds |"
    sep = "|---|---:|---|---:|---:|---:|---:|"
    if reference:
        head += f" ratio to {reference}: median [min-max] |" + (f" >= {target:g}x |" if target else "")
        sep += "---|" + ("---|" if target else "")
    rows = [head, sep]
    for (length, mode, model), recs in groups.items():
        speed = statistics.median(r["tokens_per_s"] for r in recs)
        peak = statistics.median(r["peak_mem_mb"] for r in recs)
        batch = recs[0]["batch"]
        if recs[0].get("length_source"):
            batch = f"{batch} ({recs[0]['length_source']}, {100 * recs[0].get('padding_share', 0):.0f} % padding)"
        line = f"| {model} | {length} | {mode} | {batch} | {speed:,.0f} | {peak:,.0f} | {len(recs)} |"
        if reference:
            ratios = paired_ratios(recs, groups.get((length, mode, reference), []))
            if model == reference or not ratios:
                line += " |" + (" |" if target else "")
            else:
                low, mid, high = min(ratios), statistics.median(ratios), max(ratios)
                line += f" {mid:.2f}x [{low:.2f}-{high:.2f}] |"
                if target:
                    line += (" met |" if low >= target else (" not met |" if high < target else " unclear (spread) |"))
        rows.append(line)
    return "\n".join(rows + errors)


def paired_ratios(records: list[dict[str, Any]], reference: list[dict[str, Any]]) -> list[float]:
    """tokens/s of each round over the reference model's in the same round (rounds both have)."""
    ref = {r["round"]: r["tokens_per_s"] for r in reference if "round" in r}
    return [r["tokens_per_s"] / ref[r["round"]] for r in records if r.get("round") in ref and ref[r["round"]] > 0]


if __name__ == "__main__":  # worker entry: one measurement, JSON on the last stdout line
    args = json.loads(sys.argv[1])
    rec = measure_one(args["name"], Shape(**args["shape"]), args["length"], args["mode"], args["device"],
                      args["dtype"], args["min_time"], args["batch"], args.get("batches"), args.get("source"),
                      args.get("dropout", "off"), args.get("compile", False))
    print(json.dumps(rec))
