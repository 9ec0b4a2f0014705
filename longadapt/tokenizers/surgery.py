"""Tokenizer surgery on ``tokenizer.json``: whole words added to a fast tokenizer (the ``extend`` vocabulary
arm of :mod:`longadapt.recipes.vocab_transfer`), checked to be one token in running text and never inside a
longer word.

BPE vocabularies get the words as vocabulary entries with ``ignore_merges`` (so that a whole word wins over
its merges; old entries whose segmentation changes are counted); WordPiece and other models get them as
``AddedToken(single_word=True)``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.tokenizers.conventions import SP_MARK, json_nodes, to_byte_level

logger = logging.getLogger(__name__)

SPECIAL_ROLES = ("pad", "unk", "cls", "sep", "mask", "bos", "eos")
BYTE_PIECE = re.compile(r"^(?:<0x[0-9A-Fa-f]{2}>)+$")  # a byte-fallback entry (<0xC3>, ...)


def add_whole_words(old_tok: Any, data: dict, scheme: str, model_type: str, words: list[str],
                    notes: list[str]) -> tuple[Any, list[int], int]:
    """A new fast tokenizer: ``old_tok`` (its ``tokenizer.json`` document ``data``, word-start ``scheme``,
    model type) with ``words`` added as whole words, each checked; returns (tokenizer, the words' ids, old
    entries whose segmentation changed). Notes for the report are appended to ``notes``."""
    backend, ids, changed = _add_words(old_tok, data, scheme, model_type, words, notes)
    new_tok = _wrap(old_tok, backend)
    _verify_whole_words(new_tok, words, ids, " " if scheme == "byte_level" else "")
    return new_tok, ids, changed


def _add_words(old_tok, data: dict, scheme: str, model_type: str, words: list[str], notes: list[str]):
    """A copy of the old backend with ``words`` added as whole words; returns (backend, ids, changed)."""
    from tokenizers import AddedToken, Tokenizer

    if model_type == "BPE":
        marker = _metaspace_marker(data) if scheme == "metaspace" else None
        vocab = data["model"]["vocab"]
        next_id = max([*vocab.values(), *(t["id"] for t in data.get("added_tokens", []))], default=-1) + 1
        before = Tokenizer.from_str(json.dumps(data))
        ids: list[int] = []
        for word in words:
            entry = to_byte_level(" " + word) if scheme == "byte_level" else marker + word
            if entry in vocab:  # reachable by merges already: it is a word of the vocabulary
                ids.append(vocab[entry])
                continue
            vocab[entry] = next_id
            ids.append(next_id)
            next_id += 1
        data["model"]["ignore_merges"] = True
        backend = Tokenizer.from_str(json.dumps(data))
        changed = _changed_segmentations(before, backend, set(ids), data)
        if changed:
            notes.append(f"ignore_merges changed the segmentation of {changed} old vocabulary entries")
            logger.warning("ignore_merges changed the segmentation of %d old vocabulary entries", changed)
    else:
        backend = Tokenizer.from_str(old_tok.backend_tokenizer.to_str())
        if model_type != "WordPiece":
            note = (
                f"{model_type} tokenizer: words added as AddedToken(single_word=True); a lone word-start "
                "marker token stays before each added word"
            )
            notes.append(note)
            logger.warning(note)
        start = backend.get_vocab_size(with_added_tokens=True)
        backend.add_tokens([AddedToken(w, single_word=True, normalized=True, lstrip=False, rstrip=False) for w in words])
        ids = [backend.token_to_id(w) for w in words]
        if any(i is None or i < start for i in ids):
            raise AssertionError("an added word did not get a new id")
        changed = 0
    backend.no_padding()
    backend.no_truncation()
    return backend, ids, changed


def _metaspace_marker(data: dict) -> str:
    for node in json_nodes([data.get("pre_tokenizer"), data.get("normalizer")]):
        if node.get("type") == "Metaspace" and node.get("replacement"):
            return node["replacement"]
    return SP_MARK


def _changed_segmentations(before, after, new_ids: set[int], data: dict) -> int:
    """Old vocabulary entries that the BPE model (without / with ignore_merges) segments differently."""
    specials = {t["content"] for t in data.get("added_tokens", [])}
    changed = 0
    for token, idx in data["model"]["vocab"].items():
        if idx in new_ids or token in specials or BYTE_PIECE.match(token):
            continue
        a = [t.id for t in before.model.tokenize(token)]
        b = [t.id for t in after.model.tokenize(token)]
        changed += a != b
    return changed


def _wrap(old_tok, backend):
    """A generic transformers fast tokenizer around ``backend`` with the old special tokens."""
    from transformers import PreTrainedTokenizerFast

    kwargs: dict[str, Any] = {}
    for role in SPECIAL_ROLES:
        value = getattr(old_tok, f"{role}_token", None)
        if value is not None:
            kwargs[f"{role}_token"] = str(value)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=old_tok.model_max_length,
        padding_side=old_tok.padding_side,
        clean_up_tokenization_spaces=bool(getattr(old_tok, "clean_up_tokenization_spaces", False)),
        **kwargs,
    )


def _verify_whole_words(tok, words: list[str], ids: list[int], lead: str = "") -> None:
    """Each added word alone is its one token and is found between two other words; it is not found
    inside the word with a letter before or after it. ``lead`` is put before each text (a space for
    byte-level tokenizers)."""
    if not words:
        return
    backend = tok.backend_tokenizer
    alone = backend.encode_batch([lead + w for w in words], add_special_tokens=False)
    within = backend.encode_batch([f"{lead}un {w} de" for w in words], add_special_tokens=False)
    longer = backend.encode_batch(
        [lead + w + "s" for w in words] + [lead + "x" + w for w in words], add_special_tokens=False
    )
    n = len(words)
    for k, (word, new_id) in enumerate(zip(words, ids)):
        if alone[k].ids != [new_id] or new_id not in within[k].ids:
            raise LongAdaptError(
                f"extend: the added word {word!r} is not one token in running text ({within[k].tokens}); this "
                "tokenizer cannot be extended with whole words, use the replace arm"
            )
        for enc in (longer[k], longer[n + k]):
            if new_id in enc.ids:
                raise LongAdaptError(
                    f"extend: the added word {word!r} is matched inside a longer word ({enc.tokens}); "
                    "use the replace arm for this tokenizer"
                )
