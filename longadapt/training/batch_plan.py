"""Which packed rows each process reads at each optimizer step, as a pure function of the seed.

The rows form an endless stream: epoch ``e`` is a permutation of all rows drawn from
``numpy.random.default_rng([seed, e])``. Optimizer step ``t`` consumes the stream positions
``[t * G, (t + 1) * G)`` where ``G = micro_batch_size * accumulation * num_processes``, split into
micro-batches and processes. Resuming at step ``t`` therefore reads exactly the rows an
uninterrupted run would have read, without replaying the skipped batches; and the same global
batch is seen whatever the number of processes (only its split differs).

Masking is seeded the same way: every optimizer step gets a collator seed derived from
``(seed, step)``, and :class:`longadapt.data.MLMCollator` with an integer seed masks a row as a
function of that seed and the row's tokens only. So the masks of a resumed run equal those of an
uninterrupted one (no collator generator state needs to be carried in checkpoints), and a row is
masked the same way whichever process or micro-batch reads it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchPlan:
    num_rows: int
    micro_batch_size: int
    accumulation: int
    num_processes: int
    seed: int

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch_size * self.accumulation * self.num_processes

    @functools.lru_cache(maxsize=4)
    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_rows)

    def rows(self, step: int, process: int, micro: int) -> list[int]:
        """Row indices of micro-batch ``micro`` of process ``process`` at optimizer step ``step``."""
        start = step * self.rows_per_step + (micro * self.num_processes + process) * self.micro_batch_size
        out = []
        for pos in range(start, start + self.micro_batch_size):
            epoch, offset = divmod(pos, self.num_rows)
            out.append(int(self._epoch_order(epoch)[offset]))
        return out

    def epoch_at(self, step: int) -> float:
        return step * self.rows_per_step / self.num_rows


def masking_seed(seed: int, step: int) -> int:
    """The collator seed of optimizer step ``step`` (distinct across steps)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


def derive_accumulation(tokens_per_step: int, max_length: int, micro_batch_size: int, num_processes: int) -> int:
    """Micro-batches per process and optimizer step so that a step holds >= ``tokens_per_step``
    row tokens (rows of ``max_length``) over all processes."""
    rows = math.ceil(tokens_per_step / max_length)
    return max(1, math.ceil(rows / (micro_batch_size * num_processes)))
