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
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longadapt.errors import LongAdaptError
from longadapt.io import atomic_write_json
from longadapt.training.checkpoint import TrainerState, latest_checkpoint, save_checkpoint
from longadapt.config import ConfigSource
from longadapt.training.config import TrainConfig, config_to_dict
from longadapt.training.metrics import LossTally, MetricsWriter, masked_token_losses
from longadapt.training.optim import build_optimizer, build_scheduler
from longadapt.training.batch_plan import BatchPlan, masking_seed
from longadapt.training.data_setup import _prepare_data
from longadapt.training.model_setup import _Call, _make_accelerator, _prepare_for_training, _set_up_model
from longadapt.training.run_folder import (
    TrainResult,
    _completed_result,
    _open_output_dir,
    _restore,
    _start_record,
    _write_final,
)

logger = logging.getLogger(__name__)

MODEL_INPUTS = ("input_ids", "attention_mask", "document_ids", "labels")
VALIDATION_SEED_TAG = 0x5EED_7A1  # separates validation masking seeds from training ones


class TrainingDiverged(LongAdaptError):
    """The loss or the gradient norm became NaN or infinite."""


# ----------------------------------------------------------------------------------------------
# building blocks


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
# checkpoints (the run folder itself: run_folder.py; the model and accelerator: model_setup.py; the
# packed rows and the batch plan: data_setup.py)


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


