"""Fine-tune and evaluate one model on one task with one seed (accelerate).

Every model is loaded through the transformers Auto classes (``AutoModelForTokenClassification``,
``AutoModelForSequenceClassification``, ``AutoModelForMultipleChoice``, ``AutoTokenizer``), so any
model directory works, including the longadapt core (registered with the Auto classes when
``longadapt`` is imported, which importing this module does).

What a run does (and the reference code did not):

- seeds Python, NumPy and torch (and the data order) from the run's seed;
- pads each batch to its longest sequence, never to the maximum length;
- evaluates on the task's own validation split with the task's main metric (entity F1 for NER,
  Spearman for STS, ...; greater is better for all), keeps the best weights, restores them before
  testing and checks that the restored model reproduces the best validation score;
- multi-label and MCQA: picks the sigmoid threshold on validation, reuses it on test;
- long inputs: sliding windows (see :mod:`.windows`) for models shorter than the document, scores
  on words and documents, results per length bucket.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import longadapt  # noqa: F401  (registers the core with the Auto classes)
from longadapt.precision import record as precision_record
from longadapt import faults
from longadapt.config import to_dict
from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import metrics as M
from longadapt.evaluation import windows as W
from longadapt.evaluation.tasks import Task, TaskData, FinetuneConfig
from longadapt.modeling.parameters import adamw, parameter_groups
from longadapt.progress import progress
from longadapt.tokenizers.loading import load_tokenizer
from longadapt.evaluation import tasktypes
from longadapt.evaluation.batching import BudgetBatches, Runner, item_tokens, train_step
from longadapt.evaluation.data import n_words
from longadapt.evaluation.fingerprint import versions
from longadapt.evaluation.models import check_parameters, load_model, save_finetuned

logger = logging.getLogger(__name__)


@dataclass
class RunLimits:
    """Limits for smoke tests and quick comparisons (recorded in run.json)."""

    max_train_docs: int | None = None
    max_eval_docs: int | None = None
    # stop training after this many optimizer steps
    max_steps: int | None = None


@dataclass
class RunResult:
    task: str
    task_type: str
    model: dict[str, Any]
    seed: int
    main_metric: str
    score: float
    dev: dict[str, float]
    test: dict[str, float]
    buckets: dict[str, dict[str, float]]
    best_epoch: int
    threshold: float | None
    history: list[dict[str, Any]]
    per_example: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    entities: dict[str, Any] = field(default_factory=dict)  # scheme, per split and type: gold/representable/...
    warnings: list[str] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)  # test outputs; written next to run.json
    # the best prediction that ignores the input (Adapter.constant_baseline): what the score must beat to mean learning
    baseline: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"kind": "longadapt.evaluate.run", **asdict(self)}
        out.pop("predictions")
        return out


def _peak_rss_mb() -> float | None:
    """The process's peak resident memory so far (MB; the whole process, so for the first run of an
    evaluate command it is that run's peak)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024, 1)  # Linux reports kilobytes


def _doc_words(examples: Sequence[Any]) -> dict[str, int]:
    """Words per *document* (the segments of one document summed)."""
    words: dict[str, int] = {}
    for ex in examples:
        d = getattr(ex, "doc_id", None) or ex.id
        words[d] = words.get(d, 0) + n_words(ex)
    return words


def _doc_buckets(examples: Sequence[Any], edges: Sequence[int]) -> dict[str, list[int]]:
    """Example indices per length bucket of their *document* (segments of one document stay together)."""
    words = _doc_words(examples)
    out: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        out.setdefault(M.length_bucket(words[getattr(ex, "doc_id", None) or ex.id], edges), []).append(i)
    return out


