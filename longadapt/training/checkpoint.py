"""Training checkpoints: complete or absent, never half-written.

A checkpoint is ``<run>/checkpoints/step-00000100/``: accelerate's state (model, optimizer,
scheduler, per-process RNG states, the registered trainer state) plus ``trainer_state.json``,
written last. It is assembled in a temporary folder next to it (:func:`longadapt.io.atomic_dir`)
and renamed when every process has written its part, so a run killed while saving leaves either
the previous checkpoints or a stray temporary folder, which the next start removes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from longadapt import faults
from longadapt.errors import LongAdaptError
from longadapt.io import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")
MARKER = "trainer_state.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with the marker file), oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = CHECKPOINT_RE.match(child.name)
        if m and child.is_dir() and (child / MARKER).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary folders left by a run killed while it was saving."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.name.startswith(".") and child.is_dir():
            logger.info("removing the incomplete checkpoint %s", child)
            shutil.rmtree(child, ignore_errors=True)


def save_checkpoint(accelerator: Any, run_dir: Path, step: int, trainer_state: dict[str, Any], keep_last: int) -> Path:
    """Save accelerate's state for ``step`` atomically, then keep only the newest ``keep_last``.

    Called by every process (accelerate writes one RNG file per process); the main process owns
    the temporary folder and the rename.
    """
    from accelerate.utils import broadcast_object_list

    final = run_dir / "checkpoints" / checkpoint_name(step)
    previous = latest_checkpoint(run_dir)
    try:
        with contextlib.ExitStack() as stack:
            holder: list[str | None] = [None]
            if accelerator.is_main_process:
                holder[0] = str(stack.enter_context(atomic_dir(final)))
            if accelerator.num_processes > 1:
                broadcast_object_list(holder, from_process=0)
            tmp = Path(str(holder[0]))
            accelerator.save_state(str(tmp))
            faults.reached("checkpoint-write")
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                atomic_write_json(tmp / MARKER, trainer_state)
        # leaving the ExitStack renamed the folder on the main process
    except Exception as exc:
        if not _is_write_failure(exc):
            raise
        kept = f"the previous checkpoint {previous[1]} is intact" if previous else "there is no earlier checkpoint"
        raise LongAdaptError(
            f"could not write the checkpoint {final} ({type(exc).__name__}: {exc}): the disk is probably full or a "
            f"file-size limit was reached. Nothing half-written is left; {kept}. Free space (or lower keep_last), then "
            "run again with --resume"
        ) from exc
    faults.reached("checkpoint-saved")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for _, old in list_checkpoints(run_dir)[:-keep_last]:
            logger.info("removing old checkpoint %s", old)
            shutil.rmtree(old, ignore_errors=True)
        logger.info("checkpoint saved: %s", final)
    accelerator.wait_for_everyone()
    return final


def _is_write_failure(exc: BaseException) -> bool:
    """A failed file write: an OSError, or how torch.save (RuntimeError) and safetensors (SafetensorError)
    report one."""
    if isinstance(exc, OSError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("i/o error", "no space", "file too large", "failed writing", "os error"))


class TrainerState:
    """Counters restored with a checkpoint (registered with ``accelerator.register_for_checkpointing``)."""

    def __init__(self) -> None:
        self.step = 0  # optimizer steps done
        self.tokens = 0  # real (non-padding) tokens consumed, all processes
        self.masked_tokens = 0
        self.elapsed_s = 0.0  # training time before this process started

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
