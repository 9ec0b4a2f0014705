"""YAML configs with command-line overrides (``key.sub=value``) onto dataclass defaults.

Defaults live in the dataclasses only; YAML files and the command line override them.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from longadapt.errors import LongAdaptError


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LongAdaptError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LongAdaptError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise LongAdaptError(f"{path}: the top level must be a mapping of keys to values")
    return data


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise LongAdaptError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise LongAdaptError(f"override {item!r} conflicts with another override of {part!r}")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


T = typing.TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    Unknown keys raise a LongAdaptError naming the key and the valid ones.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in fields:
            raise LongAdaptError(
                f"{where}: unknown key {key!r}; valid keys are: {', '.join(sorted(fields))}"
            )
        hint = hints.get(key)
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and type(None) in typing.get_args(hint) and dataclasses.is_dataclass(inner[0]):
            hint = inner[0]  # Optional[SomeDataclass]: null stays None, a mapping builds the dataclass
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{key}")
        else:
            value = _typed(value, hint, f"{where}: {key}")
        kwargs[key] = value
    return cls(**kwargs)


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _typed(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the scalar type a field declares (``int``, ``float``, ``bool``, optionally ``| None``),
    or a LongAdaptError naming the field and the expected type. PyYAML reads ``3e-3`` (no dot) as a
    string, so numeric strings are read as numbers; other fields are left as they are."""
    args = typing.get_args(hint)
    optional = type(None) in args
    base = [a for a in args if a is not type(None)]
    target = base[0] if optional and len(base) == 1 else hint
    if value is None:
        if optional:
            return None
        if target in (int, float, bool):
            raise LongAdaptError(f"{where} must be {_NAMES[target]}, got null")
        return value
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.strip().lower()]
        raise LongAdaptError(f"{where} must be {_NAMES[bool]}, got {value!r}")
    if target in (int, float):
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if numeric and (target is float or isinstance(value, int)):  # 2.5 is not a whole number
            return target(value)
        if isinstance(value, str):
            try:
                return target(value.strip())
            except ValueError:
                pass
        raise LongAdaptError(f"{where} must be {_NAMES[target]}, got {value!r}")
    return value


_NAMES = {int: "a whole number", float: "a number (e.g. 3e-3)", bool: "true or false"}


def to_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
