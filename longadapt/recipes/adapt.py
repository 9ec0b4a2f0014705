"""The recipe runner: a strategy builds a model and a tokenizer, then the recipe trains it in phases.

The strategies (``convert``, ``continue``, ``scratch`` and any registered one) live in
:mod:`longadapt.recipes.strategies`, one module each; this module holds what every strategy shares:
the recipe schema, load-time checks, the phase loop, the output folder (model, model card, run.json)
and resume.

Every strategy trains with the same engine (:func:`longadapt.training.train`) and reports validation
bits per byte on the same held-out documents (the split is a hash of each document's text), so that
strategies with different tokenizers compare on the same footing.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import ConfigSource, as_source, deep_merge, from_dict, source_for, to_dict
from longadapt.errors import LongAdaptError
from longadapt.io import (
    WRITER_MARKER,
    atomic_write_json,
    atomic_write_text,
    clean_stale_in,
    temporary_dir,
    umask_modes,
)
from longadapt.recipes.representations import collapse_warning, representation_stats
from longadapt.recipes.strategies import get_strategy, strategy_names
from longadapt.recipes.strategies.common import held_out_texts, train_default

logger = logging.getLogger(__name__)

@dataclass
class Phase:
    """One training phase; unset fields keep the recipe's ``train`` values."""

    name: str = "mlm"
    max_length: int = 1024
    steps: int = 100
    lr: float | None = None
    tokens_per_step: int | None = None
    # context extension raises the global layers' base
    global_rope_theta: float | None = None
    local_rope_theta: float | None = None
    # glob patterns of parameter names this phase does not train (model.freeze of the engine), e.g.
    # ["model.*"]: a head warm-up that trains only a newly initialised MLM head
    freeze: list[str] | None = None
    # any other TrainConfig override
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecipeConfig:
    strategy: str = "convert"
    # a module that registers the strategy (one of your own), imported first
    strategy_module: str | None = None
    language: str = "fr"
    preset: str = "tiny"
    # convert/continue: source checkpoint (directory, package or hub id)
    base: str | None = None
    # a CorpusSpec; default: the language pack's corpus
    corpus: dict[str, Any] | None = None
    out: str | None = None
    # stated budget: must equal the sum over phases
    token_budget: int | None = None
    description: str = ""
    phases: list[Phase] = field(default_factory=lambda: [Phase()])
    # TrainConfig overrides for every phase
    train: dict[str, Any] = field(default_factory=dict)
    # the strategy's options: the recipe section named after the strategy (``convert:``, ``continue:``, ...),
    # an instance of its Strategy.options dataclass; None = that dataclass's defaults
    options: Any = None

    def tokens(self) -> int:
        per_step = self.train.get("tokens_per_step", train_default("tokens_per_step"))
        return sum(p.steps * (p.tokens_per_step or per_step) for p in self.phases)


def recipe_from_dict(data: dict[str, Any], where: "str | Path | ConfigSource" = "recipe") -> RecipeConfig:
    """A checked recipe from its YAML dict: every section, the strategy's own options and every phase's
    training settings, before any data or model is loaded. ``where`` (a :class:`~longadapt.config.ConfigSource`:
    the file's lines, the command-line overrides and the language pack's defaults, or just a name) lets
    every message point at the line, the override or the default that set a key."""


    source = where if isinstance(where, ConfigSource) else (
        source_for(where) if Path(str(where)).suffix in (".yaml", ".yml") and Path(where).is_file() else as_source(where))
    name = _name(source)
    data = copy.deepcopy(data)
    if "options" in data:
        raise LongAdaptError(f"{source.where('options')}: options go in the section named after the strategy "
                             "(e.g. convert:), not in options:")
    strategy = get_strategy(str(data.get("strategy", RecipeConfig.strategy)), data.get("strategy_module"), name)
    if strategy.name in {f.name for f in dataclasses.fields(RecipeConfig)}:
        raise LongAdaptError(f"{name}: a strategy cannot be called {strategy.name!r} (a recipe field has that name)")
    section = data.pop(strategy.name, None)
    for other in strategy_names():
        if other in data and other != strategy.name:
            raise LongAdaptError(f"{source.where(other)}: section {other}: holds the options of the {other} strategy, "
                                 f"but this recipe's strategy is {strategy.name}; remove it or change strategy:")
    phases = data.pop("phases", None)
    cfg = from_dict(RecipeConfig, data, source)
    if phases is not None:
        if not isinstance(phases, list) or not phases:
            raise LongAdaptError(f"{source.where('phases')}: phases must be a non-empty list of phases")
        cfg.phases = [from_dict(Phase, p, source, f"phases.{i}.") for i, p in enumerate(phases)]
    cfg.options = from_dict(strategy.options, section or {}, source, f"{strategy.name}.")
    validate(cfg, source)
    return cfg


def _name(source: ConfigSource) -> str:
    """The recipe as messages name it: its file, or its label."""
    return str(source.path) if source.path is not None else source.label or "recipe"