def run(model_dir: str, task: Task, seed: int, data: TaskData | None = None,
        training: FinetuneConfig | None = None, limits: RunLimits | None = None,
        max_length: int | None = None, model_name: str | None = None,
        save_dir: str | Path | None = None) -> RunResult:
    """Fine-tune ``model_dir`` on ``task`` with ``seed``; select on dev; score on test.

    With ``save_dir``, the selected (best-on-dev) fine-tuned model is saved there with its tokenizer,
    so that ``AutoModelFor<Task>.from_pretrained(save_dir)`` reproduces the test predictions. The test
    outputs (entity tasks: every document's predicted mentions) are in ``RunResult.predictions``.

    The phases: load the model for the task (:func:`_load_for_task`), batch the training items
    (:func:`_train_loader`), train with selection on dev (:func:`_fit`), restore the selected weights
    and score test, its length buckets and its examples (:func:`_score_test`), then the run record.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_linear_schedule_with_warmup

    limits = limits or RunLimits()
    cfg = (training or task.config.training).resolved(task.type, task.document_task)
    t_start = time.time()
    set_seed(seed)
    data = data if data is not None else task.load_data()
    train = data.limited("train", limits.max_train_docs)
    dev = data.limited("dev", limits.max_eval_docs)
    test = data.limited("test", limits.max_eval_docs)
    select = cfg.select_metric or task.metric

    loaded = _load_for_task(model_dir, task, cfg, data, train, max_length)
    adapter = loaded.adapter
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                              gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    items, loader = _train_loader(adapter, train, cfg, seed)
    sampler = loader.batch_sampler if cfg.batch_words else None  # before accelerate wraps the loader
    # the engine's groups: decay on matrices and embeddings, none on biases and norms (tied weights once)
    optimizer = adamw(parameter_groups(loaded.model, cfg.weight_decay), cfg.learning_rate)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.epochs
    if limits.max_steps is not None:
        total_steps = min(total_steps, limits.max_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), max(total_steps, 1))
    model, optimizer, scheduler = accelerator.prepare(loaded.model, optimizer, scheduler)
    loader = accelerator.prepare_data_loader(loader, device_placement=False)
    runner = Runner(accelerator, model, cfg.eval_batch_size, cfg.eval_batch_tokens)

    fit = _fit(accelerator, model, optimizer, scheduler, loader, adapter, runner, dev, cfg, limits, task, seed,
               model_dir, select)
    best = fit.best
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(best["state"])
    t0 = time.time()
    scored = _score_test(adapter, runner, dev, test, best, select, task, fit.best_dev_out)
    warnings = list(data.warnings) + adapter.output_warnings(test, scored.out)
    for w in warnings[len(data.warnings):]:
        logger.warning(w)
    baseline = adapter.constant_baseline(train, dev, test)
    if baseline is not None and scored.test[task.metric] <= baseline["test"][task.metric]:
        # the other metrics tell "learned nothing" from "learned, but the main metric favours the constant"
        # (FrenchMedMCQA: predicting all five options scores a Hamming score that trained models barely reach)
        above = [f"{m} {scored.test[m]:.4f} vs {v:.4f}" for m, v in baseline["test"].items()
                 if m != task.metric and m in scored.test and scored.test[m] > v]
        warnings.append(f"{task.name}: test {task.metric} {scored.test[task.metric]:.4f} is not above the constant "
                        f"baseline's {baseline['test'][task.metric]:.4f} (always {baseline['prediction']}: "
                        f"{baseline['rule']}); the model has not learned the task at this budget"
                        + (f" by its main metric (above the constant only on {', '.join(above)})" if above else ""))
        logger.warning(warnings[-1])
    test_stats = dict(adapter.stats)
    predictions = adapter.predictions(test, scored.out)
    edges = task.config.length_buckets
    if edges == "auto":  # thirds of the test documents by length (the same documents give every model the same edges)
        edges = M.auto_length_edges(list(_doc_words(test).values()))
    buckets = _length_buckets(adapter, test, scored.out, best["threshold"], edges)
    per_example = adapter.per_example(test, scored.out, best["threshold"], split="test")
    for row in per_example:
        row["bucket"] = M.length_bucket(row["n_words"], edges)
    t_eval = fit.t_eval + time.time() - t0

    if save_dir is not None:
        save_finetuned(unwrapped, loaded.tok, loaded.tokenizer_max_length, Path(save_dir), task, seed, best, adapter)
    result = RunResult(
        task=task.name, task_type=task.type,
        model={"name": model_name or model_dir, "dir": str(model_dir),
               "model_type": getattr(loaded.model_config, "model_type", "?"), "max_length": loaded.length,
               "parameters": sum(p.numel() for p in unwrapped.parameters()), "tokenizer": type(loaded.tok).__name__},
        seed=seed, main_metric=task.metric, score=float(scored.test[task.metric]),
        dev={**best["dev"], "restored": scored.dev_again[select]}, test=scored.test, buckets=buckets,
        best_epoch=best["epoch"], threshold=best["threshold"], history=fit.history, per_example=per_example,
        config={"training": to_dict(cfg), "task": to_dict(task.config), "task_file": str(task.yaml_path),
                "limits": to_dict(limits), "max_length": loaded.length, "stride": adapter.eval_stride,
                "truncate": cfg.truncate, "select_metric": select, "protocol": task.config.protocol,
                "data_root": str(task.data_root)},
        data=_split_data(task, data, limits, train, dev, test),
        versions=versions(),
        # train_tokens_per_s: real tokens of the training passes per second of the training epochs (optimizer,
        # collation and data loading included, dev scoring excluded): benchmarks/bench_finetune.py compares it
        # with `longadapt bench encoder` at the same shapes
        timing={"train_s": round(fit.t_train, 2), "eval_s": round(t_eval, 2),
                "train_tokens_per_s": round(fit.train_tokens / fit.t_train, 1) if fit.t_train > 0 else None,
                "total_s": round(time.time() - t_start, 2), "optimizer_steps": fit.step, "peak_rss_mb": _peak_rss_mb()},
        # train_tokens: one epoch of the model's training items (windows overlap where a document is longer than
        # the window); train_tokens_seen: what the training passes read, every epoch run
        diagnostics={"device": str(accelerator.device), "train_items": len(items), "batch_unit": batch_unit(cfg),
                     "precision": precision_record(cfg.mixed_precision, str(accelerator.device)),
                     "train_tokens": sum(item_tokens(x) for x in items), "train_tokens_seen": fit.train_tokens,
                     "train_words": sum(n_words(x) for x in train), "train_batches_per_epoch": len(loader),
                     "batch_plan_sha256": _plan_fingerprint(sampler, train),
                     "train_forward_passes": fit.forward_passes,
                     "longest_train_item_tokens": max((item_tokens(x) for x in items), default=0),
                     "epochs_run": len(fit.history), "reinitialised_parameters": loaded.reinitialised,
                     "head_bias_from_prior": loaded.prior_head,
                     "new_parameters": loaded.missing, "unused_checkpoint_parameters": loaded.unexpected, **test_stats},
        entities=_entity_info(task, data, limits, train, adapter, scored.dev_table, scored.test_table),
        warnings=warnings, predictions=predictions, baseline=baseline,
    )
    del model, optimizer, best, fit
    return result


@dataclass
class _Loaded:
    """The model and tokenizer of a run, ready for the task."""

    tok: Any
    model_config: Any
    length: int  # the window / input length the model reads
    tokenizer_max_length: int  # the tokenizer's own, restored in a saved fine-tuned model
    adapter: Any
    model: Any
    missing: list[str]
    unexpected: list[str]
    reinitialised: Any
    prior_head: Any


def _load_for_task(model_dir: str, task: Task, cfg: FinetuneConfig, data: TaskData, train: list,
                   max_length: int | None) -> _Loaded:
    from transformers import AutoConfig

    tok = load_tokenizer(model_dir, for_words=True, where="model")
    model_config = AutoConfig.from_pretrained(model_dir)
    length = W.model_max_length(tok, model_config, max_length or cfg.max_length)
    tokenizer_max_length = tok.model_max_length
    tok.model_max_length = 10**9  # whole documents are tokenized on purpose, then cut into windows
    adapter = tasktypes.get(task.type).adapter_class()(task, tok, cfg, length, data)
    model, missing, unexpected = load_model(adapter, model_dir, task)
    reinitialised = check_parameters(model, set(missing), model_dir, model_config)
    prior_head = adapter.init_head(model, train, set(missing))
    return _Loaded(tok, model_config, length, tokenizer_max_length, adapter, model, missing, unexpected,
                   reinitialised, prior_head)


def _train_loader(adapter: Any, train: list, cfg: FinetuneConfig, seed: int) -> tuple[list, Any]:
    """The training items and their shuffled loader: batches of whole examples up to ``batch_words`` words
    (the same batches for every model), of ``batch_size`` items, or of at most ``batch_tokens`` tokens. The
    loader yields lists of items; ``train_step`` collates them in memory-bounded micro-batches."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    items = adapter.train_items(train)
    if cfg.batch_words:
        units = adapter.train_units(items)
        if len(units) != len(train):
            raise AssertionError(f"{len(units)} training units for {len(train)} examples")
        batches = BudgetBatches([n_words(ex) for ex in train], int(cfg.batch_words), generator, units)
        loader = torch.utils.data.DataLoader(items, batch_sampler=batches, collate_fn=list)
    elif cfg.batch_tokens:
        batches = BudgetBatches([item_tokens(x) for x in items], int(cfg.batch_tokens), generator)
        loader = torch.utils.data.DataLoader(items, batch_sampler=batches, collate_fn=list)
    else:
        loader = torch.utils.data.DataLoader(items, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                                             collate_fn=list)
    return items, loader


