"""Loading a model for a task (the head its type needs, new parameters checked and initialised) and saving
a fine-tuned one with what ``predict`` needs to serve it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import longadapt  # noqa: F401  (registers the core with the Auto classes)
from longadapt.errors import LongAdaptError
from longadapt.evaluation.tasks import Task

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from longadapt.evaluation.adapters import Adapter


def check_parameters(model: Any, missing: set[str], model_dir: str, config: Any) -> list[str]:
    """Refuse non-finite loaded weights; re-draw garbage in *new* (head) weights.

    A model class whose weight initialisation skips its new head leaves it as uninitialised memory
    (NaN, inf or huge values, seen in practice). Such a new parameter (non-finite or larger than
    1e4 in absolute value) is re-drawn as transformers initialises heads: matrices from
    N(0, initializer_range), biases 0, 1-D norm weights 1; a warning names it and run.json lists
    it. A non-finite weight read from the checkpoint is an error.
    """
    import torch

    def garbage(p: Any) -> bool:
        return bool(not torch.isfinite(p).all() or (p.numel() and p.detach().abs().max() > 1e4))

    params = dict(model.named_parameters())
    loaded = [n for n, p in params.items() if n not in missing and not torch.isfinite(p).all()]
    if loaded:
        raise LongAdaptError(f"{model_dir}: the checkpoint holds non-finite weights ({', '.join(loaded[:5])}); "
                             "it cannot be fine-tuned")
    bad = [n for n in sorted(missing) if n in params and garbage(params[n])]
    if bad:
        std = float(getattr(config, "initializer_range", 0.02) or 0.02)
        with torch.no_grad():
            for n in bad:
                p = params[n]
                if p.dim() >= 2:
                    p.normal_(0.0, std)
                elif n.endswith("bias"):
                    p.zero_()
                else:
                    p.fill_(1.0)
        logger.warning("%s: new head parameters were left uninitialised by the model class (%s); re-drawn "
                       "(N(0, %.3g) / 0 / 1). The model's _init_weights should initialise them.",
                       model_dir, ", ".join(bad), std)
    return bad


def save_finetuned(model: Any, tok: Any, tokenizer_max_length: int, path: Path, task: Task, seed: int,
                    best: dict[str, Any], adapter: Adapter) -> None:
    """The selected fine-tuned model and its tokenizer, in transformers format (written by the caller's
    atomic directory). The decision threshold of multi-label / MCQA tasks, and an entity task's scheme and
    word splitter, go into the config (``longadapt_task``)."""
    path.mkdir(parents=True, exist_ok=True)
    info = {"task": task.name, "type": task.type, "seed": seed, "best_epoch": best["epoch"],
            "threshold": best["threshold"], "metric": task.metric, "dev_score": best["score"],
            "labels": list(task.config.labels)}
    if task.config.type_module:  # a registered type: predict imports the module that registers it
        info["type_module"] = task.config.type_module
    if getattr(adapter, "scheme", None) is not None:
        info.update(scheme=adapter.scheme.to_config(), word_splitter=task.config.word_splitter,
                    truncate=adapter.cfg.truncate)
    if task.config.reader == "brat":  # how the task's BRAT labels were read, for predict --gold
        labels_read = {k: task.config.reader_options[k] for k in ("label_from", "label_map")
                       if k in task.config.reader_options}
        if labels_read:
            info["brat_labels"] = labels_read
    model.config.longadapt_task = info
    model.save_pretrained(path)
    limit, tok.model_max_length = tok.model_max_length, tokenizer_max_length
    try:
        tok.save_pretrained(path)
    finally:
        tok.model_max_length = limit


def load_model(adapter: Adapter, model_dir: str, task: Task) -> tuple[Any, list[str], list[str]]:
    """The task model through the Auto classes. transformers' load-report table (new head weights MISSING,
    the MLM head UNEXPECTED: both expected when fine-tuning) becomes one log line."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = adapter.model_class().from_pretrained(model_dir, output_loading_info=True,
                                                            **adapter.model_kwargs())
    except (ValueError, KeyError) as exc:
        raise LongAdaptError(f"{model_dir}: cannot build a {task.type} model with the Auto classes ({exc})") from exc
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys", ()))
    unexpected = sorted(info.get("unexpected_keys", ()))
    logger.info("%s: loaded for %s; new (trained from scratch): %s; not used from the checkpoint: %s", model_dir,
                task.type, ", ".join(missing) or "none", ", ".join(unexpected) or "none")
    return model, missing, unexpected


