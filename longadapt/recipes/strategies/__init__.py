"""Adaptation strategies as units: each one is a module that registers a :class:`Strategy`.

A strategy says how to build the model and tokenizer that the recipe's training phases then train
with the shared engine; everything else (phases, budget, validation documents, the output folder, the
model card, resume) is the recipe runner's (:mod:`longadapt.recipes.adapt`) and the same for every
strategy. The built-in ones live next to this file (``convert``, ``continue``, ``scratch``); a new one
is one module that calls :func:`register` and one recipe file that names it::

    # my_strategies/distil.py
    from longadapt.recipes.strategies import Strategy, register
    register(Strategy(name="distil", options=DistilOptions, build=build_distil))

    # recipes/distil/tiny.yaml
    strategy: distil
    strategy_module: my_strategies.distil     # imported before the strategy is looked up
    distil: {teacher: ...}                    # the section named after the strategy: DistilOptions

``longadapt adapt distil --language fr`` then finds ``recipes/distil/tiny.yaml``, which serves every
language (a ``recipes/distil/fr-tiny.yaml`` beside it would win for French).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from longadapt.errors import LongAdaptError

# the built-in strategies and the module that registers each (imported on first use: torch loads late)
BUILTIN = {
    "convert": "longadapt.recipes.strategies.convert",
    "continue": "longadapt.recipes.strategies.continue_pretraining",
    "scratch": "longadapt.recipes.strategies.scratch",
}


@dataclass(frozen=True)
class Strategy:
    """One adaptation strategy.

    * ``options``: the dataclass of the recipe section named after the strategy (``convert:``,
      ``continue:``, ...), checked at load like every other section;
    * ``build(cfg, corpus) -> (model, tokenizer, info)``: ``cfg`` is the recipe
      (:class:`~longadapt.recipes.adapt.RecipeConfig`, its ``options`` an instance of ``options``),
      ``corpus`` the corpus spec the phases train on; ``info`` goes to run.json's ``build``;
    * ``needs_base``: the recipe must name a ``base`` model;
    * ``check(cfg, where)``: more load-time checks (raise LongAdaptError), before any model is built;
    * ``tokenizer_line(options)``: the model card's tokenizer row;
    * ``smoke(recipe_dict, steps, max_length, documents)``: shrink the strategy's own options for a
      seconds-long smoke run (:func:`~longadapt.recipes.adapt.smoke_recipe`), editing the dict in place.
    """

    name: str
    options: type
    build: Callable[..., tuple[Any, Any, dict[str, Any]]]
    summary: str = ""
    needs_base: bool = False
    check: Callable[[Any, str], None] | None = None
    tokenizer_line: Callable[[Any], str] = lambda options: "the base model's"
    smoke: Callable[[dict[str, Any], int, int, int], None] | None = None


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Make ``strategy`` available to recipes under its name (a second registration replaces the first,
    so that a re-imported module does not fail)."""
    if not strategy.name or not strategy.name.replace("_", "").replace("-", "").isalnum():
        raise LongAdaptError(f"a strategy name must be a word (letters, digits, - or _), not {strategy.name!r}")
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategy_names() -> list[str]:
    """The built-in strategies, then the registered others, in registration order."""
    return list(BUILTIN) + [n for n in _REGISTRY if n not in BUILTIN]


def get_strategy(name: str, module: str | None = None, where: str = "recipe") -> Strategy:
    """The strategy called ``name``; ``module`` (a recipe's ``strategy_module``) is imported first."""
    if module:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise LongAdaptError(f"{where}: strategy_module {module!r} cannot be imported ({exc}); "
                                 "it must be importable (on PYTHONPATH or installed)") from exc
    if name not in _REGISTRY and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _REGISTRY:
        hint = f" (module {module} registers {_names_from(module)})" if module else \
            "; a strategy of your own needs strategy_module: MODULE in the recipe"
        raise LongAdaptError(f"{where}: strategy {name!r} is unknown; use one of {', '.join(strategy_names())}{hint}")
    return _REGISTRY[name]


def _names_from(module: str) -> str:
    names = [n for n, s in _REGISTRY.items() if getattr(s.build, "__module__", None) == module]
    return ", ".join(names) or "none"


__all__ = ["BUILTIN", "Strategy", "get_strategy", "register", "strategy_names"]
