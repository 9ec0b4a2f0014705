"""Entity mentions on documents: what a gold mention is, how a scheme turns mentions into word-level
classes that a token classifier learns, how predicted classes become mentions again, and how mentions
are scored against the *full* gold set.

Three steps, each documented with a worked example in docs/evaluation.md:

1. **Gold mentions** (:func:`gold_units`). A mention is ``(start, end, label)`` in characters. A
   discontinuous BRAT mention (``T1 DISO 0 8;20 30``) becomes, by ``discontinuous``:
   ``fragments`` one mention per fragment, ``extent`` one mention from its first start to its last end,
   ``longest`` its longest fragment. Identical ``(start, end, label)`` mentions (QUAERO annotates one
   span once per UMLS concept) count once. These are the mentions every score is computed against.
2. **A scheme** (:func:`build_scheme`) maps a document's mentions onto its words:

   - ``layers``: one BIO layer per entity type and nesting level. Mentions of different types nest
     freely; mentions of the same type that nest (or overlap) go to the next level of that type, so
     ``douleurs intenses`` (DISO) holding ``douleurs`` (DISO) is two layers of DISO. Every type gets the
     number of levels the most deeply nested type of the training and dev documents needs, capped by
     ``max_depth``; a deeper mention in the test split is counted as not representable.
   - ``flatten``: one BIO sequence; the longest span of a group of overlapping mentions wins (then the
     earlier one, then the label in alphabetical order), the others are not representable.
   - ``join``: one BIO sequence whose tag joins the types covering each word (``B-ANAT+DISO``), as
     DrBenchmark flattens QUAERO; same-type nesting is lost.

   ``auto`` is ``layers`` when any two gold mentions of the task overlap, else ``flatten`` (lossless then).
3. **Scoring** (:func:`mention_scores`): a predicted mention is correct when its span and type equal a
   gold mention's of step 1; precision, recall and F1 are micro-averaged over these mentions (the
   *units* count), and given per type. A gold mention the scheme cannot represent still counts as a miss.
   The units count is not the CLEF eHealth scorer's: it splits a discontinuous mention into fragments,
   merges duplicates and trims spaces. :func:`clef_scores` counts the same predictions as BRATEval does
   (the task option ``count: clef``): every gold ``T`` line is one entity.

Coverage (:func:`coverage`) is measured, not estimated: a gold mention is *representable* when encoding
the gold mentions and decoding them again gives it back exactly. What is lost, and why (a boundary
inside a word, nesting the scheme cannot hold, text the model never sees), is counted per type.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longadapt.errors import LongAdaptError

Span = tuple[int, int, str]  # start, end (characters, exclusive), label

NESTED_SCHEMES = ("auto", "layers", "flatten", "join")
DISCONTINUOUS_MODES = ("fragments", "extent", "longest")
COUNTS = ("units", "clef")  # the task option `count`: the units count alone, or the CLEF eHealth count too
JOIN_SEPARATOR = "+"
LAYER_CLASSES = ("O", "B", "I")


# ---------------------------------------------------------------------------------------------
# gold mentions
# ---------------------------------------------------------------------------------------------


def entity_units(start: int, end: int, label: str, fragments: Sequence[tuple[int, int]] | None,
                 mode: str) -> list[Span]:
    """The scoring units of one annotated mention (see the module docstring)."""
    if not fragments or len(fragments) < 2:
        return [(start, end, label)]
    if mode == "fragments":
        return [(s, e, label) for s, e in fragments]
    if mode == "extent":
        return [(min(s for s, _ in fragments), max(e for _, e in fragments), label)]
    if mode == "longest":
        s, e = max(fragments, key=lambda f: (f[1] - f[0], -f[0]))
        return [(s, e, label)]
    raise LongAdaptError(f"discontinuous must be one of {', '.join(DISCONTINUOUS_MODES)}, not {mode!r}")


def gold_units(entities: Iterable[Any], mode: str, text: str | None = None) -> tuple[list[Span], dict[str, int]]:
    """Unique gold mentions of a document's entities (objects with ``start``, ``end``, ``label`` and
    ``fragments``), sorted; and counts: ``annotations``, ``discontinuous``, ``duplicates``, ``trimmed``.

    With ``text``, whitespace at either end of a mention is trimmed (QUAERO has spans such as
    ``" organes"`` that start on the space before the word; no word-level prediction can start there)."""
    units: set[Span] = set()
    n = disc = dup = trimmed = 0
    for ent in entities:
        n += 1
        frags = getattr(ent, "fragments", None)
        disc += bool(frags and len(frags) > 1)
        for s, e, lab in entity_units(ent.start, ent.end, ent.label, frags, mode):
            if text is not None:
                s0, e0 = s, e
                while s < e and text[s].isspace():
                    s += 1
                while e > s and text[e - 1].isspace():
                    e -= 1
                trimmed += (s, e) != (s0, e0)
                if s == e:
                    continue  # a span of spaces only
            u = (s, e, lab)
            if u in units:
                dup += 1
            units.add(u)
    return sorted(units), {"annotations": n, "discontinuous": disc, "duplicates": dup, "trimmed": trimmed}


# ---------------------------------------------------------------------------------------------
# words
# ---------------------------------------------------------------------------------------------


class Words:
    """Character offsets of a document's words, mapping character spans to word spans and back."""

    def __init__(self, offsets: Sequence[tuple[int, int]]) -> None:
        self.offsets = list(offsets)
        self.starts = [s for s, _ in self.offsets]
        self.ends = [e for _, e in self.offsets]

    def __len__(self) -> int:
        return len(self.offsets)

    def word_span(self, start: int, end: int) -> tuple[int, int] | None:
        """``[i, j)``: the words overlapping ``[start, end)``; None when no word does."""
        i = bisect.bisect_right(self.ends, start)  # first word ending after start
        j = bisect.bisect_left(self.starts, end)  # first word starting at or after end
        return (i, j) if i < j else None

    def aligned(self, start: int, end: int) -> bool:
        ws = self.word_span(start, end)
        return ws is not None and self.starts[ws[0]] == start and self.ends[ws[1] - 1] == end

    def char_span(self, i: int, j: int) -> tuple[int, int]:
        return self.starts[i], self.ends[j - 1]


