"""Longformer global tokens in the core, and Longformer import, checked against transformers."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
import transformers

import longadapt  # noqa: F401  (registers the Auto classes)
import longadapt.cli
from longadapt.errors import LongAdaptError
from longadapt.interop import enable_global_tokens, import_checkpoint, make_long
from longadapt.interop.checkpoints import SUPPORTED
from longadapt.modeling import (
    LongAdaptConfig,
    LongAdaptForMaskedLM,
    LongAdaptForMultipleChoice,
    LongAdaptModel,
)
from longadapt.modeling import attention as attn_mod

TOL = 1e-4  # against transformers
TOL_CORE = 1e-5  # between the core's own backends

VOCAB = 97


def _batch(lengths: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), L), generator=g)
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    return ids.masked_fill(mask == 0, 1), mask


def _real_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    keep = mask.bool()
    return (a[keep] - b[keep]).abs().max().item()


@pytest.fixture(scope="module")
def longformer(tmp_path_factory):
    """A random tiny LongformerForMaskedLM saved to disk, and its import into the core."""
    cfg = transformers.LongformerConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
        attention_window=8, max_position_embeddings=130 + 2, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        sep_token_id=2,
    )
    torch.manual_seed(1)
    ref = transformers.LongformerForMaskedLM(cfg).eval()
    with torch.no_grad():  # make sure the global projections differ from the local ones
        for name, p in ref.named_parameters():
            if "_global" in name:
                p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("longformer") / "lf"
    ref.save_pretrained(path)
    core = import_checkpoint(path).model.eval()
    return ref, core, path


def test_longformer_is_supported_and_configured(longformer):
    _, core, _ = longformer
    assert "longformer" in SUPPORTED
    cfg = core.config
    assert cfg.layer_types == ["sliding_attention"] * 2
    assert cfg.local_attention == 8 and cfg.local_half_window == 4
    assert cfg.max_position_embeddings == 130
    assert cfg.norm_position == "post" and cfg.position_embedding_type == "absolute"
    assert cfg.global_token_projections and not cfg.global_first_token
    assert all(layer.attn.Wqkv_global is not None for layer in core.model.layers)


GLOBALS = {
    "none": None,
    "first": [(0, 0), (1, 0), (2, 0)],
    "two": [(0, 0), (0, 25), (1, 0), (1, 13)],  # two per row; row 2 has none
}


@pytest.mark.parametrize("globals_", list(GLOBALS))
def test_longformer_import_equals_transformers(longformer, globals_):
    """Padding, lengths that are not multiples of the window, global tokens on 0, 1 or 2 tokens;
    the core's eager reference and its SDPA path (default and small query blocks)."""
    ref, core, _ = longformer
    ids, mask = _batch([37, 20, 5])
    gmask = None
    if GLOBALS[globals_] is not None:
        gmask = torch.zeros_like(ids)
        for row, pos in GLOBALS[globals_]:
            gmask[row, pos] = 1
    with torch.no_grad():
        r_hidden = ref.longformer(input_ids=ids, attention_mask=mask, global_attention_mask=gmask).last_hidden_state
        r_logits = ref(input_ids=ids, attention_mask=mask, global_attention_mask=gmask).logits
    for backend, block in (("eager", None), ("sdpa", None), ("sdpa", 4)):
        core.config.attention_backend = backend
        core.config.local_block_size = block
        try:
            with torch.no_grad():
                c = core(input_ids=ids, attention_mask=mask, global_attention_mask=gmask, output_hidden_states=True)
                c_hidden = core.model(input_ids=ids, attention_mask=mask, global_attention_mask=gmask).last_hidden_state
        finally:
            core.config.local_block_size = None
            core.config.attention_backend = "auto"
        assert _real_diff(r_hidden, c_hidden, mask) <= TOL, (backend, block)
        assert _real_diff(r_hidden, c.hidden_states[-1], mask) <= TOL, (backend, block)
        assert _real_diff(r_logits, c.logits, mask) <= TOL, (backend, block)