def batch_unit(cfg: FinetuneConfig) -> str:
    """What a training batch is counted in: ``N words``, ``N tokens`` or ``N examples``."""
    if cfg.batch_words:
        return f"{cfg.batch_words} words"
    if cfg.batch_tokens:
        return f"{cfg.batch_tokens} tokens"
    return f"{cfg.batch_size} examples"


def _plan_fingerprint(sampler: Any, train: list) -> str | None:
    """sha256 of the examples (documents) of every training batch in the order they were visited, for
    batches by words: two runs with the same value took the same steps over the same documents."""
    import hashlib

    if not isinstance(sampler, BudgetBatches) or len(sampler.members) != len(train):
        return None
    h = hashlib.sha256()
    for units in sampler.visited:
        h.update(("|".join(sorted(str(train[u].id) for u in units)) + "\n").encode())
    return h.hexdigest()


@dataclass
class _Fit:
    """What training with selection on dev produced."""

    best: dict[str, Any]  # score, epoch, threshold, dev scores and the weights (on the CPU) of the selected epoch
    history: list[dict[str, Any]]
    step: int
    forward_passes: int
    t_train: float
    t_eval: float
    train_tokens: int = 0  # real tokens of the training passes, every epoch run
    # the dev outputs of the selected weights while they are still the model's last evaluated weights (no later
    # epoch was scored): restoring them changes nothing, so dev need not be predicted again
    best_dev_out: Any = None


