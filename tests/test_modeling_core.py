"""The core encoder: backends, padding-free batches, heads, save/load, gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import transformers

import longadapt  # noqa: F401
from longadapt.modeling import (
    LongAdaptConfig,
    LongAdaptForMaskedLM,
    LongAdaptForMultipleChoice,
    LongAdaptForSequenceClassification,
    LongAdaptForTokenClassification,
    LongAdaptModel,
)
from longadapt.modeling import attention as attn_mod

TOL = 1e-5


def tiny(**kw) -> LongAdaptConfig:
    base = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
                local_attention=10, max_position_embeddings=512, global_attn_every_n_layers=2)
    base.update(kw)
    return LongAdaptConfig(**base)


def _model(cls=LongAdaptModel, seed=0, **kw):
    torch.manual_seed(seed)
    return cls(tiny(**kw)).eval()


def _run(model, backend, **inputs):
    model.config.attention_backend = backend
    with torch.no_grad():
        return model(**inputs)


@pytest.mark.parametrize("style", ["modernbert", "bert"])
@pytest.mark.parametrize("length", [7, 33, 100])
def test_sdpa_matches_eager_with_padding_and_packing(style, length):
    kw = {} if style == "modernbert" else dict(
        norm_position="post", mlp_type="mlp", norm_bias=True, attention_bias=True, mlp_bias=True,
        position_embedding_type="absolute", type_vocab_size=2, final_norm=False)
    m = _model(**kw)
    ids = torch.randint(1, 120, (3, length))
    mask = torch.ones_like(ids)
    mask[1, length // 2:] = 0
    docs = torch.ones_like(ids)
    docs[2, length // 3:] = 2
    docs[2, 2 * length // 3:] = 3
    a = _run(m, "eager", input_ids=ids, attention_mask=mask, document_ids=docs).last_hidden_state
    b = _run(m, "sdpa", input_ids=ids, attention_mask=mask, document_ids=docs).last_hidden_state
    assert (a - b)[mask.bool()].abs().max() <= TOL
    assert (b[~mask.bool()] == 0).all()  # padding positions are zero, not garbage


def test_packed_equals_padded():
    """Three documents packed in one row give the same states as three padded rows."""
    m = _model(local_attention=6)
    lens = [23, 9, 41]
    docs = [torch.randint(1, 120, (n,)) for n in lens]
    packed = torch.cat(docs)[None]
    doc_ids = torch.cat([torch.full((n,), i + 1) for i, n in enumerate(lens)])[None]
    padded = torch.zeros(3, max(lens), dtype=torch.long)
    mask = torch.zeros_like(padded)
    for i, d in enumerate(docs):
        padded[i, : len(d)] = d
        mask[i, : len(d)] = 1
    for backend in ("eager", "sdpa"):
        p = _run(m, backend, input_ids=packed, document_ids=doc_ids).last_hidden_state[0]
        q = _run(m, backend, input_ids=padded, attention_mask=mask).last_hidden_state
        expected = torch.cat([q[i, :n] for i, n in enumerate(lens)])
        assert (p - expected).abs().max() <= TOL


def test_attention_never_crosses_documents():
    m = _model()
    row = torch.randint(1, 120, (1, 60))
    docs = torch.ones_like(row)
    docs[0, 30:] = 2
    out1 = _run(m, "sdpa", input_ids=row, document_ids=docs).last_hidden_state
    row2 = row.clone()
    row2[0, 30:] = torch.randint(1, 120, (30,))  # change the second document only
    out2 = _run(m, "sdpa", input_ids=row2, document_ids=docs).last_hidden_state
    assert torch.equal(out1[0, :30], out2[0, :30])
    assert not torch.allclose(out1[0, 30:], out2[0, 30:])


def test_local_layers_see_only_their_window():
    """One local layer with window 10 (5 each side): token 50 depends on 45..55 only."""
    m = _model(num_hidden_layers=1, global_attn_every_n_layers=0, local_attention=10)
    ids = torch.randint(1, 120, (1, 200))
    base = _run(m, "sdpa", input_ids=ids).last_hidden_state
    for pos, changes in ((56, False), (44, False), (55, True), (45, True), (150, False)):
        ids2 = ids.clone()
        ids2[0, pos] = (ids[0, pos] % 119) + 1
        out = _run(m, "sdpa", input_ids=ids2).last_hidden_state
        assert (not torch.allclose(out[0, 50], base[0, 50])) == changes, pos


def test_no_dense_mask_for_local_layers(monkeypatch):
    """Every SDPA call of a local layer sees at most block x (block + 2h) scores."""
    m = _model(num_hidden_layers=2, global_attn_every_n_layers=0, local_attention=16, local_block_size=8)
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((q.shape[-2], k.shape[-2]))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(attn_mod.F, "scaled_dot_product_attention", spy)
    _run(m, "sdpa", input_ids=torch.randint(1, 120, (1, 500)))
    assert seen and all(lq <= 8 and lk <= 8 + 16 for lq, lk in seen)


def test_sparse_mlm_logits_match_dense():
    m = _model(LongAdaptForMaskedLM)
    ids = torch.randint(1, 120, (2, 30))
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    labels = torch.full_like(ids, -100)
    labels[0, [3, 17]] = ids[0, [3, 17]]
    labels[1, 5] = ids[1, 5]
    sparse = _run(m, "sdpa", input_ids=ids, attention_mask=mask, labels=labels)
    assert sparse.logits.shape == (3, 120)
    m.config.sparse_prediction = False
    dense = _run(m, "sdpa", input_ids=ids, attention_mask=mask, labels=labels)
    sel = labels != -100
    assert torch.allclose(dense.logits[sel], sparse.logits, atol=TOL)
    assert torch.allclose(dense.loss, sparse.loss, atol=TOL)
    expected = F.cross_entropy(dense.logits[sel], labels[sel])
    assert torch.allclose(sparse.loss, expected, atol=TOL)


def test_sequence_classification_heads():
    ids = torch.randint(1, 120, (3, 25))
    mask = torch.ones_like(ids)
    mask[2, 12:] = 0
    m = _model(LongAdaptForSequenceClassification, num_labels=4)
    out = _run(m, "sdpa", input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 3, 1]))
    assert out.logits.shape == (3, 4)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits, torch.tensor([0, 3, 1])), atol=TOL)
    # cls pooling uses the first token: padding does not change it; mean pooling ignores padding
    hid = m.model(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = m.head(hid[:, 0])
    assert torch.allclose(m.classifier(pooled), out.logits, atol=TOL)
    m.config.classifier_pooling = "mean"
    out = _run(m, "sdpa", input_ids=ids, attention_mask=mask)
    mean = hid[2, :12].mean(0)
    assert torch.allclose(m.classifier(m.head(mean)), out.logits[2], atol=TOL)
    # multi-label: float targets -> BCE
    ml = _model(LongAdaptForSequenceClassification, num_labels=4, problem_type="multi_label_classification")
    y = torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    out = _run(ml, "sdpa", input_ids=ids, attention_mask=mask, labels=y)
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(out.logits, y), atol=TOL)
    # regression
    rg = _model(LongAdaptForSequenceClassification, num_labels=1)
    y = torch.tensor([0.5, 2.0, -1.0])
    out = _run(rg, "sdpa", input_ids=ids, attention_mask=mask, labels=y)
    assert torch.allclose(out.loss, F.mse_loss(out.logits.squeeze(-1), y), atol=TOL)


def test_token_classification_and_multiple_choice():
    ids = torch.randint(1, 120, (2, 15))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    labels = torch.randint(0, 5, (2, 15))
    labels[mask == 0] = -100
    tc = _model(LongAdaptForTokenClassification, num_labels=5)
    out = _run(tc, "sdpa", input_ids=ids, attention_mask=mask, labels=labels)
    assert out.logits.shape == (2, 15, 5)
    keep = labels != -100
    assert torch.allclose(out.loss, F.cross_entropy(out.logits[keep], labels[keep]), atol=TOL)

    mc = _model(LongAdaptForMultipleChoice)
    ids = torch.randint(1, 120, (2, 5, 12))
    out = _run(mc, "sdpa", input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([1, 4]))
    assert out.logits.shape == (2, 5)
    # each choice is scored independently: the score of choice 0 equals scoring it alone
    alone = _run(mc, "sdpa", input_ids=ids[:1, :1], attention_mask=torch.ones_like(ids[:1, :1])).logits
    assert torch.allclose(alone[0, 0], out.logits[0, 0], atol=TOL)


@pytest.mark.parametrize(
    "cls, auto",
    [
        (LongAdaptModel, transformers.AutoModel),
        (LongAdaptForMaskedLM, transformers.AutoModelForMaskedLM),
        (LongAdaptForSequenceClassification, transformers.AutoModelForSequenceClassification),
        (LongAdaptForTokenClassification, transformers.AutoModelForTokenClassification),
        (LongAdaptForMultipleChoice, transformers.AutoModelForMultipleChoice),
    ],
)
def test_save_load_through_auto_classes(cls, auto, tmp_path):
    m = _model(cls)
    m.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = auto.from_pretrained(tmp_path).eval()
    assert type(loaded) is cls
    ids = torch.randint(1, 120, (2, 4, 9)) if cls is LongAdaptForMultipleChoice else torch.randint(1, 120, (2, 9))
    with torch.no_grad():
        a, b = m(input_ids=ids), loaded(input_ids=ids)
    key = "last_hidden_state" if cls is LongAdaptModel else "logits"
    assert torch.equal(a[key], b[key])
    if cls is LongAdaptForMaskedLM:
        assert loaded.decoder.weight.data_ptr() == loaded.model.embeddings.tok_embeddings.weight.data_ptr()


def test_gradient_checkpointing_gives_same_gradients():
    ids = torch.randint(1, 120, (2, 40))
    labels = ids.clone()
    labels[:, ::3] = -100
    grads = []
    for ckpt in (False, True):
        m = _model(LongAdaptForMaskedLM)
        m.train()
        if ckpt:
            m.gradient_checkpointing_enable()
        m(input_ids=ids, labels=labels).loss.backward()
        grads.append(m.model.layers[0].attn.Wqkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_too_long_document_is_refused_but_packed_rows_may_exceed():
    m = _model(max_position_embeddings=64)
    with pytest.raises(ValueError, match="longer than this model allows"):
        m(input_ids=torch.randint(1, 120, (1, 65)))
    # a 100-token row of two 50-token documents is fine: the limit is per document
    docs = torch.cat([torch.ones(50), torch.full((50,), 2)]).long()[None]
    out = m(input_ids=torch.randint(1, 120, (1, 100)), document_ids=docs).last_hidden_state
    assert out.shape == (1, 100, 32)


def test_flash_backend_requires_flash_attn_and_cuda():
    m = _model()
    if attn_mod.HAS_FLASH_ATTN and torch.cuda.is_available():
        pytest.skip("flash-attn present: covered by the GPU benchmark")
    m.config.attention_backend = "flash"
    with pytest.raises(RuntimeError, match="flash"):
        m(input_ids=torch.randint(1, 120, (1, 10)))


@pytest.mark.parametrize(
    "auto",
    [transformers.AutoModelForSequenceClassification, transformers.AutoModelForTokenClassification,
     transformers.AutoModelForMultipleChoice, transformers.AutoModelForMaskedLM],
)
def test_heads_missing_from_checkpoint_are_initialised(auto, tmp_path):
    """Loading a bare encoder into a head model initialises the head (transformers 5 initialises
    missing modules one by one): finite, small, not all zero."""
    _model(LongAdaptModel).save_pretrained(tmp_path)
    m = auto.from_pretrained(tmp_path)
    heads = {n: p for n, p in m.named_parameters() if not n.startswith("model.") and n.endswith("weight") and p.dim() == 2}
    assert heads
    for name, p in heads.items():
        assert torch.isfinite(p).all(), name
        assert 0.005 < p.std().item() < 0.1, (name, p.std().item())


def test_the_backend_table_is_the_one_list_of_backends():
    """Issue #14: a backend is one entry of modeling.attention.BACKENDS; the config accepts exactly those
    (plus auto), and each names why it cannot run where it cannot."""
    from longadapt.modeling import attention as attn_mod
    from longadapt.modeling.configuration import BACKENDS as CONFIG_BACKENDS

    assert CONFIG_BACKENDS == ("auto", *attn_mod.BACKENDS)
    cpu = torch.device("cpu")
    assert attn_mod.resolve_backend("auto", cpu) == "sdpa"
    assert attn_mod.resolve_backend("eager", cpu) == "eager"
    with pytest.raises(RuntimeError, match="flash"):
        attn_mod.resolve_backend("flash", cpu)
    with pytest.raises(ValueError, match="not one of auto, eager, sdpa, flash, flex"):
        attn_mod.resolve_backend("xformers", cpu)


def test_the_core_edits_its_own_layer_types_and_rotary_bases():
    """make_long's edits are the core's methods: config and the modules' cached types change together."""
    cfg = LongAdaptConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                          intermediate_size=48, max_position_embeddings=256, local_attention=32,
                          global_attn_every_n_layers=3)
    core = LongAdaptForMaskedLM(cfg).model
    assert [layer.attn.layer_type for layer in core.layers] == cfg.layer_types
    core.set_layer_types(2, 16)
    assert cfg.layer_types == ["full_attention", "sliding_attention"] * 2 and cfg.local_attention == 16
    assert [layer.layer_type for layer in core.layers] == [layer.attn.layer_type for layer in core.layers] == cfg.layer_types
    core.set_rope_theta(160000.0)
    assert cfg.global_rope_theta == 160000.0 and core.rotary_global.theta == 160000.0
    assert core.extend_positions(512, "rope") == [] and cfg.max_position_embeddings == 512


