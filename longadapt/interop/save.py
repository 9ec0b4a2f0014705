"""Write model directories atomically: weights, config, tokenizer, run.json."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from longadapt.io import atomic_dir, atomic_write_json
from longadapt.runinfo import run_record

logger = logging.getLogger(__name__)


def _copy_tokenizer(src: Any, dest: Path, max_length: int | None) -> bool:
    """Save the tokenizer of ``src`` (a folder, or a tokenizer object) into ``dest``."""
    if src is None:
        return False
    if hasattr(src, "save_pretrained"):
        tok = copy.deepcopy(src)  # the caller's tokenizer keeps its own model_max_length
    else:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(src)
        except Exception as exc:  # a checkpoint without tokenizer files
            logger.warning("no tokenizer saved: could not load one from %s (%s)", src, exc)
            return False
    if max_length:
        tok.model_max_length = max_length
    tok.save_pretrained(dest)
    return True


def save_core(model, out: str | Path, tokenizer_src: Path | None, record: dict[str, Any]) -> Path:
    out = Path(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        saved_tok = _copy_tokenizer(tokenizer_src, tmp, model.config.max_position_embeddings)
        atomic_write_json(tmp / "run.json", {**record, "tokenizer_saved": saved_tok})
    return out


def save_exported(hf_model, out: str | Path, tokenizer_src: Any, command: str, config: dict) -> Path:
    """An exported model, its tokenizer (from a folder or a tokenizer object) and run.json, atomically."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        hf_model.save_pretrained(tmp)
        _copy_tokenizer(tokenizer_src, tmp, hf_model.config.max_position_embeddings)
        atomic_write_json(tmp / "run.json", run_record(command, config))
    return out
