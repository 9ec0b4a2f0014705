"""Atomic, durable writes: outputs are written under a temporary name and renamed when complete.

- Files are flushed and fsynced before the rename, and the folder after it, so a crash leaves either the
  old output or the new one, never half of one.
- Permissions follow the umask (``tempfile`` creates 0600 files and 0700 folders; a colleague reading a
  shared results folder needs the usual 0644 / 0755).
- A temporary folder carries a marker naming the process that writes it; a later write of the same
  output removes temporaries whose writer is provably dead (same host, process gone), and says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)

WRITER_MARKER = ".longadapt-writer"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened for fsync
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError), open(os.path.join(folder, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(final: str | Path) -> list[Path]:
    """Remove the temporary folders of earlier writes of ``final`` whose writer is dead (its marker names
    this host and a process that no longer exists); folders without a marker, or of a live or remote
    writer, are left alone. Returns what was removed."""
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    host = socket.gethostname()
    for p in final.parent.glob(f".{final.name}.tmp-*"):
        marker = p / WRITER_MARKER
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if info.get("host") == host and isinstance(info.get("pid"), int) and not _alive(info["pid"]):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
            logger.info("removed %s, the temporary folder of a stopped earlier write (process %d)", p, info["pid"])
    return removed


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; rename it to ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is left untouched. The files are
    fsynced before the rename; the folder's mode follows the umask.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    (tmp / WRITER_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}),
                                     encoding="utf-8")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / WRITER_MARKER).unlink(missing_ok=True)
    _fsync_tree(tmp)
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(final)
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    _fsync_dir(final.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsynced, renamed, mode from the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:  # exactly the string: CRLF stays CRLF
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
