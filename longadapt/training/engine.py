"""The masked-LM training engine on accelerate: ``train(config) -> TrainResult``.

One loop serves every recipe (convert / continue / scratch) and every scale, from a CPU smoke test
to ``accelerate launch`` on several nodes. What it guarantees:

* an optimizer step holds ``tokens_per_step`` row tokens over all processes (micro-batches x
  gradient accumulation x processes), and its loss is the mean over all masked tokens of the step
  whatever the split (each micro-batch's loss is weighted by its share of the step's masked tokens);
* validation uses fixed masks (seeded per validation batch), so values are comparable across steps
  and runs; it reports nats per masked token, bits per byte, and bits per byte per position bucket;
* a killed run resumed with ``resume=True`` ends with the same weights as an uninterrupted run
  (data order and masks are functions of the seed and the step; optimizer, scheduler and RNG states
  come back from the newest complete checkpoint);
* a NaN/Inf loss or gradient norm stops the run with the step and what to try;
* outputs: ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/step-*``, ``run.json`` and ``model/``
  (loadable with ``AutoModelForMaskedLM.from_pretrained`` after ``import longadapt``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longadapt.errors import LongAdaptError
from longadapt.io import atomic_dir, atomic_write_json, clean_stale_in
from longadapt.training.checkpoint import (
    TrainerState,
    latest_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from longadapt.training.config import (
    ConfigSource,
    TrainConfig,
    config_differences,
    config_to_dict,
)
from longadapt.training.metrics import LossTally, MetricsWriter, masked_token_losses
from longadapt.training.optim import build_optimizer, build_scheduler, freeze_parameters
from longadapt.training.resolve import resolve_corpus, resolve_tokenizer
from longadapt.training.batch_plan import BatchPlan, derive_accumulation, masking_seed

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "document_ids", "labels")
VALIDATION_SEED_TAG = 0x5EED_7A1  # separates validation masking seeds from training ones


class TrainingDiverged(LongAdaptError):
    """The loss or the gradient norm became NaN or infinite."""


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    output_dir: Path
    model_dir: Path
    steps: int
    metrics: dict[str, float]  # final validation metrics
    initial_metrics: dict[str, float] | None  # validation metrics at step 0 (None when resumed past it)
    train_tokens_per_s: float | None
    run_json: Path
    model: Any = field(default=None, repr=False)  # the trained model (unwrapped), in memory
    tokenizer: Any = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------
# building blocks


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
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise LongAdaptError(
                f"{source.where('model.config.' + unknown[0])}: unknown key(s) {', '.join(unknown)} for a "
                f"{model_type} config.{hint}"
            )
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


def _dataset_fingerprint(datasets_: list[Any]) -> str:
    """sha256 of the packed token ids and document ids (values and row lengths) of the datasets."""
    h = hashlib.sha256()
    for ds in datasets_:
        h.update(str(len(ds)).encode())
        if not len(ds):
            continue
        table = ds.with_format("arrow")[:]
        for column in ("input_ids", "document_ids"):
            if column not in table.column_names:
                continue
            for chunk in table.column(column).chunks:
                h.update(np.ascontiguousarray(chunk.value_lengths().to_numpy(zero_copy_only=False)).tobytes())
                h.update(np.ascontiguousarray(chunk.flatten().to_numpy(zero_copy_only=False)).tobytes())
    return h.hexdigest()[:16]


def _packing_info(dataset: Any) -> dict[str, Any]:
    """Fingerprint and statistics that build_packed_dataset attached to a dataset (if it made it)."""
    try:
        from longadapt.data.pipeline import packing_metadata

        meta = packing_metadata(dataset)
    except (ImportError, LongAdaptError):
        return {"fingerprint": None}
    return {"fingerprint": meta.get("fingerprint"), "corpus": meta.get("corpus"), "stats": meta.get("stats")}


def _rows(dataset: Any, indices: list[int]) -> list[dict[str, Any]]:
    batch = dataset[indices]
    columns = list(batch)
    return [dict(zip(columns, values)) for values in zip(*(batch[c] for c in columns))]


class _Masker:
    """Seeded MLM collators (one seed per optimizer step, see batch_plan), built once per seed."""

    def __init__(self, tokenizer: Any, cfg: TrainConfig):
        from longadapt.data import MLMCollator

        self._make = lambda seed: MLMCollator(
            tokenizer,
            mlm_probability=cfg.masking.mlm_probability,
            mask_replace_prob=cfg.masking.mask_replace_prob,
            random_replace_prob=cfg.masking.random_replace_prob,
            whole_word_masking=cfg.masking.whole_word_masking,
            pad_to_multiple_of=cfg.masking.pad_to_multiple_of,
            seed=seed,
        )
        self._cache: tuple[int, Any] | None = None

    def __call__(self, rows: list[dict[str, Any]], seed: int) -> dict[str, torch.Tensor]:
        if self._cache is None or self._cache[0] != seed:
            self._cache = (seed, self._make(seed))
        return self._cache[1](rows)


def _model_kwargs(batch: dict[str, torch.Tensor], takes_document_ids: bool, device: torch.device) -> dict:
    keys = MODEL_INPUTS if takes_document_ids else tuple(k for k in MODEL_INPUTS if k != "document_ids")
    return {k: batch[k].to(device, non_blocking=True) for k in keys if k in batch}


# ----------------------------------------------------------------------------------------------
# output directory


def _check_output_dir(run_dir: Path, cfg_dict: dict[str, Any], cfg: TrainConfig, source: ConfigSource) -> str:
    """'new', 'resume' or 'done'; raises when the folder holds something else."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        raise LongAdaptError(
            f"{source.where('output_dir')}: {run_dir} is not empty and holds no run.json, so it is not a "
            "longadapt training run; choose an empty or new output_dir"
        )
    try:
        previous = json.loads(run_json.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise LongAdaptError(f"{run_json} is not valid JSON ({exc}); delete it or choose another output_dir") from exc
    diffs = config_differences(previous.get("config", {}), cfg_dict)
    if diffs:
        shown = "; ".join(
            f"{key}: {_lookup(previous.get('config', {}), key)!r} there, {_lookup(cfg_dict, key)!r} now"
            for key in diffs[:5]
        )
        raise LongAdaptError(
            f"{source.where('output_dir')}: {run_dir} holds a different run ({run_json} differs: {shown}"
            f"{' ...' if len(diffs) > 5 else ''}); its checkpoints are kept. Choose another output folder (pretrain: output_dir=...; adapt: --out), "
            "or pass --force-new to set that folder aside (renamed, nothing deleted) and start this run there"
        )
    if not cfg.resume:
        raise LongAdaptError(
            f"{source.where('output_dir')}: {run_dir} already holds this run (status: "
            f"{previous.get('status', 'unknown')}); pass --resume (resume=true) to continue it, or choose "
            "another output_dir"
        )
    if previous.get("status") == "completed" and (run_dir / "model" / "config.json").is_file():
        return "done"
    from longadapt.runinfo import code_version

    before, now = (previous.get("code") or {}).get("source_sha256"), code_version()["source_sha256"]
    if before and before != now:  # a warning, not a refusal: resuming under a bug fix must stay possible
        logger.warning("%s was started by other longadapt code (sources %s, now %s); resuming it under this code",
                       run_dir, before, now)
    return "resume"


def _checkpoint_due(cfg: TrainConfig, step: int, since_last_s: float, accelerator: Any) -> bool:
    """A checkpoint every ``save_every`` steps, and when ``save_every_minutes`` of time passed since the
    last one (the main process's clock decides, so that every process saves together); never at the
    last step (the final model is written then)."""
    if step >= cfg.steps:
        return False
    due = bool(cfg.save_every) and step % cfg.save_every == 0
    if cfg.save_every_minutes and not due:
        flag = [since_last_s >= 60.0 * cfg.save_every_minutes]
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(flag, from_process=0)
        due = bool(flag[0])
    return due


def _lookup(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)  # type: ignore[assignment]
    return d


# ----------------------------------------------------------------------------------------------
# evaluation


def _validation_batches(dataset: Any, masker: _Masker, cfg: TrainConfig) -> list[dict[str, torch.Tensor]]:
    """Masked validation batches, built once: the same masks at every evaluation."""
    n = len(dataset)
    if cfg.data.max_validation_rows is not None:
        n = min(n, cfg.data.max_validation_rows)
    seed = int(np.random.SeedSequence([cfg.seed, VALIDATION_SEED_TAG]).generate_state(1)[0])
    return [
        masker(_rows(dataset, list(range(start, min(n, start + cfg.micro_batch_size)))), seed)
        for start in range(0, n, cfg.micro_batch_size)
    ]


@torch.no_grad()
def evaluate(model: Any, batches: list[dict[str, torch.Tensor]], accelerator: Any, cfg: TrainConfig,
             takes_document_ids: bool, loss_only: dict | None = None) -> dict[str, float]:
    """Validation loss (nats per masked token), bits per byte and per-position-bucket bits per byte.

    Batches are dealt round-robin to processes; every process runs the same number of forward passes
    (padding with an uncounted repeat) so that sharded models stay in step.
    """
    was_training = model.training
    model.eval()
    tally = LossTally(cfg.position_bucket_size, cfg.max_length, accelerator.device)
    world, rank = accelerator.num_processes, accelerator.process_index
    n_rounds = math.ceil(len(batches) / world)
    from tqdm.auto import tqdm

    # a bar on the main process only (disable=None: none when the output is not a terminal)
    bar = tqdm(range(n_rounds), desc="validation", unit="batch", leave=False,
               disable=None if accelerator.is_main_process else True)
    for r in bar:
        i = r * world + rank
        counted = i < len(batches)
        batch = batches[i if counted else 0]
        inputs = _model_kwargs(batch, takes_document_ids, accelerator.device)
        out = model(**inputs, **(loss_only or {}))
        if counted:
            labels = inputs["labels"]
            losses = getattr(out, "token_losses", None)  # the core's, without logits
            tally.add(
                masked_token_losses(out.logits, labels) if losses is None else losses,
                labels,
                batch["token_bytes"].to(accelerator.device),
                batch["document_ids"].to(accelerator.device),
            )
    sums = accelerator.reduce(tally.sums, "sum") if world > 1 else tally.sums
    tally.sums = sums
    model.train(was_training)
    return tally.metrics()


# ----------------------------------------------------------------------------------------------
# the loop


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
        logger.warning(
            "an FSDP launch config was given but accelerate runs %s (FSDP needs GPUs): training without sharding",
            accelerator.distributed_type,
        )
    return accelerator


class StepTotals:
    """Sums over an optimizer step's micro-batches (and over a logging window of steps): the masked-LM loss
    times masked tokens, masked tokens, bytes of the masked tokens, real tokens. One float64 tensor, so
    that processes add theirs in a single reduce."""

    def __init__(self, device: torch.device | None = None):
        self.values = torch.zeros(4, dtype=torch.float64, device=device)

    def add(self, loss_sum: torch.Tensor | float, masked: float, nbytes: float, tokens: float) -> None:
        self.values[0] += loss_sum
        self.values[1] += masked
        self.values[2] += nbytes
        self.values[3] += tokens

    @property
    def masked(self) -> float:
        return float(self.values[1])

    @property
    def tokens(self) -> float:
        return float(self.values[3])

    def mean_loss(self) -> float:
        """Nats per masked token."""
        return float(self.values[0] / max(float(self.values[1]), 1.0))

    def bits_per_byte(self) -> float:
        return float(self.values[0] / math.log(2) / max(float(self.values[2]), 1.0))


def _forward_backward(model: Any, batches: list[dict[str, torch.Tensor]], accelerator: Any, takes_document_ids: bool,
                      loss_only: dict[str, Any]) -> StepTotals:
    """Forward and backward over one step's micro-batches (gradients synchronised on the last only). Each
    micro-batch's loss is weighted by its share of the step's masked tokens over every process, so the
    step's gradient is that of the mean loss per masked token whatever the split. Returns this process's
    totals."""
    world, device = accelerator.num_processes, accelerator.device
    counts = torch.tensor([float((b["labels"] != -100).sum()) for b in batches], dtype=torch.float64, device=device)
    n_masked_global = float(accelerator.reduce(counts.sum(), "sum") if world > 1 else counts.sum())
    totals = StepTotals(device)
    for m, batch in enumerate(batches):
        inputs = _model_kwargs(batch, takes_document_ids, device)
        n_m = float(counts[m])
        sync = contextlib.nullcontext() if m == len(batches) - 1 else accelerator.no_sync(model)
        with sync:
            out = model(**inputs, **loss_only)
            if n_m > 0:
                loss = out.loss * (n_m * world / max(n_masked_global, 1.0))
                loss_sum = out.loss.detach().double() * n_m
            else:  # nothing masked: a zero that still reaches every parameter (DDP waits for all)
                loss = (out.loss if out.logits is None else out.logits.sum()) * 0.0
                loss_sum = 0.0
            accelerator.backward(loss)
        totals.add(loss_sum, n_m, batch["token_bytes"][batch["labels"] != -100].sum().double().item(),
                   batch["attention_mask"].sum().double().item())
    return totals


@dataclass
class _Data:
    """The packed rows a run trains and validates on, and the batch plan over them."""

    train: Any
    validation: Any
    plan: BatchPlan
    accumulation: int
    tokens_per_step: int  # real tokens of one optimizer step (whole micro-batches)
    info: dict[str, Any]  # run.json's data section


def _prepare_data(cfg: TrainConfig, tokenizer: Any, source: ConfigSource, accelerator: Any,
                  train_dataset: Any, validation_dataset: Any) -> _Data:
    """Build (or take) the packed datasets, check that they hold at least one step and a validation row,
    and plan the batches: rows per step, accumulation, the token budget each step really takes."""
    world = accelerator.num_processes
    if train_dataset is None or validation_dataset is None:
        from longadapt.data import build_packed_dataset

        spec = resolve_corpus(cfg.corpus, source)
        options = {
            k: getattr(cfg.data, k)
            for k in ("validation_fraction", "num_proc", "cache_dir", "max_documents", "packing")
            if getattr(cfg.data, k) is not None
        }
        with accelerator.main_process_first():
            try:
                if train_dataset is None:
                    train_dataset = build_packed_dataset(
                        spec, tokenizer, cfg.language, cfg.max_length, split="train", seed=cfg.seed, **options
                    )
                if validation_dataset is None:
                    validation_dataset = build_packed_dataset(
                        spec, tokenizer, cfg.language, cfg.max_length, split="validation", seed=cfg.seed, **options
                    )
            except LongAdaptError as exc:
                raise LongAdaptError(f"{source.where('corpus.path')}: {exc}") from exc
    corpus_name = source.where("corpus")
    if len(train_dataset) == 0:
        raise LongAdaptError(
            f"{corpus_name}: the corpus gave no training rows (empty file, or every document filtered out); "
            "check the corpus path and its text field"
        )
    accumulation = derive_accumulation(cfg.tokens_per_step, cfg.max_length, cfg.micro_batch_size, world)
    plan = BatchPlan(len(train_dataset), cfg.micro_batch_size, accumulation, world, cfg.seed)
    if len(train_dataset) < plan.rows_per_step:
        raise LongAdaptError(
            f"{corpus_name}: the corpus holds {len(train_dataset)} packed training rows of {cfg.max_length} tokens, "
            f"fewer than one optimizer step needs ({plan.rows_per_step} rows = tokens_per_step "
            f"{cfg.tokens_per_step} / max_length {cfg.max_length}, rounded to micro_batch_size "
            f"{cfg.micro_batch_size} x {world} process(es)). Lower tokens_per_step "
            f"({source.where('tokens_per_step')}) or max_length, or add documents"
        )
    if len(validation_dataset) == 0:
        raise LongAdaptError(
            f"{corpus_name}: the validation split is empty; raise data.validation_fraction or add documents"
        )
    real_tokens_per_step = plan.rows_per_step * cfg.max_length
    if real_tokens_per_step != cfg.tokens_per_step:
        # a budget stated in tokens must not drift silently: say by how much every step differs
        logger.warning(
            "tokens_per_step %d is not a whole number of micro-batches: each step takes %d (%+.1f%% of the "
            "token budget; %d rows of %d = %d micro-batches of %d rows x %d process(es)). Set tokens_per_step "
            "to a multiple of micro_batch_size x processes x max_length = %d to keep the budget exact",
            cfg.tokens_per_step, real_tokens_per_step, 100.0 * (real_tokens_per_step / cfg.tokens_per_step - 1),
            plan.rows_per_step, cfg.max_length, accumulation, cfg.micro_batch_size, world,
            cfg.micro_batch_size * world * cfg.max_length,
        )
    data_info = {
        "packed_fingerprint": _dataset_fingerprint([train_dataset, validation_dataset]),
        "train": _packing_info(train_dataset),
        "validation": _packing_info(validation_dataset),
        "train_rows": len(train_dataset),
        "validation_rows": len(validation_dataset),
        "epochs": plan.epoch_at(cfg.steps),
    }

    return _Data(train_dataset, validation_dataset, plan, accumulation, real_tokens_per_step, data_info)


def train(
    config: TrainConfig,
    model: Any = None,
    tokenizer: Any = None,
    *,
    train_dataset: Any = None,
    validation_dataset: Any = None,
    source: ConfigSource | None = None,
) -> TrainResult:
    """Train a masked-LM encoder as ``config`` says and write the run directory.

    ``model`` / ``tokenizer``: an already-built model and its tokenizer (the adapt recipes pass
    them); otherwise they come from ``config.model`` and ``config.tokenizer``.
    ``train_dataset`` / ``validation_dataset``: already-built datasets with the columns of
    :func:`longadapt.data.build_packed_dataset` (benchmarks pass padded ones); otherwise they are
    built from ``config.corpus``. ``source`` lets error messages name the YAML file and line.

    The phases, each a function below: set-up (model, data, output folder, optimiser, resume), the
    loop (one optimizer step: :func:`_forward_backward` and :func:`_optimizer_step`; the train log:
    :class:`_TrainLog`; validation: :func:`evaluate`; checkpoints), and the final write
    (:func:`_write_final`).
    """
    from accelerate.utils import set_seed

    source = source or ConfigSource()
    cfg = config
    cfg.validate(source)
    accelerator = _make_accelerator(cfg)
    set_seed(cfg.seed)  # python, numpy, torch: model initialisation and dropout
    run_dir = Path(cfg.output_dir).expanduser().resolve()

    # -- set-up ------------------------------------------------------------------------------------
    model, tokenizer, call = _set_up_model(cfg, model, tokenizer, source)
    data = _prepare_data(cfg, tokenizer, source, accelerator, train_dataset, validation_dataset)
    cfg_dict = config_to_dict(cfg)
    cfg_dict["model"]["built"] = {"class": type(model).__name__, "config": model.config.to_diff_dict()}
    state_of_dir = _open_output_dir(run_dir, cfg_dict, cfg, source, accelerator, data.info)
    if state_of_dir == "done":
        return _completed_result(run_dir, cfg, tokenizer)
    frozen = _prepare_for_training(model, cfg, source)
    optimizer = build_optimizer(model, cfg.lr, cfg.optimizer, source.where("optimizer.lr_multipliers"))
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    state = TrainerState()
    accelerator.register_for_checkpointing(state)
    masker = _Masker(tokenizer, cfg)
    val_batches = _validation_batches(data.validation, masker, cfg)  # before any RNG restore
    resume_step = _restore(accelerator, run_dir, state_of_dir, state, cfg)
    record = _start_record(cfg_dict, accelerator, model, data, run_dir, state_of_dir, resume_step, state)
    writer = MetricsWriter(run_dir, cfg.tensorboard, resume_step if state_of_dir == "resume" else None) \
        if accelerator.is_main_process else None
    accelerator.wait_for_everyone()

    # -- loop --------------------------------------------------------------------------------------
    last_eval: dict[str, float] | None = None
    if state.step == 0:
        last_eval = _validate(model, val_batches, accelerator, cfg, call, writer, state)
        record["initial_metrics"] = last_eval
        if accelerator.is_main_process:
            atomic_write_json(run_dir / "run.json", record)
    log = _TrainLog(writer, cfg, data.plan, state, disable_progress=not accelerator.is_main_process)
    rank, start_step, last_save = accelerator.process_index, state.step, time.perf_counter()

    def step_batches(step: int) -> list[dict[str, torch.Tensor]]:
        # rows and masks depend on the step only (seeded per step), so building them ahead changes nothing
        return [masker(_rows(data.train, data.plan.rows(step, rank, m)), masking_seed(cfg.seed, step))
                for m in range(data.accumulation)]

    # the next step's batches are read and masked in a background thread while this step computes;
    # data_wait_fraction is the share of step time still spent waiting for them
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="longadapt-data")
    pending = prefetch.submit(step_batches, state.step) if state.step < cfg.steps else None
    try:
        while state.step < cfg.steps:
            step = state.step
            t0 = time.perf_counter()
            if step == start_step:
                logger.info("step %d: process %d/%d reads rows %s", step + 1, rank, accelerator.num_processes,
                            [data.plan.rows(step, rank, m) for m in range(data.accumulation)])
            batches = pending.result()
            waited = time.perf_counter() - t0
            pending = prefetch.submit(step_batches, step + 1) if step + 1 < cfg.steps else None
            stats = _forward_backward(model, batches, accelerator, call.takes_document_ids, call.loss_only)
            grad_norm = _optimizer_step(model, optimizer, scheduler, accelerator, stats, cfg, run_dir, step)
            state.step += 1
            state.tokens += int(stats.tokens)
            state.masked_tokens += int(stats.masked)
            log.add(stats, time.perf_counter() - t0, waited)
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                log.write(grad_norm, scheduler.get_last_lr()[0] / optimizer.param_groups[0].get("lr_multiplier", 1.0))
            if (cfg.eval_every and state.step % cfg.eval_every == 0) or state.step == cfg.steps:
                last_eval = _validate(model, val_batches, accelerator, cfg, call, writer, state)
            if _checkpoint_due(cfg, state.step, time.perf_counter() - last_save, accelerator):
                last_save = time.perf_counter()
                log.bank_time()
                save_checkpoint(
                    accelerator, run_dir, state.step,
                    {"step": state.step, "tokens": state.tokens, "epoch": data.plan.epoch_at(state.step)},
                    cfg.keep_last,
                )
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
        log.close()

    # -- final model -------------------------------------------------------------------------------
    log.bank_time()
    if last_eval is None:
        last_eval = evaluate(model, val_batches, accelerator, cfg, call.takes_document_ids, call.loss_only)
    return _write_final(accelerator, model, tokenizer, run_dir, record, state, log, last_eval, frozen)


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