@dataclass(frozen=True)
class WordMention:
    i: int  # first word
    j: int  # last word, exclusive
    label: str
    start: int  # characters, for the flatten rule's ordering
    end: int


def to_word_mentions(units: Iterable[Span], words: Words) -> list[WordMention]:
    out = []
    for s, e, lab in units:
        ws = words.word_span(s, e)
        if ws is not None:
            out.append(WordMention(ws[0], ws[1], lab, s, e))
    return out


def tags_to_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Word spans ``(first, last_exclusive, label)`` of a BIO tag sequence; an ``I-X`` after ``O`` or after
    another type starts a mention (the conlleval reading, as seqeval's default mode)."""
    spans: list[tuple[int, int, str]] = []
    start: int | None = None
    label = ""
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, typ = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and (start is None or typ != label))
        if start is not None and (prefix == "O" or begins):
            spans.append((start, i, label))
            start = None
        if begins:
            start, label = i, typ
    return spans


# ---------------------------------------------------------------------------------------------
# schemes
# ---------------------------------------------------------------------------------------------


def _first_fit_levels(mentions: Sequence[WordMention]) -> dict[WordMention, int]:
    """Nesting level of each mention of one type: mentions in start order (longer first) take the lowest
    level whose previous mention has ended (at word level), so an enclosing mention is level 0, the
    mention inside it level 1, and so on."""
    ends: list[int] = []
    level: dict[WordMention, int] = {}
    for m in sorted(mentions, key=lambda m: (m.i, -(m.j - m.i), -(m.end - m.start), m.start)):
        for k, e in enumerate(ends):
            if e <= m.i:
                ends[k] = m.j
                level[m] = k
                break
        else:
            level[m] = len(ends)
            ends.append(m.j)
    return level


class Scheme:
    """Word-level classes of a task's mentions: ``n_layers`` layers of ``n_classes`` classes each (the
    token-classification head has ``n_layers * n_classes`` outputs, one softmax per layer)."""

    name = ""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    # what the head looks like
    n_layers = 1

    @property
    def n_classes(self) -> int:
        raise NotImplementedError

    def output_names(self) -> list[str]:
        """A readable name for each of the head's ``n_layers * n_classes`` outputs (id2label)."""
        raise NotImplementedError

    def encode(self, mentions: Sequence[WordMention], n_words: int) -> np.ndarray:
        """``(n_words, n_layers)`` class ids."""
        raise NotImplementedError

    def decode(self, classes: np.ndarray) -> list[tuple[int, int, str]]:
        """Word spans ``(i, j, label)`` from ``(n_words, n_layers)`` class ids."""
        raise NotImplementedError

    def decode_layers(self, classes: np.ndarray) -> list[tuple[int, int, str, int]]:
        """``(i, j, label, layer)``: the spans of :meth:`decode` with the layer each was read from."""
        return [(i, j, lab, 0) for i, j, lab in self.decode(classes)]

    def tags(self, classes: np.ndarray) -> list[str] | None:
        """The BIO tag of each word (single-layer schemes; None for layers): seqeval's input."""
        return None

    def to_config(self) -> dict[str, Any]:
        return {"scheme": self.name, "labels": self.labels}


