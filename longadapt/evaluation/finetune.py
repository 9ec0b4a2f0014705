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
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import longadapt  # noqa: F401  (registers the core with the Auto classes)
from longadapt.config import to_dict
from longadapt.errors import LongAdaptError
from longadapt.evaluation import metrics as M
from longadapt.evaluation import windows as W
from longadapt.evaluation.data import ClassificationExample, MCQAItem, TaggedSentence
from longadapt.evaluation.tasks import Task, TrainingConfig

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

    def to_json(self) -> dict[str, Any]:
        return {"kind": "longadapt.evaluate.run", **asdict(self)}


def versions() -> dict[str, str]:
    import accelerate
    import scipy
    import seqeval
    import sklearn
    import torch
    import transformers

    return {
        "longadapt": longadapt.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "accelerate": accelerate.__version__,
        "scikit-learn": sklearn.__version__, "scipy": scipy.__version__,
        "seqeval": getattr(seqeval, "__version__", "unknown"), "numpy": np.__version__,
    }


def _n_words(ex: Any) -> int:
    meta = getattr(ex, "meta", None) or {}
    return int(meta.get("n_whitespace_words", ex.n_words))


# ---------------------------------------------------------------------------------------------
# adapters: one per head type
# ---------------------------------------------------------------------------------------------


class _Adapter:
    """Builds features, batches, losses and predictions for one head type."""

    def __init__(self, task: Task, tok: Any, cfg: TrainingConfig, max_length: int) -> None:
        self.task, self.tok, self.cfg, self.max_length = task, tok, cfg, max_length
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

    def cached(self, key: str, examples: Sequence[Any], build: Any) -> Any:
        """Features of an example list, computed once per list (dev is predicted every epoch)."""
        cache = self.__dict__.setdefault("_cache", {})
        k = (key, id(examples), len(examples))
        if k not in cache:
            cache[k] = build()
        return cache[k]


