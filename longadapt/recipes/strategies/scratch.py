"""``scratch``: a tokenizer trained on the corpus and the core initialised randomly (its size in
``scratch.model``); the recipe's phases train it, typically a short-context phase then a
context-extension phase (longer rows, a larger rotary base for the global layers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.recipes.strategies import Strategy, register
from longadapt.recipes.strategies.common import options_texts, recipe_seed


@dataclass
class ScratchOptions:
    # LongAdaptConfig fields
    model: dict[str, Any] = field(default_factory=dict)
    # TokenizerTrainingConfig fields
    tokenizer: dict[str, Any] = field(default_factory=dict)


def build(cfg, corpus: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    import torch

    from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
    from longadapt.tokenizers.conventions import round_up
    from longadapt.tokenizers.training import train_tokenizer

    o: ScratchOptions = cfg.options
    opts, texts = options_texts(o.tokenizer, cfg, corpus)
    tok = train_tokenizer(texts, cfg.language, **opts)
    model_kw = dict(o.model)
    model_kw.setdefault("max_position_embeddings", max(p.max_length for p in cfg.phases))
    model_kw["vocab_size"] = round_up(len(tok))
    for role in ("pad", "cls", "sep", "bos", "eos"):
        tid = getattr(tok, f"{role}_token_id", None)
        if tid is not None:
            model_kw.setdefault(f"{role}_token_id", tid)
    model_kw.setdefault("bos_token_id", tok.cls_token_id)
    model_kw.setdefault("eos_token_id", tok.sep_token_id)
    try:
        mcfg = LongAdaptConfig(**model_kw)
    except Exception as exc:  # strict dataclass validation
        raise LongAdaptError(f"scratch.model: {exc}") from exc
    torch.manual_seed(recipe_seed(cfg))
    model = LongAdaptForMaskedLM(mcfg)
    tok.model_max_length = mcfg.max_position_embeddings
    return model, tok, {"notes": [f"tokenizer trained on {len(texts)} documents, {len(tok)} entries"]}


def smoke(d: dict[str, Any], steps: int, max_length: int, documents: int) -> None:
    scratch = d.setdefault("scratch", {})
    scratch["tokenizer"] = {"vocab_size": 1500, "max_documents": max(20, documents // 2)}
    scratch.setdefault("model", {}).update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
    d["phases"] = [dict(name="short", max_length=256, steps=steps),
                   dict(name="extend", max_length=max_length, steps=steps, global_rope_theta=160000.0)]


STRATEGY = register(Strategy(name="scratch", options=ScratchOptions, build=build, smoke=smoke,
                             tokenizer_line=lambda o: "trained on the corpus by longadapt",
                             summary="a tokenizer trained on the corpus and a randomly initialised core"))