def _open_output_dir(run_dir: Path, cfg_dict: dict[str, Any], cfg: TrainConfig, source: ConfigSource,
                     accelerator: Any, data_info: dict[str, Any]) -> str:
    """What the output folder holds ('new', 'resume', 'done'), once every process has looked; a run to
    resume must have been trained on the same packed data."""
    state_of_dir = _check_output_dir(run_dir, cfg_dict, cfg, source)
    if cfg.resume and state_of_dir == "new":
        logger.info("resume requested but %s holds no run yet: starting from step 0", run_dir)
    accelerator.wait_for_everyone()  # every process has looked before the main one writes
    if state_of_dir == "resume":
        previous = json_load(run_dir / "run.json")
        before = previous.get("data", {}).get("packed_fingerprint")
        if before not in (None, data_info["packed_fingerprint"]):
            raise LongAdaptError(
                f"{source.where('corpus')}: the packed data differs from the run in {run_dir} (fingerprint "
                f"{before} there, {data_info['packed_fingerprint']} now): the corpus, "
                "tokenizer or packing changed, so the run cannot be resumed; use a new output_dir"
            )
    return state_of_dir


def _completed_result(run_dir: Path, cfg: TrainConfig, tokenizer: Any) -> TrainResult:
    """The result of a run the folder already holds, completed (``resume=True`` on a finished run)."""
    from transformers import AutoModelForMaskedLM

    previous = json_load(run_dir / "run.json")
    logger.info("%s already holds this run, completed; nothing to do", run_dir)
    return TrainResult(
        run_dir, run_dir / "model", previous.get("steps_done", cfg.steps), previous.get("final_metrics", {}),
        previous.get("initial_metrics"), previous.get("train_tokens_per_s"), run_dir / "run.json",
        model=AutoModelForMaskedLM.from_pretrained(run_dir / "model"), tokenizer=tokenizer,
    )


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


