"""--precision: auto picks by the processor's instruction set (detection faked here); int8 is refused for
training and off the CPU with the reason; bf16 without native support warns and runs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from longadapt import precision as P
from longadapt.errors import LongAdaptError

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu vme sse sse2 avx2 avx512f avx512bw {extra} rdpid
"""


def test_the_native_bf16_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    with_bf16 = tmp_path / "a"
    with_bf16.write_text(CPUINFO.format(extra="avx512_bf16 amx_tile amx_bf16") * 2)
    without = tmp_path / "b"
    without.write_text(CPUINFO.format(extra="avx512_vnni"))
    assert P.cpu_bf16_flags(with_bf16) == ["amx_bf16", "avx512_bf16"]
    assert P.cpu_bf16_flags(without) == []
    assert P.cpu_bf16_flags(tmp_path / "missing") == []  # not Linux: no native bf16 assumed


@pytest.mark.parametrize("flags, expected", [(["avx512_bf16"], "bf16"), (["amx_bf16"], "bf16"), ([], "fp32")])
def test_auto_picks_by_the_detected_instruction_set(monkeypatch, flags, expected) -> None:
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda *a: flags)
    chosen = P.resolve("auto", "cpu")
    assert chosen.name == expected and chosen.requested == "auto"
    assert (flags[0] in chosen.reason) if flags else ("no native bf16" in chosen.reason)
    assert chosen.mixed_precision == ("bf16" if flags else "no")
    assert P.resolve("auto", "cpu", training=True).name == expected  # the engine and evaluate resolve alike


def test_int8_is_inference_on_the_cpu_only() -> None:
    with pytest.raises(LongAdaptError, match="int8 is dynamic quantization for inference"):
        P.resolve("int8", "cpu", training=True)
    with pytest.raises(LongAdaptError, match="runs on the CPU only"):
        P.resolve("int8", "cuda")
    assert P.resolve("int8", "cpu").name == "int8"
    with pytest.raises(LongAdaptError, match="write one of auto, fp32, bf16, int8"):
        P.resolve("fp16", "cpu")


def test_bf16_without_native_support_warns_and_runs(monkeypatch, caplog) -> None:
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda *a: [])
    with caplog.at_level(logging.WARNING, logger="longadapt.precision"):
        chosen = P.resolve("bf16", "cpu")
    assert chosen.name == "bf16" and "emulated" in chosen.reason
    assert "AVX512-BF16 or AMX" in caplog.text and "slower" in caplog.text


@pytest.mark.parametrize("head", ["mlm", "tokens"])
def test_int8_quantizes_the_core_and_keeps_the_directly_read_layers(head: str) -> None:
    """The core with Longformer-style global projections (read as weight slices) and an MLM decoder (read as
    a weight by the chunked loss): those stay fp32, every other linear layer is int8, and the outputs stay close."""
    import torch

    from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM, LongAdaptForTokenClassification

    torch.manual_seed(0)
    cfg = LongAdaptConfig(vocab_size=300, hidden_size=64, num_hidden_layers=3, num_attention_heads=2,
                          intermediate_size=96, local_attention=16, global_attn_every_n_layers=3,
                          max_position_embeddings=256, global_token_projections=True, global_first_token=True,
                          num_labels=5)
    model = (LongAdaptForMaskedLM if head == "mlm" else LongAdaptForTokenClassification)(cfg).eval()
    ids = torch.randint(5, 300, (2, 80))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        q = P.quantize_for_inference(model, P.resolve("int8", "cpu"))
        out = q(input_ids=ids).logits
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    names = {n.rsplit(".", 1)[-1] for n, m in q.named_modules() if isinstance(m, dynamic)}
    kept = {n.rsplit(".", 1)[-1] for n, m in q.named_modules() if type(m) is torch.nn.Linear}
    assert {"Wqkv", "Wo", "Wi"} <= names and kept <= set(P.INT8_KEEP_FP32) and "Wqkv_global" in kept
    assert head != "mlm" or "decoder" in kept
    # int8 weights and activations: close to fp32, not equal (random weights, so no task tolerance applies)
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.05
    with pytest.raises(LongAdaptError, match="none that can be quantized"):
        P.quantize_for_inference(torch.nn.Sequential(torch.nn.ReLU()), P.resolve("int8", "cpu"))