def recipe_record(cfg: RecipeConfig) -> dict[str, Any]:
    """The recipe as run.json records it: the YAML's shape (the strategy's options under its name)."""
    record = to_dict(cfg)
    record[cfg.strategy] = record.pop("options")
    return record


def validate(cfg: RecipeConfig, source: "str | ConfigSource" = "recipe") -> None:
    from longadapt.recipes.strategies import get_strategy  # the registry's (a test replaces the module's name)

    source = as_source(source)
    where = _name(source)
    strategy = get_strategy(cfg.strategy, cfg.strategy_module, where)
    if cfg.options is None:
        cfg.options = strategy.options()
    elif not isinstance(cfg.options, strategy.options):
        raise LongAdaptError(f"{where}: the options of strategy {cfg.strategy} must be {strategy.options.__name__}, "
                             f"not {type(cfg.options).__name__}")
    if strategy.needs_base and not cfg.base:
        raise LongAdaptError(f"{where}: strategy {cfg.strategy} needs a base model (base: DIR or hub id, or --base)")
    if strategy.check is not None:
        strategy.check(cfg, where)
    if cfg.token_budget is not None and cfg.token_budget != cfg.tokens():
        raise LongAdaptError(
            f"{where}: token_budget says {cfg.token_budget:,} tokens but the phases add up to {cfg.tokens():,} "
            "(steps x tokens_per_step); fix one of them"
        )
    # every phase's training settings are checked now (typos with a did-you-mean), not after the model is built
    for i, phase in enumerate(cfg.phases):
        try:
            _phase_train_config(cfg, phase, {"path": "corpus.jsonl"}, Path("runs/check"),
                                source=_phase_source(source, i))
        except LongAdaptError as exc:
            raise LongAdaptError(f"{where}: phases[{i}] ({phase.name!r}) with the recipe's train section: {exc}") from None


def _corpus_spec(cfg: RecipeConfig, pack) -> dict[str, Any]:
    if cfg.corpus:
        return dict(cfg.corpus)
    if not pack.corpora or not pack.corpora[0].path:
        raise LongAdaptError(f"languages/{pack.code}.yaml names no default corpus; pass --corpus PATH")
    return {"path": pack.corpora[0].path, "text_field": pack.corpora[0].text_field}


def _check_corpus_first(corpus: dict[str, Any]) -> None:
    """The corpus's cheap checks (path, format, encoding, first record) before the base model is loaded."""
    from longadapt.data.corpus import CorpusSpec, check_corpus
    from longadapt.training.resolve import resolve_corpus

    check_corpus(resolve_corpus(from_dict(CorpusSpec, corpus, "corpus"), ConfigSource()))


def set_rope_theta(model, global_theta: float | None = None, local_theta: float | None = None) -> None:
    """Change the rotary bases of a core model (a phase's context extension)."""
    if model.config.position_embedding_type != "rope":
        raise LongAdaptError("a rotary base can only be set on a model with rotary positions")
    model.model.set_rope_theta(global_theta, local_theta)


# ----------------------------------------------------------------------------------------------
# running


@dataclass
class RecipeResult:
    out: Path
    phases: list[dict[str, Any]]
    final_metrics: dict[str, float]
    model: Any = field(default=None, repr=False)
    tokenizer: Any = field(default=None, repr=False)


# a phase's own keys and the engine keys they set
_PHASE_KEYS = {"steps": "steps", "lr": "lr", "tokens_per_step": "tokens_per_step", "max_length": "max_length",
               "freeze": "model.freeze"}


def _phase_source(source: ConfigSource, index: int) -> ConfigSource:
    """Where each engine key of phase ``index`` was written: the phase's ``train:``, the phase's own keys,
    else the recipe's ``train:`` (file and line, the command-line override, or the language pack's default)."""

    def engine_keys(recipe_map: dict[str, Any]) -> dict[str, Any]:
        out = {k[len("train."):]: v for k, v in recipe_map.items() if k.startswith("train.")}
        phase = f"phases.{index}."
        out.update({k[len(phase + "train."):]: v for k, v in recipe_map.items() if k.startswith(phase + "train.")})
        for own, engine in _PHASE_KEYS.items():
            if phase + own in recipe_map:
                out[engine] = recipe_map[phase + own]
        return out

    return ConfigSource(path=source.path, lines=engine_keys(source.lines), overrides=engine_keys(source.overrides),
                        defaults=engine_keys(source.defaults), label=source.label)


