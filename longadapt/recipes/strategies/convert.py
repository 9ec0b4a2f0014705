"""``convert``: a 512-token BERT/RoBERTa/CamemBERT imported into the core and made long (positions tiled
or rotary, local layers, optional global first token); the recipe's phases then train it on long
documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longadapt.recipes.strategies import Strategy, register


@dataclass
class ConvertOptions:
    """How ``convert`` (and ``continue`` on a short base, ``continue.make_long``) makes a model long."""

    max_length: int = 4096
    local_window: int = 512
    global_every: int = 3
    positions: str = "copy"  # copy (tile learned positions) | rope
    global_first_token: bool = False
    global_rope_theta: float | None = None
    local_rope_theta: float | None = None


@dataclass
class ConvertRecipeOptions(ConvertOptions):
    """The ``convert:`` section: how to make the model long, and (``calibrate_bias``) whether an MLM head
    that the base does not ship, initialised here, starts at the corpus token frequencies
    (:func:`longadapt.recipes.strategies.common.calibrate_new_head`)."""

    calibrate_bias: bool = True
    calibration: dict[str, Any] = field(default_factory=dict)  # options of calibrate_output_bias


def make_model_long(model, o: ConvertOptions) -> list[str]:
    """Apply ``o`` to an imported core model; the notes say what changed."""
    from longadapt.interop import make_long

    return make_long(model, o.max_length, local_window=o.local_window, global_every=o.global_every,
                     positions=o.positions, global_rope_theta=o.global_rope_theta,
                     local_rope_theta=o.local_rope_theta, global_first_token=o.global_first_token)


def base_tokenizer(cfg):
    from longadapt.sources import resolve_model_source
    from longadapt.tokenizers.loading import load_tokenizer

    return load_tokenizer(resolve_model_source(cfg.base, "base"), require_fast=False, where="base")


def build(cfg, corpus: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    from longadapt.interop import import_checkpoint

    from longadapt.recipes.strategies.common import calibrate_new_head

    imported = import_checkpoint(cfg.base)
    o: ConvertRecipeOptions = cfg.options
    notes = imported.notes + make_model_long(imported.model, o)
    tok = base_tokenizer(cfg)
    tok.model_max_length = o.max_length
    info = {"source_type": imported.source_type, "mlm_head": imported.mlm_head, "notes": notes}
    if o.calibrate_bias and imported.mlm_head == "initialised":
        info["calibration"] = calibrate_new_head(imported.model, tok, cfg, corpus, o.calibration)
    return imported.model, tok, info


def smoke(d: dict[str, Any], steps: int, max_length: int, documents: int) -> None:
    d.setdefault("convert", {})["max_length"] = max_length


STRATEGY = register(Strategy(name="convert", options=ConvertRecipeOptions, build=build, needs_base=True, smoke=smoke,
                             summary="a 512-token BERT made long, then masked-LM phases on long documents"))