def _restore(accelerator: Any, run_dir: Path, state_of_dir: str, state: TrainerState, cfg: TrainConfig) -> int | None:
    """Remove the temporaries of stopped earlier attempts and, when resuming, load the newest complete
    checkpoint (model, optimizer, scheduler, RNG states and ``state``). Returns its step, or None."""
    if accelerator.is_main_process and state_of_dir != "new":
        # temporaries of this run's own earlier, stopped attempts (writer dead on this host)
        removed = clean_stale_in(run_dir, recursive=True)
        if removed:
            logger.info("removed %d temporaries of stopped earlier attempts: %s", len(removed),
                        ", ".join(str(p.relative_to(run_dir)) for p in removed))
    if state_of_dir != "resume":
        return None
    if accelerator.is_main_process:
        remove_stale_temporaries(run_dir)
    accelerator.wait_for_everyone()
    found = latest_checkpoint(run_dir)
    if found is None:
        logger.info("no complete checkpoint in %s: starting the run from step 0", run_dir)
        return None
    resume_step, ckpt = found
    accelerator.load_state(str(ckpt))
    if state.step != resume_step:
        raise LongAdaptError(f"{ckpt} is inconsistent (its state says step {state.step}); delete it")
    logger.info("resumed from %s (step %d of %d)", ckpt, state.step, cfg.steps)
    return resume_step


