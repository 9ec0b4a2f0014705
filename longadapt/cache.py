"""The on-disk cache: tokenized and packed corpora, reused across runs.

Where: ``$LONGADAPT_CACHE`` when set, else ``$XDG_CACHE_HOME/longadapt`` (``~/.cache/longadapt``).
What: one folder per entry, ``data/tokens-<fingerprint>`` (a tokenized corpus) and
``data/packed-<fingerprint>`` (its packed rows at one length and split). An entry is keyed by the
fingerprint of everything that made it (corpus files, tokenizer, settings, pipeline version), so a
stale entry is never read: it is only never used again.

Bound: after each new entry, the least recently used entries are removed until the cache holds at
most ``$LONGADAPT_CACHE_LIMIT_GB`` (default 20; 0 turns the bound off); the entry just written stays.
``longadapt cache ls`` lists the entries, ``longadapt cache clear [--older-than DAYS]`` removes them.
Removing an entry is always safe: it is rebuilt when needed (a run that has it open keeps reading it).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)

LAST_USED = ".last-used"  # touched whenever an entry is read, for the LRU bound and `cache ls`
DEFAULT_LIMIT_GB = 20.0
ENTRY_PREFIXES = ("tokens-", "packed-")


def cache_root() -> Path:
    env = os.environ.get("LONGADAPT_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "longadapt"


def data_cache_dir() -> Path:
    return cache_root() / "data"


def limit_bytes() -> int | None:
    raw = os.environ.get("LONGADAPT_CACHE_LIMIT_GB", str(DEFAULT_LIMIT_GB))
    try:
        gb = float(raw)
    except ValueError:
        raise LongAdaptError(f"LONGADAPT_CACHE_LIMIT_GB={raw!r} is not a number (GB; 0 turns the bound off)") from None
    if gb < 0:
        raise LongAdaptError(f"LONGADAPT_CACHE_LIMIT_GB={raw!r} must be >= 0 (GB; 0 turns the bound off)")
    return None if gb == 0 else int(gb * 1e9)


@dataclass
class Entry:
    path: Path
    bytes: int
    last_used: float  # seconds since the epoch

    @property
    def kind(self) -> str:
        return self.path.name.split("-", 1)[0]


def _size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _last_used(folder: Path) -> float:
    marker = folder / LAST_USED
    try:
        return marker.stat().st_mtime
    except OSError:
        return folder.stat().st_mtime


def touch(entry: Path) -> None:
    """Record that ``entry`` was used now (best effort: a read-only cache still works)."""
    try:
        (entry / LAST_USED).touch()
    except OSError:
        pass


def entries(folder: Path | None = None) -> list[Entry]:
    """The cache's complete entries, least recently used first (temporaries are not entries)."""
    folder = folder if folder is not None else data_cache_dir()
    if not folder.is_dir():
        return []
    found = [Entry(p, _size(p), _last_used(p)) for p in folder.iterdir()
             if p.is_dir() and p.name.startswith(ENTRY_PREFIXES)]
    return sorted(found, key=lambda e: e.last_used)


def enforce_limit(keep: Path | None = None, folder: Path | None = None) -> list[Entry]:
    """Remove least recently used entries until the cache fits ``limit_bytes()``; ``keep`` stays."""
    limit = limit_bytes()
    if limit is None:
        return []
    found = entries(folder)
    total = sum(e.bytes for e in found)
    removed = []
    for e in found:
        if total <= limit:
            break
        if keep is not None and e.path.resolve() == Path(keep).resolve():
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        total -= e.bytes
        removed.append(e)
        logger.info("cache over %.1f GB: removed the least recently used entry %s (%.1f MB)",
                    limit / 1e9, e.path, e.bytes / 1e6)
    return removed


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


# ------------------------------------------------------------------------------------------------
# longadapt cache ls | clear


def add_arguments_cache(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("ls", help="list the entries (kind, size, last use) and the total")
    clear = sub.add_parser("clear", help="remove entries (all, or those not used for DAYS days)")
    clear.add_argument("--older-than", type=float, metavar="DAYS",
                       help="only entries not used for this many days")
    clear.add_argument("--dry-run", action="store_true", help="list what would be removed")


def run_cache(args: argparse.Namespace) -> int:
    root = data_cache_dir()
    found = entries(root)
    limit = limit_bytes()
    if args.action == "ls":
        print(f"cache: {cache_root()} (LONGADAPT_CACHE; bound "
              f"{'off' if limit is None else _human(limit)}, LONGADAPT_CACHE_LIMIT_GB)")
        now = time.time()
        for e in reversed(found):
            print(f"  {e.kind:7s} {_human(e.bytes):>9s}  used {(now - e.last_used) / 86400:5.1f} days ago  {e.path.name}")
        print(f"{len(found)} entries, {_human(sum(e.bytes for e in found))}")
        return 0
    cutoff = time.time() - 86400 * args.older_than if args.older_than is not None else None
    chosen = [e for e in found if cutoff is None or e.last_used < cutoff]
    for e in chosen:
        if not args.dry_run:
            shutil.rmtree(e.path, ignore_errors=True)
        print(f"{'would remove' if args.dry_run else 'removed'} {e.path} ({_human(e.bytes)})")
    print(f"{'would free' if args.dry_run else 'freed'} {_human(sum(e.bytes for e in chosen))} "
          f"({len(chosen)} of {len(found)} entries)")
    return 0
