"""The engine's data: the packed training and validation rows (built from the corpus or given), checked to
hold one optimizer step and a validation row, and the batch plan over them."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from longadapt.errors import LongAdaptError
from longadapt.config import ConfigSource
from longadapt.training.config import TrainConfig
from longadapt.training.resolve import resolve_corpus
from longadapt.training.batch_plan import BatchPlan, derive_accumulation

logger = logging.getLogger("longadapt.training.engine")  # the engine's phases log as the engine


def _dataset_fingerprint(datasets_: list[Any]) -> str:
    """sha256 of the packed token ids and document ids (values and row lengths) of the datasets."""
    h = hashlib.sha256()
    for ds in datasets_:
        h.update(str(len(ds)).encode())
        if not len(ds):
            continue
        table = ds.with_format("arrow")[:]
        for column in ("input_ids", "document_ids"):
            if column not in table.column_names:
                continue
            for chunk in table.column(column).chunks:
                h.update(np.ascontiguousarray(chunk.value_lengths().to_numpy(zero_copy_only=False)).tobytes())
                h.update(np.ascontiguousarray(chunk.flatten().to_numpy(zero_copy_only=False)).tobytes())
    return h.hexdigest()[:16]


def _packing_info(dataset: Any) -> dict[str, Any]:
    """Fingerprint and statistics that build_packed_dataset attached to a dataset (if it made it)."""
    try:
        from longadapt.data.pipeline import packing_metadata

        meta = packing_metadata(dataset)
    except (ImportError, LongAdaptError):
        return {"fingerprint": None}
    return {"fingerprint": meta.get("fingerprint"), "corpus": meta.get("corpus"), "stats": meta.get("stats")}


@dataclass
class _Data:
    """The packed rows a run trains and validates on, and the batch plan over them."""

    train: Any
    validation: Any
    plan: BatchPlan
    accumulation: int
    tokens_per_step: int  # real tokens of one optimizer step (whole micro-batches)
    info: dict[str, Any]  # run.json's data section


def _prepare_data(cfg: TrainConfig, tokenizer: Any, source: ConfigSource, accelerator: Any,
                  train_dataset: Any, validation_dataset: Any) -> _Data:
    """Build (or take) the packed datasets, check that they hold at least one step and a validation row,
    and plan the batches: rows per step, accumulation, the token budget each step really takes."""
    world = accelerator.num_processes
    if train_dataset is None or validation_dataset is None:
        from longadapt.data import build_packed_dataset

        spec = resolve_corpus(cfg.corpus, source)
        options = {
            k: getattr(cfg.data, k)
            for k in ("validation_fraction", "num_proc", "cache_dir", "max_documents", "packing")
            if getattr(cfg.data, k) is not None
        }
        with accelerator.main_process_first():
            try:
                if train_dataset is None:
                    train_dataset = build_packed_dataset(
                        spec, tokenizer, cfg.language, cfg.max_length, split="train", seed=cfg.seed, **options
                    )
                if validation_dataset is None:
                    validation_dataset = build_packed_dataset(
                        spec, tokenizer, cfg.language, cfg.max_length, split="validation", seed=cfg.seed, **options
                    )
            except LongAdaptError as exc:
                raise LongAdaptError(f"{source.where('corpus.path')}: {exc}") from exc
    corpus_name = source.where("corpus")
    if len(train_dataset) == 0:
        raise LongAdaptError(
            f"{corpus_name}: the corpus gave no training rows (empty file, or every document filtered out); "
            "check the corpus path and its text field"
        )
    accumulation = derive_accumulation(cfg.tokens_per_step, cfg.max_length, cfg.micro_batch_size, world)
    plan = BatchPlan(len(train_dataset), cfg.micro_batch_size, accumulation, world, cfg.seed)
    if len(train_dataset) < plan.rows_per_step:
        raise LongAdaptError(
            f"{corpus_name}: the corpus holds {len(train_dataset)} packed training rows of {cfg.max_length} tokens, "
            f"fewer than one optimizer step needs ({plan.rows_per_step} rows = tokens_per_step "
            f"{cfg.tokens_per_step} / max_length {cfg.max_length}, rounded to micro_batch_size "
            f"{cfg.micro_batch_size} x {world} process(es)). Lower tokens_per_step "
            f"({source.where('tokens_per_step')}) or max_length, or add documents"
        )
    if len(validation_dataset) == 0:
        raise LongAdaptError(
            f"{corpus_name}: the validation split is empty; raise data.validation_fraction or add documents"
        )
    real_tokens_per_step = plan.rows_per_step * cfg.max_length
    if real_tokens_per_step != cfg.tokens_per_step:
        # a budget stated in tokens must not drift silently: say by how much every step differs
        logger.warning(
            "tokens_per_step %d is not a whole number of micro-batches: each step takes %d (%+.1f%% of the "
            "token budget; %d rows of %d = %d micro-batches of %d rows x %d process(es)). Set tokens_per_step "
            "to a multiple of micro_batch_size x processes x max_length = %d to keep the budget exact",
            cfg.tokens_per_step, real_tokens_per_step, 100.0 * (real_tokens_per_step / cfg.tokens_per_step - 1),
            plan.rows_per_step, cfg.max_length, accumulation, cfg.micro_batch_size, world,
            cfg.micro_batch_size * world * cfg.max_length,
        )
    data_info = {
        "packed_fingerprint": _dataset_fingerprint([train_dataset, validation_dataset]),
        "train": _packing_info(train_dataset),
        "validation": _packing_info(validation_dataset),
        "train_rows": len(train_dataset),
        "validation_rows": len(validation_dataset),
        "epochs": plan.epoch_at(cfg.steps),
    }

    return _Data(train_dataset, validation_dataset, plan, accumulation, real_tokens_per_step, data_info)