def test_global_tokens_change_the_outputs(longformer):
    """The comparison above is not vacuous: global tokens change every real token's state."""
    _, core, _ = longformer
    ids, mask = _batch([60])
    gmask = torch.zeros_like(ids)
    gmask[0, 0] = 1
    with torch.no_grad():
        a = core.model(input_ids=ids, attention_mask=mask).last_hidden_state
        b = core.model(input_ids=ids, attention_mask=mask, global_attention_mask=gmask).last_hidden_state
    assert (a[0, 59] - b[0, 59]).abs().max() > 1e-3  # token 59 is far outside token 0's window


def test_per_layer_windows_must_be_equal(tmp_path):
    cfg = transformers.LongformerConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40,
        attention_window=[8, 16], max_position_embeddings=66,
    )
    torch.manual_seed(0)
    transformers.LongformerForMaskedLM(cfg).save_pretrained(tmp_path / "lf")
    with pytest.raises(LongAdaptError, match="different windows per layer"):
        import_checkpoint(tmp_path / "lf")


# --------------------------------------------------------------------------------------------
# global tokens in the core itself


def _core(seed=0, style="bert", **kw) -> LongAdaptModel:
    base = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                local_attention=8, max_position_embeddings=512, global_attn_every_n_layers=3,
                global_token_projections=True)
    if style == "bert":
        base.update(norm_position="post", mlp_type="mlp", norm_bias=True, attention_bias=True, mlp_bias=True,
                    position_embedding_type="absolute", type_vocab_size=2, final_norm=False)
    base.update(kw)
    torch.manual_seed(seed)
    return LongAdaptModel(LongAdaptConfig(**base)).eval()


def _run(model, backend, **inputs):
    model.config.attention_backend = backend
    with torch.no_grad():
        return model(**inputs).last_hidden_state


@pytest.mark.parametrize("style", ["bert", "modernbert"])
def test_eager_equals_sdpa_with_global_tokens_packed_and_padded(style):
    m = _core(style=style, local_block_size=4)
    L = 90
    ids = torch.randint(1, 120, (3, L))
    mask = torch.ones_like(ids)
    mask[1, 50:] = 0
    docs = torch.ones_like(ids)
    docs[2, 30:] = 2
    docs[2, 61:] = 3
    gmask = torch.zeros_like(ids)
    gmask[0, [0, 40, 89]] = 1
    gmask[1, [0, 60]] = 1  # 60 is padding: ignored
    gmask[2, [0, 31, 45, 70]] = 1  # documents 1, 2, 2, 3
    a = _run(m, "eager", input_ids=ids, attention_mask=mask, document_ids=docs, global_attention_mask=gmask)
    b = _run(m, "sdpa", input_ids=ids, attention_mask=mask, document_ids=docs, global_attention_mask=gmask)
    assert _real_diff(a, b, mask) <= TOL_CORE


def test_global_tokens_never_see_another_document():
    m = _core(local_block_size=4)
    lens = [23, 40, 31]
    docs = [torch.randint(1, 120, (n,)) for n in lens]
    globals_ = [[0], [0, 17, 33], []]
    packed = torch.cat(docs)[None]
    doc_ids = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(lens)])[None]
    gpacked = torch.zeros_like(packed)
    start = 0
    for n, gl in zip(lens, globals_):
        gpacked[0, [start + p for p in gl]] = 1
        start += n
    for backend in ("eager", "sdpa"):
        p = _run(m, backend, input_ids=packed, document_ids=doc_ids, global_attention_mask=gpacked)[0]
        start = 0
        for d, gl in zip(docs, globals_):  # each document alone gives the same states
            g = torch.zeros(1, len(d), dtype=torch.long)
            g[0, gl] = 1
            alone = _run(m, backend, input_ids=d[None], global_attention_mask=g)[0]
            assert (p[start:start + len(d)] - alone).abs().max() <= TOL_CORE, backend
            start += len(d)
    # changing the other documents (global tokens included) leaves document 2 untouched, bit for bit
    other = packed.clone()
    other[0, :23] = torch.randint(1, 120, (23,))
    other[0, 63:] = torch.randint(1, 120, (31,))
    a = _run(m, "sdpa", input_ids=packed, document_ids=doc_ids, global_attention_mask=gpacked)
    b = _run(m, "sdpa", input_ids=other, document_ids=doc_ids, global_attention_mask=gpacked)
    assert torch.equal(a[0, 23:63], b[0, 23:63])
    assert not torch.allclose(a[0, :23], b[0, :23])


