"""notebooks/compare_strategies.ipynb executes end to end (small settings) and shows the comparison."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


def test_compare_strategies_notebook_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGADAPT_COMPARE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LONGADAPT_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(REPO / "notebooks" / "compare_strategies.ipynb", as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "\n".join(
        o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    for name in ("convert", "continue-keep", "continue-replace", "continue-extend", "scratch"):
        assert f"{name}: trained" in text and f"| {name} |" in text
    assert "lowest final bits per byte" in text
    assert (tmp_path / "runs" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "runs" / "positions.png").stat().st_size > 1000
