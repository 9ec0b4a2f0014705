"""The three adaptation strategies as recipes: build a model and a tokenizer, then train in phases.

* ``convert``: a 512-token BERT/RoBERTa/CamemBERT is imported into the core and made long (positions
  tiled or rotary, local layers, optional global first token), then a masked-LM phase on long documents.
* ``continue``: an English (clinical) long model is further pretrained on the target language, with
  a vocabulary arm: ``keep`` the old tokenizer, ``replace`` it by a tokenizer trained on the corpus
  (rows transferred), or ``extend`` it with whole target-language words.
* ``scratch``: a tokenizer is trained on the corpus, the core is initialised randomly, and trained in
  a short-context phase then a context-extension phase (longer rows, larger rotary base for globals).

Every strategy trains with the same engine (:func:`longadapt.training.train`) and reports validation
bits per byte on the same held-out documents (the split is a hash of each document's text), so that
strategies with different tokenizers compare on the same footing.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import from_dict, to_dict
from longadapt.errors import LongAdaptError
from longadapt.io import (
    WRITER_MARKER,
    atomic_write_json,
    atomic_write_text,
    clean_stale_in,
    temporary_dir,
    umask_modes,
)
from longadapt.sources import resolve_model_source
from longadapt.tokenizers.loading import load_tokenizer

logger = logging.getLogger(__name__)

STRATEGIES = ("convert", "continue", "scratch")


@dataclass
class ConvertOptions:
    """How ``convert`` (and ``continue`` on a short base) makes a model long."""

    max_length: int = 4096
    local_window: int = 512
    global_every: int = 3
    positions: str = "copy"  # copy (tile learned positions) | rope
    global_first_token: bool = False
    global_rope_theta: float | None = None
    local_rope_theta: float | None = None


@dataclass
class ContinueOptions:
    vocab_arm: str = "keep"  # keep | replace | extend
    tokenizer: dict[str, Any] = field(default_factory=dict)  # replace: TokenizerTrainingConfig fields
    extend: dict[str, Any] = field(default_factory=dict)  # extend: options of extend_vocabulary
    # replace/extend: re-fit the decoder bias to the new tokenizer's token frequencies on the same
    # texts (longadapt.recipes.calibration); ``calibration`` holds options of calibrate_output_bias
    calibrate_bias: bool = True
    calibration: dict[str, Any] = field(default_factory=dict)
    make_long: ConvertOptions | None = None  # when the base is shorter than the target length


@dataclass
class ScratchOptions:
    model: dict[str, Any] = field(default_factory=dict)  # LongAdaptConfig fields
    tokenizer: dict[str, Any] = field(default_factory=dict)  # TokenizerTrainingConfig fields


@dataclass
class Phase:
    """One training phase; unset fields keep the recipe's ``train`` values."""

    name: str = "mlm"
    max_length: int = 1024
    steps: int = 100
    lr: float | None = None
    tokens_per_step: int | None = None
    global_rope_theta: float | None = None  # context extension raises the global layers' base
    local_rope_theta: float | None = None
    # glob patterns of parameter names this phase does not train (model.freeze of the engine), e.g.
    # ["model.*"]: a head warm-up that trains only a newly initialised MLM head
    freeze: list[str] | None = None
    train: dict[str, Any] = field(default_factory=dict)  # any other TrainConfig override


@dataclass
class RecipeConfig:
    strategy: str = "convert"
    language: str = "fr"
    preset: str = "tiny"
    base: str | None = None  # convert/continue: source checkpoint (directory, package or hub id)
    corpus: dict[str, Any] | None = None  # a CorpusSpec; default: the language pack's corpus
    out: str | None = None
    token_budget: int | None = None  # stated budget: must equal the sum over phases
    description: str = ""
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    continue_: ContinueOptions = field(default_factory=ContinueOptions)
    scratch: ScratchOptions = field(default_factory=ScratchOptions)
    phases: list[Phase] = field(default_factory=lambda: [Phase()])
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig overrides for every phase

    def tokens(self) -> int:
        per_step = self.train.get("tokens_per_step", _train_default("tokens_per_step"))
        return sum(p.steps * (p.tokens_per_step or per_step) for p in self.phases)


