"""Import/export equivalence with the transformers reference implementations."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import transformers

import longadapt  # noqa: F401  (registers the Auto classes)
import longadapt.cli
from longadapt.errors import LongAdaptError
from longadapt.interop import export_modernbert, import_checkpoint, make_long
from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM

TOL = 1e-4


def _batch(vocab: int, lengths: list[int], seed: int = 0, start: int = 3):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    ids = torch.randint(start, vocab, (len(lengths), L), generator=g)
    mask = torch.zeros(len(lengths), L, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = ids.masked_fill(mask == 0, 1)
    return ids, mask


def _real_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    keep = mask.bool()
    return (a[keep] - b[keep]).abs().max().item()


BERT_LIKE = {
    "bert": (transformers.BertConfig, transformers.BertForMaskedLM),
    "roberta": (transformers.RobertaConfig, transformers.RobertaForMaskedLM),
    "camembert": (transformers.CamembertConfig, transformers.CamembertForMaskedLM),
    "xlm-roberta": (transformers.XLMRobertaConfig, transformers.XLMRobertaForMaskedLM),
}


@pytest.mark.parametrize("family", list(BERT_LIKE))
def test_bert_family_import_equals_transformers(family, tmp_path):
    cfg_cls, model_cls = BERT_LIKE[family]
    offset = 0 if family == "bert" else 2
    cfg = cfg_cls(
        vocab_size=97, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
        max_position_embeddings=64 + offset, type_vocab_size=2 if family == "bert" else 1, pad_token_id=1,
    )
    torch.manual_seed(1)
    ref = model_cls(cfg).eval()
    ref.save_pretrained(tmp_path / family)
    core = import_checkpoint(tmp_path / family).model.eval()
    assert core.config.max_position_embeddings == 64

    ids, mask = _batch(97, [37, 20, 5])
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        c = core(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    assert _real_diff(r.hidden_states[-1], c.hidden_states[-1], mask) <= TOL
    assert _real_diff(r.logits, c.logits, mask) <= TOL  # the MLM head too
    # token types (BERT only has two)
    if family == "bert":
        tt = torch.zeros_like(ids)
        tt[:, 10:] = 1
        with torch.no_grad():
            r = ref.bert(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
            c = core.model(input_ids=ids, attention_mask=mask, token_type_ids=tt).last_hidden_state
        assert _real_diff(r, c, mask) <= TOL


def _tiny_modernbert(tmp_path, name="mb", **kw):
    cfg = transformers.ModernBertConfig(
        vocab_size=101, hidden_size=32, intermediate_size=48, num_hidden_layers=5, num_attention_heads=4,
        max_position_embeddings=128, local_attention=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        cls_token_id=1, sep_token_id=2, global_attn_every_n_layers=3, **kw,
    )
    torch.manual_seed(2)
    ref = transformers.ModernBertForMaskedLM(cfg).eval()
    ref.save_pretrained(tmp_path / name)
    return ref


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_modernbert_import_equals_transformers(impl, tmp_path):
    ref = _tiny_modernbert(tmp_path)
    ref = transformers.ModernBertForMaskedLM.from_pretrained(tmp_path / "mb", attn_implementation=impl).eval()
    core = import_checkpoint(tmp_path / "mb").model.eval()
    assert core.config.layer_types == list(ref.config.layer_types)
    ids, mask = _batch(101, [37, 23, 9])  # lengths not multiples of the window
    for backend in ("eager", "sdpa"):
        core.config.attention_backend = backend
        with torch.no_grad():
            r = ref(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            c = core(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        assert _real_diff(r.hidden_states[-1], c.hidden_states[-1], mask) <= TOL, backend
        assert _real_diff(r.logits, c.logits, mask) <= TOL, backend


def test_real_minilm_import_equals_transformers(minilm_dir):
    ref = transformers.AutoModel.from_pretrained(minilm_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    core = import_checkpoint(minilm_dir).model.eval()
    texts = [
        "Le patient présente une dyspnée d'effort depuis trois semaines, sans douleur thoracique.",
        "Échographie cardiaque : FEVG à 45 %.",
        "Der Patient wurde mit 5 mg Bisoprolol entlassen.",
    ]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        r = ref(**enc).last_hidden_state
        c = core.model(**enc).last_hidden_state
    assert _real_diff(r, c, enc["attention_mask"]) <= TOL


def test_minilm_long_conversion_keeps_short_inputs_close(minilm_dir):
    """Tiled positions: with a window wider than the text, a short input is computed exactly as before."""
    ref = import_checkpoint(minilm_dir).model.eval()
    long = import_checkpoint(minilm_dir).model.eval()
    assert long.config.attention_dropout == 0.1
    notes = make_long(long, 2048, local_attention=512, global_attn_every_n_layers=3, positions="copy")
    assert any("tiled 4x" in n for n in notes)
    assert long.config.attention_dropout == 0.0  # dropout on probabilities would force SDPA's quadratic kernel
    pos = long.model.embeddings.position_embeddings.weight
    assert pos.shape[0] == 2048 and torch.equal(pos[512:1024], pos[:512])
    ids, mask = _batch(30522, [100, 60], start=1000)
    with torch.no_grad():
        a = ref.model(input_ids=ids, attention_mask=mask).last_hidden_state
        b = long.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert _real_diff(a, b, mask) <= TOL
    # and a 1,500-token input now runs (it could not before)
    ids = torch.randint(1000, 30000, (1, 1500))
    with torch.no_grad():
        out = long.model(input_ids=ids).last_hidden_state
    assert out.shape == (1, 1500, 384) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="longer than this model allows"):
        ref.model(input_ids=ids)


def _plain_transformers_outputs(path, ids, mask) -> torch.Tensor:
    """Load and run `path` in a fresh interpreter that never imports longadapt."""
    code = (
        "import sys, torch, transformers, json\n"
        "assert 'longadapt' not in sys.modules\n"
        f"m = transformers.AutoModelForMaskedLM.from_pretrained({str(path)!r}).eval()\n"
        "ids = torch.tensor(json.loads(sys.argv[1])); mask = torch.tensor(json.loads(sys.argv[2]))\n"
        "with torch.no_grad(): out = m(input_ids=ids, attention_mask=mask, output_hidden_states=True)\n"
        "print(type(m).__name__); print(json.dumps(out.hidden_states[-1].tolist()))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, json.dumps(ids.tolist()), json.dumps(mask.tolist())],
        capture_output=True, text=True, check=True,
    )
    name, values = res.stdout.strip().splitlines()[-2:]
    assert name == "ModernBertForMaskedLM"
    return torch.tensor(json.loads(values))


def test_export_modernbert_round_trip(tmp_path):
    _tiny_modernbert(tmp_path)
    core = import_checkpoint(tmp_path / "mb").model.eval()
    core.save_pretrained(tmp_path / "core")
    rc = longadapt.cli.main(["export", str(tmp_path / "core"), str(tmp_path / "exported"), "--format", "modernbert"])
    assert rc == 0
    ids, mask = _batch(101, [40, 17])
    with torch.no_grad():
        c = core.model(input_ids=ids, attention_mask=mask).last_hidden_state
    plain = _plain_transformers_outputs(tmp_path / "exported", ids, mask)
    assert _real_diff(c, plain, mask) <= TOL
    # and back: importing the export gives the same core outputs
    back = import_checkpoint(tmp_path / "exported").model.eval()
    with torch.no_grad():
        b = back.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert _real_diff(c, b, mask) <= TOL


def test_export_scratch_core_with_rope_thetas():
    cfg = LongAdaptConfig(vocab_size=64, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                          intermediate_size=24, local_attention=16, global_rope_theta=80000.0,
                          max_position_embeddings=256, global_attn_every_n_layers=2)
    torch.manual_seed(3)
    core = LongAdaptForMaskedLM(cfg).eval()
    hf = export_modernbert(core).eval()
    ids, mask = _batch(64, [50, 31])
    with torch.no_grad():
        a = core(input_ids=ids, attention_mask=mask).logits
        b = hf(input_ids=ids, attention_mask=mask).logits
    assert _real_diff(a, b, mask) <= TOL


def test_export_refuses_bert_style_core(minilm_dir):
    core = import_checkpoint(minilm_dir).model
    with pytest.raises(LongAdaptError, match="cannot be exported as ModernBERT.*norm_position"):
        export_modernbert(core)


def test_conversion_errors(tmp_path, minilm_dir):
    _tiny_modernbert(tmp_path)
    rope_model = import_checkpoint(tmp_path / "mb").model
    with pytest.raises(LongAdaptError, match="rotary positions; use --positions rope"):
        make_long(rope_model, 4096, positions="copy")
    bert = import_checkpoint(minilm_dir).model
    with pytest.raises(LongAdaptError, match="must be a multiple of 512"):
        make_long(bert, 3000, positions="copy")
    with pytest.raises(LongAdaptError, match="even number"):
        make_long(bert, 4096, local_attention=511)
    # an unsupported architecture
    (tmp_path / "gpt2").mkdir()
    transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(LongAdaptError, match="model_type 'gpt2' cannot be converted"):
        import_checkpoint(tmp_path / "gpt2")
    with pytest.raises(LongAdaptError, match="does not exist"):
        import_checkpoint(tmp_path / "nope" / "model")


def test_rope_conversion_of_bert(minilm_dir):
    core = import_checkpoint(minilm_dir).model.eval()
    make_long(core, 8192, local_attention=256, global_attn_every_n_layers=0, positions="rope")
    assert core.config.position_embedding_type == "rope"
    assert core.model.embeddings.position_embeddings is None
    assert set(core.config.layer_types) == {"sliding_attention"}
    ids = torch.randint(1000, 30000, (1, 700))
    with torch.no_grad():
        assert torch.isfinite(core.model(input_ids=ids).last_hidden_state).all()


def test_cli_import_minilm_loads_with_auto_model(tmp_path, minilm_dir):
    out = tmp_path / "minilm-4096"
    res = subprocess.run(
        [sys.executable, "-m", "longadapt", "import", str(minilm_dir), str(out), "--max-length", "4096",
         "--local-attention", "512", "--global-attn-every-n-layers", "3", "--positions", "copy"],
        capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["source_type"] == "bert" and run["mlm_head"] == "initialised"
    code = (
        "import longadapt, transformers; m = transformers.AutoModel.from_pretrained(%r); "
        "t = transformers.AutoTokenizer.from_pretrained(%r); print(type(m).__name__, m.config.max_position_embeddings, t.model_max_length)"
        % (str(out), str(out))
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["LongAdaptModel", "4096", "4096"]
    # a bad source fails with a clear message and no traceback
    res = subprocess.run([sys.executable, "-m", "longadapt", "import", str(tmp_path / "missing"), str(tmp_path / "o")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def test_roberta_lm_head_uses_gelu_whatever_hidden_act(tmp_path):
    """RoBERTa-style LM heads apply GELU even when the layers use another activation (BERT's follow hidden_act)."""
    cfg = transformers.RobertaConfig(vocab_size=97, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                     intermediate_size=40, max_position_embeddings=66, hidden_act="relu", pad_token_id=1)
    torch.manual_seed(4)
    ref = transformers.RobertaForMaskedLM(cfg).eval()
    ref.save_pretrained(tmp_path / "roberta-relu")
    core = import_checkpoint(tmp_path / "roberta-relu").model.eval()
    assert core.config.hidden_activation == "relu" and core.config.head_activation == "gelu"
    ids, mask = _batch(97, [30, 12])
    with torch.no_grad():
        r = ref(input_ids=ids, attention_mask=mask).logits
        c = core(input_ids=ids, attention_mask=mask).logits
    assert _real_diff(r, c, mask) <= TOL
