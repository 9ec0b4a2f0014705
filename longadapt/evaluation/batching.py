"""Batches by token budget: forward passes for prediction (:class:`Runner`), training items grouped by
padded size (:func:`micro_batches`, :func:`train_step`) and the seeded batches of whole documents up to a
word budget (:class:`BudgetBatches`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from longadapt.evaluation import windows as W
from longadapt.progress import progress

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from longadapt.evaluation.adapters import Adapter, ChoiceAdapter


class Runner:
    """Holds the accelerator and the model; batches forward passes for prediction."""

    def __init__(self, accelerator: Any, model: Any, batch_size: int, batch_tokens: int = 16384,
                 autocast: Any = None) -> None:
        self.accelerator, self.model, self.batch_size = accelerator, model, batch_size
        self.batch_tokens = batch_tokens
        # predict's precision context (a model that accelerate prepared autocasts by itself)
        self.autocast = autocast or contextlib.nullcontext

    def _forward(self, batch: dict[str, Any]) -> Any:
        import torch

        batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
        with torch.no_grad(), self.autocast():
            return self.model(**batch).logits.float().cpu().numpy()

    def forward_windows(self, adapter: Adapter, wins: Sequence[W.Window], per_token: bool) -> list[np.ndarray]:
        self.model.eval()
        order = sorted(range(len(wins)), key=lambda k: len(wins[k].input_ids))
        out: list[np.ndarray | None] = [None] * len(wins)
        # batches of at most batch_size windows and batch_tokens padded tokens (lengths sorted, so padding
        # is small): prediction memory stays bounded whatever the window length
        batches: list[list[int]] = []
        for k in order:
            n = len(wins[k].input_ids)
            if batches and len(batches[-1]) < self.batch_size and n * (len(batches[-1]) + 1) <= self.batch_tokens:
                batches[-1].append(k)
            else:
                batches.append([k])
        for idx in progress(batches, desc=f"predicting {len(wins)} windows", unit="batch"):
            types = [wins[k].type_ids for k in idx] if wins[idx[0]].type_ids is not None else None
            logits = self._forward(adapter.encode_ids([wins[k].input_ids for k in idx], types))
            for row, k in enumerate(idx):
                out[k] = logits[row, : len(wins[k].input_ids)] if per_token else logits[row]
        return out  # type: ignore[return-value]

    def forward_choices(self, adapter: ChoiceAdapter, enc: Sequence[list[tuple[list[int], Any]]]) -> np.ndarray:
        self.model.eval()
        items = [(e, [0.0] * len(adapter.options)) for e in enc]
        out = np.zeros((len(items), len(adapter.options)), dtype=np.float32)
        # questions grouped by length, at most batch_size questions and batch_tokens padded tokens a batch
        groups = [g[i : i + self.batch_size] for g in micro_batches(items, self.batch_tokens)
                  for i in range(0, len(g), self.batch_size)]
        for idx in groups:
            batch = adapter.collate([items[k] for k in idx])
            batch.pop("targets")
            out[idx] = self._forward(batch)
        return out


def item_rows(item: Any) -> list[int]:
    """Lengths of the rows one training item adds to a padded batch: a window is one row, a document its
    windows, an MCQA question its (question, option) pairs."""
    if isinstance(item, W.Window):
        return [len(item.input_ids)]
    return [len(ids) for ids, _ in item[0]]


def item_tokens(item: Any) -> int:
    """Tokens of one training item: a window, or a document / question as (windows or choices, target)."""
    return sum(item_rows(item))


def micro_batches(items: Sequence[Any], max_tokens: int) -> list[list[int]]:
    """Indices of ``items`` in groups whose padded size (rows x longest row) is at most ``max_tokens``
    (one item at least; ``max_tokens`` 0: one group). Items are grouped by length, so padding is small."""
    if not max_tokens:
        return [list(range(len(items)))]
    rows = [item_rows(x) for x in items]
    groups: list[list[int]] = []
    current: list[int] = []
    n_rows = longest = 0
    for i in sorted(range(len(items)), key=lambda k: max(rows[k])):
        more, wider = n_rows + len(rows[i]), max(longest, max(rows[i]))
        if current and more * wider > max_tokens:
            groups.append(current)
            current, more, wider = [], len(rows[i]), max(rows[i])
        current.append(i)
        n_rows, longest = more, wider
    if current:
        groups.append(current)
    return groups


def train_step(accelerator: Any, model: Any, adapter: Adapter, items: Sequence[Any], micro_tokens: int) -> tuple[Any, int]:
    """Forward and backward passes of one batch, in micro-batches of at most ``micro_tokens`` padded tokens;
    each pass's loss is weighted by its share of the batch's loss (:meth:`Adapter.loss_weight`), so the
    summed gradient is the whole batch's. Returns the batch loss (detached) and the number of passes."""

    import torch

    groups = micro_batches(items, micro_tokens)
    weights = [adapter.loss_weight([items[i] for i in g]) for g in groups]
    total = sum(weights)
    shares = [w / total for w in weights] if total else [1.0 / len(groups)] * len(groups)
    value = torch.zeros(())
    for j, (group, share) in enumerate(zip(groups, shares)):
        batch = {k: v.to(accelerator.device) for k, v in adapter.collate([items[i] for i in group]).items()}
        # gradients are synchronised across processes once, with the batch's last pass
        sync = contextlib.nullcontext() if j == len(groups) - 1 else accelerator.no_sync(model)
        with sync:
            loss = adapter.loss(model, batch) * share
            if not torch.isfinite(loss.detach()):
                return loss.detach(), len(groups)
            accelerator.backward(loss)
        value = value + loss.detach().cpu()
    return value, len(groups)


class BudgetBatches:
    """A batch sampler whose batches hold units (examples) up to a budget: ``sizes[u]`` of each unit add up
    to at most ``budget`` per batch (one unit at least). A unit stands for the items ``members[u]`` (a
    document's windows; default: the unit is the item), which always travel together.

    The batches are formed once, greedily over a seeded permutation of the units, and visited in a new
    seeded order every epoch, so the number of optimizer steps is known in advance (the schedule needs it)
    and every unit is seen exactly once per epoch. With sizes in words (``training.batch_words``) the plan
    depends on the data and the seed only: every model takes the same steps over the same documents.
    ``visited`` lists the units of every batch in the order they were given (the run records its hash).
    """

    def __init__(self, sizes: Sequence[int], budget: int, generator: Any,
                 members: Sequence[Sequence[int]] | None = None) -> None:
        import torch

        self.generator = generator
        self.members = [list(m) for m in members] if members is not None else [[u] for u in range(len(sizes))]
        self.batches: list[list[int]] = []
        self.visited: list[list[int]] = []
        current: list[int] = []
        used = 0
        for u in torch.randperm(len(sizes), generator=generator).tolist():
            if current and used + sizes[u] > budget:
                self.batches.append(current)
                current, used = [], 0
            current.append(u)
            used += sizes[u]
        if current:
            self.batches.append(current)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        import torch

        for k in torch.randperm(len(self.batches), generator=self.generator).tolist():
            self.visited.append(list(self.batches[k]))
            yield [i for u in self.batches[k] for i in self.members[u]]