def _train_default(name: str) -> Any:
    """The training engine's default for a ``train:`` key the recipe did not set (defaults live only in
    :class:`~longadapt.training.config.TrainConfig`)."""
    import dataclasses

    from longadapt.training.config import TrainConfig

    return next(f.default for f in dataclasses.fields(TrainConfig) if f.name == name)


def _default_validation_fraction() -> float:
    """The data pipeline's validation fraction (``data.validation_fraction: null`` keeps it), so that the
    held-out documents here are the ones the engine holds out."""
    import inspect

    from longadapt.data.pipeline import build_packed_dataset

    return float(inspect.signature(build_packed_dataset).parameters["validation_fraction"].default)


def recipe_from_dict(data: dict[str, Any], where: str = "recipe") -> RecipeConfig:
    data = copy.deepcopy(data)
    if "continue" in data:  # a Python keyword: stored as continue_
        data["continue_"] = data.pop("continue")
    phases = data.pop("phases", None)
    cont = data.pop("continue_", None)
    cfg = from_dict(RecipeConfig, data, where)
    if phases is not None:
        if not isinstance(phases, list) or not phases:
            raise LongAdaptError(f"{where}: phases must be a non-empty list of phases")
        cfg.phases = [from_dict(Phase, p, f"{where}: phases[{i}]") for i, p in enumerate(phases)]
    if cont is not None:
        make_long = cont.pop("make_long", None)
        cfg.continue_ = from_dict(ContinueOptions, cont, f"{where}: continue")
        if make_long is not None:
            cfg.continue_.make_long = from_dict(ConvertOptions, make_long, f"{where}: continue.make_long")
    if isinstance(cfg.convert, dict):
        cfg.convert = from_dict(ConvertOptions, cfg.convert, f"{where}: convert")
    if isinstance(cfg.scratch, dict):
        cfg.scratch = from_dict(ScratchOptions, cfg.scratch, f"{where}: scratch")
    validate(cfg, where)
    return cfg