class TokenAdapter(_Adapter):
    """NER / POS: token classification, word labels on first sub-tokens, windows merged per token."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.labels = self.task.tag_labels
        self.label2id = {lab: i for i, lab in enumerate(self.labels)}

    def model_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_labels": len(self.labels), "id2label": dict(enumerate(self.labels)), "label2id": self.label2id}

    def _gold_ids(self, examples: Sequence[TaggedSentence]) -> list[list[int]]:
        out = []
        for ex in examples:
            try:
                out.append([self.label2id[t] for t in ex.tags])
            except KeyError as exc:
                raise LongAdaptError(f"{ex.source}:{ex.line}: tag {exc.args[0]!r} is not one of the task's tags "
                                     f"{self.labels}") from None
        return out

    def train_items(self, examples: Sequence[TaggedSentence]) -> list[Any]:
        enc = W.encode_words(self.tok, [ex.words for ex in examples])
        return W.make_windows(enc, self.max_length, self.prefix, self.suffix, stride=self.max_content,
                              word_labels=self._gold_ids(examples))

    def collate(self, items: Sequence[W.Window]) -> dict[str, Any]:
        batch = self.encode_ids([w.input_ids for w in items])
        batch["labels"] = self.pad([w.labels for w in items], -100)
        return batch

    def loss(self, model: Any, batch: dict[str, Any]) -> Any:
        import torch.nn.functional as F

        labels = batch.pop("labels")
        logits = model(**batch).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)

    def predict(self, runner: _Runner, examples: Sequence[TaggedSentence]) -> dict[str, Any]:
        def build() -> tuple[list[W.Encoded], list[W.Window]]:
            enc = W.encode_words(self.tok, [ex.words for ex in examples])
            return enc, W.make_windows(enc, self.max_length, self.prefix, self.suffix, stride=self.eval_stride)

        enc, wins = self.cached("predict", examples, build)
        logits = runner.forward_windows(self, wins, per_token=True)
        groups = W.group_by_sequence(wins)
        preds, n_windows, no_token = [], [], 0
        for s, ex in enumerate(examples):
            ks = groups[s]
            tok_logits, _ = W.merge_token_logits(len(enc[s]), [wins[k] for k in ks], [logits[k] for k in ks],
                                                 self.cfg.merge)
            wl, has = W.word_logits(tok_logits, enc[s].word_ids, len(ex.words))
            ids = wl.argmax(-1)
            tags = [self.labels[i] if h else "O" for i, h in zip(ids, has)]
            no_token += int((~has).sum())
            preds.append(tags)
            n_windows.append(len(ks))
        self.stats = {"windows": len(wins), "words_without_subtoken": no_token,
                      "max_windows_per_sequence": max(n_windows)}
        return {"tags": preds, "n_windows": n_windows}

    def score(self, examples: Sequence[TaggedSentence], out: dict[str, Any], threshold: float | None,
              fit_threshold: bool) -> tuple[dict[str, float], float | None]:
        gold = [ex.tags for ex in examples]
        if self.task.type == "pos":
            return M.pos_accuracy(gold, out["tags"]), None
        return M.ner_scores(gold, out["tags"]), None

    def subset(self, out: dict[str, Any], idx: Sequence[int]) -> dict[str, Any]:
        return {k: [v[i] for i in idx] for k, v in out.items()}

    def per_example(self, examples: Sequence[TaggedSentence], out: dict[str, Any], threshold: float | None) -> list[dict]:
        if self.task.config.reader not in ("brat", "xmi"):
            return []  # sentences: scored together, no per-document rows
        rows = []
        for ex, tags, nw in zip(examples, out["tags"], out["n_windows"]):
            s = M.ner_scores([ex.tags], [tags]) if self.task.type == "ner" else M.pos_accuracy([ex.tags], [tags])
            rows.append({"id": ex.id, "n_words": _n_words(ex), "n_windows": nw, **s})
        return rows


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
              fit_threshold: bool) -> tuple[dict[str, float], float | None]:
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

    def per_example(self, examples: Sequence[ClassificationExample], out: dict[str, Any], threshold: float | None) -> list[dict]:
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
              fit_threshold: bool) -> tuple[dict[str, float], float | None]:
        probs = 1.0 / (1.0 + np.exp(-out["logits"]))
        gold = np.array([[1 if o in it.answers else 0 for o in self.options] for it in items])
        metric = self.task.metric
        if fit_threshold and self.cfg.threshold is None:
            threshold, _ = M.choose_threshold(gold, probs, metric, at_least_one=True)
        threshold = self.cfg.threshold if self.cfg.threshold is not None else (threshold if threshold is not None else 0.5)
        pred = M.apply_threshold(probs, threshold, at_least_one=True)
        to_sets = lambda m: [[self.options[j] for j in np.flatnonzero(r)] for r in m]  # noqa: E731
        return M.mcqa_scores(to_sets(gold), to_sets(pred)), threshold

    def per_example(self, items: Sequence[MCQAItem], out: dict[str, Any], threshold: float | None) -> list[dict]:
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

    def __init__(self, accelerator: Any, model: Any, batch_size: int) -> None:
        self.accelerator, self.model, self.batch_size = accelerator, model, batch_size

    def _forward(self, batch: dict[str, Any]) -> Any:
        import torch

        batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
        with torch.no_grad():
            return self.model(**batch).logits.float().cpu().numpy()

    def forward_windows(self, adapter: _Adapter, wins: Sequence[W.Window], per_token: bool) -> list[np.ndarray]:
        self.model.eval()
        order = sorted(range(len(wins)), key=lambda k: len(wins[k].input_ids))
        out: list[np.ndarray | None] = [None] * len(wins)
        from tqdm.auto import tqdm

        for i in tqdm(range(0, len(order), self.batch_size), desc="predict", leave=False, disable=None):
            idx = order[i : i + self.batch_size]
            types = [wins[k].type_ids for k in idx] if wins[idx[0]].type_ids is not None else None
            logits = self._forward(adapter.encode_ids([wins[k].input_ids for k in idx], types))
            for row, k in enumerate(idx):
                out[k] = logits[row, : len(wins[k].input_ids)] if per_token else logits[row]
        return out  # type: ignore[return-value]

    def forward_choices(self, adapter: ChoiceAdapter, enc: Sequence[list[tuple[list[int], Any]]]) -> np.ndarray:
        self.model.eval()
        rows = []
        for i in range(0, len(enc), self.batch_size):
            items = [(e, [0.0] * len(adapter.options)) for e in enc[i : i + self.batch_size]]
            batch = adapter.collate(items)
            batch.pop("targets")
            rows.append(self._forward(batch))
        return np.concatenate(rows)


def item_tokens(item: Any) -> int:
    """Tokens of one training item: a window, or a document / question as (windows or choices, target)."""
    if isinstance(item, W.Window):
        return len(item.input_ids)
    return sum(len(ids) for ids, _ in item[0])


class TokenBudgetBatches:
    """A batch sampler whose batches hold at most ``max_tokens`` real tokens (one item at least).

    The batches are formed once, greedily over a seeded permutation of the items, and visited in a new
    seeded order every epoch, so the number of optimizer steps is known in advance (the schedule needs
    it) and every item is seen exactly once per epoch.
    """

    def __init__(self, lengths: Sequence[int], max_tokens: int, generator: Any) -> None:
        import torch

        self.generator = generator
        self.batches: list[list[int]] = []
        current: list[int] = []
        used = 0
        for i in torch.randperm(len(lengths), generator=generator).tolist():
            if current and used + lengths[i] > max_tokens:
                self.batches.append(current)
                current, used = [], 0
            current.append(i)
            used += lengths[i]
        if current:
            self.batches.append(current)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        import torch

        for k in torch.randperm(len(self.batches), generator=self.generator).tolist():
            yield list(self.batches[k])


def _limit(examples: list[Any], n: int | None) -> list[Any]:
    return examples if n is None or n >= len(examples) else examples[:n]


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
                    best: dict[str, Any]) -> None:
    """The selected fine-tuned model and its tokenizer, in transformers format (written by the caller's
    atomic directory). The decision threshold of multi-label / MCQA tasks goes into the config."""
    path.mkdir(parents=True, exist_ok=True)
    model.config.longadapt_task = {"task": task.name, "type": task.type, "seed": seed, "best_epoch": best["epoch"],
                                   "threshold": best["threshold"], "metric": task.metric, "dev_score": best["score"]}
    model.save_pretrained(path)
    limit, tok.model_max_length = tok.model_max_length, tokenizer_max_length
    try:
        tok.save_pretrained(path)
    finally:
        tok.model_max_length = limit


def run(model_dir: str, task: Task, seed: int, data: dict[str, list[Any]] | None = None,
        training: TrainingConfig | None = None, limits: RunLimits | None = None,
        max_length: int | None = None, model_name: str | None = None,
        save_dir: str | Path | None = None) -> RunResult:
    """Fine-tune ``model_dir`` on ``task`` with ``seed``; select on dev; score on test.

    With ``save_dir``, the selected (best-on-dev) fine-tuned model is saved there with its tokenizer,
    so that ``AutoModelFor<Task>.from_pretrained(save_dir)`` reproduces the test predictions.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoConfig, get_linear_schedule_with_warmup

    limits = limits or RunLimits()
    cfg = (training or task.config.training).resolved(task.type)
    t_start = time.time()
    set_seed(seed)
    data = data or {s: task.load_split(s) for s in ("train", "dev", "test")}
    train = _limit(data["train"], limits.max_train_docs)
    dev = _limit(data["dev"], limits.max_eval_docs)
    test = _limit(data["test"], limits.max_eval_docs)

    tok = W.load_tokenizer(model_dir)
    model_config = AutoConfig.from_pretrained(model_dir)
    length = W.model_max_length(tok, model_config, max_length or cfg.max_length)
    tokenizer_max_length = tok.model_max_length
    tok.model_max_length = 10**9  # whole documents are tokenized on purpose, then cut into windows
    adapter = ADAPTERS[task.type](task, tok, cfg, length)
    try:
        model, info = adapter.model_class().from_pretrained(model_dir, output_loading_info=True,
                                                            **adapter.model_kwargs())
    except (ValueError, KeyError) as exc:
        raise LongAdaptError(f"{model_dir}: cannot build a {task.type} model with the Auto classes ({exc})") from exc
    reinitialised = _check_parameters(model, set(info.get("missing_keys", ())), model_dir, model_config)

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                              gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    generator = torch.Generator().manual_seed(seed)
    items = adapter.train_items(train)
    if cfg.batch_tokens:
        batches = TokenBudgetBatches([item_tokens(x) for x in items], int(cfg.batch_tokens), generator)
        loader = torch.utils.data.DataLoader(items, batch_sampler=batches, collate_fn=adapter.collate)
    else:
        loader = torch.utils.data.DataLoader(items, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                                             collate_fn=adapter.collate)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * cfg.epochs
    if limits.max_steps is not None:
        total_steps = min(total_steps, limits.max_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), max(total_steps, 1))
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    runner = _Runner(accelerator, model, cfg.eval_batch_size)

    best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "state": None, "threshold": None, "dev": {}}
    history: list[dict[str, Any]] = []
    step = 0
    t_train = 0.0
    t_eval = 0.0
    from tqdm.auto import tqdm

    for epoch in range(1, cfg.epochs + 1):
        t0 = time.time()
        model.train()
        losses = []
        for batch in tqdm(loader, desc=f"{task.name} epoch {epoch}/{cfg.epochs}", leave=False, disable=None):
            with accelerator.accumulate(model):
                loss = adapter.loss(model, batch)
                if not torch.isfinite(loss.detach()):
                    raise LongAdaptError(
                        f"{task.name}: the training loss is {float(loss.detach())} at step {step + 1} (seed {seed}, model "
                        f"{model_dir}); lower training.learning_rate or use training.mixed_precision=no")
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(float(loss.detach()))
            if accelerator.sync_gradients:
                step += 1
            if limits.max_steps is not None and step >= limits.max_steps:
                break
        t_train += time.time() - t0
        stop = limits.max_steps is not None and step >= limits.max_steps
        if epoch % cfg.eval_every_epochs and epoch != cfg.epochs and not stop:
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else None})
            continue
        t0 = time.time()
        out = adapter.predict(runner, dev)
        dev_scores, threshold = adapter.score(dev, out, None, fit_threshold=True)
        t_eval += time.time() - t0
        value = dev_scores[task.metric]
        history.append({"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)) if losses else None,
                        "dev": dev_scores, "threshold": threshold})
        logger.info("%s seed %d epoch %d: loss %.4f, dev %s %.4f", task.name, seed, epoch,
                    np.mean(losses) if losses else float("nan"), task.metric, value)
        if value > best["score"]:
            state = accelerator.unwrap_model(model).state_dict()
            best = {"score": value, "epoch": epoch, "threshold": threshold, "dev": dev_scores,
                    "state": {k: v.detach().to("cpu", copy=True) for k, v in state.items()}}
        if stop:
            break

    # restore the best weights, check them on dev, then test
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.load_state_dict(best["state"])
    t0 = time.time()
    dev_again, _ = adapter.score(dev, adapter.predict(runner, dev), best["threshold"], fit_threshold=False)
    if abs(dev_again[task.metric] - best["score"]) > 1e-6:
        logger.warning("%s: the restored model scores %.6f on dev, the selected checkpoint %.6f",
                       task.name, dev_again[task.metric], best["score"])
    out = adapter.predict(runner, test)
    test_scores, _ = adapter.score(test, out, best["threshold"], fit_threshold=False)
    test_stats = dict(adapter.stats)

    edges = task.config.length_buckets
    buckets: dict[str, dict[str, float]] = {}
    by_bucket: dict[str, list[int]] = {}
    for i, ex in enumerate(test):
        by_bucket.setdefault(M.length_bucket(_n_words(ex), edges), []).append(i)
    for name in M.bucket_order(edges):
        idx = by_bucket.get(name)
        if idx:
            sub = [test[i] for i in idx]
            scores, _ = adapter.score(sub, adapter.subset(out, idx), best["threshold"], fit_threshold=False)
            buckets[name] = {"n": len(idx), "words": sum(_n_words(test[i]) for i in idx), **scores}
    per_example = adapter.per_example(test, out, best["threshold"])
    for row in per_example:
        row["bucket"] = M.length_bucket(row["n_words"], edges)
    t_eval += time.time() - t0

    if save_dir is not None:
        _save_finetuned(unwrapped, tok, tokenizer_max_length, Path(save_dir), task, seed, best)
    n_params = sum(p.numel() for p in unwrapped.parameters())
    name = model_name or model_dir
    result = RunResult(
        task=task.name, task_type=task.type,
        model={"name": name, "dir": str(model_dir), "model_type": getattr(model_config, "model_type", "?"),
               "max_length": length, "parameters": n_params, "tokenizer": type(tok).__name__},
        seed=seed, main_metric=task.metric, score=float(test_scores[task.metric]),
        dev={**best["dev"], "restored": dev_again[task.metric]}, test=test_scores, buckets=buckets,
        best_epoch=best["epoch"], threshold=best["threshold"], history=history, per_example=per_example,
        config={"training": to_dict(cfg), "task": to_dict(task.config), "task_file": str(task.yaml_path),
                "limits": to_dict(limits), "max_length": length, "stride": adapter.eval_stride,
                "data_root": str(task.data_root)},
        data={s: {"examples": len(x), "examples_total": len(data[s]), "words": sum(_n_words(e) for e in x),
                  **task.fingerprint(s)} for s, x in (("train", train), ("dev", dev), ("test", test))},
        versions=versions(),
        timing={"train_s": round(t_train, 2), "eval_s": round(t_eval, 2), "total_s": round(time.time() - t_start, 2),
                "optimizer_steps": step},
        diagnostics={"device": str(accelerator.device), "train_items": len(items),
                     "train_tokens": sum(item_tokens(x) for x in items), "train_batches_per_epoch": len(loader),
                     "reinitialised_parameters": reinitialised, **test_stats},
    )
    del model, optimizer, best
    return result
