"""``convert``: a 512-token BERT/RoBERTa/CamemBERT imported into the core and made long (positions tiled
or rotary, local layers, optional global first token); the recipe's phases then train it on long
documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.recipes.strategies import Strategy, register


@dataclass
class ConvertOptions:
    """How ``convert`` (and ``continue`` on a short base, ``continue.make_long``) makes a model long. The knobs
    carry the model config's names (ModernBERT's): ``local_attention``, ``global_attn_every_n_layers``."""

    # the old spellings, read with a warning (longadapt.config.from_dict)
    _renamed = {"local_window": "local_attention", "global_every": "global_attn_every_n_layers"}

    # the new maximum length in tokens; in a recipe, null (the default) is the longest phase's max_length,
    # so that the length is stated once
    max_length: int | None = None
    # the window of the local layers in tokens (a token sees local_attention // 2 on each side)
    local_attention: int = 512
    # layer i is global when i % global_attn_every_n_layers == 0; 0 makes every layer local
    global_attn_every_n_layers: int = 3
    # copy: tile the learned positions (Longformer-style) | rope: rotary positions instead
    positions: str = "copy"
    # Longformer global tokens in the local layers (the first token of each document)
    global_first_token: bool = False
    # the rotary bases of the global and local layers (positions: rope); None keeps the model's
    global_rope_theta: float | None = None
    local_rope_theta: float | None = None


@dataclass
class ConvertRecipeOptions(ConvertOptions):
    """The ``convert:`` section: how to make the model long, and (``calibrate_bias``) whether an MLM head
    that the base does not ship, initialised here, starts at the corpus token frequencies
    (:func:`longadapt.recipes.strategies.common.calibrate_new_head`)."""

    calibrate_bias: bool = True
    # options of longadapt.recipes.calibration.calibrate_output_bias
    calibration: dict[str, Any] = field(default_factory=dict)


def make_model_long(model, o: ConvertOptions) -> list[str]:
    """Apply ``o`` to an imported core model; the notes say what changed."""
    from longadapt.interop import make_long

    if o.max_length is None:
        raise LongAdaptError("make_long needs max_length (the new length in tokens)")
    return make_long(model, o.max_length, local_attention=o.local_attention,
                     global_attn_every_n_layers=o.global_attn_every_n_layers, positions=o.positions, global_rope_theta=o.global_rope_theta,
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
    if (d.get("convert") or {}).get("max_length") is not None:
        d["convert"]["max_length"] = max_length


def fill_length(options: ConvertOptions | None, cfg) -> None:
    """A recipe states its length once, in its phases: ``max_length`` left null becomes the longest phase's."""
    if options is not None and options.max_length is None:
        options.max_length = max(p.max_length for p in cfg.phases)


def check(cfg, where: str) -> None:
    fill_length(cfg.options, cfg)


STRATEGY = register(Strategy(name="convert", options=ConvertRecipeOptions, build=build, needs_base=True, smoke=smoke,
                             check=check,
                             summary="a 512-token BERT made long, then masked-LM phases on long documents"))
