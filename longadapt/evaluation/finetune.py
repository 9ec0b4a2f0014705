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

import contextlib
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
from longadapt.evaluation.data import ClassificationExample, MCQAItem, TaggedSentence
from longadapt.evaluation.tasks import Task, TaskData, FinetuneConfig
from longadapt.modeling.parameters import adamw, parameter_groups
from longadapt.progress import progress
from longadapt.tokenizers.loading import load_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class RunLimits:
    """Limits for smoke tests and quick comparisons (recorded in run.json)."""

    max_train_docs: int | None = None
    max_eval_docs: int | None = None
    max_steps: int | None = None  # stop training after this many optimizer steps


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
    # the best prediction that ignores the input (constant_baseline): what the score must beat to mean learning
    baseline: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"kind": "longadapt.evaluate.run", **asdict(self)}
        out.pop("predictions")
        return out


VERSIONED = ("longadapt", "torch", "transformers", "tokenizers", "accelerate", "datasets", "scikit-learn", "scipy",
             "seqeval", "numpy")


def versions() -> dict[str, str | None]:
    """The versions that can change a score (installed distributions, read by importlib.metadata)."""
    from longadapt.runinfo import package_versions

    return package_versions(VERSIONED, platform_name=False)


def _n_words(ex: Any) -> int:
    meta = getattr(ex, "meta", None) or {}
    return int(meta.get("n_whitespace_words", ex.n_words))


# ---------------------------------------------------------------------------------------------
# adapters: one per head type
# ---------------------------------------------------------------------------------------------


