"""Output-bias calibration after a vocabulary change: the prior of every token is re-fitted to the new
tokenizer's token frequencies on the target corpus.

Why: a transferred model predicts the new tokens with the preferences of the old vocabulary. When
several new tokens are built from the same old piece (an uncased WordPiece maps "e", "E", "é", "è",
"ê", "ë" and the byte pieces <0x45>, <0x65> all to "##e"), each of them inherits that piece's high
probability, and the model puts several times the piece's mass on tokens that the new tokenizer
rarely emits. Measured on the French corpus with a MiniLM-WordPiece base moved to a French
tokenizer of 2,000 pieces, the transferred rows scored 8.1 nats per masked token, worse than
uniform (7.6), before calibration, and 6.4 after.

What: the decoder bias ``b`` is shifted by ``log p(t) - log q(t)``, where ``p`` is the smoothed
frequency of token ``t`` in the calibration texts (as tokenised by the new tokenizer) and ``q`` the
model's mean predicted probability of ``t`` at masked positions of the same texts (the masking of
training: ``mlm_probability`` with the 80/10/10 split). This is the prior-shift ("logit adjustment")
correction: it keeps what the context tells the model (the rest of the logit) and swaps the old
prior for the new one. One pass matches the marginals closely; ``iterations`` repeats it. Special
tokens keep their bias (they are never masked, so they have no frequency to match).

The same calibration applies to any arm (``replace``, ``extend``, the random-rows baseline), so a
comparison between arms stays fair when all are calibrated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)


@dataclass
class CalibrationReport:
    """What :func:`calibrate_output_bias` did. Cross-entropies are in nats: of the token frequencies
    ``p`` against the model's mean prediction ``q`` (before and after), and the entropy of ``p``
    (the floor)."""

    texts: int = 0
    tokens: int = 0
    rows: int = 0
    masked_positions: int = 0
    iterations: int = 0
    cross_entropy_before: float = float("nan")
    cross_entropy_after: float = float("nan")
    entropy: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rows(tokenizer, texts: Sequence[str], max_length: int, max_rows: int) -> tuple[list[list[int]], torch.Tensor, int]:
    """Token rows for the model pass (at most ``max_rows`` of ``max_length``, specials added) and the
    token counts of all texts."""
    size = len(tokenizer)
    counts = torch.zeros(size, dtype=torch.float64)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None:
        cls_id = tokenizer.bos_token_id
    if sep_id is None:
        sep_id = tokenizer.eos_token_id
    inner = max_length - (cls_id is not None) - (sep_id is not None)
    if inner < 2:
        raise LongAdaptError(f"max_length={max_length} is too short to calibrate on")
    rows: list[list[int]] = []
    n_tokens = 0
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    for ids in encoded:
        if not ids:
            continue
        n_tokens += len(ids)
        counts += torch.bincount(torch.tensor(ids, dtype=torch.long), minlength=size)[:size].double()
        for start in range(0, len(ids), inner):
            if len(rows) >= max_rows:
                break
            chunk = ids[start:start + inner]
            rows.append(([cls_id] if cls_id is not None else []) + chunk + ([sep_id] if sep_id is not None else []))
    return rows, counts, n_tokens


@torch.no_grad()
def _mean_prediction(model, rows, collator, batch_size: int, n_rows: int) -> tuple[torch.Tensor, int]:
    device = next(model.parameters()).device
    total = torch.zeros(n_rows, dtype=torch.float64)
    positions = 0
    for start in range(0, len(rows), batch_size):
        batch = collator([{"input_ids": r} for r in rows[start:start + batch_size]])
        labels = batch["labels"]
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                    labels=labels.to(device))
        logits = out.logits
        if logits.dim() == 3:  # a model without sparse prediction: (B, L, V)
            logits = logits[labels.to(logits.device) != -100]
        probs = torch.softmax(logits.float(), dim=-1).double().cpu()
        total[: probs.shape[1]] += probs.sum(0)
        positions += probs.shape[0]
    return total, positions


def calibrate_output_bias(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    max_length: int = 512,
    max_rows: int = 64,
    batch_size: int = 8,
    mlm_probability: float = 0.15,
    iterations: int = 1,
    smoothing: float = 0.5,
    seed: int = 0,
) -> CalibrationReport:
    """Shift the MLM decoder bias of ``model`` so that its mean prediction at masked positions matches
    the frequencies of ``tokenizer``'s tokens in ``texts`` (see the module doc). Changes ``model`` in
    place; returns a :class:`CalibrationReport`.

    ``texts``: training documents of the target language (never the validation ones). Counts use
    every text; the model pass uses at most ``max_rows`` rows of ``max_length`` tokens.
    ``smoothing``: added to every count (tokens absent from the texts keep a small probability).
    """
    from longadapt.data import MLMCollator

    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    bias = getattr(out, "bias", None) if out is not None else None
    if bias is None:
        raise LongAdaptError(
            f"{type(model).__name__} has no MLM decoder bias to calibrate; run it without calibration "
            "(transfer.calibrate_bias=false)"
        )
    if not texts:
        raise LongAdaptError("calibrate_output_bias needs at least one text of the target language")
    if iterations < 1:
        raise LongAdaptError(f"iterations={iterations} must be >= 1")
    if smoothing <= 0:
        raise LongAdaptError(f"smoothing={smoothing} must be > 0")
    n_rows = bias.shape[0]
    if len(tokenizer) > n_rows:
        raise LongAdaptError(f"the tokenizer has {len(tokenizer)} entries but the decoder only {n_rows} rows")
    rows, counts, n_tokens = _rows(tokenizer, texts, max_length, max_rows)
    if not rows:
        raise LongAdaptError("the calibration texts give no tokens")
    special = torch.zeros(n_rows, dtype=torch.bool)
    special[[i for i in tokenizer.all_special_ids if i < n_rows]] = True
    full = torch.zeros(n_rows, dtype=torch.float64)
    full[: counts.shape[0]] = counts
    full = full + smoothing
    full[special] = 0.0
    p = full / full.sum()
    entropy = float(-(p[~special] * p[~special].log()).sum())

    collator = MLMCollator(tokenizer, mlm_probability=mlm_probability, seed=seed)
    was_training = model.training
    model.eval()
    report = CalibrationReport(texts=len(texts), tokens=n_tokens, rows=len(rows), iterations=iterations, entropy=entropy)
    try:
        for it in range(iterations + 1):
            total, positions = _mean_prediction(model, rows, collator, batch_size, n_rows)
            if positions == 0:
                raise LongAdaptError(
                    "no position was masked in the calibration rows; give more text or raise mlm_probability"
                )
            q = (total / positions).clamp_min(1e-30)
            ce = float(-(p[~special] * q[~special].log()).sum())
            if it == 0:
                report.cross_entropy_before = ce
                report.masked_positions = positions
            report.cross_entropy_after = ce
            if it == iterations:
                break
            shift = (p.clamp_min(1e-30).log() - q.log())
            shift[special] = 0.0
            with torch.no_grad():
                bias.add_(shift.to(bias.dtype).to(bias.device))
    finally:
        model.train(was_training)
    if not math.isfinite(report.cross_entropy_after):
        raise LongAdaptError("the calibration gave a non-finite loss; the model's outputs are not finite")
    logger.info(
        "output bias calibrated on %d rows (%d masked positions): cross-entropy to the token frequencies "
        "%.3f -> %.3f nats (entropy %.3f)",
        report.rows, report.masked_positions, report.cross_entropy_before, report.cross_entropy_after, entropy,
    )
    return report
