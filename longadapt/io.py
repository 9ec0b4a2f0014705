"""Atomic, durable writes: outputs are written under a temporary name and renamed when complete.

- Files are flushed and fsynced before the rename, and the folder after it, so a crash leaves either the
  old output or the new one, never half of one.
- Permissions follow the umask (``tempfile`` creates 0600 files and 0700 folders; a colleague reading a
  shared results folder needs the usual 0644 / 0755).
- A temporary folder carries a marker naming the process that writes it, and a temporary file names
  its writer in its name (``.NAME.tmp-HOST-PID-XXXX``); a later write of the same output, or
  :func:`clean_stale_in` at the start of a run, removes temporaries whose writer is provably dead
  (same host, process gone), and says so. Nothing else is ever removed: a temporary of a live
  writer, of another host, or without a marker stays.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from longadapt import faults

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


def umask_modes(root: str | Path) -> None:
    """Give every file and folder under ``root`` the mode the umask asks for (0644 / 0755 under 022).
    Libraries that write through their own temporary files (transformers' ``save_pretrained``, torch's
    checkpoints) leave 0600 files behind, which colleagues sharing a results folder cannot read."""
    mask = _umask()
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, (0o777 if executable else 0o666) & ~mask)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer_of(p: Path) -> tuple[str, int] | None:
    """(host, pid) of the process that writes the temporary ``p``, when ``p`` says so."""
    if p.is_dir():
        try:
            info = json.loads((p / WRITER_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(info, dict) and isinstance(info.get("pid"), int) and isinstance(info.get("host"), str):
            return _safe_host(info["host"]), info["pid"]
        return None
    m = _TMP_FILE_RE.match(p.name)
    return (m.group("host"), int(m.group("pid"))) if m else None


_TMP_FILE_RE = re.compile(r"^\..+\.tmp-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[^-]+$")


def _remove_if_stale(p: Path) -> bool:
    writer = _writer_of(p)
    if writer is None or writer[0] != _host() or _alive(writer[1]):
        return False
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    logger.info("removed %s, a temporary of a stopped earlier write (process %d)", p, writer[1])
    return True


def clean_stale_temporaries(final: str | Path) -> list[Path]:
    """Remove the temporaries of earlier writes of ``final`` whose writer is dead (this host, a process
    that no longer exists); those without a marker, or of a live or remote writer, are left alone.
    Returns what was removed."""
    final = Path(final)
    if not final.parent.is_dir():
        return []
    return [p for p in sorted(final.parent.glob(f".{final.name}.tmp-*")) if _remove_if_stale(p)]


def clean_stale_in(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Remove every temporary in ``folder`` (``.*.tmp-*``; with ``recursive``, in its subfolders too)
    whose writer is provably dead, as :func:`clean_stale_temporaries` does for one output. Returns
    what was removed, so that a run can report it."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed: list[Path] = []
    for p in sorted(folder.glob(".*.tmp-*")):
        if _remove_if_stale(p):
            removed.append(p)
    if recursive:
        for sub in sorted(x for x in folder.iterdir() if x.is_dir() and not x.name.startswith(".")):
            removed.extend(clean_stale_in(sub, recursive=True))
    return removed


def _safe_host(name: str) -> str:
    # only the characters a temporary file name may carry, so that the name parses back
    return re.sub(r"[^A-Za-z0-9.]", "_", name)


def _host() -> str:
    return _safe_host(socket.gethostname())


def temporary_dir(final: str | Path) -> Path:
    """A new empty folder ``.NAME.tmp-*`` next to ``final``, marked with this writer (host, process),
    mode from the umask. The caller renames it into place or removes it; a crash leaves it for the
    next :func:`clean_stale_temporaries` / :func:`clean_stale_in`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    (tmp / WRITER_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": _host()}), encoding="utf-8")
    return tmp


def set_aside(path: str | Path) -> Path:
    """Rename the folder ``path`` to ``PATH.set-aside-<UTC time>`` (nothing is deleted) and return the
    new name: what ``--force-new`` does with a folder that holds another run."""
    path = Path(path)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.set-aside-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.set-aside-{stamp}-{n}")
    path.rename(target)
    _fsync_dir(path.parent)
    logger.warning("set %s aside as %s (nothing deleted); starting a new run in %s", path, target, path)
    return target


@contextlib.contextmanager
def atomic_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary directory next to ``final``; rename it to ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is left untouched. The files are
    fsynced before the rename; the folder's mode follows the umask.
    """
    final = Path(final)
    tmp = temporary_dir(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # the marker stays until the rename: a crash before it leaves a temporary that a later start can
    # prove stale; the completed folder then loses it
    umask_modes(tmp)
    _fsync_tree(tmp)
    faults.reached("rename")
    if final.exists():
        if not overwrite:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(final)
        (final / WRITER_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": _host()}), encoding="utf-8")
        old = final.with_name(f".{final.name}.tmp-old-{os.getpid()}")  # a marked temporary too
        final.rename(old)
        faults.reached("replace")
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    (final / WRITER_MARKER).unlink(missing_ok=True)
    _fsync_dir(final.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, fsynced, renamed, mode from the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_host()}-{os.getpid()}-", dir=path.parent)
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


@functools.lru_cache(maxsize=4096)
def _sha_of(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (cached on path, size and modification time within a process)."""
    st = path.stat()
    return _sha_of(str(path.resolve()), st.st_size, st.st_mtime_ns)
