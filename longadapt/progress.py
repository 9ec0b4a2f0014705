"""Progress of a long pass (fine-tuning epochs, prediction passes, ``predict``), on a terminal and in logs.

On a terminal, tqdm draws its bar (rate and time left). Written to a file or a pipe (a SLURM log, a study
stage's log), tqdm draws nothing, so a 25-minute evaluation epoch would be silent: there the same pass logs
one line at most every ``every_s`` seconds, with the items done, the rate and an estimate of the time left.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger("longadapt.progress")

EVERY_S = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


def progress(items: Iterable[T], desc: str, unit: str = "batch", total: int | None = None,
             every_s: float = EVERY_S, terminal: bool | None = None) -> Iterator[T]:
    """``items``, with a tqdm bar on a terminal, else a log line at most every ``every_s`` seconds:
    ``desc: 12/40 batches (30 %), 0.41 batch/s, about 1 min 08 s left``. ``total`` defaults to ``len(items)``
    where it has one; ``terminal`` (default: whether standard error is a terminal) picks the form."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if terminal is None:
        terminal = sys.stderr.isatty()
    if terminal:
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total, leave=False)
        return
    start = last = time.monotonic()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            logger.info("%s", progress_line(desc, done, total, now - start, unit))


def progress_line(desc: str, done: int, total: int | None, elapsed: float, unit: str) -> str:
    """One progress line: items done (of the total), rate, and the time left at that rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    plural = unit if done == 1 else f"{unit}es" if unit.endswith(("s", "ch")) else f"{unit}s"
    head = f"{desc}: {done}/{total} {plural} ({100 * done / total:.0f} %)" if total else f"{desc}: {done} {plural}"
    left = f", about {_duration((total - done) / rate)} left" if total and rate > 0 and done < total else ""
    return f"{head}, {rate:.2f} {unit}/s{left}"

