"""``continue``: an English (clinical) long model further pretrained on the target language, with a
vocabulary arm (:func:`longadapt.recipes.vocab_transfer.transfer_vocabulary`): ``keep`` the old
tokenizer, ``replace`` it by a tokenizer trained on the corpus (rows transferred), or ``extend`` it
with whole target-language words; after replace/extend the decoder bias is re-fitted to the new
tokenizer's token frequencies (:mod:`longadapt.recipes.calibration`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.recipes.strategies import Strategy, register
from longadapt.recipes.strategies.common import calibrate_new_head, options_texts
from longadapt.recipes.strategies.convert import ConvertOptions, base_tokenizer, fill_length, make_model_long

@dataclass
class ContinueOptions:
    """The ``continue:`` section of a recipe."""

    # keep | replace | extend (longadapt.recipes.vocab_transfer.VOCAB_ARMS)
    vocab_arm: str = "keep"
    # replace: the new tokenizer (TokenizerTrainingConfig fields)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    # extend: options of longadapt.tokenizers.surgery's whole-word extension
    extend: dict[str, Any] = field(default_factory=dict)
    # replace/extend, and a newly initialised MLM head (a base without one): fit the decoder bias to the
    # tokenizer's token frequencies on the corpus texts (longadapt.recipes.calibration); ``calibration``
    # holds options of calibrate_output_bias
    calibrate_bias: bool = True
    calibration: dict[str, Any] = field(default_factory=dict)
    # how to make a base that is shorter than the phases long (its max_length: the longest phase's)
    make_long: ConvertOptions | None = None


def check(cfg, where: str) -> None:
    from longadapt.recipes.vocab_transfer import ARMS

    if cfg.options.vocab_arm not in ARMS:
        raise LongAdaptError(f"{where}: continue.vocab_arm must be {', '.join(ARMS[:-1])} or {ARMS[-1]}, not "
                             f"{cfg.options.vocab_arm!r}")
    fill_length(cfg.options.make_long, cfg)


def build(cfg, corpus: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    from longadapt.interop import import_checkpoint
    from longadapt.recipes.vocab_transfer import VOCAB_ARMS, transfer_vocabulary

    o: ContinueOptions = cfg.options
    imported = import_checkpoint(cfg.base)
    model, notes = imported.model, list(imported.notes)
    tok = base_tokenizer(cfg)
    if o.make_long is not None:
        notes += make_model_long(model, o.make_long)
    need = max(p.max_length for p in cfg.phases)
    if model.config.max_position_embeddings < need:
        raise LongAdaptError(
            f"the base model accepts {model.config.max_position_embeddings} tokens but a phase trains at {need}; "
            f"add continue.make_long (e.g. continue.make_long.positions=copy: the model is made long to the "
            f"longest phase, {need} tokens) or shorten the phases"
        )
    arm = VOCAB_ARMS[o.vocab_arm]
    texts: list[str] = []
    if arm.options_section is None:
        result = transfer_vocabulary(model, tok, arm.name)
    else:  # the arm's section (continue.tokenizer, continue.extend) with the corpus texts it reads
        opts, texts = options_texts(getattr(o, arm.options_section), cfg, corpus)
        if arm.new_tokenizer:
            from longadapt.tokenizers.training import train_tokenizer

            result = transfer_vocabulary(model, tok, arm.name, new_tokenizer=train_tokenizer(texts, cfg.language, **opts))
        else:
            result = transfer_vocabulary(model, tok, arm.name, corpus=texts, language=cfg.language, **opts)
    result.tokenizer.model_max_length = model.config.max_position_embeddings
    info = {"source_type": imported.source_type, "mlm_head": imported.mlm_head, "notes": notes,
            "vocab_arm": o.vocab_arm,
            "transfer": result.report.to_dict() if hasattr(result.report, "to_dict") else None}
    if o.calibrate_bias and (arm.edits or imported.mlm_head == "initialised"):
        # a new MLM head (the base shipped none) starts at the corpus's token frequencies too: at zero bias
        # its first steps push every token's representation towards the frequent tokens' direction

        info["calibration"] = calibrate_new_head(result.model, result.tokenizer, cfg, corpus, o.calibration, texts,
                                                 max_documents=o.tokenizer.get("max_documents", 400))
    if info["transfer"]:
        info["transfer"].pop("sources", None)  # one entry per row: too long for run.json
    return result.model, result.tokenizer, info


def tokenizer_line(o: ContinueOptions) -> str:
    from longadapt.recipes.vocab_transfer import VOCAB_ARMS

    return VOCAB_ARMS[o.vocab_arm].card


def smoke(d: dict[str, Any], steps: int, max_length: int, documents: int) -> None:
    cont = d.setdefault("continue", {})
    if (cont.get("make_long") or {}).get("max_length") is not None:
        cont["make_long"]["max_length"] = max_length
    cont["tokenizer"] = {"vocab_size": 1500, "max_documents": max(20, documents // 2)}
    cont["extend"] = {"max_documents": max(20, documents // 2), "max_words": 100, "min_frequency": 3}


STRATEGY = register(Strategy(name="continue", options=ContinueOptions, build=build, needs_base=True, check=check,
                             tokenizer_line=tokenizer_line, smoke=smoke,
                             summary="an English long model further pretrained on the target language, "
                                     "with a vocabulary arm (keep / replace / extend)"))
