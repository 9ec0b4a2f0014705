"""The masked-LM loss without a ``(N, vocab)`` logits tensor.

``F.cross_entropy(decoder(h), target)`` materialises the logits of every masked token, their float32
copy, the log-softmax and its gradient: four ``N x V`` tensors. With 30 % masking at 8,192 tokens and a
50k vocabulary that is gigabytes per micro-batch, and on CPU the cost per token doubles once the
tensors stop fitting in cache (measured: 116 us per masked token at N = 96, 223 us at N = 613, 266 us
at N = 1,226, for V = 30,528 and hidden 64; see docs/benchmarks.md). Here the decoder and the loss run
chunk by chunk and the gradients of the hidden states, the decoder weight and its bias are computed in
the same pass, so that at most ``chunk x V`` values exist at once and the cost per token is flat.

torch has no such operation; the fused kernels that exist (Liger's fused linear cross-entropy) are
Triton, GPU only, so this is plain torch and works on every device.
"""

from __future__ import annotations

import torch

# logits held at once per chunk: 4M (16 MB in float32) fits a CPU's cache hierarchy; GPUs want
# bigger chunks to keep their kernels busy.
CPU_CHUNK_ELEMENTS = 1 << 22
CUDA_CHUNK_ELEMENTS = 1 << 27


def default_chunk_size(vocab_size: int, device: torch.device) -> int:
    elements = CUDA_CHUNK_ELEMENTS if device.type == "cuda" else CPU_CHUNK_ELEMENTS
    return max(16, elements // max(vocab_size, 1))


def _chunk_pass(hidden, weight, bias, target, chunk_size, need_h, need_w, need_b):
    """One pass over the chunks: the loss of every row, and the gradients of the *sum* of the losses
    with respect to the inputs asked for (None for the others)."""
    n = hidden.shape[0]
    acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32  # at least float32
    losses = hidden.new_empty(n, dtype=acc)
    grad_h = torch.empty_like(hidden) if need_h else None
    grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
    grad_b = torch.zeros_like(bias, dtype=acc) if (need_b and bias is not None) else None
    for s in range(0, n, chunk_size):
        h = hidden[s : s + chunk_size]
        t = target[s : s + chunk_size]
        # the matmul runs in the input dtype (or autocast's), the softmax in float32, as
        # F.cross_entropy(logits.float()) after a bf16 decoder would
        logits = torch.nn.functional.linear(h, weight, bias).to(acc)
        # log-sum-exp by hand, in place (torch.logsumexp allocates two more chunk-sized temporaries)
        true_logit = logits.gather(1, t[:, None]).squeeze(1)
        peak = logits.amax(dim=-1, keepdim=True)
        probs = logits.sub_(peak).exp_()
        norm = probs.sum(dim=-1)
        losses[s : s + chunk_size] = peak.squeeze(1) + norm.log() - true_logit
        if not (need_h or need_w or grad_b is not None):
            continue
        # d(loss of each row)/d(logits) = softmax - one_hot(target), in place
        probs.div_(norm[:, None])
        probs[torch.arange(h.shape[0], device=h.device), t] -= 1.0
        g = probs.to(h.dtype)
        if need_h:
            grad_h[s : s + chunk_size] = g @ weight.to(g.dtype)
        if need_w:
            grad_w += (g.t() @ h).to(acc)
        if grad_b is not None:
            grad_b += probs.sum(0)
    return losses, grad_h, grad_w, grad_b


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk_size):
        losses, grad_h, grad_w, grad_b = _chunk_pass(hidden, weight, bias, target, chunk_size,
                                                     *ctx.needs_input_grad[:3])
        n = hidden.shape[0]
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.denom = max(n, 1)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return losses.sum() / ctx.denom

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        scale = grad_out / ctx.denom
        dh, dw, db = ctx.dtypes
        return (
            None if grad_h is None else (grad_h * scale).to(dh),
            None if grad_w is None else (grad_w * scale).to(dw),
            None if grad_b is None else (grad_b * scale).to(db),
            None,
            None,
        )


def _check(hidden, target, chunk_size, vocab_size):
    if hidden.dim() != 2 or target.shape != hidden.shape[:1]:
        raise ValueError(f"hidden must be (N, H) and target (N,), got {tuple(hidden.shape)} and {tuple(target.shape)}")
    if chunk_size is None:
        chunk_size = default_chunk_size(vocab_size, hidden.device)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return int(chunk_size)


def chunked_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    chunk_size: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T + bias`` against ``target`` (every target a real class id:
    select the labelled rows first) without the ``(N, V)`` logits. ``hidden`` (N, H), ``weight`` (V, H),
    ``bias`` (V,) or None, ``target`` (N,).

    ``reduction="mean"``: equal to ``F.cross_entropy(F.linear(hidden, weight, bias).float(), target)``
    and its gradients; with N = 0 the loss is 0 and every gradient is zero (the graph stays connected,
    as DDP needs). ``reduction="none"``: the loss of every row, ``(N,)`` in at least float32, without
    gradients (for evaluation; refused where autograd would need them)."""
    chunk_size = _check(hidden, target, chunk_size, weight.shape[0])
    if reduction == "mean":
        return _ChunkedLinearCrossEntropy.apply(hidden, weight, bias, target, chunk_size)
    if reduction != "none":
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias)):
        raise ValueError("reduction='none' computes no gradients: call it under torch.no_grad()")
    return _chunk_pass(hidden, weight, bias, target, chunk_size, False, False, False)[0]


__all__ = ["chunked_linear_cross_entropy", "default_chunk_size"]
