"""The task registry: one YAML file per task under ``languages/tasks/``.

A task YAML says what to read (reader, options, data paths per split), what to predict (type,
labels), how entities are represented and scored (``nested``, ``discontinuous``, ``other_labels``), how
to score (metric, length buckets) and how to fine-tune (``training``). A user-defined task is the same
YAML given with ``longadapt evaluate --task-file T.yaml``; no code is needed. The format is documented in
docs/evaluation.md.

Data paths are relative to the data root: the task's own ``data_root`` (relative to the YAML
file's folder) when set, else ``--data-root``, else the ``LONGADAPT_DATA`` environment variable,
else ``../shared/data`` next to the repository when it exists.

:meth:`Task.load_data` reads the three splits once, checks that no document is in two of them, and for
entity tasks builds the task's scheme and counts, per split and type, the gold mentions and how many
of them the scheme can represent (:class:`TaskData`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.config import ConfigSource, deep_merge, from_dict, load_yaml, override_items, source_for, yaml_key_lines
from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import readers
from longadapt.evaluation.data import Document, TaggedSentence, document_words, sentence_text
from longadapt.io import file_sha256
from longadapt.evaluation import tasktypes

from longadapt.evaluation.taskfile import parse_splits, validate
from longadapt.evaluation.taskconfig import (  # noqa: F401  (the task's config, re-exported for its users)
    DESCRIPTIVE_KEYS,
    DOCUMENT_BATCH_WORDS,
    DRBENCHMARK_ALL,
    PROTOCOLS,
    SPLITS,
    FinetuneConfig,
    SourceSpec,
    TaskConfig,
)

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
@dataclass
class SplitStats:
    """What a split holds (recorded in run.json): documents, examples, and for entity tasks the gold
    mentions and how many of them the scheme represents."""

    documents: int = 0
    examples: int = 0
    annotations: int = 0  # annotated mentions read (entity tasks)
    discontinuous: int = 0
    duplicates: int = 0  # identical (span, label) annotations counted once
    trimmed: int = 0  # mentions whose span started or ended on whitespace (trimmed)
    ignored_labels: dict[str, int] = field(default_factory=dict)  # other_labels: ignore
    unlabelled: int = 0  # annotations without a label left out (reader option unlabelled: skip)
    mapped_labels: dict[str, int] = field(default_factory=dict)  # brat label_map: "read -> label": mentions
    entities: dict[str, Any] | None = None  # gold / representable / lost per type (entities.mention_scores)


@dataclass
class TaskData:
    """The loaded splits of a task. Entity tasks also carry their scheme and, per split, every gold
    mention of every document (``gold[split][doc_id]``), the representable ones, and why the others are not."""

    splits: dict[str, list[Any]]
    stats: dict[str, SplitStats]
    scheme: E.Scheme | None = None
    gold: dict[str, dict[str, set[E.Span]]] = field(default_factory=dict)
    representable: dict[str, dict[str, set[E.Span]]] = field(default_factory=dict)
    # count: clef: per split and document, every annotation as BRATEval reads it (entities.clef_entities)
    clef_gold: dict[str, dict[str, list[E.ClefEntity]]] = field(default_factory=dict)
    lost: dict[str, dict[str, dict[E.Span, str]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, split: str) -> list[Any]:
        return self.splits[split]

    def doc_ids(self, split: str) -> list[str]:
        """Document ids of a split in reading order (a segmented document once)."""
        seen: dict[str, None] = {}
        for ex in self.splits[split]:
            seen.setdefault(getattr(ex, "doc_id", None) or ex.id, None)
        return list(seen)

    def limited(self, split: str, n: int | None) -> list[Any]:
        """The examples of the first ``n`` documents (all of them for None)."""
        if n is None:
            return self.splits[split]
        keep = set(self.doc_ids(split)[:n])
        return [ex for ex in self.splits[split] if (getattr(ex, "doc_id", None) or ex.id) in keep]


@dataclass
class Task:
    """A loaded task: its config, where it came from and where its data lives."""

    config: TaskConfig
    yaml_path: Path
    data_root: Path

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def type(self) -> str:
        return self.config.type

    @property
    def metric(self) -> str:
        return self.config.metric or tasktypes.get(self.config.type).main_metric

    @property
    def document_task(self) -> bool:
        """An entity task read from whole documents (BRAT, XMI)."""
        return readers.reads_documents(self.config.reader)

    @property
    def tag_labels(self) -> list[str]:
        """The tags of a POS task, or the flat BIO tags of a NER task (``O`` first)."""
        if self.type == "pos":
            return list(self.config.labels)
        return ["O"] + [f"{p}-{lab}" for lab in self.config.labels for p in ("B", "I")]

    def training(self) -> FinetuneConfig:
        return self.config.training.resolved(self.type, self.document_task)

    def path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.data_root / p

    def read_split(self, split: str) -> list[Any]:
        """The examples of ``split`` as the readers return them (documents stay documents)."""
        if split not in self.config.splits:
            raise LongAdaptError(f"task {self.name}: no split {split!r} in {self.yaml_path}")
        out: list[Any] = []
        for i, src in enumerate(self.config.splits[split]):
            where = f"{self.yaml_path}: splits.{split}[{i}]"
            options = {**self.config.reader_options, **src.options}
            if self.type == "pos" and self.config.reader == "iob":
                options.setdefault("scheme", "raw")
            labels = self.config.labels if tasktypes.get(self.type).labels else None
            select = None
            if src.ids_file:
                ids = readers.read_id_list(self.path(src.ids_file), src.ids_section)
                origin = f"{where}: ids_file {src.ids_file}" + (f" (section {src.ids_section})" if src.ids_section else "")
                select = readers.IdSelection(ids, src.ids_mode, origin)
            path = self.path(src.path)
            hub_id = src.path if (self.config.reader == "datasets" and not path.exists()) else None
            other = self.config.other_labels if tasktypes.get(self.type).tokens else "error"
            items = readers.read(self.config.reader, path, options, labels, where, other_labels=other,
                                 select=select, task_type=self.type, hub_id=hub_id, split_name=split,
                                 encoding=self.config.encoding)
            out.extend(self._select(items, src, where))
        if not out:
            raise LongAdaptError(f"task {self.name}: split {split!r} is empty after selection; check {self.yaml_path}")
        return out

    def load_split(self, split: str) -> list[Any]:
        """The examples of ``split`` alone (entity documents become word sequences without classes);
        :meth:`load_data` reads every split, checks them against each other and prepares entities."""
        return self._to_examples(self.read_split(split))[0]

    def _to_examples(self, items: list[Any]) -> tuple[list[Any], dict[str, set[E.Span]], SplitStats,
                                                       dict[str, list[E.ClefEntity]]]:
        """Examples of a split, the gold mentions of each document (entity tasks), the split's counts, and
        each document's annotations as the CLEF count reads them (documents)."""
        cfg = self.config
        stats = SplitStats()
        gold: dict[str, set[E.Span]] = {}
        clef: dict[str, list[E.ClefEntity]] = {}
        out: list[Any] = []
        ignored: Counter[str] = Counter()
        mapped: Counter[str] = Counter()
        unlabelled = 0
        for item in items:
            unlabelled += int((getattr(item, "meta", None) or {}).get("unlabelled", 0))
            ignored.update((getattr(item, "meta", None) or {}).get("ignored_labels", {}))
            mapped.update((getattr(item, "meta", None) or {}).get("mapped_labels", {}))
            if isinstance(item, Document):
                seqs, units, counts = document_words(item, cfg.word_splitter, cfg.discontinuous, cfg.segment_on)
                gold[item.id] = set(units)
                clef[item.id] = E.clef_entities(item.entities)
                stats.annotations += counts["annotations"]
                stats.discontinuous += counts["discontinuous"]
                stats.duplicates += counts["duplicates"]
                stats.trimmed += counts["trimmed"]
                out.extend(seqs)
            elif isinstance(item, TaggedSentence) and tasktypes.get(self.type).entities:
                text, offsets = sentence_text(item.words)
                units = [(offsets[i][0], offsets[j - 1][1], lab) for i, j, lab in E.tags_to_spans(item.tags)]
                item.text, item.offsets, item.mentions, item.doc_id = text, offsets, units, item.id
                gold[item.id] = set(units)
                stats.annotations += len(units)
                out.append(item)
            else:
                out.append(item)
        stats.documents = len({getattr(x, "doc_id", None) or x.id for x in out})
        stats.examples = len(out)
        stats.ignored_labels = dict(sorted(ignored.items()))
        stats.mapped_labels = dict(sorted(mapped.items()))
        stats.unlabelled = unlabelled
        return out, gold, stats, clef

    def load_data(self) -> TaskData:
        """Read train, dev and test; refuse a document found in two splits (or twice in one); for entity
        tasks build the scheme from train + dev and count what it represents in every split."""
        items = {s: self.read_split(s) for s in SPLITS}
        _check_disjoint(self, items)
        splits, golds, stats, clef = {}, {}, {}, {}
        for s in SPLITS:
            splits[s], golds[s], stats[s], clef[s] = self._to_examples(items[s])
        data = TaskData(splits=splits, stats=stats, clef_gold=clef if self.config.count == "clef" else {})
        for s in SPLITS:
            if stats[s].ignored_labels:
                logger.info("%s %s: left out (other_labels: ignore): %s", self.name, s,
                            ", ".join(f"{k} {v}" for k, v in stats[s].ignored_labels.items()))
            if stats[s].unlabelled:
                logger.warning("%s %s: %d annotation(s) without a label left out (reader_options.unlabelled: skip)",
                               self.name, s, stats[s].unlabelled)
            if stats[s].mapped_labels:
                logger.info("%s %s: labels renamed (label_map): %s", self.name, s,
                            ", ".join(f"{k}: {v}" for k, v in stats[s].mapped_labels.items()))
        if tasktypes.get(self.type).entities:
            self._prepare_entities(data, golds)
        return data

    def _prepare_entities(self, data: TaskData, golds: dict[str, dict[str, set[E.Span]]]) -> None:
        cfg = self.config
        if cfg.discontinuous not in E.DISCONTINUOUS_MODES:
            raise LongAdaptError(f"{self.yaml_path}: discontinuous must be one of {', '.join(E.DISCONTINUOUS_MODES)}, "
                                 f"not {cfg.discontinuous!r}")
        words = {s: [(ex.mentions or [], E.Words(ex.offsets)) for ex in data.splits[s]] for s in SPLITS}
        scheme = E.build_scheme(cfg.nested, cfg.labels, words["train"] + words["dev"],
                                words["train"] + words["dev"] + words["test"], cfg.max_depth)
        if not readers.reads_documents(self.config.reader) and scheme.name != "flatten":
            scheme = E.FlattenScheme(cfg.labels)  # tagged input is flat by construction
        data.scheme = scheme
        for s in SPLITS:
            for ex in data.splits[s]:
                w = E.Words(ex.offsets)
                ex.classes = scheme.encode(E.to_word_mentions(ex.mentions or [], w), len(w))
            rep, lost = E.document_coverage(data.splits[s], golds[s], scheme)
            _, table = E.mention_scores(golds[s], {}, cfg.labels, rep, lost)
            data.gold[s], data.representable[s], data.lost[s] = golds[s], rep, lost
            data.stats[s].entities = table
            total = table["total"]
            share = E.coverage_of(table)
            msg = (f"{self.name} {s}: {total['representable']} of {total['gold']} gold mentions representable "
                   f"({100 * share:.2f} %) under nested: {scheme.name}")
            if share < 0.99:
                reasons = Counter()
                for t in table["per_type"].values():
                    reasons.update(t["lost"])
                msg += "; lost: " + ", ".join(f"{v} {k}" for k, v in reasons.most_common())
                logger.warning("%s. They still count as misses in every score; see docs/evaluation.md "
                               "(nested, discontinuous, word_splitter) for what can represent them", msg)
                data.warnings.append(msg)
            else:
                logger.info(msg)

    def _select(self, items: list[Any], src: SourceSpec, where: str) -> list[Any]:
        """The examples a source keeps (see :class:`SourceSpec`), in reading order."""
        order = list(range(len(items)))  # positions in reading order, shuffled when asked
        if src.shuffle_seed is not None:
            if src.shuffle_rounds < 1:
                raise LongAdaptError(f"{where}: shuffle_rounds must be at least 1, not {src.shuffle_rounds}")
            rng = random.Random(src.shuffle_seed)
            for _ in range(src.shuffle_rounds):
                rng.shuffle(order)
        elif src.shuffle_rounds != 1:
            raise LongAdaptError(f"{where}: shuffle_rounds needs shuffle_seed")
        if src.fraction is not None:
            if len(src.fraction) != 2 or not 0 <= src.fraction[0] <= src.fraction[1] <= 1:
                raise LongAdaptError(f"{where}: fraction must be [start, end] with 0 <= start <= end <= 1")
            n = len(order)
            order = order[int(src.fraction[0] * n) : int(src.fraction[1] * n)]
        if src.every:
            if src.every_mode not in ("keep", "drop"):
                raise LongAdaptError(f"{where}: every_mode must be keep or drop, not {src.every_mode!r}")
            keep = src.every_mode == "keep"
            order = [x for i, x in enumerate(order) if (i % src.every == src.offset) == keep]
        return [items[i] for i in sorted(order)]

    def fingerprint(self, split: str) -> dict[str, Any]:
        """sha256 of every file the split reads (data and id lists), for run.json."""
        files: list[Path] = []
        for src in self.config.splits.get(split, []):
            for rel in [src.path] + ([src.ids_file] if src.ids_file else []):
                p = self.path(rel)
                if p.is_dir():
                    files.extend(sorted(x for x in p.rglob("*") if x.is_file()))
                elif p.exists():
                    files.append(p)
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(self.data_root) if f.is_relative_to(self.data_root) else f).encode())
            h.update(file_sha256(f).encode())
        for src in self.config.splits.get(split, []):  # hub datasets: the id, config and split name
            if not self.path(src.path).exists():
                h.update(repr((src.path, sorted(src.options.items()))).encode())
        return {"sha256": h.hexdigest(), "files": len(files)}


