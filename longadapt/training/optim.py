"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedules."""

from __future__ import annotations

import logging

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
    get_wsd_schedule,
)

from longadapt.training.config import OptimizerConfig, ScheduleConfig

logger = logging.getLogger(__name__)


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on weight matrices and embeddings, none on biases and norms.

    A parameter is exempt when it has fewer than two dimensions (biases, LayerNorm/RMSNorm weights)
    or when its module is a normalisation layer.
    """
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.RMSNorm, torch.nn.GroupNorm)) or "norm" in type(
            module
        ).__name__.lower():
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay, seen = [], [], set()
    for _, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:  # tied weights appear once
            continue
        seen.add(id(param))
        (no_decay if param.ndim < 2 or id(param) in no_decay_ids else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, lr: float, cfg: OptimizerConfig) -> torch.optim.AdamW:
    groups = parameter_groups(model, cfg.weight_decay)
    logger.info(
        "AdamW lr=%g betas=%s eps=%g: %d tensors with weight decay %g, %d without",
        lr, tuple(cfg.betas), cfg.eps, len(groups[0]["params"]), cfg.weight_decay, len(groups[1]["params"]),
    )
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, steps: int) -> LambdaLR:
    """The learning-rate multiplier per optimizer step, from transformers' schedule functions."""
    warmup = min(cfg.warmup_steps, steps)
    if cfg.name == "wsd":
        decay = cfg.decay_steps if cfg.decay_steps is not None else round(cfg.decay_fraction * steps)
        decay = max(0, min(decay, steps - warmup))
        return get_wsd_schedule(
            optimizer,
            num_warmup_steps=warmup,
            num_decay_steps=decay,
            num_stable_steps=steps - warmup - decay,
            decay_type=cfg.decay_shape,
            min_lr_ratio=cfg.min_lr_ratio,
        )
    if cfg.name == "linear":
        return get_linear_schedule_with_warmup(optimizer, warmup, steps)
    if cfg.name == "cosine":
        return get_cosine_with_min_lr_schedule_with_warmup(
            optimizer, warmup, steps, min_lr_rate=cfg.min_lr_ratio
        )
    if cfg.name == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    raise ValueError(f"unknown schedule {cfg.name!r}")  # TrainConfig.validate rejects it earlier