def validate(cfg: RecipeConfig, where: str = "recipe") -> None:
    if cfg.strategy not in STRATEGIES:
        raise LongAdaptError(f"{where}: strategy {cfg.strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
    if cfg.strategy in ("convert", "continue") and not cfg.base:
        raise LongAdaptError(f"{where}: strategy {cfg.strategy} needs a base model (base: DIR or hub id, or --base)")
    if cfg.continue_.vocab_arm not in ("keep", "replace", "extend"):
        raise LongAdaptError(f"{where}: continue.vocab_arm must be keep, replace or extend, not {cfg.continue_.vocab_arm!r}")
    if cfg.token_budget is not None and cfg.token_budget != cfg.tokens():
        raise LongAdaptError(
            f"{where}: token_budget says {cfg.token_budget:,} tokens but the phases add up to {cfg.tokens():,} "
            "(steps x tokens_per_step); fix one of them"
        )
    # every phase's training settings are checked now (typos with a did-you-mean), not after the model is built
    for i, phase in enumerate(cfg.phases):
        try:
            _phase_train_config(cfg, phase, {"path": "corpus.jsonl"}, Path("runs/check"))
        except LongAdaptError as exc:
            raise LongAdaptError(f"{where}: phases[{i}] ({phase.name!r}) with the recipe's train section: {exc}") from None


# ----------------------------------------------------------------------------------------------
# building the model and tokenizer


def _corpus_spec(cfg: RecipeConfig, pack) -> dict[str, Any]:
    if cfg.corpus:
        return dict(cfg.corpus)
    if not pack.corpora or not pack.corpora[0].path:
        raise LongAdaptError(f"languages/{pack.code}.yaml names no default corpus; pass --corpus PATH")
    return {"path": pack.corpora[0].path, "text_field": pack.corpora[0].text_field}


def _corpus_texts(spec: dict[str, Any], language: str, max_documents: int | None,
                  train: dict[str, Any] | None = None) -> list[str]:
    """The first ``max_documents`` documents of the corpus (cleaned, de-duplicated) for tokenizer
    training, vocabulary extension and bias calibration. With ``train`` (the recipe's training
    options), the documents the engine will hold out for validation are left out, by the same rule
    (hash of the text, ``data.validation_fraction``, ``seed``, ``data.max_documents``,
    ``data.packing.min_validation_documents``): held-out text never shapes the vocabulary that is
    scored on it."""
    from longadapt.data import CorpusSpec, read_corpus
    from longadapt.data.corpus import text_hash
    from longadapt.data.packing import PackingConfig
    from longadapt.data.split import validation_mask
    from longadapt.training.config import ConfigSource
    from longadapt.training.resolve import resolve_corpus

    resolved = resolve_corpus(from_dict(CorpusSpec, spec, "corpus"), ConfigSource())
    if train is None:
        texts = []
        for doc in read_corpus(resolved, language=language):
            texts.append(doc.text)
            if max_documents and len(texts) >= max_documents:
                break
        return texts
    data = dict(train.get("data") or {})
    engine_docs = data.get("max_documents")
    docs = []
    for doc in read_corpus(resolved, language=language):
        docs.append(doc.text)
        if engine_docs and len(docs) >= engine_docs:
            break
    fraction = data.get("validation_fraction")
    packing = from_dict(PackingConfig, dict(data.get("packing") or {}), "train.data.packing")
    held_out = validation_mask(
        [text_hash(t) for t in docs], _default_validation_fraction() if fraction is None else float(fraction),
        int(train.get("seed", _train_default("seed"))),
        packing.min_validation_documents,
    )
    texts = [t for t, v in zip(docs, held_out) if not v]
    return texts[:max_documents] if max_documents else texts


def set_rope_theta(model, global_theta: float | None = None, local_theta: float | None = None) -> None:
    """Change the rotary bases of a core model (context extension)."""
    from longadapt.modeling.modeling import LongAdaptRotary

    cfg = model.config
    if cfg.position_embedding_type != "rope":
        raise LongAdaptError("a rotary base can only be set on a model with rotary positions")
    if global_theta is not None:
        cfg.global_rope_theta = float(global_theta)
        model.model.rotary_global = LongAdaptRotary(cfg.head_dim, cfg.global_rope_theta)
    if local_theta is not None:
        cfg.local_rope_theta = float(local_theta)
        model.model.rotary_local = LongAdaptRotary(cfg.head_dim, cfg.local_rope_theta)


def build_convert(cfg: RecipeConfig) -> tuple[Any, Any, dict[str, Any]]:
    from longadapt.interop import import_checkpoint, make_long

    imported = import_checkpoint(cfg.base)
    o = cfg.convert
    notes = imported.notes + make_long(
        imported.model, o.max_length, local_window=o.local_window, global_every=o.global_every,
        positions=o.positions, global_rope_theta=o.global_rope_theta, local_rope_theta=o.local_rope_theta,
        global_first_token=o.global_first_token,
    )
    tok = load_tokenizer(resolve_model_source(cfg.base, "base"), require_fast=False, where="base")
    tok.model_max_length = o.max_length
    return imported.model, tok, {"source_type": imported.source_type, "mlm_head": imported.mlm_head, "notes": notes}


def build_continue(cfg: RecipeConfig, corpus: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    from longadapt.interop import import_checkpoint, make_long
    from longadapt.tokenizers.training import train_tokenizer
    from longadapt.recipes.vocab_transfer import extend_vocabulary, keep_vocabulary, replace_vocabulary

    imported = import_checkpoint(cfg.base)
    model, notes = imported.model, list(imported.notes)
    tok = load_tokenizer(resolve_model_source(cfg.base, "base"), require_fast=False, where="base")
    o = cfg.continue_
    if o.make_long is not None:
        m = o.make_long
        notes += make_long(model, m.max_length, local_window=m.local_window, global_every=m.global_every,
                           positions=m.positions, global_rope_theta=m.global_rope_theta,
                           local_rope_theta=m.local_rope_theta, global_first_token=m.global_first_token)
    need = max(p.max_length for p in cfg.phases)
    if model.config.max_position_embeddings < need:
        raise LongAdaptError(
            f"the base model accepts {model.config.max_position_embeddings} tokens but a phase trains at {need}; "
            "add continue.make_long (e.g. continue.make_long.max_length={need}) or shorten the phases"
        )
    arm = o.vocab_arm
    if arm == "keep":
        result = keep_vocabulary(model, tok)
    elif arm == "replace":
        opts = dict(o.tokenizer)
        max_docs = opts.pop("max_documents", None)
        texts = _corpus_texts(corpus, cfg.language, max_docs, cfg.train)
        new_tok = train_tokenizer(texts, cfg.language, **opts)
        result = replace_vocabulary(model, tok, new_tok)
    else:
        opts = dict(o.extend)
        max_docs = opts.pop("max_documents", None)
        texts = _corpus_texts(corpus, cfg.language, max_docs, cfg.train)
        result = extend_vocabulary(model, tok, corpus=texts, language=cfg.language, **opts)
    result.tokenizer.model_max_length = model.config.max_position_embeddings
    info = {"source_type": imported.source_type, "mlm_head": imported.mlm_head, "notes": notes,
            "vocab_arm": arm, "transfer": result.report.to_dict() if hasattr(result.report, "to_dict") else None}
    if arm != "keep" and o.calibrate_bias:
        from longadapt.recipes.calibration import calibrate_output_bias

        calibration = calibrate_output_bias(result.model, result.tokenizer, texts, **{"seed": int(cfg.train.get("seed", _train_default("seed"))), **o.calibration})
        info["calibration"] = calibration.to_dict()
    if info["transfer"]:
        info["transfer"].pop("sources", None)  # one entry per row: too long for run.json
    return result.model, result.tokenizer, info


def build_scratch(cfg: RecipeConfig, corpus: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    from longadapt.modeling import LongAdaptConfig, LongAdaptForMaskedLM
    from longadapt.tokenizers.training import train_tokenizer
    from longadapt.tokenizers.conventions import round_up

    opts = dict(cfg.scratch.tokenizer)
    max_docs = opts.pop("max_documents", None)
    texts = _corpus_texts(corpus, cfg.language, max_docs, cfg.train)
    tok = train_tokenizer(texts, cfg.language, **opts)
    model_kw = dict(cfg.scratch.model)
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
    import torch

    torch.manual_seed(int(cfg.train.get("seed", _train_default("seed"))))
    model = LongAdaptForMaskedLM(mcfg)
    tok.model_max_length = mcfg.max_position_embeddings
    return model, tok, {"notes": [f"tokenizer trained on {len(texts)} documents, {len(tok)} entries"]}


# ----------------------------------------------------------------------------------------------
# running


@dataclass
class RecipeResult:
    out: Path
    phases: list[dict[str, Any]]
    final_metrics: dict[str, float]
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)


def _phase_train_config(cfg: RecipeConfig, phase: Phase, corpus: dict[str, Any], out: Path, resume: bool = False):
    from longadapt.config import deep_merge
    from longadapt.training import train_config_from_dict

    data = deep_merge(copy.deepcopy(cfg.train), copy.deepcopy(phase.train))
    data.update(max_length=phase.max_length, steps=phase.steps, language=cfg.language, corpus=dict(corpus),
                output_dir=str(out / "phases" / phase.name), resume=resume)
    data.pop("tokenizer", None)
    data.pop("model", None)
    if phase.freeze:
        data["model"] = {"freeze": list(phase.freeze)}
    if phase.lr is not None:
        data["lr"] = phase.lr
    if phase.tokens_per_step is not None:
        data["tokens_per_step"] = phase.tokens_per_step
    # the stated budget is a promise: a micro-batch never holds more rows than one step's tokens
    # (the engine would round the step up to a whole micro-batch, e.g. 2x the budget at 4,096)
    tokens = data.get("tokens_per_step", _train_default("tokens_per_step"))
    if tokens % phase.max_length:
        raise LongAdaptError(
            f"phase {phase.name!r}: tokens_per_step ({tokens}) must be a multiple of max_length ({phase.max_length}) "
            "so that the token budget holds exactly"
        )
    data["micro_batch_size"] = min(int(data.get("micro_batch_size", _train_default("micro_batch_size"))),
                                   tokens // phase.max_length)
    # every phase checkpoints at least once per half (a stopped tiny run resumes mid-phase too)
    half = max(1, phase.steps // 2)
    data["save_every"] = min(int(data.get("save_every") or half), half)
    return train_config_from_dict(data)


def recipe_out(cfg: RecipeConfig) -> Path:
    """The recipe's output folder: ``out``, else ``runs/<strategy>-<language>-<preset>``."""
    return Path(cfg.out or f"runs/{cfg.strategy}-{cfg.language}-{cfg.preset}")


def run_recipe(cfg: RecipeConfig, resume: bool = False) -> RecipeResult:
    """Build the strategy's model and tokenizer, train each phase, and write ``cfg.out``: a model
    directory (``AutoModelForMaskedLM`` / ``AutoTokenizer`` after ``import longadapt``), a model card
    (README.md) and run.json.

    ``resume``: continue a recipe that was stopped. The model and tokenizer are built again (the
    build is deterministic: same seed, data and options; the engine refuses a phase whose packed
    data or model config differ), completed phases are loaded from their ``phases/<name>/model``,
    and the interrupted phase continues from its newest checkpoint (from step 0 without one)."""
    from longadapt.languages import load_language
    from longadapt.runinfo import run_record
    from longadapt.training import train

    validate(cfg)
    pack = load_language(cfg.language)
    out = recipe_out(cfg)
    if (out / "config.json").exists() and not (out / "run.json").exists():
        raise LongAdaptError(f"{out} holds a model that longadapt did not write; choose another --out")
    removed = clean_stale_in(out)  # temporaries of this folder's own stopped final writes
    if removed:
        logger.info("removed %d temporaries of stopped earlier attempts in %s", len(removed), out)
    corpus = _corpus_spec(cfg, pack)
    start = time.time()
    builders = {"convert": lambda: build_convert(cfg), "continue": lambda: build_continue(cfg, corpus),
                "scratch": lambda: build_scratch(cfg, corpus)}
    model, tok, info = builders[cfg.strategy]()
    _mark_running(out, cfg)
    phases = []
    tokens_seen = 0
    for phase in cfg.phases:
        if phase.global_rope_theta is not None or phase.local_rope_theta is not None:
            set_rope_theta(model, phase.global_rope_theta, phase.local_rope_theta)
        if model.config.max_position_embeddings < phase.max_length:
            if model.config.position_embedding_type != "rope":
                raise LongAdaptError(
                    f"phase {phase.name!r} trains at {phase.max_length} tokens but the model's learned positions stop at "
                    f"{model.config.max_position_embeddings}; raise convert.max_length"
                )
            model.config.max_position_embeddings = phase.max_length
            tok.model_max_length = phase.max_length
        tc = _phase_train_config(cfg, phase, corpus, out, resume)
        logger.info("phase %s: %d steps at %d tokens", phase.name, tc.steps, tc.max_length)
        res = train(tc, model=model, tokenizer=tok)
        model, tok = res.model, res.tokenizer or tok
        tokens_seen += tc.steps * tc.tokens_per_step
        phases.append({"name": phase.name, "max_length": tc.max_length, "steps": tc.steps,
                       "tokens_per_step": tc.tokens_per_step, "tokens_seen": tokens_seen,
                       "initial_metrics": res.initial_metrics, "final_metrics": res.metrics,
                       "run_dir": str(res.output_dir)})
    wall = time.time() - start
    final = phases[-1]["final_metrics"] if phases else {}
    modernbert = _export_modernbert(model, tok, out, cfg)
    record = run_record("adapt", to_dict(cfg), status="completed", strategy=cfg.strategy, language=cfg.language, corpus=corpus, build=info,
                        phases=phases, tokens_seen=tokens_seen, wall_seconds=round(wall, 1), final_metrics=final,
                        modernbert_export=modernbert)
    _write_final(model, tok, out, record, cfg)
    return RecipeResult(out, phases, final, model, tok)


def _mark_running(out: Path, cfg: RecipeConfig) -> None:
    """``out/run.json`` says ``status: running`` while the recipe runs (the folder is a resumable work
    folder: phases/ holds each phase's run and checkpoints); the final record, ``status: completed``,
    replaces it with the model files. A completed folder's record is left as it is."""
    from longadapt.runinfo import run_record

    path = out / "run.json"
    if path.is_file():
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("status") == "completed":
                return
        except ValueError:
            pass
    atomic_write_json(path, run_record("adapt", to_dict(cfg), status="running", strategy=cfg.strategy,
                                       language=cfg.language))


def _export_modernbert(model, tok, out: Path, cfg: RecipeConfig) -> dict[str, Any]:
    """Where the model's knobs are ModernBERT's (pre-norm, GeGLU, rotary, no token types: scratch, and
    rope conversions of ModernBERT-style bases), also write ``out/modernbert``: a stock transformers
    ModernBERT checkpoint with the same weights, which loads without longadapt. Otherwise say why not."""
    from longadapt.interop import export_modernbert, save_exported

    try:
        hf_model = export_modernbert(model)
    except LongAdaptError as exc:
        logger.info("no stock ModernBERT copy: %s", exc)
        return {"written": False, "reason": str(exc)}
    save_exported(hf_model, out / "modernbert", tok, "adapt-export",
                  {"strategy": cfg.strategy, "language": cfg.language, "format": "modernbert"})
    logger.info("stock ModernBERT copy (loads with plain transformers): %s", out / "modernbert")
    return {"written": True, "path": "modernbert"}


def _write_final(model, tok, out: Path, record: dict[str, Any], cfg: RecipeConfig) -> None:
    """Write the model files next to the phase runs, each under a temporary name then renamed;
    config.json comes last so the directory only loads once everything is in place."""
    tmp = temporary_dir(out / "final")  # marked with this process: a later start removes it if this one dies
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    atomic_write_json(tmp / "run.json", record)
    atomic_write_text(tmp / "README.md", model_card(cfg, record))
    umask_modes(tmp)
    names = sorted(p.name for p in tmp.iterdir() if p.name not in ("config.json", WRITER_MARKER))
    for name in names + ["config.json"]:
        os.replace(tmp / name, out / name)
    (tmp / WRITER_MARKER).unlink()
    tmp.rmdir()


def model_card(cfg: RecipeConfig, record: dict[str, Any]) -> str:
    bpb = _bpb(record.get("final_metrics") or {})
    lines = [
        f"# longadapt {cfg.strategy} ({cfg.language}, preset {cfg.preset})",
        "",
        cfg.description.strip() or f"A long-context encoder made with the `{cfg.strategy}` strategy of longadapt.",
        "",
        "| | |",
        "|---|---|",
        f"| strategy | {cfg.strategy} |",
        f"| base model | {cfg.base or '(none: trained from scratch)'} |",
        f"| tokenizer | {_tokenizer_line(cfg)} |",
        f"| language | {cfg.language} |",
        f"| data | {json.dumps((cfg.corpus or {}).get('path') if cfg.corpus else 'language pack default')} |",
        f"| token budget | {record.get('tokens_seen', 0):,} tokens ({len(cfg.phases)} phase(s)) |",
        f"| maximum length | {max(p.max_length for p in cfg.phases)} tokens |",
        f"| final validation bits per byte | {bpb:.4f} |" if isinstance(bpb, float) else "| final validation bits per byte | n/a |",
        "",
        "Load it with `import longadapt, transformers; transformers.AutoModelForMaskedLM.from_pretrained(DIR)`.",
        *(["`modernbert/` holds the same weights as a stock ModernBERT checkpoint: "
            "`transformers.AutoModelForMaskedLM.from_pretrained(DIR + '/modernbert')` loads it without longadapt."]
          if (record.get("modernbert_export") or {}).get("written") else []),
        "The exact configuration, package versions, data fingerprint and metrics are in `run.json`.",
    ]
    for p in record.get("phases", []):
        m = p.get("final_metrics") or {}
        lines.append(f"- phase `{p['name']}`: {p['steps']} steps at {p['max_length']} tokens, "
                     f"validation bits per byte {_bpb(m) or float('nan'):.4f}")
    return "\n".join(lines) + "\n"


def _bpb(metrics: dict[str, Any]) -> float | None:
    for key in ("bpb", "val_bpb", "validation_bpb"):
        if isinstance(metrics.get(key), float):
            return metrics[key]
    return None


def _tokenizer_line(cfg: RecipeConfig) -> str:
    if cfg.strategy == "scratch":
        return "trained on the corpus by longadapt"
    if cfg.strategy == "continue":
        return {"keep": "the base model's (kept)", "replace": "trained on the corpus, rows transferred",
                "extend": "the base model's, extended with whole words"}[cfg.continue_.vocab_arm]
    return "the base model's"


def smoke_recipe(data: dict[str, Any], steps: int = 2, max_length: int = 1024, documents: int = 60) -> dict[str, Any]:
    """A recipe dict shrunk to seconds on a CPU (few steps, short rows, few documents, a tiny model
    for scratch): the same code path as the full recipe, for tests and notebook smoke runs."""
    d = copy.deepcopy(data)
    d.pop("token_budget", None)
    strategy = d.get("strategy")
    # convert and continue keep the recipe's phases (names, frozen parameters), only shorter
    shrunk = [dict(name=p.get("name", "mlm"), max_length=max_length, steps=steps,
                   **({"freeze": p["freeze"]} if p.get("freeze") else {})) for p in d.get("phases") or [{}]]
    if strategy == "convert":
        d.setdefault("convert", {})["max_length"] = max_length
        d["phases"] = shrunk
    elif strategy == "continue":
        cont = d.setdefault("continue", {})
        if cont.get("make_long"):
            cont["make_long"]["max_length"] = max_length
        cont["tokenizer"] = {"vocab_size": 1500, "max_documents": max(20, documents // 2)}
        cont["extend"] = {"max_documents": max(20, documents // 2), "max_words": 100, "min_frequency": 3}
        d["phases"] = shrunk
    else:
        scratch = d.setdefault("scratch", {})
        scratch["tokenizer"] = {"vocab_size": 1500, "max_documents": max(20, documents // 2)}
        scratch.setdefault("model", {}).update(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
        d["phases"] = [dict(name="short", max_length=256, steps=steps),
                       dict(name="extend", max_length=max_length, steps=steps, global_rope_theta=160000.0)]
    train = d.setdefault("train", {})
    train.update(tokens_per_step=2048, micro_batch_size=2, eval_every=0, tensorboard=False)
    train["data"] = {"max_validation_rows": 2, "max_documents": documents}
    return d
