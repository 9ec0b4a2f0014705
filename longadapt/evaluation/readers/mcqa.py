"""Multiple-choice questions as a JSON array (FrenchMedMCQA)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longadapt.evaluation.data import MCQAItem

from longadapt.evaluation.readers.common import _error, _read_text

logger = logging.getLogger(__name__)


def read_mcqa_json(path: str | Path, labels: Sequence[str] | None = None, encoding: str = "utf-8") -> list[MCQAItem]:
    """Read a JSON array of ``{id, question, answers{a..e}, correct_answers[, nbr_correct_answers]}``.

    ``labels`` (when given) is the list of option keys every question must have.
    """
    path = Path(path)
    raw = _read_text(path, encoding)
    decoder = json.JSONDecoder()
    items: list[tuple[int, Any]] = []
    try:
        idx = _skip_ws(raw, 0)
        if raw[idx : idx + 1] != "[":
            raise _error(path, 1, "expected a JSON array of questions")
        idx = _skip_ws(raw, idx + 1)
        while raw[idx : idx + 1] != "]":
            obj, end = decoder.raw_decode(raw, idx)
            items.append((raw.count("\n", 0, idx) + 1, obj))
            idx = _skip_ws(raw, end)
            if raw[idx : idx + 1] == ",":
                idx = _skip_ws(raw, idx + 1)
            elif raw[idx : idx + 1] != "]":
                raise _error(path, raw.count("\n", 0, idx) + 1, "expected ',' or ']' between questions")
    except json.JSONDecodeError as exc:
        raise _error(path, exc.lineno, f"invalid JSON ({exc.msg})") from None
    out = []
    for line, obj in items:
        if not isinstance(obj, dict):
            raise _error(path, line, "a question must be a JSON object")
        for key in ("id", "question", "answers", "correct_answers"):
            if key not in obj:
                raise _error(path, line, f"question without {key!r}",
                             "Each question needs id, question, answers and correct_answers")
        options = obj["answers"]
        if not isinstance(options, dict) or not options:
            raise _error(path, line, f"question {obj['id']}: 'answers' must map option keys to texts")
        if labels is not None and sorted(options) != sorted(labels):
            raise _error(path, line, f"question {obj['id']}: options {sorted(options)} differ from the task's "
                         f"{list(labels)}")
        answers = obj["correct_answers"]
        if not isinstance(answers, list) or not answers:
            raise _error(path, line, f"question {obj['id']}: 'correct_answers' must be a non-empty list")
        for a in answers:
            if a not in options:
                raise _error(path, line, f"question {obj['id']}: correct answer {a!r} is not an option")
        n = obj.get("nbr_correct_answers")
        if n is not None and n != len(answers):
            raise _error(path, line, f"question {obj['id']}: nbr_correct_answers={n} but {len(answers)} "
                         "correct answers are listed")
        meta = {k: v for k, v in obj.items() if k not in ("id", "question", "answers", "correct_answers")}
        meta["line"] = line
        out.append(MCQAItem(id=str(obj["id"]), question=obj["question"],
                            options={k: options[k] for k in sorted(options)},
                            answers=sorted(answers), source=str(path), meta=meta))
    if not out:
        raise _error(path, None, "no question found")
    return out


def _skip_ws(s: str, i: int) -> int:
    while i < len(s) and s[i] in " \t\r\n":
        i += 1
    return i