class FlattenScheme(Scheme):
    """One BIO sequence; overlapping mentions: the longest span wins (then the earlier, then the label
    in alphabetical order); two kept mentions touching the same word: the earlier keeps it."""

    name = "flatten"

    def __init__(self, labels: Sequence[str], tag_names: Sequence[str] | None = None) -> None:
        super().__init__(labels)
        # tag_names: another model's own order of the same BIO tags (a transformers NER model's id2label)
        self.tag_names = list(tag_names) if tag_names else ["O"] + [f"{p}-{lab}" for lab in self.labels for p in ("B", "I")]
        self.tag_id = {t: i for i, t in enumerate(self.tag_names)}

    @property
    def n_classes(self) -> int:
        return len(self.tag_names)

    def output_names(self) -> list[str]:
        return list(self.tag_names)

    def encode(self, mentions: Sequence[WordMention], n_words: int) -> np.ndarray:
        out = np.zeros((n_words, 1), dtype=np.int64)
        kept: list[WordMention] = []
        for m in sorted(mentions, key=lambda m: (-(m.end - m.start), m.start, m.label)):
            if not any(m.start < k.end and k.start < m.end for k in kept):
                kept.append(m)
        for m in sorted(kept, key=lambda m: (m.start, m.end)):
            if (out[m.i : m.j, 0] != 0).any():
                continue  # shares a word with a mention that starts earlier
            out[m.i, 0] = self.tag_id[f"B-{m.label}"]
            out[m.i + 1 : m.j, 0] = self.tag_id[f"I-{m.label}"]
        return out

    def decode(self, classes: np.ndarray) -> list[tuple[int, int, str]]:
        return tags_to_spans(self.tags(classes))

    def tags(self, classes: np.ndarray) -> list[str]:
        return [self.tag_names[c] for c in classes[:, 0]]

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), "tags": list(self.tag_names)}


class LayersScheme(Scheme):
    """One B/I/O layer per (type, nesting level)."""

    name = "layers"

    def __init__(self, labels: Sequence[str], depth: dict[str, int]) -> None:
        super().__init__(labels)
        self.depth = {lab: max(1, int(depth.get(lab, 1))) for lab in self.labels}
        self.layers = [(lab, k) for lab in self.labels for k in range(self.depth[lab])]
        self.layer_index = {lv: n for n, lv in enumerate(self.layers)}
        self.n_layers = len(self.layers)

    @property
    def n_classes(self) -> int:
        return len(LAYER_CLASSES)

    def layer_name(self, n: int) -> str:
        lab, k = self.layers[n]
        return lab if k == 0 else f"{lab}^{k + 1}"

    def output_names(self) -> list[str]:
        return [f"{c}-{self.layer_name(n)}" if c != "O" else f"O:{self.layer_name(n)}"
                for n in range(self.n_layers) for c in LAYER_CLASSES]

    def encode(self, mentions: Sequence[WordMention], n_words: int) -> np.ndarray:
        out = np.zeros((n_words, self.n_layers), dtype=np.int64)
        by_label: dict[str, list[WordMention]] = defaultdict(list)
        for m in mentions:
            by_label[m.label].append(m)
        for lab, ms in by_label.items():
            for m, k in _first_fit_levels(ms).items():
                n = self.layer_index.get((lab, k))
                if n is None:
                    continue  # deeper than the scheme's levels for this type: not representable
                out[m.i, n] = 1
                out[m.i + 1 : m.j, n] = 2
        return out

    def decode(self, classes: np.ndarray) -> list[tuple[int, int, str]]:
        return [(i, j, lab) for i, j, lab, _ in self.decode_layers(classes)]

    def decode_layers(self, classes: np.ndarray) -> list[tuple[int, int, str, int]]:
        spans = []
        for n, (lab, _) in enumerate(self.layers):
            tags = [("O", f"B-{lab}", f"I-{lab}")[c] for c in classes[:, n]]
            spans.extend((i, j, t, n) for i, j, t in tags_to_spans(tags))
        return spans

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), "depth": dict(self.depth)}


