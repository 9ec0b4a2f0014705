"""Apply a fine-tuned model to new documents: ``longadapt predict`` and :func:`longadapt.predict`.

The model is one that ``longadapt evaluate --save-models`` kept (its ``config.longadapt_task`` records the
task type, labels, decision threshold, entity scheme and word splitter) or any transformers token- or
sequence-classification directory. Documents go through the *same* code as evaluation: the task's
adapter of :mod:`.finetune` cuts them into windows (a 512-token model) or reads them whole (a long
model), merges the windows with the same rule, and entity classes become character mentions with the
same scheme, so that predicting a task's test documents reproduces the evaluation's test scores.

Outputs (``--out DIR``), each file written under a temporary name and renamed when complete:

``json/<id>.json``
    one document: entities with character offsets into the original text, type and score (the mean
    probability of the words' classes), or labels with probabilities;
``brat/<id>.txt`` + ``brat/<id>.ann``
    entity tasks: the text byte for byte and one ``T`` line per mention;
``predictions.jsonl`` (and ``predictions.csv`` for classification)
    every document, in input order, written at the end;
``manifest-<rank>.jsonl``
    the documents done (id and sha256 of the text), so that a stopped run over 100,000 notes continues:
    a re-run skips the documents done with the same text;
``predict.json``
    the model (its fingerprint), the task it carries and the options; a folder holding another model's
    predictions is refused. ``"status"`` is ``"running"`` from the start and ``"completed"`` (with the
    counts) once ``predictions.jsonl`` is written: a killed run's folder says it is not complete.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import tasktypes
from longadapt.io import atomic_write_text
from longadapt.progress import progress
from longadapt.tokenizers.loading import load_tokenizer

logger = logging.getLogger(__name__)

@dataclass
class ModelTask:
    """What a model carries about its task."""

    type: str
    labels: list[str]
    name: str = ""
    threshold: float | None = None
    scheme: E.Scheme | None = None
    word_splitter: str = "regex"
    truncate: bool = False
    at_least_one: bool = True
    brat_labels: dict[str, Any] = field(default_factory=dict)  # the task's label_from / label_map (--gold)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "labels": self.labels, "name": self.name, "threshold": self.threshold,
                "scheme": self.scheme.to_config() if self.scheme else None, "word_splitter": self.word_splitter,
                "truncate": self.truncate, **({"brat_labels": self.brat_labels} if self.brat_labels else {})}


def model_task(config: Any, where: str) -> ModelTask:
    """The task of a model directory's config: ``longadapt_task`` when evaluate saved it, else read from a
    transformers classification head (``id2label``, ``problem_type``)."""
    info = getattr(config, "longadapt_task", None)
    archs = list(getattr(config, "architectures", None) or [])
    if info:
        kind = info.get("type")
        tasktypes.load_module(info.get("type_module"), where)
        if kind not in tasktypes.names(predict=True):
            raise LongAdaptError(f"{where}: a {kind} model; predict applies {', '.join(tasktypes.names(predict=True))} "
                                 "models")
        scheme = E.scheme_from_config(info["scheme"]) if info.get("scheme") else None
        if kind == "ner" and scheme is None:
            scheme = _bio_scheme(config, where)
        return ModelTask(kind, list(info.get("labels") or []), info.get("task", ""), info.get("threshold"), scheme,
                         info.get("word_splitter", "regex"), bool(info.get("truncate", False)),
                         brat_labels=dict(info.get("brat_labels") or {}))
    if any(a.endswith("ForTokenClassification") for a in archs):
        scheme = _bio_scheme(config, where)
        return ModelTask("ner", scheme.labels, scheme=scheme)
    if any(a.endswith("ForSequenceClassification") for a in archs):
        names = [config.id2label[i] for i in sorted(config.id2label)] if getattr(config, "id2label", None) else []
        problem = getattr(config, "problem_type", None)
        if problem == "regression" or getattr(config, "num_labels", 0) == 1:
            return ModelTask("regression", [])
        if problem == "multi_label_classification":
            return ModelTask("multilabel", names, threshold=0.5)
        return ModelTask("classification", names)
    raise LongAdaptError(
        f"{where}: the model's head is not a classification head (architectures: {', '.join(archs) or 'none'}). "
        "predict takes a model that longadapt evaluate --save-models kept, or a transformers token- or "
        "sequence-classification model")


def _bio_scheme(config: Any, where: str) -> E.FlattenScheme:
    names = [config.id2label[i] for i in sorted(config.id2label)]
    labels: list[str] = []
    for t in names:
        prefix, dash, typ = str(t).partition("-")
        if t == "O":
            continue
        if not dash or prefix not in ("B", "I"):
            raise LongAdaptError(f"{where}: the token labels ({', '.join(map(str, names[:6]))}, ...) are not BIO tags "
                                 "(O, B-X, I-X); predict reads entities from BIO tags")
        if typ not in labels:
            labels.append(typ)
    if "O" not in names or any(f"{p}-{lab}" not in names for lab in labels for p in ("B", "I")):
        raise LongAdaptError(f"{where}: the token labels lack O or a B-/I- tag of some type; predict reads entities "
                             "from complete BIO tag sets")
    return E.FlattenScheme(labels, names)


# ---------------------------------------------------------------------------------------------
# the predictor (the Python API)
# ---------------------------------------------------------------------------------------------


class Predictor:
    """A loaded model that predicts documents; :func:`predict` is the one-call form."""

    def __init__(self, model: str | os.PathLike, device: str = "auto", max_length: int | None = None,
                 batch_tokens: int = 16384, precision: str = "fp32") -> None:
        from accelerate import Accelerator
        from transformers import AutoConfig

        import longadapt  # noqa: F401  (registers the core)
        from longadapt import precision as P
        from longadapt.evaluation import windows as W
        from longadapt.evaluation.batching import Runner
        from longadapt.evaluation.models import load_model
        from longadapt.evaluation.tasks import Task, TaskConfig, TaskData, FinetuneConfig
        from longadapt.sources import resolve_model_source

        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.precision = P.resolve(precision, device)  # a precision the device cannot run: refused before loading
        self.model_dir = resolve_model_source(model, "--model")
        config = AutoConfig.from_pretrained(self.model_dir)
        self.info = model_task(config, str(self.model_dir))
        tok = load_tokenizer(str(self.model_dir), for_words=True, where="model")
        length = W.model_max_length(tok, config, max_length)
        tok.model_max_length = 10**9  # documents are tokenized whole, then cut into windows
        task = Task(TaskConfig(name=self.info.name or "predict", type=self.info.type,
                               reader="brat" if tasktypes.get(self.info.type).entities else "tsv",
                               labels=self.info.labels,
                               word_splitter=self.info.word_splitter),
                    Path(self.model_dir), Path("."))
        training = FinetuneConfig(truncate=self.info.truncate, threshold=self.info.threshold, batch_size=16,
                                  at_least_one=self.info.at_least_one).resolved(self.info.type)
        data = TaskData(splits={}, stats={}, scheme=self.info.scheme)
        self.adapter = tasktypes.get(self.info.type).adapter_class()(task, tok, training, length, data)
        model_obj, missing, _ = load_model(self.adapter, str(self.model_dir), task)
        if missing:
            raise LongAdaptError(f"{self.model_dir}: its {self.info.type} head is not trained (no {', '.join(missing)} in "
                                 "the checkpoint); predict a model that longadapt evaluate --save-models kept")
        logger.info("%s: predicting in %s (%s)", self.model_dir, self.precision.name, self.precision.reason)
        self.accelerator = Accelerator(cpu=device == "cpu")
        model_obj = model_obj.to(self.accelerator.device).eval()
        model_obj = P.quantize_for_inference(model_obj, self.precision, str(self.model_dir))
        self.runner = Runner(self.accelerator, model_obj, 16, batch_tokens,
                                autocast=lambda: P.autocast(self.precision, device))
        self.max_length = length

    def __call__(self, docs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        """One result per ``(id, text)``: ``entities`` (NER) or ``labels`` / ``probabilities`` / ``score``."""
        docs = list(docs)
        if not docs:
            return []
        return self.adapter.predict_documents(self.runner, docs, self.info)


def predict(model: str | os.PathLike, texts: Iterable[str] | Iterable[tuple[str, str]] | str,
            **kwargs: Any) -> list[dict[str, Any]]:
    """Predict ``texts`` (strings, or ``(id, text)`` pairs) with ``model`` (a directory, installed model
    package or hub id); see :class:`Predictor` for ``device``, ``max_length``, ``batch_tokens``, ``precision``
    (``auto | fp32 | bf16 | int8``, :mod:`longadapt.precision`)."""
    if isinstance(texts, str):
        texts = [texts]
    docs = [(t[0], t[1]) if isinstance(t, tuple) else (str(i), t) for i, t in enumerate(texts)]
    return Predictor(model, **kwargs)(docs)


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


@dataclass
class InputDoc:
    id: str
    text: str | None  # None when the input could not be read (``problem`` says why)
    source: str
    problem: str = ""
    gold_ann: Path | None = None  # BRAT input: the .ann next to the .txt


def iter_inputs(path: str, encoding: str = "utf-8") -> Iterator[InputDoc]:
    """Documents of ``path``: a folder of ``.txt`` (a BRAT folder too), a JSON Lines file (``.jsonl``,
    ``.jsonl.gz``) of ``{"id", "text"}``, one ``.txt`` file, or ``-`` for standard input (JSON Lines, or
    one plain text), decoded with ``encoding`` (never guessed). Read lazily, in a fixed order (file names
    sorted; lines in order)."""
    if path == "-":
        raw = sys.stdin.buffer.read()
        yield from _jsonl_or_text(raw, "<stdin>", "stdin", encoding)
        return
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.txt"))
        others = sorted(x for x in p.iterdir() if x.is_file() and x.suffix not in (".txt", ".ann", ".conf"))
        if not files:
            raise LongAdaptError(f"{p}: no .txt file in this folder; give a folder of .txt documents, a JSON Lines "
                                 "file or - for standard input")
        for x in others:
            yield InputDoc(x.name, None, str(x), "not a .txt document (only .txt files of a folder are read)")
        for f in files:
            yield _read_txt(f, encoding)
        return
    if not p.is_file():
        raise LongAdaptError(f"{p}: no such file or folder")
    if p.name.endswith((".jsonl", ".jsonl.gz", ".json.gz")):
        opener = gzip.open if p.name.endswith(".gz") else open
        with opener(p, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield _json_line(line, str(p), lineno, encoding)
        return
    if p.suffix == ".txt":
        yield _read_txt(p, encoding)
        return
    raise LongAdaptError(f"{p}: give a folder of .txt files, a .txt file, a .jsonl(.gz) file, or -")


NOT_DECODED = "convert it to UTF-8, or give the inputs' encoding with --encoding (e.g. cp1252)"


def _read_txt(f: Path, encoding: str = "utf-8") -> InputDoc:
    ann = f.with_suffix(".ann")
    try:
        with open(f, encoding=encoding, newline="") as fh:  # offsets count every character, CRLF included
            text = fh.read()
    except UnicodeDecodeError as exc:
        return InputDoc(f.stem, None, str(f), f"not valid {encoding} (byte {exc.start}); {NOT_DECODED}")
    if not text.strip():
        return InputDoc(f.stem, None, str(f), "empty document")
    return InputDoc(f.stem, text, str(f), gold_ann=ann if ann.is_file() else None)


def _json_line(line: bytes, source: str, lineno: int, encoding: str = "utf-8") -> InputDoc:
    where = f"{source}:{lineno}"
    try:
        obj = json.loads(line.decode(encoding))
    except UnicodeDecodeError:
        return InputDoc(f"line-{lineno}", None, where, f"not valid {encoding}; {NOT_DECODED}")
    except json.JSONDecodeError as exc:
        return InputDoc(f"line-{lineno}", None, where, f"invalid JSON ({exc.msg})")
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        return InputDoc(f"line-{lineno}", None, where, 'expected an object with a "text" string (and an "id")')
    doc_id = str(obj.get("id", f"line-{lineno}"))
    if not obj["text"].strip():
        return InputDoc(doc_id, None, where, "empty document")
    return InputDoc(doc_id, obj["text"], where)


def _jsonl_or_text(raw: bytes, source: str, default_id: str, encoding: str = "utf-8") -> Iterator[InputDoc]:
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        yield InputDoc(default_id, None, source, f"not valid {encoding} (byte {exc.start}); {NOT_DECODED}")
        return
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and all(ln.lstrip().startswith("{") for ln in lines):
        for lineno, ln in enumerate(text.splitlines(), start=1):
            if ln.strip():
                yield _json_line(ln.encode("utf-8"), source, lineno)
        return
    if not text.strip():
        yield InputDoc(default_id, None, source, "empty document")
        return
    yield InputDoc(default_id, text, source)


# ---------------------------------------------------------------------------------------------
# the command: sharded, resumable, atomic
# ---------------------------------------------------------------------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def safe_id(doc_id: str) -> str:
    from longadapt.evaluation.outputs import safe_name

    return safe_name(doc_id)


@dataclass
class PredictRun:
    model: str
    input: str
    out: Path
    device: str = "auto"
    max_length: int | None = None
    batch_tokens: int = 16384
    docs_per_batch: int = 8
    precision: str = "fp32"  # auto | fp32 | bf16 | int8 (longadapt.precision)
    gold: bool = False
    encoding: str = "utf-8"  # of the input files (never guessed)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _done_docs(out: Path) -> dict[str, str]:
    """id -> text sha256 of every document a manifest part records."""
    done: dict[str, str] = {}
    for part in sorted(out.glob("manifest-*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: that document is predicted again
            done[row["id"]] = row["sha256"]
    return done


def _append_line(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def run_predict(cfg: PredictRun, predictor: Predictor | None = None) -> int:
    """Predict every input document into ``cfg.out`` (with ``predictor``, or one loaded from ``cfg.model``);
    returns the number of inputs skipped."""
    from accelerate import PartialState

    from longadapt.evaluation.fingerprint import model_fingerprint
    from longadapt.evaluation.outputs import write_brat

    state = PartialState(cpu=cfg.device == "cpu")
    rank, world = state.process_index, state.num_processes
    predictor = predictor or Predictor(cfg.model, device=cfg.device, max_length=cfg.max_length,
                                       batch_tokens=cfg.batch_tokens, precision=cfg.precision)
    out = cfg.out
    header = {"kind": "longadapt.predict", "model": str(predictor.model_dir),
              "model_sha256": model_fingerprint(predictor.model_dir)["sha256"], "task": predictor.info.to_json(),
              "max_length": predictor.max_length, "precision": predictor.precision.to_json(), "status": "running"}
    stamp = out / "predict.json"
    if stamp.is_file():  # every process checks, so that none waits for a process that stopped here
        old = json.loads(stamp.read_text(encoding="utf-8"))
        used = (old.get("precision") or {"used": "fp32"})["used"]  # folders written before precision was recorded
        if old.get("model_sha256") != header["model_sha256"] or old.get("task") != header["task"] or \
                old.get("max_length") != header["max_length"] or used != predictor.precision.name:
            raise LongAdaptError(f"{out} holds the predictions of another model or setting ({old.get('model')}, "
                                 f"max length {old.get('max_length')}, precision {used}); give another --out")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        # a re-run says it is running again until it has finished
        atomic_write_text(stamp, json.dumps(header, indent=2, ensure_ascii=False) + "\n")
        for sub in ("json", "brat"):  # half-written files of a killed run (each file is written atomically)
            for stale in (out / sub).glob(".*.tmp-*") if (out / sub).is_dir() else []:
                stale.unlink(missing_ok=True)
    state.wait_for_everyone()
    done = _done_docs(out)
    ner = tasktypes.get(predictor.info.type).entities
    (out / "json").mkdir(parents=True, exist_ok=True)
    if ner:
        (out / "brat").mkdir(parents=True, exist_ok=True)
    manifest = out / f"manifest-{rank}.jsonl"
    reused = computed = 0
    seen_ids: dict[str, str] = {}
    order: list[str] = []
    pending: list[InputDoc] = []
    windowed: list[str] = []

    def flush() -> None:
        nonlocal computed
        if not pending:
            return
        results = predictor([(d.id, d.text) for d in pending])
        for d, res in zip(pending, results):
            res["source"] = d.source
            if res.get("windows", 1) > 1:
                windowed.append(d.id)
                if predictor.max_length > 512:
                    logger.warning("%s: longer than the model's %d tokens; read as %d windows", d.source,
                                   predictor.max_length, res["windows"])
            name = safe_id(d.id)
            if ner:
                write_brat(out / "brat", name, d.text, res["entities"])
            atomic_write_text(out / "json" / f"{name}.json", json.dumps(res, ensure_ascii=False) + "\n")
            _append_line(manifest, {"id": d.id, "sha256": _sha(d.text)})
            computed += 1
        pending.clear()

    desc = f"predict{f' [{rank}/{world}]' if world > 1 else ''}: documents read"
    for k, doc in enumerate(progress(iter_inputs(cfg.input, cfg.encoding), desc=desc, unit="doc")):
        if doc.text is None:
            if rank == 0:
                cfg.skipped.append((doc.source, doc.problem))
            continue
        if doc.id in seen_ids:
            if rank == 0:
                cfg.skipped.append((doc.source, f"the id {doc.id!r} was already used by {seen_ids[doc.id]}"))
            continue
        seen_ids[doc.id] = doc.source
        order.append(doc.id)
        if (len(order) - 1) % world != rank:  # documents are dealt to the processes in turn
            continue
        if done.get(doc.id) == _sha(doc.text) and (out / "json" / f"{safe_id(doc.id)}.json").is_file():
            reused += 1
            continue
        pending.append(doc)
        if len(pending) >= cfg.docs_per_batch:
            flush()
    flush()
    state.wait_for_everyone()
    if rank == 0:
        _merge(out, order, predictor.info)
        if cfg.gold:
            _score_gold(out, cfg.input, order, predictor.info, cfg.encoding)
        logger.info("predicted %d documents into %s (%d reused from an earlier run%s)", computed, out, reused,
                    f", {world} processes" if world > 1 else "")
        if windowed:
            logger.info("%d document(s) longer than the model's %d tokens were read as windows (merged as in "
                        "evaluation)", len(windowed), predictor.max_length)
        for source, problem in cfg.skipped:
            logger.warning("skipped %s: %s", source, problem)
        if cfg.skipped:
            logger.warning("%d input(s) skipped; they are listed above and in %s", len(cfg.skipped),
                           out / "skipped.jsonl")
        atomic_write_text(out / "skipped.jsonl", "".join(json.dumps({"source": s, "problem": p}, ensure_ascii=False)
                                                         + "\n" for s, p in cfg.skipped))
        done_header = {**header, "status": "completed", "documents": len(order), "skipped": len(cfg.skipped)}
        atomic_write_text(stamp, json.dumps(done_header, indent=2, ensure_ascii=False) + "\n")
    return len(cfg.skipped)


def _merge(out: Path, order: list[str], info: ModelTask) -> None:
    """predictions.jsonl (and predictions.csv for classification) in input order, streamed from the
    per-document files."""
    tmp = out / ".predictions.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for doc_id in order:
            fh.write((out / "json" / f"{safe_id(doc_id)}.json").read_text(encoding="utf-8"))
    os.replace(tmp, out / "predictions.jsonl")
    if not tasktypes.get(info.type).entities:  # labels with probabilities, or a score (regression)
        rows = [json.loads((out / "json" / f"{safe_id(d)}.json").read_text(encoding="utf-8")) for d in order]
        scored = bool(rows) and "labels" not in rows[0]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "labels"] + (["score"] if scored else [f"p_{lab}" for lab in info.labels]))
        for doc_id, row in zip(order, rows):
            if scored:
                w.writerow([doc_id, "", row["score"]])
            else:
                w.writerow([doc_id, "|".join(row["labels"])] + [row["probabilities"][lab] for lab in info.labels])
        atomic_write_text(out / "predictions.csv", buf.getvalue())


def _score_gold(out: Path, source: str, order: list[str], info: ModelTask, encoding: str = "utf-8") -> None:
    """BRAT input with its .ann kept as gold: the evaluation's full-gold scores (the units count, discontinuous
    mentions as fragments) and the CLEF eHealth (BRATEval) count of the same predictions, in scores.json."""
    from longadapt.evaluation.data import document_words
    from longadapt.evaluation.entities import clef_entities, clef_scores
    from longadapt.evaluation.outputs import clef_line, clef_table, count_table
    from longadapt.evaluation.readers import read_brat

    if not tasktypes.get(info.type).entities:
        raise LongAdaptError("--gold scores entity predictions against a BRAT folder's .ann files")
    docs = {d.id: d for d in read_brat(source, labels=info.labels, other_labels="ignore", encoding=encoding,
                                       **info.brat_labels)}
    gold: dict[str, set[E.Span]] = {}
    words = []
    for d in order:
        if d in docs:  # the documents' words and gold as evaluation builds them, so coverage counts alike
            seqs, units, _ = document_words(docs[d], info.word_splitter, "fragments")
            gold[d] = set(units)
            words.extend(seqs)
    rep, lost = E.document_coverage(words, gold, info.scheme)
    pred = {}
    for d in gold:
        row = json.loads((out / "json" / f"{safe_id(d)}.json").read_text(encoding="utf-8"))
        pred[d] = {(e["start"], e["end"], e["label"]) for e in row["entities"]}
    scores, table = E.mention_scores(gold, pred, info.labels, rep, lost)
    clef, table["clef"] = clef_scores({d: clef_entities(docs[d].entities) for d in gold}, pred, info.labels)
    scores.update(clef)
    atomic_write_text(out / "scores.json", json.dumps({"scores": scores, "entities": table}, indent=2) + "\n")
    logger.info("scores against the .ann gold (%d documents): F1 %.4f, P %.4f, R %.4f (units: discontinuous mentions "
                "as fragments, duplicates once)%s\n%s\nCLEF eHealth count:\n%s", len(gold), scores["f1"],
                scores["precision"], scores["recall"], clef_line(scores), count_table(table), clef_table(table["clef"]))
