"""The common data model of the evaluation package.

Every reader returns one of four kinds of examples:

- :class:`Document`: a text with character-offset entity spans (BRAT, UIMA XMI);
- :class:`TaggedSentence`: a word-level tagged sequence (IOB/CoNLL columns, datasets);
- :class:`ClassificationExample`: a text with zero or more labels, or a score (TSV, CodiEsp, datasets);
- :class:`MCQAItem`: a question, its options and the correct options (JSON).

Named-entity tasks are trained and scored on *words*: a :class:`Document` becomes a
:class:`TaggedSentence` holding all the words of the document with their character offsets and the
document's gold mentions (:func:`document_words`, optionally cut into segments); a scheme of
:mod:`.entities` then gives every word its classes. Nothing about nesting is decided here: every gold
mention is kept, and :mod:`.entities` scores against all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from longadapt.evaluation.entities import gold_units, tags_to_spans  # noqa: F401  (tags_to_spans re-exported)

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
    """A word-level tagged sequence (a sentence, or all the words of a document or of a segment of it).

    For entity tasks ``text`` is the document's text, ``offsets`` the words' character offsets into it,
    ``mentions`` the gold mentions ``(start, end, label)`` that lie inside this sequence and ``doc_id`` the
    document it belongs to (several segments share one). ``tags`` holds the IOB tags read from a tagged
    file (empty for documents); ``classes`` the word classes of the task's scheme, set when the task's
    data is prepared.
    """

    id: str
    words: list[str]
    tags: list[str]
    source: str = ""
    line: int = 0
    offsets: list[tuple[int, int]] | None = None  # character offsets of the words, when known
    meta: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    mentions: list[tuple[int, int, str]] | None = None
    doc_id: str | None = None
    classes: Any = None  # numpy (n_words, n_layers) class ids of the scheme

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


def document_words(doc: Document, splitter: str, discontinuous: str,
                   segment_on: str | None = None) -> tuple[list[TaggedSentence], list[tuple[int, int, str]], dict[str, int]]:
    """The words of ``doc`` (as one sequence, or as segments ending after each word equal to
    ``segment_on``), its gold mentions, and counts (``annotations``, ``discontinuous``, ``duplicates``,
    ``trimmed``).

    A segment holds the gold mentions that lie inside it; a mention that crosses a segment boundary is in
    no segment (it stays in the document's gold and counts as not representable).
    """
    units, counts = gold_units(doc.entities, discontinuous, doc.text)
    offsets = split_words(doc.text, splitter)
    cuts: list[tuple[int, int]] = []  # word ranges of the segments
    if segment_on:
        first = 0
        for i, (s, e) in enumerate(offsets):
            if doc.text[s:e] == segment_on:
                cuts.append((first, i + 1))
                first = i + 1
        if first < len(offsets):
            cuts.append((first, len(offsets)))
    else:
        cuts.append((0, len(offsets)))
    seqs = []
    for k, (a, b) in enumerate(cuts):
        offs = offsets[a:b]
        lo = offs[0][0] if offs else 0
        hi = offs[-1][1] if offs else 0
        inside = [u for u in units if lo <= u[0] and u[1] <= hi] if segment_on else list(units)
        seqs.append(TaggedSentence(
            id=f"{doc.id}#{k}" if segment_on else doc.id, words=[doc.text[s:e] for s, e in offs], tags=[],
            source=doc.source, offsets=offs, text=doc.text, mentions=inside, doc_id=doc.id,
            meta={"n_whitespace_words": len(doc.text[lo:hi].split()) if segment_on else doc.n_words,
                  **({"ignored_labels": doc.meta["ignored_labels"]} if k == 0 and doc.meta.get("ignored_labels")
                     else {})}))
    return seqs, units, counts


def sentence_text(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """A text for pre-split words (joined by single spaces) and each word's character offsets."""
    offsets, pos = [], 0
    for w in words:
        offsets.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), offsets


def n_words(ex: Any) -> int:
    """Words of an example as the task counts them (whitespace words where the reader recorded them)."""
    meta = getattr(ex, "meta", None) or {}
    return int(meta.get("n_whitespace_words", ex.n_words))