@pytest.mark.parametrize("dtype, tol", [(torch.float32, TOL), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("with_globals", [False, True])
def test_flex_matches_eager_on_packed_rows(dtype, tol, with_globals):
    """FlexAttention with its block mask (documents, the window, global tokens) gives eager's outputs on
    packed rows of several documents, global and local layers, in fp32 and bf16 (forward: torch 2.13 has
    no FlexAttention backward on the CPU; the gradient test below covers the fallback)."""
    kw = dict(global_token_projections=True) if with_globals else {}
    m = _model(**kw).to(dtype)
    ids = torch.randint(1, 120, (2, 90))
    mask = torch.ones_like(ids)
    mask[1, 70:] = 0
    docs = torch.ones_like(ids)
    docs[0, 30:] = 2
    docs[0, 65:] = 3
    extra = {}
    if with_globals:
        g = torch.zeros_like(ids)
        g[0, [0, 30, 40, 65]] = 1  # the first token of each document, and one more
        g[1, 0] = 1
        extra["global_attention_mask"] = g
    a = _run(m, "eager", input_ids=ids, attention_mask=mask, document_ids=docs, **extra).last_hidden_state
    b = _run(m, "flex", input_ids=ids, attention_mask=mask, document_ids=docs, **extra).last_hidden_state
    assert (a.float() - b.float())[mask.bool()].abs().max() <= tol
    assert (b[~mask.bool()] == 0).all()


def test_flex_with_gradients_on_the_cpu_falls_back_and_says_why(caplog):
    """No FlexAttention backward on the CPU (torch's limit): with gradients, the layers run on the SDPA block
    path, the log says why once, and the gradients equal eager's."""
    attn_mod._FLEX_FALLBACK_LOGGED.clear()
    ids = torch.randint(1, 120, (2, 40))
    grads = {}
    for backend in ("eager", "flex"):
        m = _model(LongAdaptForMaskedLM)
        m.config.attention_backend = backend
        labels = ids.clone()
        with caplog.at_level("INFO", logger="longadapt.modeling.attention"):
            m(input_ids=ids, labels=labels).loss.backward()
        grads[backend] = torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None])
    assert torch.allclose(grads["eager"], grads["flex"], atol=1e-5)
    assert caplog.text.count("FlexAttention does not support backward on CPU") == 1
