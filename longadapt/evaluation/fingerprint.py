"""Run fingerprints: everything that decides an evaluation run's score, hashed.

``longadapt evaluate`` reuses a stored run only when its fingerprint equals the new one; otherwise the
run is done again and the log names what changed (``epochs 15 -> 2``, ``model weights``, ...). Parts:

- ``model``: sha256 of the model directory's weights, config and tokenizer files (not its README or
  run.json, which a re-export rewrites with a new date);
- ``task``: the task configuration after the YAML, the protocol and every override (training section
  resolved with its defaults);
- ``data``: sha256 of every file each split reads (``Task.fingerprint``);
- ``seed``, ``limits`` (document limits, step limit), ``max_length`` (``--max-length``);
- ``versions`` of the packages that can change a score, and ``code``: sha256 of longadapt's own source
  that a fine-tuning score can depend on (:func:`code_files`: the fine-tuning's import closure, not the
  reports, command lines, adaptation code or study runner, so stored runs stay valid when those change).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from longadapt.config import to_dict
from longadapt.io import file_sha256  # noqa: F401  (also imported from here)

STUDY_STAGE_MARKER = "study-stage.json"  # written by longadapt.study.stages into an adaptation's folder
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")
# records about a model folder, not the model: the run that wrote it, and the study stage it belongs to (which
# differs between two adaptations that write the same weights, e.g. convert and continue-keep offline)
SKIPPED_MODEL_FILES = ("run.json", "trainer_state.json", STUDY_STAGE_MARKER)


VERSIONED = ("longadapt", "torch", "transformers", "tokenizers", "accelerate", "datasets", "scikit-learn", "scipy",
             "seqeval", "numpy")


def versions() -> dict[str, str | None]:
    """The versions that can change a score (installed distributions, read by importlib.metadata)."""
    from longadapt.runinfo import package_versions

    return package_versions(VERSIONED, platform_name=False)


def model_fingerprint(model_dir: str | Path) -> dict[str, Any]:
    """sha256 over the model directory's weight, config and tokenizer files (top level only)."""
    root = Path(model_dir)
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
                   and p.name not in SKIPPED_MODEL_FILES)
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(file_sha256(p).encode())
    return {"sha256": h.hexdigest(), "files": [p.name for p in files]}


# The longadapt source a fine-tuning score can depend on: the modules that evaluation's fine-tuning imports,
# directly or not (tests/test_study.py checks this list against the import graph, imports inside functions
# included), less what only reads or writes finished runs and this module (it decides what is reused, not
# what a run computes). Adaptation code (training/, recipes/, interop/, and data/ but its datasets loader,
# which task splits read through) is not in it: a model's weights are part of the fingerprint on their own.
SCORE_CODE = ("__init__.py", "_lazy.py", "config.py", "dataroot.py", "errors.py", "sources.py", "runinfo.py",
              "precision.py", "data/hf.py", "evaluation/", "modeling/", "tokenizers/")
NOT_SCORE_CODE = ("evaluation/report.py", "evaluation/cli.py", "evaluation/predict.py", "evaluation/outputs.py",
                  "evaluation/stored.py", "evaluation/testing.py", "evaluation/fingerprint.py")
# The source a model imported and made long (a study's baseline) can depend on: interop's import, make_long
# and save, and what they import (tests/test_study.py checks it against the import graph).
IMPORT_CODE = ("__init__.py", "_lazy.py", "config.py", "dataroot.py", "errors.py", "sources.py", "runinfo.py",
               "interop/", "modeling/", "tokenizers/")
NOT_IMPORT_CODE = ("interop/cli.py",)
# The source an adapted model's weights can depend on: everything but the evaluation, the command lines,
# reports, benchmarks, the vocabulary analysis and the study runner.
# recipes/representations.py measures the model before and after (eval mode, no gradient, no random draw):
# it reports on the weights and never changes them; progress.py only writes progress lines
NOT_ADAPT_CODE = ("evaluation/", "study/", "bench/", "vocab/", "recipes/compare.py", "recipes/cli.py",
                  "recipes/representations.py", "training/cli.py", "interop/cli.py", "cli.py", "cache.py",
                  "__main__.py", "progress.py")