def _fit(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, loader: Any, adapter: Any, runner: Any,
         dev: list, cfg: FinetuneConfig, limits: RunLimits, task: Task, seed: int, model_dir: str,
         select: str) -> _Fit:
    """The epochs: train, score dev every ``eval_every_epochs`` (and at the last), keep the best weights."""
    import torch

    fit = _Fit({"score": -math.inf, "epoch": 0, "state": None, "threshold": None, "dev": {}}, [], 0, 0, 0.0, 0.0)
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        model.train()
        losses = []
        for batch in progress(loader, desc=f"{task.name} seed {seed} epoch {epoch}/{cfg.epochs}", unit="step"):
            with accelerator.accumulate(model):
                loss, passes = train_step(accelerator, model, adapter, batch, cfg.micro_batch_tokens)
                fit.forward_passes += passes
                fit.train_tokens += sum(item_tokens(x) for x in batch)
                if not torch.isfinite(loss):
                    raise LongAdaptError(
                        f"{task.name}: the training loss is {float(loss)} at step {fit.step + 1} (seed {seed}, model "
                        f"{model_dir}); lower training.learning_rate or use training.mixed_precision=no")
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(float(loss))
            if accelerator.sync_gradients:
                fit.step += 1
            if limits.max_steps is not None and fit.step >= limits.max_steps:
                break
        fit.t_train += time.time() - t0
        faults.reached("epoch-end")
        stop = limits.max_steps is not None and fit.step >= limits.max_steps
        train_loss = float(np.mean(losses)) if losses else None
        if epoch % cfg.eval_every_epochs and epoch != cfg.epochs and not stop:
            fit.history.append({"epoch": epoch, "step": fit.step, "train_loss": train_loss})
            continue
        t0 = time.time()
        out = adapter.predict(runner, dev)
        dev_scores, threshold = adapter.score(dev, out, None, fit_threshold=True, split="dev")
        fit.t_eval += time.time() - t0
        value = dev_scores[select]
        fit.history.append({"epoch": epoch, "step": fit.step, "train_loss": train_loss, "dev": dev_scores,
                            "threshold": threshold})
        logger.info("%s seed %d epoch %d/%d (step %d): loss %.4f, dev %s %.4f%s", task.name, seed, epoch, cfg.epochs,
                    fit.step, np.mean(losses) if losses else float("nan"), select, value,
                    f" ({task.metric} {dev_scores[task.metric]:.4f})" if select != task.metric else "")
        fit.best_dev_out = None
        if value > fit.best["score"]:
            state = accelerator.unwrap_model(model).state_dict()
            fit.best = {"score": value, "epoch": epoch, "threshold": threshold, "dev": dev_scores,
                        "state": {k: v.detach().to("cpu", copy=True) for k, v in state.items()}}
            fit.best_dev_out = out
        if stop:
            break
    return fit


