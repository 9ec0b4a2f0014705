"""The logits-free masked-LM loss: same value and gradients as cross-entropy over full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
from longadapt.modeling.loss import chunked_linear_cross_entropy, default_chunk_size


def _reference(h, w, b, t):
    logits = F.linear(h, w, b)
    return F.cross_entropy(logits if logits.dtype == torch.float64 else logits.float(), t)


def _leaves(n, hdim, vocab, bias, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hdim, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(vocab, hdim, generator=g, dtype=dtype, requires_grad=True)
    b = torch.randn(vocab, generator=g, dtype=dtype, requires_grad=True) if bias else None
    t = torch.randint(0, vocab, (n,), generator=g)
    return h, w, b, t


@pytest.mark.parametrize("chunk", [1, 7, 16, 64, 1000])
@pytest.mark.parametrize("bias", [True, False])
def test_loss_and_gradients_equal_full_logits(chunk, bias):
    h, w, b, t = _leaves(37, 12, 50, bias)
    loss = chunked_linear_cross_entropy(h, w, b, t, chunk)
    grads = torch.autograd.grad(loss * 3.0, [x for x in (h, w, b) if x is not None])
    h2, w2, b2 = (None if x is None else x.detach().clone().requires_grad_() for x in (h, w, b))
    ref = _reference(h2, w2, b2, t)
    ref_grads = torch.autograd.grad(ref * 3.0, [x for x in (h2, w2, b2) if x is not None])
    assert loss.dtype == torch.float64
    assert abs(float(loss.detach()) - float(ref.detach())) <= 1e-12 * abs(float(ref.detach()))
    for g, r in zip(grads, ref_grads):
        assert g.dtype == r.dtype
        assert torch.allclose(g, r, atol=1e-10, rtol=1e-8)


def test_float32_matches_and_no_grad_runs():
    h, w, b, t = _leaves(300, 16, 97, True, dtype=torch.float32, seed=1)
    loss = chunked_linear_cross_entropy(h, w, b, t, 32)
    loss.backward()
    ref_h, ref_w, ref_b = (x.detach().clone().requires_grad_() for x in (h, w, b))
    _reference(ref_h, ref_w, ref_b, t).backward()
    assert torch.allclose(loss, _reference(h, w, b, t), atol=1e-5)
    assert torch.allclose(h.grad, ref_h.grad, atol=1e-6)
    assert torch.allclose(w.grad, ref_w.grad, atol=1e-6)
    assert torch.allclose(b.grad, ref_b.grad, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(chunked_linear_cross_entropy(h, w, b, t, 32), loss)


def test_bf16_autocast_is_as_close_as_the_full_logits_path():
    h, w, b, t = _leaves(200, 32, 300, True, dtype=torch.float32, seed=2)
    exact = _reference(h, w, b, t)
    (exact_grad,) = torch.autograd.grad(exact, [w])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = chunked_linear_cross_entropy(h, w, b, t, 64)
        ref = _reference(h, w, b, t)
    (grad,) = torch.autograd.grad(loss, [w])
    (ref_grad,) = torch.autograd.grad(ref, [w])
    assert loss.dtype == torch.float32 and grad.dtype == torch.float32
    # both round the logits to bf16; neither is further from the exact float32 result than 1 %
    assert abs(float(loss.detach()) - float(ref.detach())) < 1e-2 * float(exact.detach())
    scale = float(exact_grad.abs().max())
    assert float((grad - exact_grad).abs().max()) < 2e-2 * scale
    assert float((ref_grad - exact_grad).abs().max()) < 2e-2 * scale


def test_no_target_gives_zero_loss_and_zero_gradients():
    h, w, b, _ = _leaves(0, 8, 20, True)
    loss = chunked_linear_cross_entropy(h, w, b, torch.zeros(0, dtype=torch.long))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert w.grad is not None and float(w.grad.abs().sum()) == 0.0
    assert b.grad is not None and float(b.grad.abs().sum()) == 0.0


def test_bad_shapes_and_chunk_are_refused():
    h, w, b, t = _leaves(5, 8, 20, True)
    with pytest.raises(ValueError, match=r"target \(N,\)"):
        chunked_linear_cross_entropy(h, w, b, t[:3])
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        chunked_linear_cross_entropy(h, w, b, t, 0)
    with pytest.raises(Exception, match="mlm_loss_chunk_size"):  # a ValueError inside transformers' validation error
        LongAdaptConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=8, mlm_loss_chunk_size=0)


def test_default_chunk_bounds_the_logits_held_at_once():
    assert default_chunk_size(30528, torch.device("cpu")) * 30528 <= 1 << 22
    assert default_chunk_size(50368, torch.device("cuda")) * 50368 <= 1 << 27
    assert default_chunk_size(10**9, torch.device("cpu")) == 16


@pytest.mark.parametrize("sparse", [True, False])
def test_model_without_logits_gives_the_same_loss_and_gradients(sparse):
    cfg = LongAdaptConfig(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                          intermediate_size=40, local_attention=10, global_attn_every_n_layers=2,
                          sparse_prediction=sparse, mlm_loss_chunk_size=5)
    torch.manual_seed(0)
    model = LongAdaptForMaskedLM(cfg)
    ids = torch.randint(1, 120, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    docs = torch.zeros_like(ids)
    docs[0, 18:] = 1
    labels = torch.full_like(ids, -100)
    sel = (torch.rand(ids.shape) < 0.4) & (mask == 1)
    labels[sel] = ids[sel]
    inputs = dict(input_ids=ids, attention_mask=mask, document_ids=docs, labels=labels)

    ref = model(**inputs)
    ref.loss.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    out = model(**inputs, return_logits=False)
    out.loss.backward()
    assert out.logits is None
    assert torch.allclose(out.loss, ref.loss, atol=1e-6)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, ref_grads[n], atol=1e-6), n


def test_model_without_masked_tokens_keeps_every_parameter_in_the_graph():
    cfg = LongAdaptConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=16, local_attention=8)
    model = LongAdaptForMaskedLM(cfg)
    ids = torch.randint(1, 60, (1, 12))
    out = model(input_ids=ids, labels=torch.full_like(ids, -100), return_logits=False)
    assert float(out.loss.detach()) == 0.0
    (out.loss * 0.0).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_token_losses_without_gradients_match_per_token_cross_entropy():
    h, w, b, t = _leaves(45, 8, 33, True, dtype=torch.float32, seed=3)
    ref = F.cross_entropy(F.linear(h, w, b), t, reduction="none")
    with torch.no_grad():
        got = chunked_linear_cross_entropy(h, w, b, t, 10, reduction="none")
    assert got.shape == (45,) and not got.requires_grad
    assert torch.allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="computes no gradients"):
        chunked_linear_cross_entropy(h, w, b, t, 10, reduction="none")
    with pytest.raises(ValueError, match="reduction must be"):
        chunked_linear_cross_entropy(h, w, b, t, 10, reduction="sum")


def test_model_gives_token_losses_in_evaluation():
    cfg = LongAdaptConfig(vocab_size=80, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=16, local_attention=8, mlm_loss_chunk_size=3)
    torch.manual_seed(1)
    model = LongAdaptForMaskedLM(cfg).eval()
    ids = torch.randint(1, 80, (2, 20))
    mask = torch.ones_like(ids)
    mask[0, 15:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, [2, 9]] = ids[0, [2, 9]]
    labels[1, [0, 5, 19]] = ids[1, [0, 5, 19]]
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, labels=labels)
        out = model(input_ids=ids, attention_mask=mask, labels=labels, return_logits=False)
    expected = F.cross_entropy(ref.logits.float(), labels[labels != -100], reduction="none")
    assert out.logits is None
    assert torch.allclose(out.token_losses, expected, atol=1e-5)
    assert torch.allclose(out.loss, ref.loss, atol=1e-5)