def _start_record(cfg_dict: dict[str, Any], accelerator: Any, model: Any, data: _Data, run_dir: Path,
                  state_of_dir: str, resume_step: int | None, state: TrainerState) -> dict[str, Any]:
    """run.json of the running run (status "running"), written by the main process; a resumed run keeps
    its step-0 metrics and lists the steps it was resumed at."""
    from longadapt.precision import record as precision_record
    from longadapt.runinfo import run_record

    parameters = list(accelerator.unwrap_model(model).parameters())
    record = run_record(
        "pretrain",
        cfg_dict,
        status="running",
        world_size=accelerator.num_processes,
        derived={
            "accumulation": data.accumulation,
            "rows_per_step": data.plan.rows_per_step,
            "tokens_per_step": data.tokens_per_step,
            "parameters": sum(p.numel() for p in parameters),
            "trainable_parameters": sum(p.numel() for p in parameters if p.requires_grad),
            "precision": precision_record(accelerator.mixed_precision, str(accelerator.device)),
        },
        data=data.info,
    )
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None or state_of_dir == "resume":
            prev = json_load(run_dir / "run.json")
            record["initial_metrics"] = prev.get("initial_metrics")
            record["resumed_at"] = prev.get("resumed_at", []) + [state.step]
        atomic_write_json(run_dir / "run.json", record)
    return record