def _check_disjoint(task: Task, items: dict[str, list[Any]]) -> None:
    """No example read twice: the same file (and, for rows, the same line) in two splits, or twice in one
    (two sources selecting it), is an error; so is a document of the same name and text in two splits
    (a copy). Identical texts under other names are a warning (short titles repeat legitimately)."""
    def key(x: Any) -> tuple[str, str, str]:
        line = getattr(x, "line", None) or (getattr(x, "meta", None) or {}).get("line", "")
        return (str(Path(x.source).resolve()) if x.source else "", str(x.id), str(line))

    def describe(k: tuple[str, str, str]) -> str:
        return f"{k[1]} ({k[0]}" + (f", line {k[2]})" if k[2] else ")")

    where: dict[tuple[str, str, str], str] = {}
    clashes: list[str] = []
    texts: dict[str, tuple[str, str]] = {}  # text hash -> (split, id)
    similar = 0
    for split in SPLITS:
        for x in items[split]:
            k = key(x)
            if k in where:
                clashes.append(f"{describe(k)}: {where[k]} and {split}")
                continue
            where[k] = split
            body = getattr(x, "text", None)
            if body is None:
                continue
            h = hashlib.sha256(" ".join(body.split()).encode()).hexdigest()
            first = texts.setdefault(h, (split, str(x.id)))
            if first[0] != split:
                if first[1] == str(x.id):
                    clashes.append(f"{x.id}: the same document (name and text) in {first[0]} and {split}")
                else:
                    similar += 1
    if clashes:
        shown = "; ".join(clashes[:8]) + (f"; and {len(clashes) - 8} more" if len(clashes) > 8 else "")
        raise LongAdaptError(f"{task.yaml_path}: {len(clashes)} document(s) are selected twice: {shown}. Each document "
                             "must be in one split once; fix the splits' paths, ids_file, fraction or every")
    if similar:
        logger.warning("%s: %d text(s) of one split also appear in another split under another name", task.name,
                       similar)


