"""Numeric precision of a command: which one runs, why, and how it is applied (one home for every command).

``auto | fp32 | bf16 | int8``:

- ``auto`` picks bf16 where the device computes it natively (a CUDA GPU that supports it; a CPU with
  AVX512-BF16 or AMX, read from the processor's flags) and fp32 elsewhere. The choice and its reason are
  logged and recorded.
- ``bf16``: autocast to bfloat16 (weights stay fp32; matrix products run in bf16). On a CPU without native
  bf16 it still runs, emulated and slower, with a warning that says so.
- ``int8``: torch's dynamic int8 quantization of the linear layers (weights int8 per output channel,
  activations quantized on the fly), for inference on the CPU only: refused for training and on CUDA. It
  moves scores more than bf16 does (docs/benchmarks.md), so ``auto`` never picks it.

Mixed precision never silently changes what a stored run means: the precision that ran is part of every
fingerprint that decides reuse (evaluate's ``training.mixed_precision``, predict's folder header).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "int8")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the instruction sets that compute bf16 natively, best first
# linear layers whose weights the model reads directly (F.linear on slices, tied or chunked heads): a
# dynamically quantized module has no plain weight tensor, so these stay fp32
INT8_KEEP_FP32 = ("Wqkv_global", "decoder")


@dataclass(frozen=True)
class Precision:
    """The precision a command runs in (never ``auto``) and why."""

    name: str  # fp32 | bf16 | int8
    reason: str
    requested: str = "fp32"

    def to_json(self) -> dict[str, str]:
        return {"used": self.name, "requested": self.requested, "reason": self.reason}

    @property
    def mixed_precision(self) -> str:
        """accelerate's ``mixed_precision`` for this precision (int8 is applied to the model instead)."""
        return "bf16" if self.name == "bf16" else "no"


def cpu_bf16_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> list[str]:
    """The native-bf16 instruction sets this processor announces (``avx512_bf16``, ``amx_bf16``); empty where
    it has none or the flags cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [f for f in CPU_BF16_FLAGS if f in flags]


def _cuda_bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve(requested: str, device: str, *, training: bool = False, what: str = "--precision") -> Precision:
    """The precision to run for ``requested`` on ``device`` (``cpu`` or ``cuda``); ``training``: the command
    trains (int8 is refused). Errors name the option (``what``)."""
    if requested not in PRECISIONS:
        raise LongAdaptError(f"{what} {requested!r}: write one of {', '.join(PRECISIONS)}")
    if requested == "int8":
        if training:
            raise LongAdaptError(f"{what} int8: int8 is dynamic quantization for inference (predict) and cannot "
                                 "train; fine-tune in fp32 or bf16, then predict the kept model with --precision int8")
        if device != "cpu":
            raise LongAdaptError(f"{what} int8: torch's dynamic int8 quantization runs on the CPU only; give "
                                 "--device cpu, or use bf16 on the GPU")
        return Precision("int8", "requested: dynamic int8 quantization of the linear layers (CPU)", requested)
    if device == "cuda":
        native = _cuda_bf16()
        if requested == "auto":
            return Precision("bf16" if native else "fp32", "this GPU computes bf16 natively" if native
                             else "this GPU has no native bf16", requested)
        if requested == "bf16" and not native:
            logger.warning("%s bf16: this GPU has no native bf16; it runs emulated, slower than fp32", what)
        return Precision(requested, "requested", requested)
    flags = cpu_bf16_flags()
    if requested == "auto":
        if flags:
            return Precision("bf16", f"this CPU computes bf16 natively ({', '.join(flags)})", requested)
        return Precision("fp32", "this CPU has no native bf16 (no AVX512-BF16 or AMX)", requested)
    if requested == "bf16" and not flags:
        logger.warning("%s bf16: this CPU has no native bf16 instructions (AVX512-BF16 or AMX); bf16 is emulated "
                       "and typically 2-4x slower than fp32 here. Use fp32 (or int8 for inference)", what)
        return Precision("bf16", "requested (emulated: no AVX512-BF16 or AMX on this CPU)", requested)
    return Precision(requested, f"requested ({', '.join(flags)})" if requested == "bf16" else "requested", requested)


def record(mixed_precision: str, device: str) -> dict[str, Any]:
    """What a training run records of its precision: the one used and what the device computes natively."""
    used = {"no": "fp32"}.get(mixed_precision, mixed_precision)
    if device.startswith("cuda"):
        return {"used": used, "device": "cuda", "native_bf16": _cuda_bf16()}
    flags = cpu_bf16_flags()
    return {"used": used, "device": "cpu", "native_bf16": bool(flags), "cpu_bf16_flags": flags}


def autocast(precision: Precision, device: str) -> Any:
    """The forward-pass context of ``precision``: bf16 autocast, or nothing."""
    if precision.name != "bf16":
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


def quantize_for_inference(model: Any, precision: Precision, where: str = "model") -> Any:
    """``model`` as it runs in ``precision``: int8 replaces its linear layers (except ``INT8_KEEP_FP32``) by
    dynamically quantized ones; other precisions return it unchanged. Refuses a model with nothing to quantize."""
    if precision.name != "int8":
        return model
    import torch

    names = {n for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] not in INT8_KEEP_FP32}
    if not names:
        raise LongAdaptError(f"{where}: --precision int8 quantizes linear layers, and this model has none that can be "
                             "quantized; use fp32 or bf16")
    # torch's own dynamic quantization (no new dependency). torch 2.10+ marks torch.ao.quantization deprecated in
    # favour of torchao, which is not a dependency of longadapt: the warnings are silenced here, and this is the
    # one place to switch when torch removes it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # per output channel: on a fine-tuned MiniLM (QUAERO EMEA) per-tensor weights cost 4.6 F1 points,
        # per-channel 0.8 (docs/benchmarks.md)
        from torch.ao.quantization import per_channel_dynamic_qconfig

        quantized = torch.ao.quantization.quantize_dynamic(model.eval(), dict.fromkeys(names, per_channel_dynamic_qconfig),
                                                           dtype=torch.qint8)
    logger.info("%s: %d linear layers quantized to int8 (dynamic), %s kept in fp32", where, len(names),
                ", ".join(INT8_KEEP_FP32))
    return quantized