def _in(rel: str, entries: tuple[str, ...]) -> bool:
    return any(rel == e or (e.endswith("/") and rel.startswith(e)) for e in entries)


def code_files(scope: str, root: Path | None = None) -> list[str]:
    """The source files (relative paths) of a code scope: ``score`` (what a fine-tuning score can depend
    on), ``import`` (what a model imported and made long can depend on) or ``adapt`` (what an adapted model's
    weights can depend on)."""
    base = root or Path(__file__).resolve().parents[1]
    out = []
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(base).as_posix()
        if "__pycache__" in rel:
            continue
        if scope == "score":
            keep = _in(rel, SCORE_CODE) and not _in(rel, NOT_SCORE_CODE)
        elif scope == "import":
            keep = _in(rel, IMPORT_CODE) and not _in(rel, NOT_IMPORT_CODE)
        else:
            keep = not _in(rel, NOT_ADAPT_CODE)
        if keep:
            out.append(rel)
    return out


def code_fingerprint(scope: str = "score", root: Path | None = None) -> str:
    """sha256 of the longadapt source of a scope (:func:`code_files`): a change elsewhere (a report, a command
    line, the adaptation code for a fine-tuning score) leaves stored runs valid."""
    return _code_fingerprint(scope, str(root or Path(__file__).resolve().parents[1]))


@functools.lru_cache(maxsize=8)
def _code_fingerprint(scope: str, root: str) -> str:
    h = hashlib.sha256()
    for rel in code_files(scope, Path(root)):
        h.update(rel.encode())
        h.update((Path(root) / rel).read_bytes())
    return h.hexdigest()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def run_fingerprint(model_dir: str | Path, task: Any, seed: int, limits: Any, max_length: int | None) -> dict[str, Any]:
    """The fingerprint of one (model, task, seed) run; ``sha256`` over its parts."""
    from longadapt.evaluation.tasks import DESCRIPTIVE_KEYS

    task_cfg = to_dict(task.config)
    task_cfg.pop("data_root", None)  # where the data lives does not matter; its bytes do (``data``)
    for key in DESCRIPTIVE_KEYS:  # nor do the words that describe the task
        task_cfg.pop(key, None)
    task_cfg["training"] = to_dict(task.training())
    parts = {
        "model": model_fingerprint(model_dir)["sha256"],
        "task": _digest(task_cfg),
        "data": _digest({s: task.fingerprint(s)["sha256"] for s in ("train", "dev", "test")}),
        "seed": str(seed),
        "limits": _digest(to_dict(limits)),
        "max_length": str(max_length),
        "versions": _digest(versions()),
        "code": code_fingerprint(),
    }
    if task.config.type_module:  # a task type registered by the user's module: its source decides the score too
        import importlib

        parts["type_module"] = file_sha256(Path(importlib.import_module(task.config.type_module).__file__))
    return {"sha256": _digest(parts), "parts": parts, "task": task_cfg, "limits": to_dict(limits),
            "versions": versions(), "model_dir": os.fspath(model_dir)}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 8) -> list[str]:
    """What differs between two fingerprints, in words (task keys with their old and new values)."""
    out: list[str] = []
    names = {"model": "model weights, config or tokenizer", "data": "the task's data files", "seed": "seed",
             "versions": "package versions", "code": "longadapt's code", "max_length": "--max-length"}
    old_parts, new_parts = old.get("parts", {}), new.get("parts", {})
    for key in new_parts:
        if old_parts.get(key) == new_parts[key]:
            continue
        if key == "task":
            a, b = _flatten(old.get("task", {})), _flatten(new.get("task", {}))
            changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            out += [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:limit]]
            if len(changed) > limit:
                out.append(f"{len(changed) - limit} more task keys")
        elif key == "limits":
            a, b = old.get("limits", {}), new.get("limits", {})
            out += [f"{k} {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif key == "versions":
            a, b = old.get("versions", {}), new.get("versions", {})
            out += [f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)] or \
                [names[key]]
        elif key == "model" and old.get("model_dir") != new.get("model_dir"):
            out.append(f"model {old.get('model_dir')} -> {new.get('model_dir')} (other weights)")
        else:
            out.append(names.get(key, key))
    return out or ["fingerprint format"]
