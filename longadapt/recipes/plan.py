"""``longadapt plan``: the cost of a recipe before it runs, per phase: tokens, optimizer steps, model FLOPs per
token, wall time and GPU-hours at a stated utilisation, and the memory per GPU (weights, gradients, optimizer
state, activations) with whether it fits.

What is counted, and what is estimated:

* the model is the one the recipe trains, at its true shape: the base's configuration (a local folder or
  installed package is read; the base models the built-in recipes name are known by their public
  configurations, :data:`KNOWN_BASES`, so no download is needed), made long as the recipe says; its
  parameters are counted exactly on PyTorch's ``meta`` device (no memory);
* FLOPs per token are matrix products (:mod:`longadapt.modeling.flops`) at the phase's row length, an upper
  bound for the global layers (a packed row holds several documents, and attention never crosses one);
  training is 3x the forward pass (forward and backward), 4x for the encoder with gradient checkpointing;
  the MLM head runs at masked positions only;
* time = tokens x FLOPs per token / (GPUs x the GPU's dense bf16 peak x MFU); the MFU is the user's
  assumption (``--mfu``, default 0.35), not a measurement;
* memory per GPU: 16 bytes per parameter (fp32 weights and gradients, AdamW's two moments; divided by the
  number of GPUs under FSDP), and activations from the tensors each layer keeps for its backward pass in bf16
  autocast (:func:`activation_bytes_per_token`), an estimate that docs/benchmarks.md sets beside measured
  peaks where a rehearsal ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError

# dense bf16 peak (FLOP/s, without sparsity) and memory (bytes) of the GPUs a plan can be made for
GPUS: dict[str, tuple[float, float]] = {
    "h100": (989e12, 80e9),   # H100 SXM
    "h200": (989e12, 141e9),  # H200 SXM
    "a100": (312e12, 80e9),   # A100 SXM 80 GB
    "l4": (121e12, 24e9),     # L4
}
USABLE_MEMORY = 0.9  # the share of a GPU's memory a plan may fill (the CUDA context, allocator slack)

_BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  mlp_type="mlp", norm_position="post")
#: public configurations of the base models the built-in recipes name (the core's field names)
KNOWN_BASES: dict[str, dict[str, Any]] = {
    "bert-base-uncased": {**_BERT_BASE, "vocab_size": 30522, "max_position_embeddings": 512},
    "almanach/camembert-base": {**_BERT_BASE, "vocab_size": 32005, "max_position_embeddings": 514},
    "Dr-BERT/DrBERT-7GB": {**_BERT_BASE, "vocab_size": 32005, "max_position_embeddings": 514},
    "yikuan8/Clinical-Longformer": {**_BERT_BASE, "vocab_size": 50265, "max_position_embeddings": 4098,
                                    "local_attention": 512, "global_attn_every_n_layers": 0},
    "thomas-sounack/BioClinical-ModernBERT-base": dict(
        hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152, vocab_size=50368,
        max_position_embeddings=8192, local_attention=128, global_attn_every_n_layers=3, mlp_type="glu"),
}


def _base_shape(base: str | None, where: str) -> dict[str, Any]:
    """The core config fields of a base model: a known hub id, or the config.json of a local folder or
    installed package (never downloaded here)."""
    if base is None:
        raise LongAdaptError(f"{where}: this recipe needs a base model to plan: give --base (a local folder, an "
                             f"installed package, or one of {', '.join(KNOWN_BASES)})")
    if base in KNOWN_BASES:
        return dict(KNOWN_BASES[base])
    from longadapt.sources import resolve_model_source

    try:
        folder = Path(resolve_model_source(base, "--base"))
    except LongAdaptError:
        folder = None
    if folder is None or not (folder / "config.json").is_file():
        raise LongAdaptError(f"{where}: base {base!r} is neither a local model folder nor one of the known "
                             f"configurations ({', '.join(KNOWN_BASES)}); plan reads no hub")
    c = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    glu = c.get("model_type") == "modernbert" or c.get("mlp_type") == "glu"
    out = {k: c[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                              "vocab_size", "max_position_embeddings") if k in c}
    out["mlp_type"] = "glu" if glu else "mlp"
    if not glu and c.get("model_type") != "longadapt":
        out["norm_position"] = "post"
    for k in ("local_attention", "global_attn_every_n_layers", "layer_types"):
        if k in c:
            out[k] = c[k]
    return out


def model_config(cfg: Any, where: str = "recipe") -> Any:
    """The core configuration the recipe trains (after make-long and any vocabulary change)."""
    from longadapt.modeling import LongAdaptConfig
    from longadapt.tokenizers.conventions import round_up

    length = max(p.max_length for p in cfg.phases)
    o = cfg.options
    if cfg.strategy == "scratch":
        shape = dict(o.model)
        shape["vocab_size"] = round_up(int(o.tokenizer.get("vocab_size", 32768)))
    else:
        shape = _base_shape(cfg.base, where)
        long = o if cfg.strategy == "convert" else getattr(o, "make_long", None)
        if long is not None:
            shape.update(local_attention=long.local_attention, global_attn_every_n_layers=long.global_attn_every_n_layers)
            shape.pop("layer_types", None)
        arm = getattr(o, "vocab_arm", "keep")
        if arm == "replace":
            shape["vocab_size"] = round_up(int(o.tokenizer.get("vocab_size", 32768)))
        elif arm == "extend":
            shape["vocab_size"] = round_up(shape["vocab_size"] + int(o.extend.get("max_words", 5000)))
    shape["max_position_embeddings"] = max(length, shape.get("max_position_embeddings", 0) if cfg.strategy != "convert"
                                           else length)
    shape.setdefault("layer_types", None)
    if shape.get("global_attn_every_n_layers") == 0:  # every layer local (Longformer)
        shape["layer_types"] = ["sliding_attention"] * shape["num_hidden_layers"]
        shape["global_attn_every_n_layers"] = 1
    try:
        return LongAdaptConfig(**{k: v for k, v in shape.items() if v is not None})
    except Exception as exc:  # the strict dataclass names the field
        raise LongAdaptError(f"{where}: the planned model is not a valid core configuration: {exc}") from exc


def count_parameters(config: Any) -> int:
    """Parameters of the masked-LM model (tied embeddings once), counted on the meta device."""
    import torch

    from longadapt.modeling import LongAdaptForMaskedLM

    with torch.device("meta"):
        model = LongAdaptForMaskedLM(config)
    return sum(p.numel() for p in model.parameters())


def activation_bytes_per_token(config: Any, checkpointing: bool) -> float:
    """Bytes kept for the backward pass per token, all layers (bf16 autocast, residual stream in fp32): per
    layer the two norm inputs (fp32) and outputs, q/k/v, the attention output, the MLP's wide input and its
    activation; with gradient checkpointing only each layer's input (fp32) is kept, and one layer's
    activations at a time are rebuilt."""
    d, inter = config.hidden_size, config.intermediate_size
    wide = 2 * inter if config.mlp_type == "glu" else inter
    per_layer = 4 * d * 2 + 2 * d * 2 + 2 * 3 * d + 2 * d + 2 * wide + 2 * 2 * inter
    if checkpointing:
        return 4 * d * config.num_hidden_layers + per_layer
    return per_layer * config.num_hidden_layers


@dataclass
class PhasePlan:
    name: str
    max_length: int
    steps: int
    tokens_per_step: int
    micro_batch_size: int
    tokens: int
    flops_per_token: float  # training (forward and backward), model FLOPs
    hours: float
    gpu_hours: float
    memory: dict[str, float]  # bytes per GPU
    fits: bool
    margin: float  # usable memory minus the total (negative: short by this much)


def _train_setting(cfg: Any, phase: Any, key: str) -> Any:
    """A phase's training setting: the phase, then the recipe's ``train``, then the engine's default."""
    for source in (phase.train, cfg.train):
        node: Any = source
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    from longadapt.training.config import TrainConfig

    node = TrainConfig()  # the engine's defaults live only there
    for part in key.split("."):
        node = getattr(node, part)
    return node


