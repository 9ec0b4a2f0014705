"""Whether an adaptation kept the encoder's token representations usable: a check before and after.

Why: a masked-LM phase can lower the validation loss while it ruins what a downstream task needs. The
tiny ``continue`` recipe of longadapt 0.1 (a new, randomly initialised MLM head trained together with
MiniLM's encoder at 5e-4 for 16 steps) halved the bits per byte and made every token's last-layer vector
point the same way: the mean cosine between the tokens of a held-out document went from 0.24 to 0.98 and
the first principal component took 94 % of their variance (6 % before); fine-tuned on QUAERO EMEA, it
predicted nothing (F1 0.0 on 3 of 3 seeds, where the same encoder before the phase scored 17.5).
docs/results.md has the measurements. A model whose representations collapsed like that could not be
fine-tuned at the rate its start takes, whatever its loss said (whether a much higher rate would rescue it, as
it does a model trained from scratch, was not measured); the recipe runner measures it and warns.

The measures, on the last layer of up to ``max_documents`` held-out documents (each at most
``max_length`` tokens), averaged over documents: ``mean_token_cosine`` (mean cosine similarity between
distinct tokens; near 1: collapsed) and ``top_component_share`` (share of the centred representations'
variance on their first principal component; near 1: one direction left). A warning is given when half the
variance or more lies on one component, or the mean cosine reaches 0.8, after a rise of 0.3 in either.

Only for an encoder that knew something before (convert, continue): a model trained from scratch has nothing
to lose, and the measure did not predict its fine-tuning. The small scratch recipe at 131,072 tokens went from
cosine 0.01 to 0.94 (57 % of the variance on one component) and fine-tuned on QUAERO EMEA to 0.0 F1 at 2e-4
but 51.5 dev / 41.2 test F1 at 1e-3; the same network pretrained at 5e-4 ended at 0.27 (no collapse by this
measure) and fine-tuned to 0.0 at 2e-4 and 51.3 / 41.4 at 1e-3 (seed 0, docs/results.md): its fine-tuning
rate decided, not its representations.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

logger = logging.getLogger(__name__)

# A collapse: most of the variance on one direction (or the vectors nearly parallel), and much more so than
# before the phase. Measured on MiniLM made long and 16 masked-LM steps of French (docs/results.md): the
# variants that could still be fine-tuned on QUAERO ended at cosine 0.46-0.70 with 16-22 % of the variance
# on the first component; the three that could not (F1 0-1.6 on every seed) at 0.88-0.98 and 70-93 %.
COLLAPSED_SHARE = 0.5
COLLAPSED_COSINE = 0.8
COLLAPSE_RISE = 0.3


def representation_stats(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int = 1024,
                         max_documents: int = 4) -> dict[str, float] | None:
    """The measures of the module doc for ``model``'s encoder (``model.base_model``); None without texts."""
    import torch

    texts = [t for t in texts if t.strip()][:max_documents]
    if not texts:
        return None
    encoder = getattr(model, "base_model", model)
    # a model shorter than the measure (a 512-token BERT, a tiny scratch model) is measured on its own length
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    max_length = min(max_length, int(limit)) if limit else max_length
    was_training = model.training
    model.eval()
    cos, top = [], []
    try:
        with torch.no_grad():
            for text in texts:
                enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
                h = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0].float()
                n = h.shape[0]
                if n < 3:
                    continue
                unit = torch.nn.functional.normalize(h, dim=-1)
                cos.append(float(((unit @ unit.T).sum() - n) / (n * (n - 1))))
                s = torch.linalg.svdvals(h - h.mean(0)) ** 2
                top.append(float(s[0] / s.sum()) if float(s.sum()) > 0 else 1.0)  # no variance: one point
    finally:
        model.train(was_training)
    if not cos:
        return None
    return {"mean_token_cosine": round(sum(cos) / len(cos), 4), "top_component_share": round(sum(top) / len(top), 4),
            "documents": len(cos), "max_length": max_length}


def collapse_warning(before: dict[str, float] | None, after: dict[str, float] | None,
                     pretrained: bool = True) -> str | None:
    """A warning when the representations of a ``pretrained`` encoder collapsed during the adaptation, else
    None (always None for a model trained from scratch: see the module doc)."""
    if not before or not after or not pretrained:
        return None
    b, a = before["mean_token_cosine"], after["mean_token_cosine"]
    share_b, share_a = before["top_component_share"], after["top_component_share"]
    collapsed = share_a >= COLLAPSED_SHARE or a >= COLLAPSED_COSINE
    if collapsed and (a - b >= COLLAPSE_RISE or share_a - share_b >= COLLAPSE_RISE):
        return (f"the encoder's token representations collapsed during this adaptation: the mean cosine between the "
                f"tokens of held-out documents went from {b:.2f} to {a:.2f} (first principal component: "
                f"{100 * before['top_component_share']:.0f} % -> {100 * after['top_component_share']:.0f} % of the "
                "variance). Such models learned nothing when fine-tuned at the rate their start takes (docs/results.md), "
                "whatever their validation loss; train the pretrained "
                "encoder at a fraction of the new head's rate (train.optimizer.lr_multipliers: {\"model.*\": 0.1}) "
                "or lower train.lr")
    return None
