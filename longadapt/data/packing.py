"""Packing tokenized documents into rows of at most ``max_length`` tokens.

A *piece* is a token range ``[start, end)`` of one document; in a row every piece is wrapped in the
tokenizer's start/end tokens (CLS/BOS ... SEP/EOS) and numbered 1, 2, 3... so that attention never
crosses a piece. Three steps:

1. :func:`chunk_document` cuts a document longer than a row into pieces that fit, between sentences
   when the sentence boundary wastes at most ``sentence_slack`` tokens of the row, else at the last
   word start that fits (a word is only cut when one word alone is longer than a row).
2. Best-fit decreasing bin packing of all pieces (the largest first, each into the open row it
   fills most tightly).
3. Gap filling: while the rows that still have more than ``fill_tolerance`` free tokens could take
   the content of the least-filled row, that row is dissolved and its pieces go into the gaps of the
   others (whole when one fits, else cut between sentences or words to fill the largest gap). Without
   this step, corpora whose documents are 50-100 % of a row (the French leaflets at 8,192 tokens)
   keep 3 % padding because nothing small is left to fill the rows.

Why our own code: the usual recipes either concatenate all documents and cut every ``max_length``
tokens (the ``group_texts`` pattern of the transformers examples: cuts anywhere, a document crosses
every row boundary) or bin-pack whole sequences (documents longer than a row are truncated, nothing
is cut between sentences, and padding stays high when documents are long). We need documents kept
whole where possible, cuts between sentences otherwise, and under 1 % padding; none of the installed
libraries (datasets, transformers, tokenizers, pyarrow) offers that.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

Piece = tuple[int, int, int]  # (document index, start token, end token), content tokens only


@dataclass
class PackingConfig:
    """Options of sentence segmentation and packing (defaults suit 512-8,192-token rows).

    sentence_splitter: ``rule`` (spaCy blank pipeline + sentencizer: fast) or ``pipeline`` (the
        language pack's spaCy pipeline, parser-based: better on clinical notes, ~20x slower).
    sentence_min_tokens: documents with at most this many tokens are not sentence-segmented (they
        are only ever cut at word starts, when gap filling needs them).
    sentence_slack: tokens a chunk may leave unused to end at a sentence boundary; ``None`` means
        2 % of max_length (at least 8).
    fill_tolerance: a row with at most this many free tokens is full; ``None`` means 0.5 % of
        max_length (at least 8).
    gap_filling: run step 3 (cut pieces to fill gaps); off means no document shorter than a row is
        ever cut, at the price of more padding.
    min_validation_documents: at least this many documents go to validation (see split_documents).
    shuffle_rows: shuffle the packed rows (seeded) so that rows are not ordered by document size.
    """

    sentence_splitter: str = "rule"
    sentence_min_tokens: int = 32
    sentence_slack: int | None = None
    fill_tolerance: int | None = None
    gap_filling: bool = True
    min_validation_documents: int = 1
    shuffle_rows: bool = True

    def slack_for(self, max_length: int) -> int:
        return self.sentence_slack if self.sentence_slack is not None else max(8, max_length // 50)

    def tolerance_for(self, max_length: int) -> int:
        return self.fill_tolerance if self.fill_tolerance is not None else max(8, max_length // 200)


@dataclass
class PackingStats:
    """What packing produced for one split.

    documents: documents packed; segments: pieces (a document cut in k pieces counts k); rows: packed
    sequences; tokens: real tokens including the special tokens of every piece; padding_share:
    ``1 - tokens / (rows * max_length)``; words: white-space words of the documents; bytes: their
    UTF-8 bytes; cuts: how pieces were cut (``sentence``, ``word``, ``hard`` = inside a word).
    """

    documents: int = 0
    segments: int = 0
    rows: int = 0
    tokens: int = 0
    padding_share: float = 0.0
    words: int = 0
    bytes: int = 0
    max_length: int = 0
    split: str = "train"
    cuts: dict[str, int] = field(default_factory=lambda: {"sentence": 0, "word": 0, "hard": 0})


def cut_point(
    sentence_starts: Sequence[int],
    word_starts: Sequence[int],
    start: int,
    limit: int,
    slack: int,
    allow_hard: bool = True,
) -> tuple[int, str] | None:
    """Where to end a piece that begins at ``start`` and may not end after ``limit``.

    The last sentence start in ``(start, limit]`` if it leaves at most ``slack`` tokens unused, else
    the last word start in ``(start, limit]`` (or that sentence start, if it is later), else ``limit``
    itself (``hard``, inside a word) when ``allow_hard``, else None. Both lists are sorted.
    """
    i = bisect.bisect_right(sentence_starts, limit) - 1
    sentence = sentence_starts[i] if i >= 0 and sentence_starts[i] > start else None
    if sentence is not None and limit - sentence <= slack:
        return sentence, "sentence"
    j = bisect.bisect_right(word_starts, limit) - 1
    word = word_starts[j] if j >= 0 and word_starts[j] > start else None
    if word is not None:
        if sentence is not None and sentence >= word:
            return sentence, "sentence"
        return word, "word"
    if sentence is not None:
        return sentence, "sentence"
    return (limit, "hard") if allow_hard and limit > start else None


def chunk_document(
    n_tokens: int,
    sentence_starts: Sequence[int],
    word_starts: Sequence[int],
    budget: int,
    slack: int,
    cuts: dict[str, int] | None = None,
) -> list[tuple[int, int]]:
    """Cut ``[0, n_tokens)`` into consecutive ranges of at most ``budget`` tokens (see cut_point)."""
    if budget < 1:
        raise ValueError("budget must be at least one token")
    pieces = []
    start = 0
    while n_tokens - start > budget:
        cut, kind = cut_point(sentence_starts, word_starts, start, start + budget, slack)
        if cuts is not None:
            cuts[kind] += 1
        pieces.append((start, cut))
        start = cut
    pieces.append((start, n_tokens))
    return pieces


Cutter = Callable[[int, int, int], "tuple[int, str] | None"]


def pack_pieces(
    pieces: Sequence[Piece],
    capacity: int,
    overhead: int,
    tolerance: int,
    cutter: Cutter | None = None,
    cuts: dict[str, int] | None = None,
) -> list[list[Piece]]:
    """Pack pieces into rows of ``capacity`` tokens; a piece costs ``end - start + overhead``.

    Best-fit decreasing, then gap filling (module docstring) when a ``cutter`` is given:
    ``cutter(doc, start, limit)`` returns where to cut a piece of ``doc`` that starts at ``start``
    and must end by ``limit`` (between sentences or words), or None when no such cut exists.
    """
    order = sorted(range(len(pieces)), key=lambda k: pieces[k][2] - pieces[k][1], reverse=True)
    rows: list[list[Piece] | None] = []
    gaps: list[int] = []
    open_rows: list[tuple[int, int]] = []  # sorted (free tokens, row), rows that can take a piece
    smallest = 1 + overhead

    def reopen(row: int) -> None:
        if gaps[row] >= smallest:
            bisect.insort(open_rows, (gaps[row], row))

    for k in order:
        piece = pieces[k]
        size = piece[2] - piece[1] + overhead
        if size > capacity:
            raise ValueError(f"piece {piece} is longer than a row ({size} > {capacity})")
        i = bisect.bisect_left(open_rows, (size, -1))
        if i < len(open_rows):
            _, row = open_rows.pop(i)
            rows[row].append(piece)
            gaps[row] -= size
        else:
            row = len(rows)
            rows.append([piece])
            gaps.append(capacity - size)
        reopen(row)

    if cutter is not None:
        _fill_gaps(rows, gaps, capacity, overhead, tolerance, cutter, cuts)
    return [r for r in rows if r]


def _fill_gaps(
    rows: list[list[Piece] | None],
    gaps: list[int],
    capacity: int,
    overhead: int,
    tolerance: int,
    cutter: Cutter,
    cuts: dict[str, int] | None,
) -> None:
    """Dissolve the least-filled rows into the gaps of the other rows (in place)."""
    min_room = max(1, tolerance - overhead)  # a cut piece has at least this many content tokens
    # only rows whose gap is above the tolerance take part; sorted by free tokens
    open_rows = sorted((gaps[r], r) for r in range(len(rows)) if gaps[r] > tolerance)
    total_free = sum(g - overhead for g, _ in open_rows)

    def remove(entry: tuple[int, int]) -> None:
        nonlocal total_free
        open_rows.remove(entry)
        total_free -= entry[0] - overhead

    def add_to(row: int, piece: Piece) -> None:
        nonlocal total_free
        entry = (gaps[row], row)
        remove(entry)
        rows[row].append(piece)
        gaps[row] -= piece[2] - piece[1] + overhead
        if gaps[row] > tolerance:
            bisect.insort(open_rows, (gaps[row], row))
            total_free += gaps[row] - overhead

    while len(open_rows) >= 2:
        victim_gap, victim = open_rows[-1]  # the least-filled row
        content = capacity - victim_gap
        others_free = total_free - (victim_gap - overhead)
        # every piece that has to be cut costs one more overhead; keep a margin for that
        if others_free < content + 4 * overhead + tolerance:
            break
        remove(open_rows[-1])
        victim_pieces = sorted(rows[victim], key=lambda p: p[2] - p[1], reverse=True)
        rows[victim] = None
        stranded: list[Piece] = []
        for doc, start, end in victim_pieces:
            while start < end:
                size = end - start + overhead
                i = bisect.bisect_left(open_rows, (size, -1))
                if i < len(open_rows):  # the whole rest fits somewhere: best fit
                    add_to(open_rows[i][1], (doc, start, end))
                    break
                placed = False
                for entry in reversed(list(open_rows)):  # the largest gaps first
                    room = entry[0] - overhead
                    if room < min_room:
                        break
                    found = cutter(doc, start, start + room)
                    if found is None:
                        continue
                    cut, kind = found
                    if cuts is not None:
                        cuts[kind] += 1
                    add_to(entry[1], (doc, start, cut))
                    start = cut
                    placed = True
                    break
                if not placed:
                    stranded.append((doc, start, end))
                    break
        if stranded:  # could not be placed (no usable gap): give them a row again and stop
            rows.append(stranded)
            gaps.append(capacity - sum(e - s + overhead for _, s, e in stranded))
            logger.debug("gap filling stopped with %d stranded piece(s)", len(stranded))
            break
