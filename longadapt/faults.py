"""Fault injection for the kill-and-resume tests and benchmarks/fault_sweep.py.

``LONGADAPT_FAULT=POINT[@N]`` makes this process SIGKILL itself the N-th time (default: the first) it
reaches ``POINT``: a real kill, with no clean-up, at a place that is otherwise hard to hit by timing.
Unset (the normal case) it costs one dictionary lookup. The points:

- ``checkpoint-write``: a training checkpoint is half written (accelerate's state in its temporary folder);
- ``checkpoint-saved``: a checkpoint has just been renamed into place;
- ``rename``: an atomic folder write is complete and about to be renamed into place;
- ``replace``: an existing output has been moved aside and the new one is not yet renamed in;
- ``epoch-end``: an evaluation fine-tuning epoch has ended (before its dev pass);
- ``stage:<stage id>``: that stage of a study starts (``longadapt study``; e.g.
  ``stage:trial/fr-e3c-ner-doc/convert-131072/1``): the stage's process dies, the study goes on.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

POINTS = ("checkpoint-write", "checkpoint-saved", "rename", "replace", "epoch-end", "stage:<stage id>")
_seen: Counter = Counter()


def reached(point: str) -> None:
    spec = os.environ.get("LONGADAPT_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition("@")
    if name != point:
        return
    _seen[point] += 1
    if _seen[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