@dataclass
class _Scored:
    dev_again: dict[str, float]  # dev scored again with the restored weights (a check of the restore)
    dev_table: dict[str, Any]
    out: Any  # the test outputs
    test: dict[str, float]
    test_table: dict[str, Any]


def _score_test(adapter: Any, runner: Any, dev: list, test: list, best: dict[str, Any], select: str,
                task: Task, dev_out: Any = None) -> _Scored:
    """With the selected weights restored: dev again (it must give the selected score; predicted again only
    when the restore changed the weights, else ``dev_out``, the selected epoch's own outputs, is scored), then
    test."""
    if dev_out is None:
        dev_out = adapter.predict(runner, dev)
    dev_again, _ = adapter.score(dev, dev_out, best["threshold"], fit_threshold=False, split="dev")
    dev_table = dict(getattr(adapter, "table", {}) or {})
    if abs(dev_again[select] - best["score"]) > 1e-6:
        logger.warning("%s: the restored model scores %.6f on dev, the selected checkpoint %.6f",
                       task.name, dev_again[select], best["score"])
    out = adapter.predict(runner, test)
    test_scores, _ = adapter.score(test, out, best["threshold"], fit_threshold=False, split="test")
    test_table = dict(getattr(adapter, "table", {}) or {})
    adapter.last_threshold = best["threshold"]
    return _Scored(dev_again, dev_table, out, test_scores, test_table)


