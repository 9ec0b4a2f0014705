"""One fine-tuning run kept on disk: run it, or reuse the stored one when its fingerprint matches.

``longadapt evaluate`` and ``longadapt study`` both go through :func:`run_or_reuse`: a run folder
(``.../seed-<s>/``) holds ``run.json`` with the run's fingerprint (:mod:`.fingerprint`) and the test
predictions; it appears whole when the run is complete (:func:`longadapt.io.atomic_dir`), so a killed run
leaves no half folder, and a stored run is reused only when everything that decides its score is the same.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from longadapt.io import atomic_dir, atomic_write_json

logger = logging.getLogger(__name__)


def stored_run(run_dir: Path, fingerprint: dict[str, Any], save_models: bool = False, force: bool = False,
               label: str = "") -> dict[str, Any] | None:
    """The stored run of ``run_dir`` when it was made with exactly this fingerprint; else None, with the
    reason logged (it is then re-run)."""
    from longadapt.evaluation.fingerprint import differences

    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s: %s is not valid JSON; re-running", label, path)
        return None
    if force:
        logger.info("%s: --force: re-running", label)
        return None
    stored = old.get("fingerprint") or {}
    if stored.get("sha256") != fingerprint["sha256"]:
        why = differences(stored, fingerprint) if stored else ["it has no fingerprint (written by an older longadapt)"]
        logger.warning("%s: the stored run was made with other settings, so it is not reused: %s", label,
                       "; ".join(why))
        return None
    if save_models and not (Path(run_dir) / "model").is_dir():
        logger.info("%s: --save-models but the stored run kept no model; re-running", label)
        return None
    logger.info("%s: reused (same fingerprint %s: model, tokenizer, task, seed, limits, versions)", label,
                fingerprint["sha256"][:12])
    return old


def run_or_reuse(model_name: str, model_dir: str | Path, task: Any, data: Any, seed: int, run_dir: str | Path,
                 limits: Any = None, max_length: int | None = None, save_models: bool = False,
                 force: bool = False) -> tuple[dict[str, Any], bool]:
    """Fine-tune ``model_dir`` on ``task`` with ``seed`` into ``run_dir``, or reuse the run stored there.
    Returns ``(run.json as a dict, reused)``."""
    from longadapt.evaluation.finetune import RunLimits, run
    from longadapt.evaluation.fingerprint import run_fingerprint
    from longadapt.evaluation.outputs import clef_line, count_table, write_predictions

    limits = limits or RunLimits()
    run_dir = Path(run_dir)
    label = f"{model_name} / {task.name} / seed {seed}"
    fingerprint = run_fingerprint(model_dir, task, seed, limits, max_length)
    result = stored_run(run_dir, fingerprint, save_models, force, label)
    if result is not None:
        return result, True
    logger.info("%s: fine-tuning", label)
    with atomic_dir(run_dir) as tmp:  # the run's files appear only when the run is complete
        res = run(str(model_dir), task, seed, data=data, limits=limits, max_length=max_length,
                  model_name=model_name, save_dir=tmp / "model" if save_models else None)
        result = {**res.to_json(), "fingerprint": fingerprint}
        write_predictions(tmp, res, task, data)
        atomic_write_json(tmp / "run.json", result)
    logger.info("%s: test %s = %.4f%s", label, result["main_metric"], result["score"], clef_line(result["test"]))
    if result.get("entities"):
        logger.info("%s: test entities per type (gold in data / representable / predicted / correct):\n%s", label,
                    count_table(result["entities"]["test"]))
    return result, False
