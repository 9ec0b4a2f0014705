"""The common data model of the evaluation package.

Every reader returns one of four kinds of examples:

- :class:`Document`: a text with character-offset entity spans (BRAT, UIMA XMI);
- :class:`TaggedSentence`: a word-level tagged sequence (IOB/CoNLL columns);
- :class:`ClassificationExample`: a text with zero or more labels, or a score (TSV, CodiEsp);
- :class:`MCQAItem`: a question, its options and the correct options (JSON).

Named-entity tasks are trained and scored on *words*: a :class:`Document` becomes a
:class:`TaggedSentence` (all the words of the document, BIO tags derived from its spans) with
:func:`document_to_tagged`, so that models with different tokenizers are scored on the same units.

Span policy (documented in docs/evaluation.md):

- a discontinuous BRAT entity keeps its longest fragment (the fragments are kept in
  ``Entity.fragments``); E3C XMI stores discontinuous entities as one extent, which is used as is;
- overlapping or nested entities are resolved *longest span first*: spans are taken in order of
  decreasing length (then increasing start) and a span that overlaps one already kept is dropped.
  The same resolution is applied to the gold spans of every split, so that the gold standard is
  something a BIO tagger can produce.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Any

WORD_PATTERNS: dict[str, str] = {
    # letters/digits runs, every other non-space character on its own
    "regex": r"\w+|[^\w\s]",
    # whitespace-separated tokens (the unit the data README counts)
    "whitespace": r"\S+",
}


@dataclass
class Entity:
    """A character-offset span ``[start, end)`` of a document's text."""

    start: int
    end: int
    label: str
    text: str | None = None
    id: str | None = None
    fragments: tuple[tuple[int, int], ...] | None = None  # original fragments of a discontinuous span
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class Document:
    """A whole document with its entities (character offsets into ``text``)."""

    id: str
    text: str
    entities: list[Entity] = field(default_factory=list)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_words(self) -> int:
        return len(self.text.split())


@dataclass
class TaggedSentence:
    """A word-level tagged sequence (a sentence, or all the words of a document)."""

    id: str
    words: list[str]
    tags: list[str]
    source: str = ""
    line: int = 0
    offsets: list[tuple[int, int]] | None = None  # character offsets of the words, when known
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_words(self) -> int:
        return len(self.words)


@dataclass
class ClassificationExample:
    """A text with labels (single- or multi-label) or a score (regression)."""

    id: str
    text: str
    labels: list[str] = field(default_factory=list)
    score: float | None = None
    text_pair: str | None = None
    source: str = ""
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_words(self) -> int:
        return len(self.text.split()) + (len(self.text_pair.split()) if self.text_pair else 0)


@dataclass
class MCQAItem:
    """A multiple-choice question with one or more correct options."""

    id: str
    question: str
    options: dict[str, str]
    answers: list[str]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_words(self) -> int:
        return len(self.question.split()) + sum(len(o.split()) for o in self.options.values())


Example = Document | TaggedSentence | ClassificationExample | MCQAItem


def split_words(text: str, splitter: str = "regex") -> list[tuple[int, int]]:
    """Character offsets ``[start, end)`` of the words of ``text``.

    ``splitter`` is a key of :data:`WORD_PATTERNS` or a regular expression.
    """
    pattern = WORD_PATTERNS.get(splitter, splitter)
    return [(m.start(), m.end()) for m in re.finditer(pattern, text)]


def resolve_overlaps(entities: list[Entity]) -> tuple[list[Entity], list[Entity]]:
    """Keep the longest span of each group of overlapping spans.

    Returns ``(kept, dropped)``; ``kept`` is sorted by start offset.
    """
    order = sorted(entities, key=lambda e: (-(e.end - e.start), e.start, e.label))
    kept: list[Entity] = []
    dropped: list[Entity] = []
    for ent in order:
        if any(ent.start < k.end and k.start < ent.end for k in kept):
            dropped.append(ent)
        else:
            kept.append(ent)
    kept.sort(key=lambda e: (e.start, e.end))
    return kept, dropped


def document_to_tagged(doc: Document, splitter: str = "regex") -> TaggedSentence:
    """All the words of ``doc`` with BIO tags derived from its entities.

    Overlaps are resolved by :func:`resolve_overlaps`. A word belongs to an entity when it
    overlaps the entity's span; the first such word is tagged ``B-``. Two kept entities that touch
    the same word cannot both be tagged: the one that starts first keeps it and the other is dropped.
    The number of entity boundaries falling inside a word, of dropped overlapping entities and of
    entities dropped for a shared word are stored in ``meta``.
    """
    offsets = split_words(doc.text, splitter)
    words = [doc.text[s:e] for s, e in offsets]
    tags = ["O"] * len(offsets)
    kept, dropped = resolve_overlaps(doc.entities)
    starts = [s for s, _ in offsets]
    misaligned = 0
    empty = 0
    shared = 0
    for ent in kept:
        # the words that overlap [ent.start, ent.end)
        i = max(bisect.bisect_right(starts, ent.start) - 1, 0)
        while i < len(offsets) and offsets[i][1] <= ent.start:
            i += 1
        j = i
        while j < len(offsets) and offsets[j][0] < ent.end:
            j += 1
        if j == i:
            empty += 1  # a span made only of spaces: no word to tag
            continue
        if any(tags[k] != "O" for k in range(i, j)):
            shared += 1  # shares a word with an entity kept before it (earlier start wins)
            continue
        tags[i] = "B-" + ent.label
        for k in range(i + 1, j):
            tags[k] = "I-" + ent.label
        misaligned += (offsets[i][0] != ent.start) + (offsets[j - 1][1] != ent.end)
    return TaggedSentence(
        id=doc.id,
        words=words,
        tags=tags,
        source=doc.source,
        offsets=offsets,
        meta={
            "n_entities": len(doc.entities),
            "dropped_overlapping": len(dropped),
            "misaligned_boundaries": misaligned,
            "entities_without_words": empty,
            "entities_sharing_a_word": shared,
            "n_whitespace_words": doc.n_words,
        },
    )


def tags_to_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Word spans ``(first, last_exclusive, label)`` of a BIO(IOB1-tolerant) tag sequence."""
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
