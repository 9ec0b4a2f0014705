"""AdamW with decoupled weight decay on matrices only, and the learning-rate schedules."""

from __future__ import annotations

import fnmatch
import logging

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import (
    get_constant_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
    get_wsd_schedule,
)

from longadapt.errors import LongAdaptError
from longadapt.modeling.parameters import adamw, parameter_groups
from longadapt.training.config import OptimizerConfig, ScheduleConfig

logger = logging.getLogger(__name__)


def freeze_parameters(model: torch.nn.Module, patterns: list[str], where: str) -> list[str]:
    """Stop training the parameters whose name matches one of the glob ``patterns``; returns their
    names. A pattern that matches nothing, or freezing everything, is an error (a typo would otherwise
    silently train the whole model, or nothing)."""
    names = [name for name, _ in model.named_parameters()]  # a tied weight appears once, first name
    frozen: set[str] = set()
    for pattern in patterns:
        matched = fnmatch.filter(names, pattern)
        if not matched:
            raise LongAdaptError(
                f"{where}: {pattern!r} matches no parameter of {type(model).__name__}; names look like "
                f"{', '.join(names[:3])} ... {names[-1]} (glob patterns: model.* is the whole encoder)"
            )
        frozen.update(matched)
    if len(frozen) == len(names):
        raise LongAdaptError(f"{where}: {patterns} freezes every parameter: nothing would be trained")
    for name, param in model.named_parameters():
        if name in frozen:
            param.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("froze %d parameter tensors (%s); %d parameters left to train", len(frozen), ", ".join(patterns),
                trainable)
    return sorted(frozen)


def build_optimizer(model: torch.nn.Module, lr: float, cfg: OptimizerConfig,
                    where: str = "optimizer.lr_multipliers") -> torch.optim.AdamW:
    """AdamW (fused where torch can: :func:`longadapt.modeling.parameters.adamw`) over the two decay groups,
    each split by ``cfg.lr_multipliers`` (a group's ``lr`` is ``lr`` x its multiplier; the schedule scales
    every group alike)."""
    groups = parameter_groups(model, cfg.weight_decay)
    if cfg.lr_multipliers:
        groups = split_by_lr(model, groups, lr, cfg.lr_multipliers, where)
    logger.info(
        "AdamW lr=%g betas=%s eps=%g: %d tensors with weight decay %g, %d without%s",
        lr, tuple(cfg.betas), cfg.eps, sum(len(g["params"]) for g in groups if g["weight_decay"]),
        cfg.weight_decay, sum(len(g["params"]) for g in groups if not g["weight_decay"]),
        "".join(f"; lr x {m:g} for {pattern}" for pattern, m in (cfg.lr_multipliers or {}).items()),
    )
    return adamw(groups, lr, betas=tuple(cfg.betas), eps=cfg.eps)


def split_by_lr(model: torch.nn.Module, groups: list[dict], lr: float, multipliers: dict[str, float],
                where: str) -> list[dict]:
    """Each decay group split by the first glob pattern of ``multipliers`` that matches a parameter's name
    (a tied weight is known by its first name, as ``named_parameters`` gives it); unmatched parameters keep
    ``lr``. A pattern that matches no parameter, trained or frozen, is an error (a typo would silently train
    at the full rate)."""
    names = {id(p): name for name, p in model.named_parameters()}
    used: set[str] = set()

    def multiplier(param: torch.nn.Parameter) -> float:
        for pattern, m in multipliers.items():
            if fnmatch.fnmatchcase(names[id(param)], pattern):
                used.add(pattern)
                return float(m)
        return 1.0

    out: list[dict] = []
    for group in groups:
        by_m: dict[float, list] = {}
        for p in group["params"]:
            by_m.setdefault(multiplier(p), []).append(p)
        out += [{**group, "params": ps, "lr": lr * m, "lr_multiplier": m} for m, ps in sorted(by_m.items(), reverse=True)]
    frozen_names = [n for n, p in model.named_parameters() if not p.requires_grad]
    unused = [p for p in multipliers if p not in used and not fnmatch.filter(frozen_names, p)]  # frozen: fine
    if unused:
        every = list(names.values())
        raise LongAdaptError(
            f"{where}: {unused[0]!r} matches no trained parameter of {type(model).__name__}; names look like "
            f"{', '.join(every[:3])} ... {every[-1]} (glob patterns: model.* is the whole encoder)"
        )
    return out


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