def _length_buckets(adapter: Any, test: list, out: Any, threshold: Any, edges: list[int]) -> dict[str, dict[str, float]]:
    """Test scores per document-length bucket (words), with the documents and words each holds."""
    buckets: dict[str, dict[str, float]] = {}
    by_bucket = _doc_buckets(test, edges)
    for name in M.bucket_order(edges):
        idx = by_bucket.get(name)
        if idx:
            sub = [test[i] for i in idx]
            scores, _ = adapter.score(sub, adapter.subset(out, idx), threshold, fit_threshold=False, split="test")
            n_docs = len({getattr(x, "doc_id", None) or x.id for x in sub})
            buckets[name] = {"n": n_docs, "words": sum(n_words(test[i]) for i in idx), **scores}
    return buckets


def _split_data(task: Task, data: TaskData, limits: RunLimits, train: list, dev: list,
                test: list) -> dict[str, dict[str, Any]]:
    """run.json's data section, one scope per field: ``split`` is the whole split as read (files, sha256,
    documents, annotations and how they were read, gold coverage), ``used`` what this run trained or scored
    on (the first N documents under ``--max-train-docs`` / ``--max-eval-docs``; the whole split otherwise),
    ``limit`` the option that made them differ (None: ``used`` is the whole split)."""
    split_data = {}
    for s_name, x, limit in (("train", train, limits.max_train_docs), ("dev", dev, limits.max_eval_docs),
                             ("test", test, limits.max_eval_docs)):
        st = data.stats[s_name]
        whole: dict[str, Any] = {"examples": len(data[s_name]), "documents": st.documents, **task.fingerprint(s_name)}
        if tasktypes.get(task.type).entities:
            whole.update(annotations=st.annotations, discontinuous=st.discontinuous, duplicates=st.duplicates,
                         trimmed=st.trimmed, coverage=E.coverage_of(st.entities) if st.entities else None)
        if st.ignored_labels:
            whole["ignored_labels"] = st.ignored_labels
        if st.unlabelled:
            whole["unlabelled_skipped"] = st.unlabelled
        if st.mapped_labels:
            whole["mapped_labels"] = st.mapped_labels
        used = {"examples": len(x), "documents": len({getattr(e, "doc_id", None) or e.id for e in x}),
                "words": sum(n_words(e) for e in x)}
        flag = "--max-train-docs" if s_name == "train" else "--max-eval-docs"
        split_data[s_name] = {"used": used, "split": whole,
                              "limit": f"{flag} {limit}" if limit is not None and used["documents"] < st.documents
                              else None}
    return split_data


def _entity_info(task: Task, data: TaskData, limits: RunLimits, train: list, adapter: Any,
                 dev_table: dict[str, Any], test_table: dict[str, Any]) -> dict[str, Any]:
    """Entity tasks: the scheme and, per split and type, gold mentions, representable ones and coverage."""
    if not tasktypes.get(task.type).entities:
        return {}
    train_table = data.stats["train"].entities if limits.max_train_docs is None else E.mention_scores(
        {d: data.gold["train"][d] for d in {e.doc_id for e in train}}, {}, task.config.labels,
        data.representable["train"], data.lost["train"])[1]
    for s_name, table in (("train", train_table), ("dev", dev_table), ("test", test_table)):
        whole = data.stats[s_name].entities
        if whole and table["total"]["gold"] != whole["total"]["gold"]:  # a limit: say which scope each number has
            logger.info("%s %s: %d of %d gold mentions representable (%.2f %%) in the documents used; the whole "
                        "split: %.2f %%", task.name, s_name, table["total"]["representable"], table["total"]["gold"],
                        100 * E.coverage_of(table), 100 * E.coverage_of(whole))
    # every count here is of the documents the run used (data.<split>.used); the whole splits' coverage is
    # data.<split>.split.coverage
    return {"scope": "used", "scheme": adapter.scheme.to_config(), "nested": task.config.nested,
            "discontinuous": task.config.discontinuous, "count": task.config.count, "train": train_table, "dev": dev_table,
            "test": test_table, "coverage": {"train": E.coverage_of(train_table), "dev": E.coverage_of(dev_table),
                                             "test": E.coverage_of(test_table)}}
