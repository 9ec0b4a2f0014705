"""Masked-LM losses in nats per masked token and in bits per byte, overall and per position bucket.

Bits per byte = (sum of masked-token losses in nats) / ln 2 / (sum of the UTF-8 bytes that the
masked tokens cover). It is comparable across tokenizers, unlike per-token perplexity.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

LN2 = math.log(2.0)


def masked_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (nats) of every masked position, in row-major order of ``labels != -100``.

    ``logits`` are either sparse, one row per masked position (``(N_masked, V)``, as the core's MLM
    head returns them when given labels), or dense ``(B, L, V)``.
    """
    mask = labels != -100
    target = labels[mask]
    if logits.dim() == 3:
        logits = logits[mask]
    if logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"the model returned {logits.shape[0]} logit rows for {target.shape[0]} masked positions"
        )
    return F.cross_entropy(logits.float(), target, reduction="none")


def positions_in_document(document_ids: torch.Tensor) -> torch.Tensor:
    """Position of every token counted from the start of its document (``(B, L)`` -> ``(B, L)``).

    A document starts where ``document_ids`` changes along the row (and at column 0).
    """
    B, L = document_ids.shape
    idx = torch.arange(L, device=document_ids.device).expand(B, L)
    starts = torch.ones_like(document_ids, dtype=torch.bool)
    starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    start_idx = torch.where(starts, idx, torch.zeros_like(idx))
    return idx - torch.cummax(start_idx, dim=1).values


class LossTally:
    """Sums of masked-token losses, counts and bytes, optionally per position bucket.

    Kept as one float64 tensor so that processes combine theirs with a single all-reduce.
    Layout: [loss_sum, n_masked, n_bytes] then, per bucket b, [loss_sum_b, n_masked_b, n_bytes_b].
    """

    def __init__(self, bucket_size: int = 0, max_length: int = 0, device: torch.device | str = "cpu"):
        self.bucket_size = bucket_size
        self.n_buckets = math.ceil(max_length / bucket_size) if bucket_size > 0 else 0
        self.sums = torch.zeros(3 * (1 + self.n_buckets), dtype=torch.float64, device=device)

    def add(self, token_losses: torch.Tensor, labels: torch.Tensor, token_bytes: torch.Tensor,
            document_ids: torch.Tensor | None = None) -> None:
        mask = labels != -100
        losses = token_losses.detach().double()
        nbytes = token_bytes[mask].double()
        self.sums[0] += losses.sum()
        self.sums[1] += losses.numel()
        self.sums[2] += nbytes.sum()
        if self.n_buckets and document_ids is not None:
            bucket = (positions_in_document(document_ids)[mask] // self.bucket_size).clamp_max(self.n_buckets - 1)
            offset = 3 + 3 * bucket
            self.sums.index_add_(0, offset, losses)
            self.sums.index_add_(0, offset + 1, torch.ones_like(losses))
            self.sums.index_add_(0, offset + 2, nbytes)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        s = self.sums.tolist()
        out = {
            f"{prefix}loss": s[0] / s[1] if s[1] else float("nan"),
            f"{prefix}bpb": s[0] / LN2 / s[2] if s[2] else float("nan"),
            f"{prefix}masked_tokens": int(s[1]),
        }
        for b in range(self.n_buckets):
            loss_b, n_b, bytes_b = s[3 + 3 * b : 6 + 3 * b]
            lo, hi = b * self.bucket_size, (b + 1) * self.bucket_size - 1
            if n_b:
                out[f"{prefix}bpb_pos_{lo}_{hi}"] = loss_b / LN2 / bytes_b if bytes_b else float("nan")
                out[f"{prefix}masked_tokens_pos_{lo}_{hi}"] = int(n_b)
        return out


class MetricsWriter:
    """Metrics to ``metrics.jsonl`` (one JSON object per line) and to TensorBoard.

    On resume, lines written after the checkpoint's step by the interrupted run are dropped, and
    TensorBoard events after that step are purged, so that curves show one run.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        if resume_step is not None and self.path.exists():
            kept = [
                line for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and _step_of(line) is not None and _step_of(line) <= resume_step
            ]
            from longadapt.io import atomic_write_text

            atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        self._fh = self.path.open("a", encoding="utf-8")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(
                str(run_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step is not None else None
            )

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        if self.tb is not None:
            kind = record.get("kind", "train")
            for key, value in record.items():
                if key in ("step", "kind") or not isinstance(value, (int, float)) or isinstance(value, bool):
                    continue
                self.tb.add_scalar(f"{kind}/{key}", value, record["step"])
            self.tb.flush()

    def close(self) -> None:
        self._fh.close()
        if self.tb is not None:
            self.tb.close()


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
