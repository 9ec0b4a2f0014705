"""The engine's run folder: whether an output folder holds this run (new, resume, done) or another one, the
restore from the newest checkpoint, run.json while running and at the end, and the final model."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from longadapt.errors import LongAdaptError
from longadapt.io import atomic_dir, atomic_write_json, clean_stale_in
from longadapt.training.checkpoint import TrainerState, latest_checkpoint, remove_stale_temporaries
from longadapt.config import ConfigSource
from longadapt.training.config import TrainConfig, config_differences

logger = logging.getLogger("longadapt.training.engine")  # the engine's phases log as the engine


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


def _lookup(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)  # type: ignore[assignment]
    return d


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


def _start_record(cfg_dict: dict[str, Any], accelerator: Any, model: Any, data: Any, run_dir: Path,
                  state_of_dir: str, resume_step: int | None, state: TrainerState) -> dict[str, Any]:
    """run.json of the running run (status "running"), written by the main process; a resumed run keeps
    its step-0 metrics and lists the steps it was resumed at. ``data``: the engine's ``data_setup._Data``."""
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


def _write_final(accelerator: Any, model: Any, tokenizer: Any, run_dir: Path, record: dict[str, Any],
                 state: TrainerState, log: Any, final_metrics: dict[str, float],
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


def json_load(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