def test_global_first_token_marks_each_document_start():
    m = _core(global_first_token=True)
    ids = torch.randint(1, 120, (2, 50))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0
    docs = torch.ones_like(ids)
    docs[0, 20:] = 2
    explicit = torch.zeros_like(ids)
    explicit[0, [0, 20]] = 1
    explicit[1, 0] = 1
    a = _run(m, "sdpa", input_ids=ids, attention_mask=mask, document_ids=docs)
    b = _run(m, "sdpa", input_ids=ids, attention_mask=mask, document_ids=docs, global_attention_mask=explicit)
    assert torch.equal(a, b)
    # a given mask wins over the default: an all-zero mask means no global token
    c = _run(m, "sdpa", input_ids=ids, attention_mask=mask, document_ids=docs,
             global_attention_mask=torch.zeros_like(ids))
    m.config.global_first_token = False
    d = _run(m, "sdpa", input_ids=ids, attention_mask=mask, document_ids=docs)
    assert torch.equal(c, d) and not torch.allclose(a, d)


def test_global_mask_needs_a_model_with_global_tokens():
    m = _core(global_token_projections=False)
    ids = torch.randint(1, 120, (1, 30))
    g = torch.zeros_like(ids)
    assert torch.equal(_run(m, "sdpa", input_ids=ids, global_attention_mask=g), _run(m, "sdpa", input_ids=ids))
    g[0, 0] = 1
    with pytest.raises(ValueError, match="no global-token layers"):
        _run(m, "sdpa", input_ids=ids, global_attention_mask=g)
    with pytest.raises(Exception, match="global_first_token needs global_token_projections"):
        LongAdaptConfig(global_first_token=True)  # huggingface_hub's strict-dataclass validation error


def test_local_layers_with_global_tokens_build_no_dense_mask(monkeypatch):
    """Local rows: block x (block + 2h + G) scores; global rows: G x L. Never L x L."""
    m = _core(num_hidden_layers=2, global_attn_every_n_layers=0, local_attention=16, local_block_size=8)
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((q.shape[-2], k.shape[-2]))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(attn_mod.F, "scaled_dot_product_attention", spy)
    ids = torch.randint(1, 120, (1, 500))
    g = torch.zeros_like(ids)
    g[0, [0, 100, 499]] = 1
    _run(m, "sdpa", input_ids=ids, global_attention_mask=g)
    local = [s for s in seen if s[0] == 8]
    rows = [s for s in seen if s[0] != 8]
    assert len(local) == 2 and all(lk <= 8 + 16 + 3 for _, lk in local)
    assert len(rows) == 2 and all(lq == 3 and lk == 500 for lq, lk in rows)


def test_gradients_with_global_tokens_match_between_backends():
    ids = torch.randint(1, 120, (2, 40))
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    g = torch.zeros_like(ids)
    g[:, 0] = 1
    g[0, 30] = 1
    grads = []
    for backend in ("eager", "sdpa"):
        m = _core(local_block_size=4)
        m.config.attention_backend = backend
        m.train()
        out = m(input_ids=ids, attention_mask=mask, global_attention_mask=g).last_hidden_state
        (out * mask[..., None]).pow(2).sum().backward()
        attn = m.layers[1].attn
        grads.append((attn.Wqkv.weight.grad.clone(), attn.Wqkv_global.weight.grad.clone()))
    for a, b in zip(*grads):
        assert a.abs().max() > 0 and (a - b).abs().max() <= 1e-4


def test_multiple_choice_passes_the_global_mask():
    m_cfg = _core().config
    torch.manual_seed(0)
    mc = LongAdaptForMultipleChoice(m_cfg).eval()
    ids = torch.randint(1, 120, (2, 3, 30))
    g = torch.zeros_like(ids)
    g[..., 0] = 1
    with torch.no_grad():
        out = mc(input_ids=ids, global_attention_mask=g).logits
        alone = mc(input_ids=ids[1:, 2:], global_attention_mask=g[1:, 2:]).logits
        plain = mc(input_ids=ids).logits
    assert torch.allclose(out[1, 2], alone[0, 0], atol=TOL_CORE)
    assert not torch.allclose(out, plain)