def plan(cfg: Any, gpus: int = 8, gpu: str = "h100", mfu: float = 0.35, fsdp: bool = False,
         where: str = "recipe") -> dict[str, Any]:
    """The plan of recipe ``cfg`` on ``gpus`` GPUs of kind ``gpu`` at utilisation ``mfu``."""
    from longadapt.modeling.flops import encoder_flops_per_token, mlm_head_flops_per_token

    if gpu not in GPUS:
        raise LongAdaptError(f"--gpu {gpu!r}: plan knows {', '.join(GPUS)}")
    if gpus < 1 or not 0 < mfu <= 1:
        raise LongAdaptError("--gpus must be at least 1 and --mfu a share in (0, 1], e.g. 0.35")
    if fsdp and gpus == 1:
        raise LongAdaptError("--fsdp shards the model over several GPUs; with --gpus 1 there is nothing to shard")
    peak, memory = GPUS[gpu]
    config = model_config(cfg, where)
    params = count_parameters(config)
    phases = []
    for phase in cfg.phases:
        tokens_per_step = int(phase.tokens_per_step or _train_setting(cfg, phase, "tokens_per_step"))
        micro = int(_train_setting(cfg, phase, "micro_batch_size"))
        masked = float(_train_setting(cfg, phase, "masking.mlm_probability"))
        checkpointing = bool(_train_setting(cfg, phase, "model.gradient_checkpointing"))
        encoder = encoder_flops_per_token(config, phase.max_length)
        train_flops = (4 if checkpointing else 3) * encoder + 3 * masked * mlm_head_flops_per_token(config)
        tokens = phase.steps * tokens_per_step
        seconds = tokens * train_flops / (gpus * peak * mfu)
        states = 16.0 * params / (gpus if fsdp else 1)
        activations = micro * phase.max_length * activation_bytes_per_token(config, checkpointing)
        total = states + activations
        phases.append(PhasePlan(phase.name, phase.max_length, phase.steps, tokens_per_step, micro, tokens,
                                train_flops, seconds / 3600, gpus * seconds / 3600,
                                {"weights_grads_optimizer": states, "activations": activations, "total": total},
                                total <= USABLE_MEMORY * memory, USABLE_MEMORY * memory - total))
    return {"recipe": f"{cfg.strategy}/{cfg.preset}", "language": cfg.language, "base": cfg.base,
            "gpus": gpus, "gpu": gpu, "mfu": mfu, "fsdp": fsdp, "parameters": params,
            "shape": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                       "intermediate_size", "vocab_size", "local_attention",
                                                       "mlp_type")},
            "global_layers": sum(t == "full_attention" for t in config.layer_types),
            "phases": [vars(p) for p in phases],
            "tokens": sum(p.tokens for p in phases), "hours": sum(p.hours for p in phases),
            "gpu_hours": sum(p.gpu_hours for p in phases)}


