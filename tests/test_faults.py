"""Faults during checkpoint writes: a full disk (a real file-size limit) gives a clear error and leaves
the previous checkpoint loadable; fault points kill the process for real."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import pytest
import torch

from longadapt.errors import LongAdaptError


@pytest.fixture
def file_size_limit():
    """Set a soft RLIMIT_FSIZE (with SIGXFSZ ignored, a write past it fails with EFBIG, as on a full disk)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    def set_limit(n: int) -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))

    yield set_limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, old_handler)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, file_size_limit):
    from accelerate import Accelerator

    from longadapt.training.checkpoint import TrainerState, latest_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(128, 128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    accelerator = Accelerator(cpu=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    state = TrainerState()
    accelerator.register_for_checkpointing(state)
    model(torch.randn(4, 128)).sum().backward()
    optimizer.step()
    state.step = 10
    first = save_checkpoint(accelerator, tmp_path, 10, {"step": 10}, keep_last=2)
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    model(torch.randn(4, 128)).sum().backward()
    optimizer.step()
    state.step = 20
    file_size_limit(20_000)  # the weights (66 kB) no longer fit
    with pytest.raises(LongAdaptError) as info:
        save_checkpoint(accelerator, tmp_path, 20, {"step": 20}, keep_last=2)
    file_size_limit(resource.RLIM_INFINITY)
    msg = str(info.value)
    assert "could not write the checkpoint" in msg and "step-00000020" in msg
    assert f"the previous checkpoint {first} is intact" in msg and "--resume" in msg
    assert latest_checkpoint(tmp_path) == (10, first)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000010"]  # no temporary left

    accelerator.load_state(str(first))
    assert state.step == 10
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_a_fault_point_kills_the_process_for_real(tmp_path):
    code = ("from longadapt import faults\nfor i in range(3):\n    print(i, flush=True)\n"
            "    faults.reached('epoch-end')\n")
    env = {**os.environ, "LONGADAPT_FAULT": "epoch-end@2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and done.stdout.split() == ["0", "1"]