class JoinScheme(Scheme):
    """One BIO sequence over joined types: a word's tag is ``B-`` or ``I-`` followed by the types of every
    mention covering it, sorted and joined by ``+``. ``B-`` where a mention starts or the set of types
    changes. Decoding follows each type through consecutive words that carry it; a ``B-`` with an
    unchanged set starts a new mention of every type in it. The tag set is what the training and dev
    documents hold (plus every single-type tag); other combinations cannot be predicted."""

    name = "join"

    def __init__(self, labels: Sequence[str], tag_names: Sequence[str]) -> None:
        super().__init__(labels)
        bad = [lab for lab in self.labels if JOIN_SEPARATOR in lab]
        if bad:
            raise LongAdaptError(f"nested: join joins types with {JOIN_SEPARATOR!r}, which the label(s) "
                                 f"{', '.join(bad)} contain; rename them or use nested: layers")
        singles = [f"{p}-{lab}" for lab in self.labels for p in ("B", "I")]
        names = ["O"] + singles + sorted(set(tag_names) - set(singles) - {"O"})
        self.tag_names = names
        self.tag_id = {t: i for i, t in enumerate(names)}

    @property
    def n_classes(self) -> int:
        return len(self.tag_names)

    def output_names(self) -> list[str]:
        return list(self.tag_names)

    @staticmethod
    def joined_tags(mentions: Sequence[WordMention], n_words: int) -> list[str]:
        cover: list[set[str]] = [set() for _ in range(n_words)]
        starts = [False] * n_words
        for m in mentions:
            starts[m.i] = True
            for w in range(m.i, m.j):
                cover[w].add(m.label)
        tags = []
        for w in range(n_words):
            if not cover[w]:
                tags.append("O")
                continue
            prefix = "B" if starts[w] or w == 0 or cover[w] != cover[w - 1] else "I"
            tags.append(f"{prefix}-{JOIN_SEPARATOR.join(sorted(cover[w]))}")
        return tags

    def encode(self, mentions: Sequence[WordMention], n_words: int) -> np.ndarray:
        tags = self.joined_tags(mentions, n_words)
        return np.array([[self.tag_id.get(t, 0)] for t in tags], dtype=np.int64).reshape(n_words, 1)

    def decode(self, classes: np.ndarray) -> list[tuple[int, int, str]]:
        tags = self.tags(classes)
        spans: list[tuple[int, int, str]] = []
        open_: dict[str, int] = {}
        prev: set[str] = set()
        for w, tag in enumerate(tags + ["O"]):
            prefix, _, joined = tag.partition("-")
            types = set(joined.split(JOIN_SEPARATOR)) if prefix in ("B", "I") and joined else set()
            restart = prefix == "B" and types == prev
            for lab in list(open_):
                if lab not in types or restart:
                    spans.append((open_.pop(lab), w, lab))
            for lab in types:
                if lab not in open_:
                    open_[lab] = w
            prev = types
        return spans

    def tags(self, classes: np.ndarray) -> list[str]:
        return [self.tag_names[c] for c in classes[:, 0]]

    def to_config(self) -> dict[str, Any]:
        return {**super().to_config(), "tags": list(self.tag_names)}


def scheme_from_config(cfg: dict[str, Any]) -> Scheme:
    """The scheme recorded by :meth:`Scheme.to_config` (run.json, a saved model's config)."""
    name = cfg.get("scheme")
    if name == "flatten":
        return FlattenScheme(cfg["labels"], cfg.get("tags"))
    if name == "layers":
        return LayersScheme(cfg["labels"], cfg["depth"])
    if name == "join":
        return JoinScheme(cfg["labels"], cfg["tags"])
    raise LongAdaptError(f"unknown entity scheme {name!r}")


def overlapping(docs: Iterable[tuple[list[Span], Words]]) -> int:
    """Gold mentions that overlap another gold mention at word level (any type)."""
    n = 0
    for units, words in docs:
        ms = sorted(to_word_mentions(units, words), key=lambda m: (m.i, m.j))
        end = -1
        flagged: set[int] = set()
        for k, m in enumerate(ms):
            if m.i < end:
                flagged.add(k)
                # the mention it overlaps is the one holding ``end``; flag every open one
                for q in range(k - 1, -1, -1):
                    if ms[q].j > m.i:
                        flagged.add(q)
            end = max(end, m.j)
        n += len(flagged)
    return n