# --------------------------------------------------------------------------------------------
# flash path: the log-sum-exp merge, checked with a CPU stand-in for flash_attn_varlen_func


def _fake_flash_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                       softmax_scale=None, causal=False, window_size=(-1, -1), return_attn_probs=False, **kw):
    """flash-attn 2's documented contract: window [i - left, i + right]; with return_attn_probs,
    (out, softmax_lse (heads, total_q) fp32, S_dmask). Exact fp32 arithmetic, to test the merge."""
    T, H, d = q.shape
    out = torch.empty(T, H, d, dtype=torch.float32)
    lse = torch.empty(H, T, dtype=torch.float32)
    cu = cu_seqlens_q.tolist()
    for a, b in zip(cu[:-1], cu[1:]):
        qs, ks, vs = (t[a:b].float().transpose(0, 1) for t in (q, k, v))
        s = torch.matmul(qs, ks.transpose(-1, -2)) * softmax_scale
        i = torch.arange(b - a)
        allowed = torch.ones(b - a, b - a, dtype=torch.bool)
        if window_size[0] >= 0:
            allowed &= (i[:, None] - i[None, :]) <= window_size[0]
        if window_size[1] >= 0:
            allowed &= (i[None, :] - i[:, None]) <= window_size[1]
        s = s.masked_fill(~allowed, float("-inf"))
        lse[:, a:b] = torch.logsumexp(s, -1)
        out[a:b] = torch.matmul(torch.softmax(s, -1), vs).transpose(0, 1)
    return (out, lse, None) if return_attn_probs else out


def test_flash_global_merge_equals_eager(monkeypatch):
    monkeypatch.setattr(attn_mod, "flash_attn_varlen_func", _fake_flash_varlen)
    ids = torch.zeros(3, 70, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 33:] = 0
    docs = torch.ones_like(ids)
    docs[2, 25:] = 2
    layout = attn_mod.build_layout(ids.shape, ids.device, mask, docs)
    flags = torch.zeros(layout.num_tokens, dtype=torch.bool)
    flags[[0, 2, 50, 69, 70, 95, 110, 140, 172]] = True  # in-band and out-of-band globals, four documents
    layout.globals = attn_mod.build_globals(layout, flags)
    T, H, d = layout.num_tokens, 4, 8
    # bf16-representable values: the flash wrapper casts fp32 inputs to bf16 without changing them
    q, k, v = (torch.randn(T, H, d).bfloat16().float() for _ in range(3))
    kw = dict(half_window=3, scale=d**-0.5, glob=layout.globals)
    ref = attn_mod.attend(q, k, v, layout, backend="eager", **kw)
    flash = attn_mod.attend(q, k, v, layout, backend="flash", **kw)
    plain = attn_mod.attend(q, k, v, layout, backend="eager", half_window=3, scale=d**-0.5)
    keep = ~flags  # global tokens' rows are replaced by attend_global_rows
    assert (ref[keep] - flash[keep]).abs().max() <= TOL_CORE
    assert (ref[keep] - plain[keep]).abs().max() > 1e-2  # the global keys matter
    # with gradients, flash-attn's backward would drop the log-sum-exp's gradient: SDPA blocks instead
    monkeypatch.setattr(attn_mod, "flash_attn_varlen_func", None)
    qg = q.clone().requires_grad_()
    out = attn_mod.attend(qg, k, v, layout, backend="flash", **kw)
    assert (out[keep] - ref[keep]).abs().max() <= TOL_CORE


# --------------------------------------------------------------------------------------------
# the Longformer conversion of a BERT: make_long(global_first_token=True), `longadapt import`


def _tiny_bert(tmp_path):
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=40, max_position_embeddings=64)
    torch.manual_seed(3)
    transformers.BertForMaskedLM(cfg).save_pretrained(tmp_path / "bert")
    return tmp_path / "bert"