def _optimizer_step(model: Any, optimizer: Any, scheduler: Any, accelerator: Any, stats: StepTotals,
                    cfg: TrainConfig, run_dir: Path, step: int) -> float:
    """Clip, check for divergence (before the weights change), step the optimizer and the schedule.
    Sums ``stats`` over the processes; returns the gradient norm."""
    max_norm = cfg.optimizer.max_grad_norm or float("inf")
    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), max_norm))
    if accelerator.num_processes > 1:
        stats.values = accelerator.reduce(stats.values, "sum")
    loss_value = stats.mean_loss()
    if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
        last = latest_checkpoint(run_dir)
        raise TrainingDiverged(
            f"training diverged at optimizer step {step + 1}: loss {loss_value}, gradient norm "
            f"{grad_norm}. Try a lower lr (now {cfg.lr}), more warmup (schedule.warmup_steps="
            f"{cfg.schedule.warmup_steps}), gradient clipping (optimizer.max_grad_norm), precision=fp32 "
            f"instead of bf16, and check the data for broken rows. "
            + (f"The last good checkpoint is {last[1]} (step {last[0]})." if last else "No checkpoint was saved.")
        )
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


class _TrainLog:
    """The train records (``metrics.jsonl``, TensorBoard, the progress bar) over the steps since the last
    record, and the step times: ``train_time`` not yet added to ``state.elapsed_s`` (it is, at each
    checkpoint and at the end, so that a resumed run's throughput counts the time before the stop), and
    this session's data-wait share."""

    def __init__(self, writer: MetricsWriter | None, cfg: TrainConfig, plan: BatchPlan, state: TrainerState,
                 disable_progress: bool):
        from tqdm.auto import tqdm

        self.writer, self.plan, self.state = writer, plan, state
        self.window = StepTotals()
        self.window_time = self.window_wait = 0.0
        self.train_time = self.data_wait = self.session_step_time = 0.0
        self.wall_start = time.perf_counter()
        self.progress = tqdm(total=cfg.steps, initial=state.step, desc="pretrain", unit="step",
                             disable=disable_progress, dynamic_ncols=True)

    def add(self, stats: StepTotals, seconds: float, waited: float) -> None:
        self.window.values += stats.values.cpu()
        self.window_time += seconds
        self.window_wait += waited
        self.train_time += seconds
        self.session_step_time += seconds
        self.data_wait += waited
        self.progress.update(1)

    def write(self, grad_norm: float, lr: float) -> None:
        rec = {
            "loss": self.window.mean_loss(),
            "bpb": self.window.bits_per_byte(),
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": self.window.tokens / max(self.window_time, 1e-9),
            "data_wait_fraction": self.window_wait / max(self.window_time, 1e-9),
            "tokens": self.state.tokens,
            "epoch": self.plan.epoch_at(self.state.step),
            "elapsed_s": time.perf_counter() - self.wall_start,
        }
        if self.writer is not None:
            self.writer.write({"step": self.state.step, "kind": "train", **rec})
        self.progress.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{rec['lr']:.2e}")
        self.window.values.zero_()
        self.window_time = self.window_wait = 0.0

    def bank_time(self) -> None:
        self.state.elapsed_s += self.train_time
        self.train_time = 0.0

    @property
    def data_wait_fraction(self) -> float | None:
        """Share of this session's step time spent waiting for data (0 = the loop never waited)."""
        return self.data_wait / self.session_step_time if self.session_step_time > 0 else None

    def close(self) -> None:
        self.progress.close()
        if self.writer is not None:
            self.writer.close()