def _phase_train_config(cfg: RecipeConfig, phase: Phase, corpus: dict[str, Any], out: Path, resume: bool = False,
                        source=None):
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
    tokens = data.get("tokens_per_step", train_default("tokens_per_step"))
    if tokens % phase.max_length:
        raise LongAdaptError(
            f"phase {phase.name!r}: tokens_per_step ({tokens}) must be a multiple of max_length ({phase.max_length}) "
            "so that the token budget holds exactly"
        )
    data["micro_batch_size"] = min(int(data.get("micro_batch_size", train_default("micro_batch_size"))),
                                   tokens // phase.max_length)
    # every phase checkpoints at least once per half (a stopped tiny run resumes mid-phase too)
    half = max(1, phase.steps // 2)
    data["save_every"] = min(int(data.get("save_every") or half), half)
    return train_config_from_dict(data, source)


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
    _check_corpus_first(corpus)
    start = time.time()
    model, tok, info = get_strategy(cfg.strategy, cfg.strategy_module).build(cfg, corpus)
    _mark_running(out, cfg)
    held_out = _held_out(cfg, corpus)
    before = representation_stats(model, tok, held_out)
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
    after = representation_stats(model, tok, held_out)
    collapse = collapse_warning(before, after, pretrained=get_strategy(cfg.strategy, cfg.strategy_module).needs_base)
    if collapse:
        logger.warning("%s: %s", out, collapse)
    modernbert = _export_modernbert(model, tok, out, cfg)
    record = run_record("adapt", recipe_record(cfg), status="completed", strategy=cfg.strategy, language=cfg.language, corpus=corpus, build=info,
                        phases=phases, tokens_seen=tokens_seen, wall_seconds=round(wall, 1), final_metrics=final,
                        modernbert_export=modernbert,
                        representations={"before": before, "after": after, "warning": collapse})
    _write_final(model, tok, out, record, cfg)
    return RecipeResult(out, phases, final, model, tok)


def build_untrained(cfg: RecipeConfig) -> RecipeResult:
    """The strategy's model and tokenizer before any training step (an adaptation budget of 0 tokens),
    written as :func:`run_recipe` writes a trained one (run.json with ``tokens_seen: 0`` and no phase): the
    0-token point of a verdict curve, e.g. a vocabulary arm's transferred rows before training."""
    from longadapt.languages import load_language
    from longadapt.runinfo import run_record

    validate(cfg)
    pack = load_language(cfg.language)
    out = recipe_out(cfg)
    if (out / "config.json").exists() and not (out / "run.json").exists():
        raise LongAdaptError(f"{out} holds a model that longadapt did not write; choose another --out")
    clean_stale_in(out)
    corpus = _corpus_spec(cfg, pack)
    start = time.time()
    model, tok, info = get_strategy(cfg.strategy, cfg.strategy_module).build(cfg, corpus)
    stats = representation_stats(model, tok, _held_out(cfg, corpus))
    record = run_record("adapt", recipe_record(cfg), status="completed", strategy=cfg.strategy, language=cfg.language,
                        corpus=corpus, build=info, phases=[], tokens_seen=0, wall_seconds=round(time.time() - start, 1),
                        final_metrics={}, untrained=True, representations={"before": stats, "after": stats, "warning": None})
    _write_final(model, tok, out, record, cfg)
    return RecipeResult(out, [], {}, model, tok)


def _held_out(cfg: RecipeConfig, corpus: dict[str, Any]) -> list[str]:
    """A few of the documents the engine holds out (the representation check reads them)."""

    return held_out_texts(corpus, cfg.language, cfg.train, 4)


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
    atomic_write_json(path, run_record("adapt", recipe_record(cfg), status="running", strategy=cfg.strategy,
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
        f"| tokenizer | {get_strategy(cfg.strategy, cfg.strategy_module).tokenizer_line(cfg.options)} |",
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
    rep = record.get("representations") or {}
    if rep.get("before") and rep.get("after"):
        lines.append(f"- token representations of held-out documents (mean cosine between tokens; near 1: collapsed): "
                     f"{rep['before']['mean_token_cosine']:.2f} before the phases, {rep['after']['mean_token_cosine']:.2f} after")
    if rep.get("warning"):
        lines.append(f"- **warning**: {rep['warning']}")
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


def smoke_recipe(data: dict[str, Any], steps: int = 2, max_length: int = 1024, documents: int = 60) -> dict[str, Any]:
    """A recipe dict shrunk to seconds on a CPU (few steps, short rows, few documents, a tiny model
    for scratch): the same code path as the full recipe, for tests and notebook smoke runs."""
    d = copy.deepcopy(data)
    d.pop("token_budget", None)
    strategy = get_strategy(str(d.get("strategy", RecipeConfig.strategy)), d.get("strategy_module"), "recipe")
    # the recipe's phases (names, frozen parameters) are kept, only shorter; the strategy shrinks its own options
    d["phases"] = [dict(name=p.get("name", "mlm"), max_length=max_length, steps=steps,
                        **({"freeze": p["freeze"]} if p.get("freeze") else {})) for p in d.get("phases") or [{}]]
    if strategy.smoke is not None:
        strategy.smoke(d, steps, max_length, documents)
    train = d.setdefault("train", {})
    train.update(tokens_per_step=2048, micro_batch_size=2, eval_every=0, tensorboard=False)
    train["data"] = {"max_validation_rows": 2, "max_documents": documents}
    return d