def test_make_long_with_global_first_token(tmp_path):
    src = _tiny_bert(tmp_path)
    model = import_checkpoint(src).model.eval()
    notes = make_long(model, 256, local_attention=8, global_attn_every_n_layers=0, positions="copy", global_first_token=True)
    assert any("copies of the local Q/K/V" in n for n in notes)
    cfg = model.config
    assert cfg.global_token_projections and cfg.global_first_token
    for layer in model.model.layers:
        assert torch.equal(layer.attn.Wqkv_global.weight, layer.attn.Wqkv.weight)
        assert torch.equal(layer.attn.Wqkv_global.bias, layer.attn.Wqkv.bias)
        assert layer.attn.Wqkv_global.weight.data_ptr() != layer.attn.Wqkv.weight.data_ptr()

    # with copied projections, the first token attends like a full-attention token: after layer 0
    # its state equals that of the same weights with layer 0 global
    ids, mask = _batch([100, 70])
    full = import_checkpoint(src).model.eval()
    make_long(full, 256, local_attention=8, global_attn_every_n_layers=2, positions="copy")  # layer 0 global, layer 1 local
    for backend in ("eager", "sdpa"):
        model.config.attention_backend = full.config.attention_backend = backend
        with torch.no_grad():
            a = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1]
            b = full.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[1]
        assert (a[:, 0] - b[:, 0]).abs().max() <= TOL_CORE
        assert (a[0, 50] - b[0, 50]).abs().max() > 1e-3  # the other tokens stay local

    # save / load keeps the projections and the flags
    model.save_pretrained(tmp_path / "long")
    loaded = LongAdaptForMaskedLM.from_pretrained(tmp_path / "long").eval()
    assert loaded.config.global_first_token
    assert torch.equal(loaded.model.layers[1].attn.Wqkv_global.weight, model.model.layers[1].attn.Wqkv_global.weight)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits, model(input_ids=ids, attention_mask=mask).logits)

    # only local layers host global tokens
    with pytest.raises(LongAdaptError, match="local"):
        enable_global_tokens(import_checkpoint(src).model)


def test_make_long_keeps_longformer_projections(longformer):
    _, _, path = longformer
    model = import_checkpoint(path).model
    before = model.model.layers[1].attn.Wqkv_global.weight.clone()
    make_long(model, 260, local_attention=8, global_attn_every_n_layers=2, positions="copy")  # layer 0 becomes global
    assert model.model.layers[0].attn.Wqkv_global is None
    assert torch.equal(model.model.layers[1].attn.Wqkv_global.weight, before)
    assert not model.config.global_first_token


def test_cli_import_with_global_first_token(tmp_path):
    src = _tiny_bert(tmp_path)
    out = tmp_path / "bert-long"
    # the flags' old names (--local-window, --global-every) still work
    rc = longadapt.cli.main(["import", str(src), str(out), "--max-length", "256", "--local-window", "16",
                             "--global-every", "2", "--global-first-token"])
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["local_attention"] == 16 and cfg["global_attn_every_n_layers"] == 2
    assert cfg["global_token_projections"] and cfg["global_first_token"]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["global_first_token"] is True
    assert any("copies of the local Q/K/V" in n for n in run["notes"])
    model = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert model.model.layers[0].attn.Wqkv_global is None and model.model.layers[1].attn.Wqkv_global is not None
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.randint(3, VOCAB, (1, 200))).logits).all()
    # a Longformer import already has its projections: the flag only marks the first token global
    lf_cfg = transformers.LongformerConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                           intermediate_size=40, attention_window=8, max_position_embeddings=66)
    torch.manual_seed(0)
    transformers.LongformerForMaskedLM(lf_cfg).save_pretrained(tmp_path / "lf")
    assert longadapt.cli.main(["import", str(tmp_path / "lf"), str(tmp_path / "lf-core"), "--global-first-token"]) == 0
    cfg = json.loads((tmp_path / "lf-core" / "config.json").read_text())
    assert cfg["global_first_token"] and cfg["layer_types"] == ["sliding_attention"]
