"""Model FLOPs per token of an encoder configuration (matrix products only, as MFU counts them).

One home for the count that ``longadapt bench encoder`` (its model-FLOP utilisation) and ``longadapt plan``
(the cost of a run before it starts) use. Per layer and token: ``2 x (4 d^2 + m d i)`` for the projections
(q, k, v, out) and the MLP (``m`` = 3 for a gated GLU MLP, 2 for BERT's), and ``4 d c`` for attention
scores and values over ``c`` keys (the length for a global layer, the window plus the token itself for a
local one). Layer norms, softmax and element-wise work are left out.
"""

from __future__ import annotations

from typing import Any


def is_glu(config: Any) -> bool:
    """Whether the MLP is gated (the core's ``mlp_type: glu``, ModernBERT)."""
    return getattr(config, "mlp_type", None) == "glu" or getattr(config, "model_type", None) == "modernbert"


def encoder_flops_per_token(config: Any, length: int) -> float:
    """Forward FLOPs per token of the encoder layers at ``length`` tokens: the core's layer types and window,
    ModernBERT's, or a BERT-like configuration (every layer global)."""
    d, inter = config.hidden_size, config.intermediate_size
    types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
    window = getattr(config, "local_attention", None) or length
    total = 0.0
    for kind in types:
        ctx = length if kind == "full_attention" else min(length, window + 1)
        total += 2 * (4 * d * d + (3 if is_glu(config) else 2) * d * inter) + 4 * d * ctx
    return total


def mlm_head_flops_per_token(config: Any) -> float:
    """Forward FLOPs of the masked-LM head for one predicted token: the transform (d x d) and the decoder
    over the vocabulary (the core computes logits only at masked positions)."""
    d = config.hidden_size
    return 2 * d * d + 2 * d * config.vocab_size
