"""Tokenization of whole documents with word ids, byte counts and sentence starts.

:class:`DocumentEncoder` is the function given to ``datasets.Dataset.map(batched=True, num_proc=...)``.
It is picklable (it carries the tokenizer as its JSON definition and builds the Rust tokenizer and the
spaCy pipeline lazily in each worker) and returns, for every document:

- ``input_ids``: the document's tokens, without special tokens;
- ``word_ids``: the word index of each token within the document (0, 1, 2, ...). Words are the
  pre-tokenizer's words (``Encoding.word_ids()`` of the fast tokenizer, on running text so that line
  breaks reach the tokenizer). A tokenizer without word splitting in its pre-tokenizer would give one
  word per document; word-start markers are used instead (``▁``/``Ġ`` begin a word, WordPiece ``##``
  continues one). Offsets are never used for words: with SentencePiece-style tokens they touch and
  would merge a whole document into one word;
- ``token_bytes``: UTF-8 bytes of the text each token accounts for: from the end of the previous
  token to its own end, so white space before a token is counted with it and the sum over a
  document is exactly the document's UTF-8 length (what bits per byte needs);
- ``sentence_starts``: token positions where a sentence (spaCy) or a line begins, kept only where
  they are also word starts; used to cut long documents between sentences;
- ``n_tokens``, ``n_words`` (white-space words), ``n_bytes`` and ``text_hash``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

import numpy as np

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)

SENTENCE_SPLITTERS = ("rule", "pipeline")
_START_MARKERS = ("▁", "Ġ")
_LINE_BREAK = re.compile(r"\n+")


def backend_json(tokenizer: Any) -> str:
    """The ``tokenizers`` JSON definition of a fast tokenizer (raises for a slow one)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        if hasattr(tokenizer, "to_str"):  # a raw tokenizers.Tokenizer
            return tokenizer.to_str()
        raise LongAdaptError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: word ids and byte offsets need one. "
            "Load it with AutoTokenizer.from_pretrained(...) from a folder with tokenizer.json, or "
            "convert it (transformers.convert_slow_tokenizer)."
        )
    return backend.to_str()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's definition and of the special tokens packing adds."""
    h = hashlib.sha256(backend_json(tokenizer).encode("utf-8"))
    for name in ("cls_token_id", "bos_token_id", "sep_token_id", "eos_token_id"):
        h.update(f"{name}={getattr(tokenizer, name, None)};".encode())
    return h.hexdigest()