def tasks_dir() -> Path:
    env = os.environ.get("LONGADAPT_TASKS")
    return Path(env) if env else REPO / "languages" / "tasks"


def available_tasks() -> list[str]:
    return sorted(p.stem for p in tasks_dir().glob("*.yaml"))


def default_data_root(cli_value: str | Path | None = None) -> Path | None:
    """``--data-root``, else ``$LONGADAPT_DATA``, else ``../shared/data`` next to the repository."""
    from longadapt.dataroot import data_root

    return Path(cli_value) if cli_value else data_root()


def load_task(name_or_path: str | Path, data_root: str | Path | None = None,
              overrides: dict[str, Any] | None = None, protocol: str = "default",
              overrides_from: str = "--set") -> Task:
    """Load a task by registry name (``fr-e3c-ner``) or from a YAML file path.

    ``protocol`` ``drbenchmark`` applies DrBenchmark's handling (the type's ``drbenchmark`` in :mod:`.tasktypes`, then the YAML's own
    ``protocols.drbenchmark``) and names the task ``<name>.drbenchmark``; ``overrides`` (e.g. from
    ``parse_overrides(["training.epochs=3"])``, reported as coming from ``overrides_from``) are merged last.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = tasks_dir() / f"{text}.yaml"
        if not path.is_file():
            raise LongAdaptError(
                f"unknown task {text!r}; known tasks: {', '.join(available_tasks()) or 'none'}. "
                "Give a task YAML with --task-file to run your own task"
            )
    if protocol not in PROTOCOLS:
        raise LongAdaptError(f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}")
    data = load_yaml(path)
    where = str(path)
    source = ConfigSource(path=path, lines=yaml_key_lines(path),
                          overrides=source_for(None, override_items(overrides or {}), overrides_from).overrides)
    if data.get("training") is None:
        data["training"] = {}  # "training:" left empty: the type's defaults
    from_dict(TaskConfig, {k: v for k, v in data.items() if k != "splits"}, source)  # keys and types, as written
    if overrides:  # typed on their own first, so that a bad value is blamed on --set
        from_dict(TaskConfig, overrides, source)
    data.setdefault("name", path.stem)
    if protocol != "default":
        tasktypes.load_module(data.get("type_module"), where)
        kind = data.get("type")
        served = [n for n in tasktypes.names() if tasktypes.get(n).drbenchmark is not None]
        if kind not in served:
            raise LongAdaptError(f"{where}: type must be one of {', '.join(served)} under --protocol "
                                 f"{protocol}, not {kind!r}")
        own = (data.get("protocols") or {}).get(protocol) or {}
        if not isinstance(own, dict):
            raise LongAdaptError(f"{source.where('protocols.' + protocol)}: protocols.{protocol} must map task keys "
                                 "to values")
        from_dict(TaskConfig, own, source, f"protocols.{protocol}.")
        data = deep_merge(deep_merge(deep_merge(data, DRBENCHMARK_ALL), tasktypes.get(kind).drbenchmark), own)
        data["name"] = f"{data['name']}.{protocol}"
    if overrides:
        data = deep_merge(data, overrides)
    data["protocol"] = protocol
    raw_splits = data.pop("splits", None)
    cfg = from_dict(TaskConfig, data, source)
    cfg.splits = parse_splits(raw_splits, source)
    validate(cfg, where)
    if cfg.data_root is not None:
        root = (path.parent / cfg.data_root).resolve()
    else:
        found = default_data_root(data_root)
        if found is None:
            raise LongAdaptError(
                f"{where}: no data root: give --data-root, set LONGADAPT_DATA, or set data_root in the task YAML"
            )
        root = found
    if not root.is_dir():
        raise LongAdaptError(f"{where}: data root {root} is not a folder; check --data-root / LONGADAPT_DATA")
    task = Task(config=cfg, yaml_path=path, data_root=root)
    task.training()  # types and values of the training section, checked before any data or model is loaded
    return task