def _write_final(accelerator: Any, model: Any, tokenizer: Any, run_dir: Path, record: dict[str, Any],
                 state: TrainerState, log: _TrainLog, final_metrics: dict[str, float],
                 frozen: list[str]) -> TrainResult:
    """Write ``model/`` (weights, tokenizer, run.json; renamed into place when complete) and the completed
    run.json; unfreeze what the run froze (a next phase trains it all)."""
    tokens_per_s = state.tokens / state.elapsed_s if state.elapsed_s > 0 else None
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state_dict = accelerator.get_state_dict(model)
    model_dir = run_dir / "model"
    record.update(
        status="completed",
        steps_done=state.step,
        tokens_seen=state.tokens,
        train_time_s=state.elapsed_s,
        train_tokens_per_s=tokens_per_s,
        data_wait_fraction=log.data_wait_fraction,
        initial_metrics=record.get("initial_metrics"),
        final_metrics=final_metrics,
    )
    if accelerator.is_main_process:
        with atomic_dir(model_dir) as tmp:
            unwrapped.save_pretrained(tmp, state_dict=state_dict)
            tokenizer.save_pretrained(tmp)
            atomic_write_json(tmp / "run.json", record)
        atomic_write_json(run_dir / "run.json", record)
        logger.info(
            "done: %d steps, validation loss %.4f nats/masked token, %.4f bits/byte; model in %s",
            state.step, final_metrics["loss"], final_metrics["bpb"], model_dir,
        )
    accelerator.wait_for_everyone()
    for name, param in unwrapped.named_parameters():
        if name in frozen:
            param.requires_grad_(True)
    return TrainResult(
        output_dir=run_dir,
        model_dir=model_dir,
        steps=state.step,
        metrics=final_metrics,
        initial_metrics=record.get("initial_metrics"),
        train_tokens_per_s=tokens_per_s,
        run_json=run_dir / "run.json",
        model=unwrapped,
        tokenizer=tokenizer,
    )


def _validate(model: Any, batches: list[dict[str, torch.Tensor]], accelerator: Any, cfg: TrainConfig, call: _Call,
              writer: MetricsWriter | None, state: TrainerState) -> dict[str, float]:
    """A validation pass at ``state.step``, logged with its rows and seconds (the eval record of
    metrics.jsonl carries ``rows`` and ``seconds``; the returned metrics do not)."""
    t0 = time.perf_counter()
    metrics = evaluate(model, batches, accelerator, cfg, call.takes_document_ids, call.loss_only)
    seconds = time.perf_counter() - t0
    rows = sum(int(b["input_ids"].shape[0]) for b in batches)
    logger.info("step %d: validation loss %.4f nats/masked token, %.4f bits/byte (%d rows in %.1f s)", state.step,
                metrics["loss"], metrics["bpb"], rows, seconds)
    if writer is not None:
        writer.write({"step": state.step, "kind": "eval", "tokens": state.tokens, **metrics, "rows": rows,
                      "seconds": round(seconds, 3)})
    return metrics


def json_load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
