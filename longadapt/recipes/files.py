"""Finding and reading recipe files (light: no torch, so that ``--help`` and errors are instant).

``recipes/<strategy>/<preset>.yaml`` serves every language; the language pack (``languages/<code>.yaml``)
supplies the corpus, normalisation and spaCy settings, and under ``recipes.<preset>`` any default a
language needs (e.g. a validation fraction for a small corpus). A ``<language>-<preset>.yaml`` beside
it, where one exists, is used instead for that language.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from longadapt.config import ConfigSource, deep_merge, load_yaml, yaml_key_lines
from longadapt.errors import LongAdaptError


def recipes_dir() -> Path:
    """The recipe folder: ``LONGADAPT_RECIPES``, else the repository's ``recipes/``."""
    env = os.environ.get("LONGADAPT_RECIPES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "recipes"


def is_strategy_name(name: str, directory: Path | None = None) -> bool:
    """``name`` names a strategy (built-in, registered, or a folder of the recipe directory), not a file."""
    from longadapt.recipes.strategies import strategy_names

    if name in strategy_names():
        return True
    return "/" not in name and not name.endswith((".yaml", ".yml")) and ((directory or recipes_dir()) / name).is_dir()


def find_recipe(strategy: str, language: str, preset: str, directory: Path | None = None) -> Path:
    folder = (directory or recipes_dir()) / strategy
    candidates = [folder / f"{language}-{preset}.yaml", folder / f"{preset}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    have = sorted(p.stem for p in folder.glob("*.yaml"))
    raise LongAdaptError(
        f"no recipe {candidates[1]} (nor {candidates[0].name}); available {strategy} recipes: "
        f"{', '.join(have) or 'none'}. Write one (copy a similar file) or pass a recipe file.")


def load_recipe(recipe: str | Path, language: str | None = None, preset: str | None = None,
                directory: Path | None = None) -> tuple[dict[str, Any], ConfigSource]:
    """The recipe dict a command names, with its language pack's defaults under it, and where each key was
    written (:class:`~longadapt.config.ConfigSource`: the file's lines, and the pack's file and line for the
    defaults it supplies).

    ``recipe`` is a strategy (its file found by ``language`` and ``preset``, default ``fr`` and ``tiny``)
    or a recipe file (``language`` then replaces the file's own). ``{language_name}`` in the
    description becomes the language's name."""
    from longadapt.languages import language_file, load_language

    if is_strategy_name(str(recipe), directory):
        language, preset = language or "fr", preset or "tiny"
        path = find_recipe(str(recipe), language, preset, directory)
        data = load_yaml(path)
        data["language"] = language
        data.setdefault("preset", preset)
    else:
        path = Path(recipe)
        if not path.is_file():
            from longadapt.recipes.strategies import strategy_names

            raise LongAdaptError(f"{recipe} is neither a strategy ({', '.join(strategy_names())}) nor a recipe file")
        data = load_yaml(path)
        data["language"] = language or data.get("language") or "fr"
        data.setdefault("preset", preset or "tiny")
    pack = load_language(str(data["language"]))
    data = deep_merge(copy.deepcopy(pack.recipes.get(str(data["preset"]), {})), data)
    if isinstance(data.get("description"), str):
        data["description"] = data["description"].replace("{language_name}", pack.name)
    lines = yaml_key_lines(path)
    pack_file = language_file(pack.code)
    under = f"recipes.{data['preset']}."
    defaults = {k[len(under):]: f"{pack_file}:{n}" for k, n in yaml_key_lines(pack_file).items()
                if k.startswith(under) and k[len(under):] not in lines}
    return data, ConfigSource(path=path, lines=lines, defaults=defaults)