def build_scheme(name: str, labels: Sequence[str], fit_docs: Sequence[tuple[list[Span], Words]],
                 all_docs: Sequence[tuple[list[Span], Words]] | None = None,
                 max_depth: int | None = None) -> Scheme:
    """The scheme ``name`` for a task. ``fit_docs`` (training and dev documents) decide the number of
    levels per type (``layers``) and the joined tags (``join``); ``auto`` chooses ``layers`` when any gold
    mention of ``all_docs`` overlaps another, else ``flatten``."""
    if name not in NESTED_SCHEMES:
        raise LongAdaptError(f"nested must be one of {', '.join(NESTED_SCHEMES)}, not {name!r}")
    if name == "auto":
        name = "layers" if overlapping(all_docs if all_docs is not None else fit_docs) else "flatten"
    if name == "flatten":
        return FlattenScheme(labels)
    if name == "join":
        tags: set[str] = set()
        for units, words in fit_docs:
            tags.update(JoinScheme.joined_tags(to_word_mentions(units, words), len(words)))
        return JoinScheme(labels, sorted(tags))
    depth: Counter[str] = Counter()
    for units, words in fit_docs:
        by_label: dict[str, list[WordMention]] = defaultdict(list)
        for m in to_word_mentions(units, words):
            by_label[m.label].append(m)
        for lab, ms in by_label.items():
            depth[lab] = max(depth[lab], 1 + max(_first_fit_levels(ms).values()))
    # every type gets the levels of the most deeply nested type: a type that happens not to nest in the
    # training documents (QUAERO's DEVI) may nest in the test documents ("seringue" in "seringue préremplie")
    levels = max(depth.values(), default=1)
    if max_depth is not None:
        if int(max_depth) < 1:
            raise LongAdaptError(f"max_depth must be at least 1, not {max_depth!r}")
        levels = min(levels, int(max_depth))
    return LayersScheme(labels, {lab: levels for lab in labels})


# ---------------------------------------------------------------------------------------------
# coverage and scores
# ---------------------------------------------------------------------------------------------


def decode_chars(scheme: Scheme, classes: np.ndarray, words: Words, base: int = 0) -> set[Span]:
    """Character mentions (shifted by ``base``) decoded from word classes."""
    out = set()
    for i, j, lab in scheme.decode(classes):
        s, e = words.char_span(i, j)
        out.add((s + base, e + base, lab))
    return out


def prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 of ``tp`` true positives, ``fp`` false positives and ``fn`` false negatives
    (0 where undefined): the one place every entity count turns into scores."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


@dataclass
class TypeCounts:
    gold: int = 0
    representable: int = 0
    predicted: int = 0
    correct: int = 0
    lost: Counter = field(default_factory=Counter)  # why gold mentions are not representable

    def add(self, other: TypeCounts) -> None:
        self.gold += other.gold
        self.representable += other.representable
        self.predicted += other.predicted
        self.correct += other.correct
        self.lost.update(other.lost)

    def scores(self) -> dict[str, float]:
        return prf(self.correct, self.predicted - self.correct, self.gold - self.correct)

    def to_json(self) -> dict[str, Any]:
        return {"gold": self.gold, "representable": self.representable, "predicted": self.predicted,
                "correct": self.correct, **{k: round(v, 6) for k, v in self.scores().items()},
                "lost": dict(sorted(self.lost.items()))}


LOST_WORD = "boundary inside a word"
LOST_NESTING = "nesting the scheme cannot hold"
LOST_UNSEEN = "text the model does not see (truncation or segment boundary)"


def representable(scheme: Scheme, units: Sequence[Span], words: Words) -> tuple[set[Span], dict[Span, str]]:
    """The gold mentions that survive encoding then decoding, and the reason each other one is lost."""
    mentions = to_word_mentions(units, words)
    back = decode_chars(scheme, scheme.encode(mentions, len(words)), words)
    lost = {}
    for u in units:
        if u not in back:
            lost[u] = LOST_NESTING if words.aligned(u[0], u[1]) else LOST_WORD
    return set(units) & back, lost


