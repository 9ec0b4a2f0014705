"""notebooks/compare_strategies.ipynb reads a study folder (the tiny study of conftest.py) end to end: the
verdict, the curve, the per-task tables, bits per byte beside them, and the cost."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]


def test_compare_strategies_notebook_reads_a_study(tiny_study: Path, monkeypatch):
    monkeypatch.setenv("LONGADAPT_STUDY", str(tiny_study.parent / "out"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(REPO / "notebooks" / "compare_strategies.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "\n".join(
        o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "study tiny (fr): fr-e3c-ner-doc; 2 seeds; reference bert" in text
    assert "no adaptation beats the un-adapted model" in text or "beating the un-adapted model" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert "scratch-4096" in text and len(images) == 2  # the curve and bits per byte
    assert "| scratch-2048 |" in text  # the bits-per-byte table of the adaptation runs
    assert "CPU-hours of the study's runs:" in text
