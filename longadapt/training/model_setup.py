"""The engine's model set-up: the model a config describes (or the one a recipe built) with its tokenizer,
checked to fit, frozen where a phase says so, and the accelerator that runs it (precision, processes)."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from longadapt.errors import LongAdaptError
from longadapt.config import ConfigSource, unknown_key
from longadapt.training.config import TrainConfig
from longadapt.training.optim import freeze_parameters
from longadapt.training.resolve import resolve_tokenizer

logger = logging.getLogger("longadapt.training.engine")  # the engine's phases log as the engine


def build_model(cfg: TrainConfig, tokenizer: Any, source: ConfigSource) -> Any:
    """A new model from ``cfg.model.config`` or the checkpoint at ``cfg.model.path``."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    import longadapt  # noqa: F401  (registers model_type "longadapt" with the Auto classes)

    if cfg.model.path:
        path = _resolve_path(cfg.model.path, source)
        if not (path / "config.json").is_file():
            raise LongAdaptError(
                f"{source.where('model.path')}: {path} is not a model directory (no config.json); "
                "point model.path to a folder written by save_pretrained, or use model.config"
            )
        return AutoModelForMaskedLM.from_pretrained(path)
    if not cfg.model.config:
        raise LongAdaptError(
            f"{source.where('model')}: no model given: set model.config (keyword arguments of the core "
            "config, e.g. hidden_size, num_hidden_layers) or model.path (a checkpoint to continue)"
        )
    kwargs = dict(cfg.model.config)
    model_type = kwargs.pop("model_type", "longadapt")
    try:
        config_cls = type(AutoConfig.for_model(model_type))
    except ValueError as exc:
        raise LongAdaptError(f"{source.where('model.config.model_type')}: unknown model_type {model_type!r}") from exc
    valid = {f.name for f in dataclasses.fields(config_cls)} if dataclasses.is_dataclass(config_cls) else None
    if valid is not None:
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise unknown_key(source.where("model.config." + unknown[0]), unknown[0], valid, "model.config.")
    if "vocab_size" not in kwargs:
        kwargs["vocab_size"] = 64 * math.ceil(len(tokenizer) / 64)
    for name in ("pad_token_id", "cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "mask_token_id"):
        if name not in kwargs and (valid is None or name in valid):
            token_id = getattr(tokenizer, name, None)
            if token_id is not None:
                kwargs[name] = token_id
    if len(tokenizer) > kwargs["vocab_size"]:
        raise LongAdaptError(
            f"{source.where('model.config.vocab_size')}: the tokenizer has {len(tokenizer)} tokens but the model "
            f"vocab_size is {kwargs['vocab_size']}; raise vocab_size to at least {len(tokenizer)} "
            f"(a multiple of 64: {64 * math.ceil(len(tokenizer) / 64)}) or leave it out to derive it"
        )
    try:
        config = config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise LongAdaptError(f"{source.where('model.config')}: invalid model config: {exc}") from exc
    return AutoModelForMaskedLM.from_config(config)


def check_model_fits(model: Any, tokenizer: Any, cfg: TrainConfig, source: ConfigSource) -> None:
    vocab = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > vocab:
        raise LongAdaptError(
            f"{source.where('tokenizer')}: the tokenizer has {len(tokenizer)} tokens but the model's embedding "
            f"matrix has {vocab} rows (vocab_size): token ids >= {vocab} would crash. Use the model's own "
            "tokenizer, or resize the embeddings first (model.resize_token_embeddings, or the vocabulary "
            "arms of the adapt recipes)"
        )
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and max_pos < cfg.max_length:
        raise LongAdaptError(
            f"{source.where('max_length')}: max_length {cfg.max_length} exceeds the model's "
            f"max_position_embeddings {max_pos}; lower max_length or extend the model's positions"
        )


def _resolve_path(value: str, source: ConfigSource) -> Path:
    path = Path(os.path.expanduser(value))
    if path.is_absolute():
        return path
    candidate = source.base_dir / path
    return candidate if candidate.exists() else path.resolve()


def _make_accelerator(cfg: TrainConfig) -> Any:
    """An Accelerator for this run.

    Several processes on a machine without CUDA (``accelerate launch --multi_gpu --num_processes N``
    or ``torchrun`` on CPU) run on CPU with the gloo backend. A notebook may call :func:`train`
    again with another precision: the single-process accelerate state is then rebuilt.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, DistributedType

    from longadapt.precision import resolve

    chosen = resolve(cfg.precision, "cuda" if torch.cuda.is_available() else "cpu", training=True, what="precision")
    if cfg.precision == "auto":
        logger.info("precision auto: training in %s (%s)", chosen.name, chosen.reason)
    mixed_precision = chosen.mixed_precision
    from longadapt.launch import cpu_launch_without_workers, env_world_size

    force_cpu = env_world_size() > 1 and not torch.cuda.is_available()
    if cpu_launch_without_workers():
        logger.warning(
            "accelerate launch --cpu started ONE process (accelerate %s runs several CPU processes only "
            "through mpirun) and longadapt could not read --num_processes from the launcher's command line to start "
            "the workers itself. Give accelerate a host file (a line 'localhost slots=N'): accelerate launch --cpu "
            "--num_processes N --mpirun_hostfile FILE -m longadapt pretrain ...; or, on a machine without "
            "CUDA, accelerate launch --multi_gpu --num_processes N -m longadapt pretrain ... (gloo)",
            __import__("accelerate").__version__,
        )
    state = AcceleratorState._shared_state
    if (
        state
        and state.get("_mixed_precision") not in (None, mixed_precision)
        and state.get("distributed_type") == DistributedType.NO
    ):
        AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=force_cpu, step_scheduler_with_optimizer=False)
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not accelerator.is_fsdp2 and (
        accelerator.distributed_type != DistributedType.FSDP
    ):
        # accelerate's own reason: AcceleratorState turns FSDP on only when the distributed type is one of
        # its accelerators' (multi-GPU, NPU, XPU, HPU, ...), never for MULTI_CPU or a single process; torch's
        # FSDP2 (fully_shard, sharded checkpoints) itself runs on the CPU with gloo, but not through accelerate
        logger.warning(
            "an FSDP launch config was given but accelerate %s runs %s: it enables FSDP only on GPUs and other "
            "accelerators (never on the CPU, nor on one process), so this run trains without sharding",
            __import__("accelerate").__version__, accelerator.distributed_type,
        )
    return accelerator


@dataclass
class _Call:
    """How the engine calls the model: with ``document_ids`` (packed rows) or not, and with the
    logits-free loss (``return_logits=False``) where the model has it."""

    takes_document_ids: bool
    loss_only: dict[str, Any]


def _set_up_model(cfg: TrainConfig, model: Any, tokenizer: Any, source: ConfigSource) -> tuple[Any, Any, _Call]:
    if tokenizer is None:
        tokenizer = resolve_tokenizer(cfg.tokenizer or cfg.model.path, source)
    if model is None:
        model = build_model(cfg, tokenizer, source)
    check_model_fits(model, tokenizer, cfg, source)
    params = inspect.signature(model.forward).parameters
    call = _Call("document_ids" in params, {"return_logits": False} if "return_logits" in params else {})
    if not call.takes_document_ids:
        logger.warning(
            "%s.forward has no document_ids argument: attention will cross document boundaries in packed rows",
            type(model).__name__,
        )
    return model, tokenizer, call


def _prepare_for_training(model: Any, cfg: TrainConfig, source: ConfigSource) -> list[str]:
    """Gradient checkpointing, frozen parameters (their names are returned) and train mode."""
    if cfg.model.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    frozen = freeze_parameters(model, cfg.model.freeze, source.where("model.freeze")) if cfg.model.freeze else []
    model.train()
    return frozen