def document_coverage(examples: Iterable[Any], golds: dict[str, set[Span]], scheme: Scheme
                      ) -> tuple[dict[str, set[Span]], dict[str, dict[Span, str]]]:
    """Per document id, the gold mentions that the scheme represents in the document's examples (its word
    sequences: ``doc_id``, ``offsets``, ``mentions``), and the reason each other one is lost: a mention in no
    example was never seen (truncation, segment boundary). The one counting rule of coverage, for
    ``evaluate`` and ``predict --gold`` alike."""
    rep: dict[str, set[Span]] = {d: set() for d in golds}
    by_doc: dict[str, list[Any]] = defaultdict(list)
    for ex in examples:
        back, _ = representable(scheme, ex.mentions or [], Words(ex.offsets))
        rep.setdefault(ex.doc_id, set()).update(back)
        by_doc[ex.doc_id].append(ex)
    lost: dict[str, dict[Span, str]] = {}
    for d, g in golds.items():
        for u in g - rep[d]:
            inside = [ex for ex in by_doc.get(d, []) if u in (ex.mentions or ())]
            why = LOST_UNSEEN if not inside else (
                LOST_NESTING if Words(inside[0].offsets).aligned(u[0], u[1]) else LOST_WORD)
            lost.setdefault(d, {})[u] = why
    return rep, lost


