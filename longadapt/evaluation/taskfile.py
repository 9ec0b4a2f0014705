"""The checks of a task file, before any data or model is loaded (its keys and their types are checked by
:func:`longadapt.config.from_dict`, as every config's): the splits' sources, and the values (type, reader, labels, metric, schemes, counts, encoding, buckets), each error
naming the file."""

from __future__ import annotations

import codecs
from typing import Any

from longadapt.config import ConfigSource, from_dict
from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import readers
from longadapt.evaluation import tasktypes

from longadapt.evaluation.taskconfig import SPLITS, SourceSpec, TaskConfig


def parse_splits(raw: Any, source: ConfigSource) -> dict[str, list[SourceSpec]]:
    where = source.where("splits")
    if not isinstance(raw, dict):
        raise LongAdaptError(f"{where}: 'splits' must map train/dev/test to data paths")
    out = {}
    for split, value in raw.items():
        if split not in SPLITS:
            raise LongAdaptError(f"{source.where('splits.' + str(split))}: unknown split {split!r}; use train, dev "
                                 "and test")
        items = value if isinstance(value, list) else [value]
        specs = []
        for i, item in enumerate(items):
            key = f"splits.{split}.{i}" if isinstance(value, list) else f"splits.{split}"
            if isinstance(item, str):
                item = {"path": item}
            if not isinstance(item, dict) or not item.get("path"):
                raise LongAdaptError(f"{source.where(key)}: splits.{split}[{i}] needs a 'path'")
            specs.append(from_dict(SourceSpec, item, source, key + "."))
        out[split] = specs
    for split in SPLITS:
        if split not in out:
            raise LongAdaptError(f"{where}: split {split!r} is missing; a task needs train, dev and test "
                                 "(dev selects the checkpoint)")
    return out


def validate(cfg: TaskConfig, where: str) -> None:
    tasktypes.load_module(cfg.type_module, where)
    ttype = tasktypes.get(cfg.type, where)
    if cfg.reader not in readers.READERS:
        raise LongAdaptError(f"{where}: unknown reader {cfg.reader!r}; known: {', '.join(readers.READERS)}")
    kind = readers.READERS[cfg.reader].kind
    if kind == "by type":  # datasets: what the task type reads
        kind = "tagged" if "tagged" in ttype.readers else "classification"
    if kind not in ttype.readers:
        raise LongAdaptError(f"{where}: reader {cfg.reader!r} cannot feed a {cfg.type} task")
    if ttype.labels and not cfg.labels:
        raise LongAdaptError(f"{where}: 'labels' must list the task's labels (entity types, classes or options)")
    if len(set(cfg.labels)) != len(cfg.labels):
        raise LongAdaptError(f"{where}: 'labels' has duplicates")
    if cfg.metric is not None and cfg.metric not in ttype.metrics:
        raise LongAdaptError(f"{where}: metric {cfg.metric!r} is not available for {cfg.type}; use one of "
                             f"{', '.join(ttype.metrics)}")
    for key, allowed in (("nested", E.NESTED_SCHEMES), ("discontinuous", E.DISCONTINUOUS_MODES),
                         ("other_labels", readers.OTHER_LABELS), ("count", E.COUNTS)):
        if getattr(cfg, key) not in allowed:
            raise LongAdaptError(f"{where}: {key} must be one of {', '.join(allowed)}, not {getattr(cfg, key)!r}")
    if cfg.count == "clef" and (not ttype.entities or not readers.reads_documents(cfg.reader)):
        raise LongAdaptError(f"{where}: count: clef counts annotations as the CLEF eHealth scorer reads BRAT T lines: "
                             "it applies to ner tasks on documents (reader brat or xmi); remove it or write count: units")
    clef_metrics = [f"{name} {value}" for name, value in (("metric", cfg.metric),
                                                          ("training.select_metric", cfg.training.select_metric))
                    if isinstance(value, str) and value.startswith("clef_")]
    if clef_metrics and cfg.count != "clef":
        raise LongAdaptError(f"{where}: {' and '.join(clef_metrics)} needs the CLEF count: add count: clef")
    try:
        codecs.lookup(cfg.encoding)
    except (LookupError, TypeError):
        raise LongAdaptError(f"{where}: encoding {cfg.encoding!r} is not a codec Python knows; write e.g. utf-8, "
                             "cp1252 or latin-1") from None
    if cfg.other_labels != "error" and not ttype.tokens:
        raise LongAdaptError(f"{where}: other_labels applies to ner and pos tasks")
    if cfg.segment_on is not None and not readers.reads_documents(cfg.reader):
        raise LongAdaptError(f"{where}: segment_on cuts documents (readers brat and xmi)")
    for i, entry in enumerate(cfg.published):
        missing = [k for k in ("model", "score", "metric", "source") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise LongAdaptError(f"{where}: published[{i}] needs {', '.join(missing)} (model, score x 100, metric, "
                                 "source; note optional)")
        try:
            float(entry["score"])
        except (TypeError, ValueError):
            raise LongAdaptError(f"{where}: published[{i}].score must be a number (x 100), not {entry['score']!r}") from None
    if isinstance(cfg.length_buckets, str):
        if cfg.length_buckets != "auto":
            raise LongAdaptError(f"{where}: length_buckets must be auto or ascending word counts, e.g. [256, 512, 1024], "
                                 f"not {cfg.length_buckets!r}")
    elif (not isinstance(cfg.length_buckets, list) or not cfg.length_buckets
          or not all(isinstance(e, int) and not isinstance(e, bool) for e in cfg.length_buckets)
          or sorted(set(cfg.length_buckets)) != list(cfg.length_buckets)):
        raise LongAdaptError(f"{where}: length_buckets must be auto or ascending word counts, e.g. [256, 512, 1024], "
                             f"not {cfg.length_buckets!r}")
