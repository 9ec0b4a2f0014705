"""The adapters: one per head type. An adapter turns a task's examples into model inputs (windows of a
document, choices of a question), builds the model with its head, computes the loss of a batch, and turns
the model's outputs back into predictions and scores; :mod:`longadapt.evaluation.tasktypes` names the adapter
of every task type. The fine-tuning run (:mod:`.finetune`) and ``predict`` both use them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from longadapt.errors import LongAdaptError
from longadapt.evaluation import entities as E
from longadapt.evaluation import metrics as M
from longadapt.evaluation import tasktypes
from longadapt.evaluation import windows as W
from longadapt.evaluation.data import ClassificationExample, MCQAItem, TaggedSentence, n_words, split_words
from longadapt.evaluation.tasks import Task, TaskData, FinetuneConfig

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from longadapt.evaluation.batching import Runner


class Adapter:
    """Builds features, batches, losses and predictions for one head type."""

    def __init__(self, task: Task, tok: Any, cfg: FinetuneConfig, max_length: int, data: TaskData | None = None) -> None:
        self.task, self.tok, self.cfg, self.max_length, self.data = task, tok, cfg, max_length, data
        self.prefix, self.suffix = W.special_tokens(tok)
        self.max_content = max_length - len(self.prefix) - len(self.suffix)
        self.eval_stride = min(cfg.stride or max(1, self.max_content // 2), self.max_content)
        pad = tok.pad_token_id
        self.pad_id = pad if pad is not None else 0
        self.stats: dict[str, Any] = {}

    def predict_documents(self, runner: Runner, docs: Sequence[tuple[str, str]], info: Any) -> list[dict[str, Any]]:
        """``longadapt predict``'s result for each ``(id, text)``, with ``info`` the model's
        :class:`~longadapt.evaluation.predict.ModelTask` (types that predict serves override this)."""
        raise LongAdaptError(f"predict does not serve {self.task.type} models")

    def constant_baseline(self, train: Sequence[Any], dev: Sequence[Any], test: Sequence[Any]) -> dict[str, Any] | None:
        """The best score a prediction that ignores the input reaches on test, chosen without test: what a
        model must beat to have learned the task at its budget, whatever its score looks like (MORFITT's
        constant "all twelve labels" reaches a weighted F1 of about 0.25). ``None`` where predicting nothing
        scores 0 already (entity and POS tasks)."""
        return None

    def output_warnings(self, examples: Sequence[Any], out: dict[str, Any]) -> list[str]:
        """Warnings when a model predicts nothing or a single class on test (worth knowing before reading the
        score)."""
        return []

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


class TokenAdapter(Adapter):
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

    def predict(self, runner: Runner, examples: Sequence[TaggedSentence], confidence: bool = False,
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
        if not self.task.document_task:
            return []  # sentences: scored together, no per-document rows
        rows = []
        by_doc: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            by_doc.setdefault(ex.doc_id, []).append(i)
        for doc, idx in by_doc.items():
            sub = [examples[i] for i in idx]
            s, _ = self.score(sub, self.subset(out, idx), None, False, split)
            t = self.table["total"]
            rows.append({"id": doc, "n_words": sum(n_words(x) for x in sub),
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


    def predict_documents(self, runner: Runner, docs: Sequence[tuple[str, str]], info: Any) -> list[dict[str, Any]]:
        """Entities of whole texts: words split as the task split them, mentions with character offsets and
        a score (the mean probability of their words' classes)."""

        examples = []
        for doc_id, text in docs:
            offsets = split_words(text, info.word_splitter)
            examples.append(TaggedSentence(id=doc_id, words=[text[s:e] for s, e in offsets], tags=[], offsets=offsets,
                                           text=text, doc_id=doc_id))
        out = self.predict(runner, examples, confidence=True, cache=False)
        results = []
        for ex, cls, conf, nwin in zip(examples, out["classes"], out["confidence"], out["n_windows"]):
            words = E.Words(ex.offsets)
            found: dict[E.Span, float] = {}
            for i, j, lab, layer in info.scheme.decode_layers(cls):
                s, e = words.char_span(i, j)
                score = float(conf[i:j, layer].mean())
                found[(s, e, lab)] = max(score, found.get((s, e, lab), 0.0))
            ents = [{"start": s, "end": e, "label": lab, "text": ex.text[s:e], "score": round(sc, 6)}
                    for (s, e, lab), sc in sorted(found.items())]
            results.append({"id": ex.id, "entities": ents, "windows": nwin, "words": len(ex.words)})
        return results


    def output_warnings(self, examples: Sequence[Any], out: dict[str, Any]) -> list[str]:
        """Entity tasks: no entity predicted, or every predicted mention of one type."""
        if not tasktypes.get(self.task.type).entities:
            return []
        table, name = self.table, self.task.name
        pred = {lab: t["predicted"] for lab, t in table["per_type"].items()}
        gold_types = [lab for lab, t in table["per_type"].items() if t["gold"]]
        if sum(pred.values()) == 0:
            return [f"{name}: the model predicted no entity on the test split ({table['total']['gold']} gold "
                    "mentions); it has not learned the task at this budget and learning rate: try a higher "
                    "training.learning_rate (a small model trained from scratch learned nothing on QUAERO EMEA at "
                    "2e-4 and fine-tuned at 1e-3 to 4e-3: docs/results.md)"]
        if len(gold_types) > 1 and sum(1 for v in pred.values() if v) == 1:
            only = next(lab for lab, v in pred.items() if v)
            return [f"{name}: every predicted mention on test is {only} (gold has {len(gold_types)} types)"]
        return []


class SequenceAdapter(Adapter):
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

    def predict(self, runner: Runner, examples: Sequence[ClassificationExample]) -> dict[str, Any]:
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
            row: dict[str, Any] = {"id": ex.id, "n_words": n_words(ex), "n_windows": out["n_windows"][i]}
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


    def predict_documents(self, runner: Runner, docs: Sequence[tuple[str, str]], info: Any) -> list[dict[str, Any]]:
        """Labels and probabilities (classification, multi-label with the threshold chosen on dev) or a
        score (regression) of whole texts."""
        examples = [ClassificationExample(id=i, text=t) for i, t in docs]
        out = self.predict(runner, examples)
        logits = out["logits"]
        results = []
        for k, ex in enumerate(examples):
            row: dict[str, Any] = {"id": ex.id, "windows": out["n_windows"][k]}
            if self.kind == "regression":
                row["score"] = float(logits[k, 0])
            elif self.kind == "classification":
                z = np.exp(logits[k] - logits[k].max())
                probs = z / z.sum()
                row["labels"] = [info.labels[int(probs.argmax())]]
                row["probabilities"] = {lab: round(float(p), 6) for lab, p in zip(info.labels, probs)}
            else:
                probs = 1.0 / (1.0 + np.exp(-logits[k : k + 1]))
                threshold = info.threshold if info.threshold is not None else 0.5
                pred = M.apply_threshold(probs, threshold, info.at_least_one)[0]
                row["labels"] = [info.labels[j] for j in np.flatnonzero(pred)]
                row["probabilities"] = {lab: round(float(p), 6) for lab, p in zip(info.labels, probs[0])}
                row["threshold"] = threshold
            results.append(row)
        return results


    def constant_baseline(self, train: Sequence[ClassificationExample], dev: Sequence[ClassificationExample],
                          test: Sequence[ClassificationExample]) -> dict[str, Any] | None:
        """Single-label: the most frequent training class; regression: the mean training score (its
        correlations are 0 by definition); multi-label: the label set, among the top-k most frequent training
        labels (k = 1 .. all), with the best dev score (the task's metric; train when there is no dev). Scored
        as the adapter scores a model's output."""
        if not train or not test:
            return None
        metric = self.task.metric
        if self.kind == "classification":
            c = int(np.bincount([self._target(ex) for ex in train], minlength=len(self.labels)).argmax())
            onehot = np.zeros((len(test), len(self.labels)))
            onehot[:, c] = 1.0
            scores = self.score(test, {"logits": onehot}, None, False)[0]
            return {"rule": "the most frequent training class", "prediction": [self.labels[c]], "test": scores}
        if self.kind == "regression":
            mean = float(np.mean([self._target(ex) for ex in train]))
            scores = self.score(test, {"logits": np.full((len(test), 1), mean)}, None, False)[0]
            return {"rule": "the mean training score", "prediction": mean, "test": scores}
        choose_on = dev if len(dev) else train
        freq = self._gold_matrix(train).sum(0)
        order = [int(j) for j in np.argsort(-freq, kind="stable")]
        candidates = [sorted(order[:k]) for k in range(1, len(self.labels) + 1)]

        def constant(rows: int, cols: list[int]) -> np.ndarray:
            pred = np.zeros((rows, len(self.labels)), dtype=int)
            pred[:, cols] = 1
            return pred

        gold_choose = self._gold_matrix(choose_on)
        chosen = max(candidates, key=lambda cols: (M.multilabel_scores(gold_choose, constant(len(choose_on), cols))[metric],
                                                   -len(cols)))
        scores = M.multilabel_scores(self._gold_matrix(test), constant(len(test), chosen))
        return {"rule": f"the most frequent training labels, how many chosen on {'dev' if len(dev) else 'train'}",
                "prediction": [self.labels[j] for j in chosen], "test": scores}

    def output_warnings(self, examples: Sequence[ClassificationExample], out: dict[str, Any]) -> list[str]:
        """One class (single-label) or one label set (multi-label) predicted for every test example."""
        if len(examples) < 2 or self.kind == "regression":
            return []
        if self.kind == "classification":
            classes = set(np.asarray(out["logits"]).argmax(-1).tolist())
            return [f"{self.task.name}: the model predicted one class ({self.labels[classes.pop()]}) for every test "
                    "example"] if len(classes) == 1 else []
        rows = {tuple(r["pred"]) for r in self.per_example(examples, out, self.last_threshold)}
        return [f"{self.task.name}: the model predicted the same labels {list(rows.pop())} for every test "
                "example"] if len(rows) == 1 else []


class ChoiceAdapter(Adapter):
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

    def predict(self, runner: Runner, items: Sequence[MCQAItem]) -> dict[str, Any]:
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

    def constant_baseline(self, train: Sequence[MCQAItem], dev: Sequence[MCQAItem],
                          test: Sequence[MCQAItem]) -> dict[str, Any] | None:
        """The option set (every non-empty subset) with the best dev score (train when there is no dev)."""
        import itertools

        if not train or not test:
            return None
        choose_on, metric = (dev if len(dev) else train), self.task.metric
        subsets = [list(c) for k in range(1, len(self.options) + 1) for c in itertools.combinations(self.options, k)]
        chosen = max(subsets, key=lambda sub: (M.mcqa_scores([it.answers for it in choose_on],
                                                             [sub] * len(choose_on))[metric], -len(sub)))
        scores = M.mcqa_scores([it.answers for it in test], [chosen] * len(test))
        return {"rule": f"the answer set with the best {'dev' if len(dev) else 'train'} score", "prediction": chosen,
                "test": scores}