def _char_to_byte(text: str) -> np.ndarray:
    """``out[i]`` = UTF-8 byte offset of character ``i`` (``out[len(text)]`` = total bytes)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lengths = 1 + (codes >= 0x80).astype(np.int64) + (codes >= 0x800) + (codes >= 0x10000)
    out = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def dense_word_ids(raw: list[int | None]) -> np.ndarray:
    """Renumber word ids 0, 1, 2, ... in order; a token without a word id is a word of its own."""
    w = np.array(raw, dtype=np.float64)  # None -> nan
    if len(w) == 0:
        return np.zeros(0, dtype=np.int32)
    none = np.isnan(w)
    new = np.ones(len(w), dtype=bool)
    new[1:] = (w[1:] != w[:-1]) | none[1:]
    return (np.cumsum(new) - 1).astype(np.int32)


def marker_word_ids(tokens: list[str], continuation_prefix: str | None) -> np.ndarray:
    """Word ids from word-start markers: ``▁``/``Ġ`` start a word; with a WordPiece continuation
    prefix (``##``) every token that does not carry it starts a word."""
    if continuation_prefix:
        starts = np.array([not t.startswith(continuation_prefix) for t in tokens], dtype=bool)
    else:
        starts = np.array([t.startswith(_START_MARKERS) for t in tokens], dtype=bool)
    if len(starts):
        starts[0] = True
    return (np.cumsum(starts) - 1).astype(np.int32)


class DocumentEncoder:
    """Batched ``datasets.map`` function: ``{"id", "text"}`` -> token columns (see module doc)."""

    def __init__(
        self,
        tokenizer: Any,
        language: str,
        sentence_splitter: str = "rule",
        sentence_min_tokens: int = 0,
        spacy_batch_size: int = 16,
    ) -> None:
        if sentence_splitter not in SENTENCE_SPLITTERS:
            raise LongAdaptError(
                f"sentence_splitter={sentence_splitter!r}: use 'rule' (spacy.blank + sentencizer, fast) "
                "or 'pipeline' (the language pack's spaCy pipeline, parser-based, slow)"
            )
        self.tokenizer_json = backend_json(tokenizer)
        model = json.loads(self.tokenizer_json).get("model", {})
        self.continuation_prefix = (
            model.get("continuing_subword_prefix") if model.get("type") == "WordPiece" else None
        )
        self.language = language
        self.sentence_splitter = sentence_splitter
        self.sentence_min_tokens = sentence_min_tokens
        self.spacy_batch_size = spacy_batch_size
        self._tok = None
        self._nlp = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tok"] = None
        state["_nlp"] = None
        return state

    @property
    def tok(self):
        if self._tok is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(self.tokenizer_json)
            tok.no_truncation()  # tokenizer.json files often carry truncation at 128/512
            tok.no_padding()
            self._tok = tok
        return self._tok

    @property
    def nlp(self):
        if self._nlp is None:
            from longadapt.languages import load_language

            pack = load_language(self.language)
            self._nlp = pack.sentence_splitter(prefer_pipeline=self.sentence_splitter == "pipeline")
        return self._nlp

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        texts: list[str] = batch["text"]
        encodings = self.tok.encode_batch(texts, add_special_tokens=False)
        out: dict[str, list] = {
            "input_ids": [], "word_ids": [], "token_bytes": [], "sentence_starts": [],
            "n_tokens": [], "n_words": [], "n_bytes": [], "text_hash": [],
        }
        word_starts_of: list[np.ndarray] = []
        starts_of: list[np.ndarray] = []
        for text, enc in zip(texts, encodings):
            n = len(enc.ids)
            words = dense_word_ids(enc.word_ids)
            if n > 1 and words[-1] == 0 and len(text.split()) > 1:
                words = marker_word_ids(enc.tokens, self.continuation_prefix)
            offsets = np.array(enc.offsets, dtype=np.int64).reshape(n, 2)
            c2b = _char_to_byte(text)
            total = int(c2b[-1])
            if n:
                ends = np.maximum.accumulate(np.minimum(offsets[:, 1], len(text)))
                end_bytes = c2b[ends]
                token_bytes = np.diff(end_bytes, prepend=0)
                token_bytes[-1] += total - end_bytes[-1]
            else:
                token_bytes = np.zeros(0, dtype=np.int64)
            word_start = np.ones(n, dtype=bool)
            word_start[1:] = words[1:] != words[:-1]
            word_starts_of.append(word_start)
            starts_of.append(offsets[:, 0])
            out["input_ids"].append(np.asarray(enc.ids, dtype=np.int32))
            out["word_ids"].append(words)
            out["token_bytes"].append(token_bytes.astype(np.int32))
            out["n_tokens"].append(n)
            out["n_words"].append(len(text.split()))
            out["n_bytes"].append(total)
            out["text_hash"].append(hashlib.sha256(text.encode("utf-8")).hexdigest())

        need = [i for i, n in enumerate(out["n_tokens"]) if n > max(1, self.sentence_min_tokens)]
        sentence_starts: list[np.ndarray] = [np.zeros(0, dtype=np.int32) for _ in texts]
        if need:
            docs = self.nlp.pipe((texts[i] for i in need), batch_size=self.spacy_batch_size)
            for i, doc in zip(need, docs):
                # a line break also ends a sentence: clinical notes put headings and list items on
                # lines of their own, and parsers do not always split there
                lines = [m.end() for m in _LINE_BREAK.finditer(texts[i])]
                chars = np.array([s.start_char for s in doc.sents] + lines, dtype=np.int64)
                tok_idx = np.unique(np.searchsorted(starts_of[i], chars, side="left"))
                tok_idx = tok_idx[(tok_idx > 0) & (tok_idx < out["n_tokens"][i])]
                tok_idx = tok_idx[word_starts_of[i][tok_idx]]
                sentence_starts[i] = tok_idx.astype(np.int32)
        out["sentence_starts"] = sentence_starts
        return out


def encoded_features():
    """The ``datasets.Features`` of :class:`DocumentEncoder`'s output (plus the kept ``id``)."""
    from datasets import Features, List, Value

    ints = List(Value("int32"))
    return Features(
        {
            "id": Value("string"),
            "input_ids": ints,
            "word_ids": ints,
            "token_bytes": ints,
            "sentence_starts": ints,
            "n_tokens": Value("int64"),
            "n_words": Value("int64"),
            "n_bytes": Value("int64"),
            "text_hash": Value("string"),
        }
    )