class _Adapter:
    """Builds features, batches, losses and predictions for one head type."""

    def __init__(self, task: Task, tok: Any, cfg: FinetuneConfig, max_length: int, data: TaskData | None = None) -> None:
        self.task, self.tok, self.cfg, self.max_length, self.data = task, tok, cfg, max_length, data
        self.prefix, self.suffix = W.special_tokens(tok)
        self.max_content = max_length - len(self.prefix) - len(self.suffix)
        self.eval_stride = min(cfg.stride or max(1, self.max_content // 2), self.max_content)
        pad = tok.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self.stats: dict[str, Any] = {}

    def pad(self, seqs: Sequence[Sequence[int]], value: int) -> Any:
        import torch

        longest = max(len(s) for s in seqs)
        out = torch.full((len(seqs), longest), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        return out

    def encode_ids(self, seqs: Sequence[Sequence[int]],
                   type_ids: Sequence[Sequence[int]] | None = None) -> dict[str, Any]:
        ids = self.pad(seqs, self.pad_id)
        mask = self.pad([[1] * len(s) for s in seqs], 0)
        batch = {"input_ids": ids, "attention_mask": mask}
        if type_ids is not None:
            batch["token_type_ids"] = self.pad(type_ids, 0)
        return batch

    def encode_pairs(self, firsts: Sequence[str], seconds: Sequence[str]) -> list[tuple[list[int], list[int] | None]]:
        """Token ids (and segment ids when the model takes them) of text pairs, truncated to fit."""
        enc = self.tok(list(firsts), list(seconds), truncation="longest_first", max_length=self.max_length)
        types = enc.get("token_type_ids") if "token_type_ids" in self.tok.model_input_names else None
        return [(list(ids), list(types[i]) if types is not None else None) for i, ids in enumerate(enc["input_ids"])]

    def init_head(self, model: Any, examples: Sequence[Any], new: set[str]) -> bool:
        """Start a new head's output bias at the training prior (per head type); returns whether it did."""
        return False

    def train_units(self, items: Sequence[Any]) -> list[list[int]]:
        """The training items of each example, in example order (:meth:`train_items` gives one item per
        example; token tasks override it: a sequence's windows are its items)."""
        return [[i] for i in range(len(items))]

    def loss_weight(self, items: Sequence[Any]) -> int:
        """What :meth:`loss` of these items averages over (examples; labelled words for token tasks), so that
        micro-batches weighted by it sum to the whole batch's loss."""
        return len(items)

    def predictions(self, examples: Sequence[Any], out: dict[str, Any]) -> list[dict[str, Any]]:
        """Test outputs to write next to run.json (entity tasks: mentions with offsets); others: none
        beyond run.json's per-example rows."""
        return []

    def cached(self, key: str, examples: Sequence[Any], build: Any) -> Any:
        """Features of an example list, computed once per list (dev is predicted every epoch)."""
        cache = self.__dict__.setdefault("_cache", {})
        k = (key, id(examples), len(examples))
        if k not in cache:
            cache[k] = build()
        return cache[k]


def _set_head_bias(model: Any, new: set[str], bias: np.ndarray) -> bool:
    """Set the output bias of a *new* linear head (``classifier``) to ``bias``; a head read from the
    checkpoint, or a head of another shape, is left alone. Returns whether it was set."""
    import torch

    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.bias is None or head.out_features != len(bias) \
            or "classifier.bias" not in new:
        return False
    with torch.no_grad():
        head.bias.copy_(torch.tensor(bias, dtype=head.bias.dtype))
    return True


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


class TokenAdapter(_Adapter):
    """NER / POS: token classification of words (first sub-token), windows merged per token.

    NER heads have ``n_layers x n_classes`` outputs, one softmax per layer of the task's scheme
    (:mod:`.entities`); a word's classes become mentions again and are scored against every gold mention
    of its document (``TaskData.gold``), segments and windows merged back onto the document. With
    ``count: clef`` the same predicted mentions are also counted as the CLEF eHealth scorer counts them
    (``clef_*`` scores, ``TaskData.clef_gold``).
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if self.task.type == "ner":
            self.scheme = self.data.scheme
            self.n_layers, self.n_classes = self.scheme.n_layers, self.scheme.n_classes
            self.output_names = self.scheme.output_names()
        else:
            self.scheme = None
            self.tags = self.task.tag_labels
            self.tag_id = {t: i for i, t in enumerate(self.tags)}
            self.n_layers, self.n_classes = 1, len(self.tags)
            self.output_names = list(self.tags)
        self.table: dict[str, Any] = {}

    def model_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_labels": len(self.output_names), "id2label": dict(enumerate(self.output_names)),
                "label2id": {n: i for i, n in enumerate(self.output_names)}}

    def _gold_classes(self, examples: Sequence[TaggedSentence]) -> list[np.ndarray]:
        if self.scheme is not None:
            return [ex.classes for ex in examples]
        out = []
        for ex in examples:
            try:
                out.append(np.array([[self.tag_id[t]] for t in ex.tags], dtype=np.int64).reshape(-1, 1))
            except KeyError as exc:
                raise LongAdaptError(f"{ex.source}:{ex.line}: tag {exc.args[0]!r} is not one of the task's tags "
                                     f"{self.tags}") from None
        return out

    def train_items(self, examples: Sequence[TaggedSentence]) -> list[Any]:
        enc = W.encode_words(self.tok, [ex.words for ex in examples])
        return W.make_windows(enc, self.max_length, self.prefix, self.suffix, stride=self.max_content,
                              word_labels=self._gold_classes(examples), truncate=self.cfg.truncate)

    def train_units(self, items: Sequence[W.Window]) -> list[list[int]]:
        groups = W.group_by_sequence(items)
        return [groups[s] for s in sorted(groups)]

    def collate(self, items: Sequence[W.Window]) -> dict[str, Any]:
        import torch

        batch = self.encode_ids([w.input_ids for w in items])
        longest = batch["input_ids"].shape[1]
        labels = torch.full((len(items), longest, self.n_layers), -100, dtype=torch.long)
        for i, w in enumerate(items):
            labels[i, : len(w.labels)] = torch.tensor(w.labels, dtype=torch.long).view(len(w.labels), -1)
        batch["labels"] = labels
        return batch

    def loss_weight(self, items: Sequence[W.Window]) -> int:
        # the loss divides by the labelled positions of the first layer (see loss)
        return sum(1 for w in items for lab in (w.labels or ())
                   if (lab[0] if isinstance(lab, (list, tuple)) else lab) != -100)

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        import torch.nn.functional as F

        labels = batch.pop("labels")
        logits = model(**batch).logits.float()
        # summed over layers, averaged over labelled words: each layer learns as fast as a flat BIO head
        # would (a mean over words x layers divides every layer's gradient by the number of layers)
        total = F.cross_entropy(logits.reshape(-1, self.n_classes), labels.reshape(-1), ignore_index=-100,
                                reduction="sum")
        return total / (labels[..., 0] != -100).sum().clamp(min=1)

    def init_head(self, model: Any, examples: Sequence[TaggedSentence], new: set[str]) -> bool:
        """Start a *new* head at the classes' prior: each layer's output bias is the log frequency of its
        classes in the training words (add-one smoothed). A head started at zero bias must first learn
        that almost every word is outside almost every layer; with many layers (QUAERO: 40) that first
        phase dominates Adam's moment estimates and MiniLM stayed at the prior for 100+ steps, where the
        same data as one flat tag set learned at once (measured; docs/results.md)."""
        if self.scheme is None:
            return False
        counts = np.ones((self.n_layers, self.n_classes))
        for cls in self._gold_classes(examples):
            for layer in range(self.n_layers):
                counts[layer] += np.bincount(cls[:, layer], minlength=self.n_classes)
        return _set_head_bias(model, new, np.log(counts / counts.sum(1, keepdims=True)).reshape(-1))

    def predict(self, runner: _Runner, examples: Sequence[TaggedSentence], confidence: bool = False,
                cache: bool = True) -> dict[str, Any]:
        """Word classes of every example (``classes``: ``(n_words, n_layers)``), which words the model saw
        (``seen``), the windows per example; with ``confidence`` also each class's softmax probability."""
        def build() -> tuple[list[W.Encoded], list[W.Window]]:
            enc = W.encode_words(self.tok, [ex.words for ex in examples])
            return enc, W.make_windows(enc, self.max_length, self.prefix, self.suffix, stride=self.eval_stride,
                                       truncate=self.cfg.truncate)

        enc, wins = self.cached("predict", examples, build) if cache else build()
        conf: list[np.ndarray] = []
        logits = runner.forward_windows(self, wins, per_token=True)
        groups = W.group_by_sequence(wins)
        classes, seen, n_windows, no_token = [], [], [], 0
        for s, ex in enumerate(examples):
            ks = groups[s]
            used = max(wins[k].end for k in ks)  # tokens past a truncation are never seen
            tok_logits, _ = W.merge_token_logits(used, [wins[k] for k in ks], [logits[k] for k in ks], self.cfg.merge)
            wl, has = W.word_logits(tok_logits, enc[s].word_ids[:used], len(ex.words))
            wl = wl.reshape(len(ex.words), self.n_layers, self.n_classes)
            cls = wl.argmax(-1)
            cls[~has] = 0  # a word without a sub-token in view is predicted outside every mention
            no_token += int((~has).sum())
            classes.append(cls)
            seen.append(has)
            n_windows.append(len(ks))
            if confidence:  # the softmax probability of each word's class in each layer
                z = np.exp(wl - wl.max(-1, keepdims=True))
                conf.append(np.take_along_axis(z / z.sum(-1, keepdims=True), cls[..., None], -1)[..., 0])
        self.stats = {"windows": len(wins), "words_without_subtoken": no_token,
                      "max_windows_per_sequence": max(n_windows)}
        out = {"classes": classes, "seen": seen, "n_windows": n_windows}
        if confidence:
            out["confidence"] = conf
        return out

    def mentions(self, examples: Sequence[TaggedSentence], out: dict[str, Any]) -> dict[str, set[E.Span]]:
        """Predicted mentions per document (segments merged)."""
        pred: dict[str, set[E.Span]] = {}
        for ex, cls in zip(examples, out["classes"]):
            pred.setdefault(ex.doc_id, set()).update(E.decode_chars(self.scheme, cls, E.Words(ex.offsets)))
        return pred

    def score(self, examples: Sequence[TaggedSentence], out: dict[str, Any], threshold: float | None,
              fit_threshold: bool, split: str = "test") -> tuple[dict[str, float], float | None]:
        if self.task.type == "pos":
            gold = [ex.tags for ex in examples]
            return M.pos_accuracy(gold, [[self.tags[c] for c in cls[:, 0]] for cls in out["classes"]]), None
        docs = list(dict.fromkeys(ex.doc_id for ex in examples))
        gold = {d: self.data.gold[split][d] for d in docs}
        rep = {d: self.data.representable[split][d] for d in docs}
        lost = {d: self.data.lost[split].get(d, {}) for d in docs}
        pred = self.mentions(examples, out)
        scores, self.table = E.mention_scores(gold, pred, self.scheme.labels, rep, lost)
        if self.task.config.count == "clef":  # the CLEF eHealth (BRATEval) count of the same predictions
            clef, self.table["clef"] = E.clef_scores({d: self.data.clef_gold[split][d] for d in docs}, pred,
                                                     self.scheme.labels)
            scores.update(clef)
        right = total = 0
        gold_tags: list[list[str]] = []
        pred_tags: list[list[str]] = []
        for ex, cls, has in zip(examples, out["classes"], out["seen"]):
            right += int((cls[has] == ex.classes[has]).all(-1).sum())
            total += int(has.sum())
            if self.scheme.n_layers == 1:  # seqeval on the words the model saw, as DrBenchmark scores
                gold_tags.append([t for t, h in zip(self.scheme.tags(ex.classes), has) if h])
                pred_tags.append([t for t, h in zip(self.scheme.tags(cls), has) if h])
        scores["word_accuracy"] = right / total if total else 0.0
        if self.scheme.n_layers == 1:
            scores["seqeval_f1"] = M.ner_scores(gold_tags, pred_tags)["f1"]
        return scores, None

    def subset(self, out: dict[str, Any], idx: Sequence[int]) -> dict[str, Any]:
        return {k: [v[i] for i in idx] for k, v in out.items()}

    def per_example(self, examples: Sequence[TaggedSentence], out: dict[str, Any], threshold: float | None,
                    split: str = "test") -> list[dict]:
        if self.task.config.reader not in ("brat", "xmi"):
            return []  # sentences: scored together, no per-document rows
        rows = []
        by_doc: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            by_doc.setdefault(ex.doc_id, []).append(i)
        for doc, idx in by_doc.items():
            sub = [examples[i] for i in idx]
            s, _ = self.score(sub, self.subset(out, idx), None, False, split)
            t = self.table["total"]
            rows.append({"id": doc, "n_words": sum(_n_words(x) for x in sub),
                         "n_windows": sum(out["n_windows"][i] for i in idx),
                         "gold": t["gold"], "representable": t["representable"], "predicted": t["predicted"],
                         "correct": t["correct"], **{k: s[k] for k in ("f1", "precision", "recall")}})
        return rows

    def predictions(self, examples: Sequence[TaggedSentence], out: dict[str, Any]) -> list[dict[str, Any]]:
        """Per document: its text and the predicted mentions with character offsets (test outputs)."""
        if self.scheme is None:
            return []
        pred = self.mentions(examples, out)
        texts = {ex.doc_id: ex.text for ex in examples}
        return [{"id": d, "text": texts[d],
                 "mentions": [{"start": s, "end": e, "label": lab, "text": texts[d][s:e]}
                              for s, e, lab in sorted(m)]} for d, m in pred.items()]


class SequenceAdapter(_Adapter):
    """Single-label, multi-label and regression: document logits pooled over windows."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.labels = list(self.task.config.labels)
        self.kind = self.task.type  # classification | multilabel | regression

    def model_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def model_kwargs(self) -> dict[str, Any]:
        if self.kind == "regression":
            return {"num_labels": 1, "problem_type": "regression"}
        problem = "multi_label_classification" if self.kind == "multilabel" else "single_label_classification"
        return {"num_labels": len(self.labels), "problem_type": problem, "id2label": dict(enumerate(self.labels)),
                "label2id": {lab: i for i, lab in enumerate(self.labels)}}

    def _target(self, ex: ClassificationExample) -> Any:
        if self.kind == "regression":
            if ex.score is None:
                raise LongAdaptError(f"{ex.source}:{ex.line}: no score for a regression task (set score_column)")
            return float(ex.score)
        if self.kind == "multilabel":
            vec = [0.0] * len(self.labels)
            for lab in ex.labels:
                vec[self.labels.index(lab)] = 1.0
            return vec
        if len(ex.labels) != 1:
            raise LongAdaptError(f"{ex.source}:{ex.line}: a single-label task needs exactly one label, "
                                 f"got {ex.labels}")
        return self.labels.index(ex.labels[0])

    def init_head(self, model: Any, examples: Sequence[ClassificationExample], new: set[str]) -> bool:
        """Start a *new* head at the training prior, as the entity heads (:meth:`TokenAdapter.init_head`):
        single-label the log class frequencies, multi-label each label's log-odds (add-one smoothed),
        regression the mean score. A multi-label head at zero bias starts at p = 0.5 for every label and
        spends its first steps learning that most labels are absent; on MORFITT (12 specialties, 1.3 per
        abstract) MiniLM was still predicting the same label set for every abstract after 95 steps."""
        if not examples:
            return False
        if self.kind == "regression":
            return _set_head_bias(model, new, np.array([np.mean([self._target(ex) for ex in examples])]))
        if self.kind == "classification":
            counts = np.bincount([self._target(ex) for ex in examples], minlength=len(self.labels)) + 1.0
            return _set_head_bias(model, new, np.log(counts / counts.sum()))
        gold = self._gold_matrix(examples)
        return _set_head_bias(model, new, _logit((gold.sum(0) + 1.0) / (len(gold) + 2.0)))

    def _windows(self, examples: Sequence[ClassificationExample], stride: int) -> list[list[tuple[list[int], Any]]]:
        """``(token ids, segment ids or None)`` of each example's windows (special tokens included).
        Text pairs (STS) are truncated to one window; single texts are cut into windows."""
        if any(ex.text_pair is not None for ex in examples):
            pairs = self.encode_pairs([ex.text for ex in examples], [ex.text_pair or "" for ex in examples])
            return [[p] for p in pairs]
        encoded = W.encode_texts(self.tok, [ex.text for ex in examples])
        wins = W.make_windows(encoded, self.max_length, self.prefix, self.suffix, stride=stride)
        out: list[list[tuple[list[int], Any]]] = [[] for _ in examples]
        for w in wins:
            out[w.seq].append((w.input_ids, None))
        return out

    def train_items(self, examples: Sequence[ClassificationExample]) -> list[Any]:
        wins = self._windows(examples, self.max_content)
        return [(w, self._target(ex)) for w, ex in zip(wins, examples)]

    def collate(self, items: Sequence[tuple[list[list[int]], Any]]) -> dict[str, Any]:
        import torch

        flat = [w for wins, _ in items for w in wins]
        types = [t for _, t in flat] if flat[0][1] is not None else None
        batch = self.encode_ids([ids for ids, _ in flat], types)
        batch["doc_index"] = torch.tensor([i for i, (wins, _) in enumerate(items) for _ in wins], dtype=torch.long)
        dtype = torch.long if self.kind == "classification" else torch.float
        batch["targets"] = torch.tensor([t for _, t in items], dtype=dtype)
        return batch

    def pool(self, logits: Any, doc_index: Any, n_docs: int) -> Any:
        import torch

        pooled = []
        for d in range(n_docs):
            rows = logits[doc_index == d]
            pooled.append(rows.mean(0) if self.cfg.pool == "mean" else rows.max(0).values)
        return torch.stack(pooled)

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        import torch.nn.functional as F

        targets = batch.pop("targets")
        doc_index = batch.pop("doc_index")
        logits = self.pool(model(**batch).logits.float(), doc_index, len(targets))
        if self.kind == "classification":
            return F.cross_entropy(logits, targets)
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, targets)
        return F.mse_loss(logits[:, 0], targets)

    def predict(self, runner: _Runner, examples: Sequence[ClassificationExample]) -> dict[str, Any]:
        wins = self.cached("predict", examples, lambda: self._windows(examples, self.eval_stride))
        flat = [W.Window(i, 0, len(ids), ids, 0, type_ids=types) for i, ws in enumerate(wins) for ids, types in ws]
        logits = runner.forward_windows(self, flat, per_token=False)
        groups = W.group_by_sequence(flat)
        pooled = np.stack([W.pool_logits([logits[k] for k in groups[i]], self.cfg.pool) for i in range(len(examples))])
        self.stats = {"windows": len(flat), "max_windows_per_sequence": max(len(g) for g in groups.values())}
        return {"logits": pooled, "n_windows": [len(groups[i]) for i in range(len(examples))]}

    def subset(self, out: dict[str, Any], idx: Sequence[int]) -> dict[str, Any]:
        return {"logits": out["logits"][list(idx)], "n_windows": [out["n_windows"][i] for i in idx]}

    def _gold_matrix(self, examples: Sequence[ClassificationExample]) -> np.ndarray:
        return np.array([self._target(ex) for ex in examples], dtype=int).reshape(len(examples), len(self.labels))

    def score(self, examples: Sequence[ClassificationExample], out: dict[str, Any], threshold: float | None,
              fit_threshold: bool, split: str = "test") -> tuple[dict[str, float], float | None]:
        logits = out["logits"]
        if self.kind == "regression":
            lo, hi = self.task.config.score_scale
            return M.regression_scores([ex.score for ex in examples], logits[:, 0], (lo, hi)), None
        if self.kind == "classification":
            gold = [self._target(ex) for ex in examples]
            return M.classification_scores(gold, logits.argmax(-1).tolist(), len(self.labels)), None
        probs = 1.0 / (1.0 + np.exp(-logits))
        gold = self._gold_matrix(examples)
        if fit_threshold and self.cfg.threshold is None:
            threshold, _ = M.choose_threshold(gold, probs, self.task.metric, at_least_one=self.cfg.at_least_one)
        threshold = self.cfg.threshold if self.cfg.threshold is not None else (threshold if threshold is not None else 0.5)
        scores = M.multilabel_scores(gold, M.apply_threshold(probs, threshold, self.cfg.at_least_one))
        return scores, threshold

    def per_example(self, examples: Sequence[ClassificationExample], out: dict[str, Any], threshold: float | None,
                    split: str = "test") -> list[dict]:
        rows = []
        logits = out["logits"]
        for i, ex in enumerate(examples):
            row: dict[str, Any] = {"id": ex.id, "n_words": _n_words(ex), "n_windows": out["n_windows"][i]}
            if self.kind == "regression":
                row.update(gold=ex.score, pred=float(logits[i, 0]))
            elif self.kind == "classification":
                row.update(gold=ex.labels[0], pred=self.labels[int(logits[i].argmax())])
            else:
                probs = 1.0 / (1.0 + np.exp(-logits[i : i + 1]))
                pred = M.apply_threshold(probs, threshold if threshold is not None else 0.5, self.cfg.at_least_one)[0]
                row.update(gold=sorted(ex.labels), pred=[self.labels[j] for j in np.flatnonzero(pred)])
            rows.append(row)
        return rows


class ChoiceAdapter(_Adapter):
    """MCQA with one or more correct options: a multiple-choice head scores each (question, option)
    pair; options are trained as independent binary decisions (sigmoid), thresholded on dev."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.options = list(self.task.config.labels)

    def model_class(self) -> Any:
        from transformers import AutoModelForMultipleChoice

        return AutoModelForMultipleChoice

    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def _encode(self, items: Sequence[MCQAItem]) -> list[list[tuple[list[int], Any]]]:
        firsts = [it.question for it in items for _ in self.options]
        seconds = [it.options[o] for it in items for o in self.options]
        pairs = self.encode_pairs(firsts, seconds)
        k = len(self.options)
        return [pairs[i * k : (i + 1) * k] for i in range(len(items))]

    def init_head(self, model: Any, items: Sequence[MCQAItem], new: set[str]) -> bool:
        """Start a *new* head (one logit per (question, option) pair) at the log-odds of an option being
        correct in the training questions (add-one smoothed)."""
        correct = sum(1 for it in items for o in self.options if o in it.answers)
        total = len(items) * len(self.options)
        return bool(items) and _set_head_bias(model, new, _logit(np.array([(correct + 1.0) / (total + 2.0)])))

    def train_items(self, items: Sequence[MCQAItem]) -> list[Any]:
        enc = self._encode(items)
        return [(e, [1.0 if o in it.answers else 0.0 for o in self.options]) for e, it in zip(enc, items)]

    def collate(self, items: Sequence[tuple[list[list[int]], list[float]]]) -> dict[str, Any]:
        import torch

        k = len(self.options)
        flat = [p for opts, _ in items for p in opts]
        types = [t for _, t in flat] if flat[0][1] is not None else None
        batch = self.encode_ids([ids for ids, _ in flat], types)
        batch = {key: v.view(len(items), k, -1) for key, v in batch.items()}
        batch["targets"] = torch.tensor([t for _, t in items], dtype=torch.float)
        return batch

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        import torch.nn.functional as F

        targets = batch.pop("targets")
        return F.binary_cross_entropy_with_logits(model(**batch).logits.float(), targets)

    def predict(self, runner: _Runner, items: Sequence[MCQAItem]) -> dict[str, Any]:
        enc = self.cached("predict", items, lambda: self._encode(items))
        logits = runner.forward_choices(self, enc)
        self.stats = {"questions": len(items)}
        return {"logits": logits}

    def subset(self, out: dict[str, Any], idx: Sequence[int]) -> dict[str, Any]:
        return {"logits": out["logits"][list(idx)]}

    def score(self, items: Sequence[MCQAItem], out: dict[str, Any], threshold: float | None,
              fit_threshold: bool, split: str = "test") -> tuple[dict[str, float], float | None]:
        probs = 1.0 / (1.0 + np.exp(-out["logits"]))
        gold = np.array([[1 if o in it.answers else 0 for o in self.options] for it in items])
        metric = self.task.metric
        if fit_threshold and self.cfg.threshold is None:
            threshold, _ = M.choose_threshold(gold, probs, metric, at_least_one=True)
        threshold = self.cfg.threshold if self.cfg.threshold is not None else (threshold if threshold is not None else 0.5)
        pred = M.apply_threshold(probs, threshold, at_least_one=True)
        to_sets = lambda m: [[self.options[j] for j in np.flatnonzero(r)] for r in m]  # noqa: E731
        return M.mcqa_scores(to_sets(gold), to_sets(pred)), threshold

    def per_example(self, items: Sequence[MCQAItem], out: dict[str, Any], threshold: float | None,
                    split: str = "test") -> list[dict]:
        probs = 1.0 / (1.0 + np.exp(-out["logits"]))
        pred = M.apply_threshold(probs, threshold if threshold is not None else 0.5, at_least_one=True)
        return [{"id": it.id, "n_words": it.n_words, "gold": it.answers,
                 "pred": [self.options[j] for j in np.flatnonzero(p)]} for it, p in zip(items, pred)]


ADAPTERS = {"ner": TokenAdapter, "pos": TokenAdapter, "classification": SequenceAdapter,
            "multilabel": SequenceAdapter, "regression": SequenceAdapter, "mcqa": ChoiceAdapter}


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


class _Runner:
    """Holds the accelerator and the model; batches forward passes for prediction."""

    def __init__(self, accelerator: Any, model: Any, batch_size: int, batch_tokens: int = 16384,
                 autocast: Any = None) -> None:
        self.accelerator, self.model, self.batch_size = accelerator, model, batch_size
        self.batch_tokens = batch_tokens
        # predict's precision context (a model that accelerate prepared autocasts by itself)
        self.autocast = autocast or contextlib.nullcontext

    def _forward(self, batch: dict[str, Any]) -> Any:
        import torch

        batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
        with torch.no_grad(), self.autocast():
            return self.model(**batch).logits.float().cpu().numpy()

    def forward_windows(self, adapter: _Adapter, wins: Sequence[W.Window], per_token: bool) -> list[np.ndarray]:
        self.model.eval()
        order = sorted(range(len(wins)), key=lambda k: len(wins[k].input_ids))
        out: list[np.ndarray | None] = [None] * len(wins)
        # batches of at most batch_size windows and batch_tokens padded tokens (lengths sorted, so padding
        # is small): prediction memory stays bounded whatever the window length
        batches: list[list[int]] = []
        for k in order:
            n = len(wins[k].input_ids)
            if batches and len(batches[-1]) < self.batch_size and n * (len(batches[-1]) + 1) <= self.batch_tokens:
                batches[-1].append(k)
            else:
                batches.append([k])
        for idx in progress(batches, desc=f"predicting {len(wins)} windows", unit="batch"):
            types = [wins[k].type_ids for k in idx] if wins[idx[0]].type_ids is not None else None
            logits = self._forward(adapter.encode_ids([wins[k].input_ids for k in idx], types))
            for row, k in enumerate(idx):
                out[k] = logits[row, : len(wins[k].input_ids)] if per_token else logits[row]
        return out  # type: ignore[return-value]

    def forward_choices(self, adapter: ChoiceAdapter, enc: Sequence[list[tuple[list[int], Any]]]) -> np.ndarray:
        self.model.eval()
        items = [(e, [0.0] * len(adapter.options)) for e in enc]
        out = np.zeros((len(items), len(adapter.options)), dtype=np.float32)
        # questions grouped by length, at most batch_size questions and batch_tokens padded tokens a batch
        groups = [g[i : i + self.batch_size] for g in micro_batches(items, self.batch_tokens)
                  for i in range(0, len(g), self.batch_size)]
        for idx in groups:
            batch = adapter.collate([items[k] for k in idx])
            batch.pop("targets")
            out[idx] = self._forward(batch)
        return out


def item_rows(item: Any) -> list[int]:
    """Lengths of the rows one training item adds to a padded batch: a window is one row, a document its
    windows, an MCQA question its (question, option) pairs."""
    if isinstance(item, W.Window):
        return [len(item.input_ids)]
    return [len(ids) for ids, _ in item[0]]


def item_tokens(item: Any) -> int:
    """Tokens of one training item: a window, or a document / question as (windows or choices, target)."""
    return sum(item_rows(item))


def micro_batches(items: Sequence[Any], max_tokens: int) -> list[list[int]]:
    """Indices of ``items`` in groups whose padded size (rows x longest row) is at most ``max_tokens``
    (one item at least; ``max_tokens`` 0: one group). Items are grouped by length, so padding is small."""
    if not max_tokens:
        return [list(range(len(items)))]
    rows = [item_rows(x) for x in items]
    groups: list[list[int]] = []
    current: list[int] = []
    n_rows = longest = 0
    for i in sorted(range(len(items)), key=lambda k: max(rows[k])):
        more, wider = n_rows + len(rows[i]), max(longest, max(rows[i]))
        if current and more * wider > max_tokens:
            groups.append(current)
            current, more, wider = [], len(rows[i]), max(rows[i])
        current.append(i)
        n_rows, longest = more, wider
    if current:
        groups.append(current)
    return groups


def train_step(accelerator: Any, model: Any, adapter: _Adapter, items: Sequence[Any], micro_tokens: int) -> tuple[Any, int]:
    """Forward and backward passes of one batch, in micro-batches of at most ``micro_tokens`` padded tokens;
    each pass's loss is weighted by its share of the batch's loss (:meth:`_Adapter.loss_weight`), so the
    summed gradient is the whole batch's. Returns the batch loss (detached) and the number of passes."""
    import contextlib

    import torch

    groups = micro_batches(items, micro_tokens)
    weights = [adapter.loss_weight([items[i] for i in g]) for g in groups]
    total = sum(weights)
    shares = [w / total for w in weights] if total else [1.0 / len(groups)] * len(groups)
    value = torch.zeros(())
    for j, (group, share) in enumerate(zip(groups, shares)):
        batch = {k: v.to(accelerator.device) for k, v in adapter.collate([items[i] for i in group]).items()}
        # gradients are synchronised across processes once, with the batch's last pass
        sync = contextlib.nullcontext() if j == len(groups) - 1 else accelerator.no_sync(model)
        with sync:
            loss = adapter.loss(model, batch) * share
            if not torch.isfinite(loss.detach()):
                return loss.detach(), len(groups)
            accelerator.backward(loss)
        value = value + loss.detach().cpu()
    return value, len(groups)


class BudgetBatches:
    """A batch sampler whose batches hold units (examples) up to a budget: ``sizes[u]`` of each unit add up
    to at most ``budget`` per batch (one unit at least). A unit stands for the items ``members[u]`` (a
    document's windows; default: the unit is the item), which always travel together.

    The batches are formed once, greedily over a seeded permutation of the units, and visited in a new
    seeded order every epoch, so the number of optimizer steps is known in advance (the schedule needs it)
    and every unit is seen exactly once per epoch. With sizes in words (``training.batch_words``) the plan
    depends on the data and the seed only: every model takes the same steps over the same documents.
    ``visited`` lists the units of every batch in the order they were given (the run records its hash).
    """

    def __init__(self, sizes: Sequence[int], budget: int, generator: Any,
                 members: Sequence[Sequence[int]] | None = None) -> None:
        import torch

        self.generator = generator
        self.members = [list(m) for m in members] if members is not None else [[u] for u in range(len(sizes))]
        self.batches: list[list[int]] = []
        self.visited: list[list[int]] = []
        current: list[int] = []
        used = 0
        for u in torch.randperm(len(sizes), generator=generator).tolist():
            if current and used + sizes[u] > budget:
                self.batches.append(current)
                current, used = [], 0
            current.append(u)
            used += sizes[u]
        if current:
            self.batches.append(current)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        import torch

        for k in torch.randperm(len(self.batches), generator=self.generator).tolist():
            self.visited.append(list(self.batches[k]))
            yield [i for u in self.batches[k] for i in self.members[u]]


def _check_parameters(model: Any, missing: set[str], model_dir: str, config: Any) -> list[str]:
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


def _save_finetuned(model: Any, tok: Any, tokenizer_max_length: int, path: Path, task: Task, seed: int,
                    best: dict[str, Any], adapter: _Adapter) -> None:
    """The selected fine-tuned model and its tokenizer, in transformers format (written by the caller's
    atomic directory). The decision threshold of multi-label / MCQA tasks, and an entity task's scheme and
    word splitter, go into the config (``longadapt_task``)."""
    path.mkdir(parents=True, exist_ok=True)
    info = {"task": task.name, "type": task.type, "seed": seed, "best_epoch": best["epoch"],
            "threshold": best["threshold"], "metric": task.metric, "dev_score": best["score"],
            "labels": list(task.config.labels)}
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


def _load_model(adapter: _Adapter, model_dir: str, task: Task) -> tuple[Any, list[str], list[str]]:
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
        words[d] = words.get(d, 0) + _n_words(ex)
    return words


def _doc_buckets(examples: Sequence[Any], edges: Sequence[int]) -> dict[str, list[int]]:
    """Example indices per length bucket of their *document* (segments of one document stay together)."""
    words = _doc_words(examples)
    out: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        out.setdefault(M.length_bucket(words[getattr(ex, "doc_id", None) or ex.id], edges), []).append(i)
    return out


def constant_baseline(adapter: _Adapter, train: Sequence[Any], dev: Sequence[Any], test: Sequence[Any]) -> dict[str, Any] | None:
    """The best score a prediction that ignores the input reaches on test, chosen without test:

    - single-label: the most frequent training class;
    - multi-label: the label set, among the top-k most frequent training labels (k = 1 .. all), with the best
      dev score (the task's metric; train when there is no dev);
    - MCQA: the option set (every non-empty subset) with the best dev score;
    - regression: the mean training score (its correlations are 0 by definition);
    - entity and POS tasks: none (predicting nothing scores 0 already).

    A model that does not score above it has not learned the task at its budget, whatever its F1 looks like
    (MORFITT's constant "all twelve labels" reaches a weighted F1 of about 0.25)."""
    task, metric = adapter.task, adapter.task.metric
    if task.type in ("ner", "pos") or not train or not test:
        return None
    choose_on = dev if len(dev) else train
    if task.type == "classification":
        labels = adapter.labels
        c = int(np.bincount([adapter._target(ex) for ex in train], minlength=len(labels)).argmax())
        scores = M.classification_scores([adapter._target(ex) for ex in test], [c] * len(test), len(labels))
        return {"rule": "the most frequent training class", "prediction": [labels[c]], "test": scores}
    if task.type == "regression":
        mean = float(np.mean([adapter._target(ex) for ex in train]))
        scores = M.regression_scores([ex.score for ex in test], [mean] * len(test), tuple(task.config.score_scale))
        return {"rule": "the mean training score", "prediction": mean, "test": scores}
    if task.type == "multilabel":
        names = adapter.labels
        freq = adapter._gold_matrix(train).sum(0)
        order = [int(j) for j in np.argsort(-freq, kind="stable")]
        candidates = [sorted(order[:k]) for k in range(1, len(names) + 1)]

        def constant(rows: int, cols: list[int]) -> np.ndarray:
            pred = np.zeros((rows, len(names)), dtype=int)
            pred[:, cols] = 1
            return pred

        gold_choose = adapter._gold_matrix(choose_on)
        chosen = max(candidates, key=lambda cols: (M.multilabel_scores(gold_choose, constant(len(choose_on), cols))[metric],
                                                   -len(cols)))
        scores = M.multilabel_scores(adapter._gold_matrix(test), constant(len(test), chosen))
        return {"rule": f"the most frequent training labels, how many chosen on {'dev' if len(dev) else 'train'}",
                "prediction": [names[j] for j in chosen], "test": scores}
    # mcqa
    import itertools

    options = adapter.options
    subsets = [list(c) for k in range(1, len(options) + 1) for c in itertools.combinations(options, k)]
    chosen = max(subsets, key=lambda sub: (M.mcqa_scores([it.answers for it in choose_on],
                                                         [sub] * len(choose_on))[metric], -len(sub)))
    scores = M.mcqa_scores([it.answers for it in test], [chosen] * len(test))
    return {"rule": f"the answer set with the best {'dev' if len(dev) else 'train'} score", "prediction": chosen,
            "test": scores}


def _output_warnings(task: Task, adapter: _Adapter, examples: Sequence[Any], out: dict[str, Any],
                     scores: dict[str, float]) -> list[str]:
    """Warnings when a model predicts nothing or a single class on test (worth knowing before reading F1)."""
    warnings = []
    if task.type == "ner":
        table = adapter.table
        pred = {lab: t["predicted"] for lab, t in table["per_type"].items()}
        gold_types = [lab for lab, t in table["per_type"].items() if t["gold"]]
        if sum(pred.values()) == 0:
            warnings.append(f"{task.name}: the model predicted no entity on the test split "
                            f"({table['total']['gold']} gold mentions); it has not learned the task at this budget")
        elif len(gold_types) > 1 and sum(1 for v in pred.values() if v) == 1:
            only = next(lab for lab, v in pred.items() if v)
            warnings.append(f"{task.name}: every predicted mention on test is {only} "
                            f"(gold has {len(gold_types)} types)")
    elif task.type == "classification" and len(examples) > 1:
        classes = set(np.asarray(out["logits"]).argmax(-1).tolist())
        if len(classes) == 1:
            warnings.append(f"{task.name}: the model predicted one class ({adapter.labels[classes.pop()]}) for every "
                            "test example")
    elif task.type == "multilabel" and len(examples) > 1:
        rows = {tuple(r["pred"]) for r in adapter.per_example(examples, out, adapter.last_threshold)}
        if len(rows) == 1:
            warnings.append(f"{task.name}: the model predicted the same labels {list(rows.pop())} for every test "
                            "example")
    for w in warnings:
        logger.warning(w)
    return warnings


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
    runner = _Runner(accelerator, model, cfg.eval_batch_size, cfg.eval_batch_tokens)

    fit = _fit(accelerator, model, optimizer, scheduler, loader, adapter, runner, dev, cfg, limits, task, seed,
               model_dir, select)
    best = fit.best
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(best["state"])
    t0 = time.time()
    scored = _score_test(adapter, runner, dev, test, best, select, task, fit.best_dev_out)
    warnings = list(data.warnings) + _output_warnings(task, adapter, test, scored.out, scored.test)
    baseline = constant_baseline(adapter, train, dev, test)
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
        _save_finetuned(unwrapped, loaded.tok, loaded.tokenizer_max_length, Path(save_dir), task, seed, best, adapter)
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
                     "train_words": sum(_n_words(x) for x in train), "train_batches_per_epoch": len(loader),
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
    adapter = ADAPTERS[task.type](task, tok, cfg, length, data)
    model, missing, unexpected = _load_model(adapter, model_dir, task)
    reinitialised = _check_parameters(model, set(missing), model_dir, model_config)
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
        batches = BudgetBatches([_n_words(ex) for ex in train], int(cfg.batch_words), generator, units)
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
            buckets[name] = {"n": n_docs, "words": sum(_n_words(test[i]) for i in idx), **scores}
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
        if task.type == "ner":
            whole.update(annotations=st.annotations, discontinuous=st.discontinuous, duplicates=st.duplicates,
                         trimmed=st.trimmed, coverage=E.coverage_of(st.entities) if st.entities else None)
        if st.ignored_labels:
            whole["ignored_labels"] = st.ignored_labels
        if st.unlabelled:
            whole["unlabelled_skipped"] = st.unlabelled
        if st.mapped_labels:
            whole["mapped_labels"] = st.mapped_labels
        used = {"examples": len(x), "documents": len({getattr(e, "doc_id", None) or e.id for e in x}),
                "words": sum(_n_words(e) for e in x)}
        flag = "--max-train-docs" if s_name == "train" else "--max-eval-docs"
        split_data[s_name] = {"used": used, "split": whole,
                              "limit": f"{flag} {limit}" if limit is not None and used["documents"] < st.documents
                              else None}
    return split_data


def _entity_info(task: Task, data: TaskData, limits: RunLimits, train: list, adapter: Any,
                 dev_table: dict[str, Any], test_table: dict[str, Any]) -> dict[str, Any]:
    """Entity tasks: the scheme and, per split and type, gold mentions, representable ones and coverage."""
    if task.type != "ner":
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