def mention_scores(gold: dict[str, set[Span]], pred: dict[str, set[Span]], labels: Sequence[str],
                   representable_gold: dict[str, set[Span]] | None = None,
                   lost: dict[str, dict[Span, str]] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Exact-match scores of predicted against gold mentions, per document id.

    Returns ``(scores, table)``: ``scores`` holds micro ``precision``, ``recall``, ``f1`` and ``macro_f1``
    (mean F1 over the task's labels); ``table`` the counts per type and in total (gold, representable,
    predicted, correct, P/R/F1, lost-by-reason).

    Our own arithmetic: a set intersection of ``(start, end, type)`` per document. seqeval only reads flat
    BIO sequences, which cannot hold nested mentions; on flat data this equals seqeval (tested).
    """
    per: dict[str, TypeCounts] = {lab: TypeCounts() for lab in labels}
    for doc in set(gold) | set(pred):
        g, p = gold.get(doc, set()), pred.get(doc, set())
        rep = representable_gold.get(doc, g) if representable_gold is not None else g
        for s, e, lab in g:
            per.setdefault(lab, TypeCounts()).gold += 1
        for s, e, lab in rep:
            per.setdefault(lab, TypeCounts()).representable += 1
        for s, e, lab in p:
            per.setdefault(lab, TypeCounts()).predicted += 1
        for s, e, lab in g & p:
            per[lab].correct += 1
        for (s, e, lab), why in (lost or {}).get(doc, {}).items():
            per.setdefault(lab, TypeCounts()).lost[why] += 1
    total = TypeCounts()
    for c in per.values():
        total.add(c)
    scores = total.scores()
    scores["macro_f1"] = float(np.mean([per[lab].scores()["f1"] for lab in labels])) if labels else 0.0
    table = {"total": total.to_json(), "per_type": {lab: per[lab].to_json() for lab in sorted(per)}}
    return scores, table


def coverage_of(table: dict[str, Any]) -> float:
    """Share of gold mentions that are representable (1.0 when there is no gold mention)."""
    t = table["total"]
    return t["representable"] / t["gold"] if t["gold"] else 1.0


# ---------------------------------------------------------------------------------------------
# the CLEF eHealth count (BRATEval)
# ---------------------------------------------------------------------------------------------

# An annotation as BRATEval reads a T line: its fragments ((start, end), ...) as written, and its type
ClefEntity = tuple[tuple[tuple[int, int], ...], str]

CLEF_KEYS = ("clef_precision", "clef_recall", "clef_f1", "clef_tp", "clef_fp", "clef_fn")


def clef_entities(entities: Iterable[Any]) -> list[ClefEntity]:
    """One entity per annotation (objects with ``start``, ``end``, ``label`` and ``fragments``), in reading
    order: the fragments of a discontinuous mention kept together, duplicates kept, offsets untrimmed."""
    out = []
    for ent in entities:
        frags = getattr(ent, "fragments", None)
        out.append((tuple(frags) if frags else ((ent.start, ent.end),), ent.label))
    return out


def as_clef(mention: Span | ClefEntity) -> ClefEntity:
    """A predicted mention as a BRAT ``T`` line: a span ``(start, end, label)`` is one fragment."""
    if len(mention) == 3:
        s, e, lab = mention  # type: ignore[misc]
        return (((s, e),), lab)
    frags, lab = mention  # type: ignore[misc]
    return (tuple(frags), lab)


def clef_scores(gold: dict[str, Sequence[ClefEntity]], pred: dict[str, Iterable[Span | ClefEntity]],
                labels: Sequence[str]) -> tuple[dict[str, float], dict[str, Any]]:
    """Precision, recall and F1 as the CLEF eHealth scorer of QUAERO counts them: BRATEval's entity
    comparison in its default exact mode (exact span, exact type).

    The rule, read from BRATEval's source (github.com/READ-BioMed/brateval, the successor of
    bitbucket.org/nicta_biomed/brateval; ``CompareEntities.evaluate``, ``Document.findEntity``,
    ``Entity.getMatchResult`` and ``Entity.entityComparisonExactSpan`` of release 0.3.2, and
    ``Annotations.read``):

    - every ``T`` line of a gold document is one entity: duplicates (the same span and type written twice,
      as QUAERO does once per UMLS concept) are two entities, and offsets are compared as written (no
      trimming);
    - gold entities are taken one by one; each is matched by the first predicted entity, not matched yet,
      of the same type whose fragments include every fragment of the gold entity (an exact
      ``(start, end)`` equality per fragment). The matched prediction is removed, so that it matches no
      other gold entity (BRATEval since March 2021, commit 5070a79, "TP/FP/FN counts corrected"): a
      matched gold entity is a TP, an unmatched one a FN;
    - every predicted entity left unmatched is a FP; P = TP / (TP + FP), R = TP / (TP + FN), F1 their
      harmonic mean, micro over every document and type (and per type: TP and FN by the gold type, FP by
      the predicted type);
    - only the gold documents are read (a prediction for a document without gold is not counted).

    Older BRATEval versions used no prediction up (before 5070a79: a prediction matching two identical gold
    lines made both TP), and the 2018-2020 ones counted no FP for a prediction inside a gold entity of its
    type (a fragment of a discontinuous one); docs/evaluation.md ("Two counts") gives the numbers.

    So a discontinuous gold mention (``T3 DISO 0 8;20 30``) is one entity that only a prediction holding
    both fragments matches: a contiguous predicted span never does, and its fragments predicted
    separately are two FPs. A gold line written twice needs two predictions. With contiguous predictions
    (a word tagger's) the result does not depend on the order in which entities are taken.

    ``gold``: per document, its entities (:func:`clef_entities`); ``pred``: per document, predicted spans
    ``(start, end, label)`` or entities ``(fragments, label)``. Returns ``(scores, table)``: ``scores``
    holds :data:`CLEF_KEYS`, ``table`` TP/FP/FN/P/R/F1 per type and in total.
    """
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for doc, entities in gold.items():
        preds = [as_clef(p) for p in sorted(pred.get(doc, ()))]
        used = [False] * len(preds)
        holding: dict[tuple[tuple[int, int], str], list[int]] = defaultdict(list)  # (fragment, type) -> preds
        for k, (frags, lab) in enumerate(preds):
            for f in dict.fromkeys(frags):
                holding[(f, lab)].append(k)
        for frags, lab in entities:
            need = set(frags)
            hit = next((k for k in holding.get((frags[0], lab), ()) if not used[k] and need <= set(preds[k][0])),
                       None)
            if hit is None:
                fn[lab] += 1
            else:
                used[hit] = True
                tp[lab] += 1
        for k, (_, lab) in enumerate(preds):
            if not used[k]:
                fp[lab] += 1

    def row(t: int, f_p: int, f_n: int) -> dict[str, Any]:
        return {"tp": t, "fp": f_p, "fn": f_n, **{k: round(v, 6) for k, v in prf(t, f_p, f_n).items()}}

    types = sorted(set(labels) | set(tp) | set(fp) | set(fn))
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    scores = {f"clef_{k}": v for k, v in prf(total_tp, total_fp, total_fn).items()}
    scores.update(clef_tp=total_tp, clef_fp=total_fp, clef_fn=total_fn)
    table = {"total": row(total_tp, total_fp, total_fn), "per_type": {lab: row(tp[lab], fp[lab], fn[lab]) for lab in types}}
    return scores, table