def _gb(x: float) -> str:
    return f"{x / 1e9:.1f} GB"


def render(p: dict[str, Any]) -> str:
    """The plan as the command prints it."""
    s = p["shape"]
    lines = [f"plan of {p['recipe']} ({p['language']}{', base ' + p['base'] if p['base'] else ''}) on {p['gpus']} x "
             f"{p['gpu'].upper()}{' (FSDP)' if p['fsdp'] else ''} at {100 * p['mfu']:.0f} % MFU (assumed)",
             f"model: {p['parameters'] / 1e6:.1f}M parameters; {s['num_hidden_layers']} layers ({p['global_layers']} "
             f"global, the others local over {s['local_attention']} tokens), hidden {s['hidden_size']}, MLP "
             f"{s['intermediate_size']} ({s['mlp_type']}), vocabulary {s['vocab_size']}", "",
             "| phase | length | steps | tokens | train GFLOP/token | wall time | GPU-hours | memory per GPU "
             "(states + activations) | fits |", "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    gpu_memory = GPUS[p["gpu"]][1]
    for ph in p["phases"]:
        m = ph["memory"]
        fits = "yes" if ph["fits"] else f"NO: short by {_gb(-ph['margin'])} of {_gb(USABLE_MEMORY * gpu_memory)} usable"
        lines.append(f"| {ph['name']} | {ph['max_length']:,} | {ph['steps']:,} | {ph['tokens']:,} | "
                     f"{ph['flops_per_token'] / 1e9:.2f} | {ph['hours']:.1f} h | {ph['gpu_hours']:.0f} | "
                     f"{_gb(m['total'])} ({_gb(m['weights_grads_optimizer'])} + {_gb(m['activations'])}, micro-batch "
                     f"{ph['micro_batch_size']} x {ph['max_length']:,}) | {fits} |")
    lines += ["", f"total: {p['tokens']:,} tokens, {p['hours']:.1f} h of wall time, {p['gpu_hours']:.0f} GPU-hours. "
              "FLOPs count matrix products at the row length (an upper bound for global layers); activations are "
              "an estimate (longadapt.recipes.plan)."]
    if any(not ph["fits"] for ph in p["phases"]):
        lines.append("Does not fit: lower train.micro_batch_size (the accumulation keeps tokens_per_step), turn on "
                     "train.model.gradient_checkpointing=true, or shard with FSDP (--fsdp; recipes/accelerate/fsdp.yaml).")
    return "\n".join(lines)


__all__ = ["GPUS", "KNOWN_BASES", "activation_bytes_per_token", "count_parameters", "model_config", "plan", "render"]
