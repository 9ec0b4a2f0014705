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
    """``update`` merged onto ``base`` (neither is changed). A mapping with whole-number keys merges into a
    list item by item, so that the override ``phases.1.steps=10`` edits the second phase."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = deep_merge(old, value)
        elif isinstance(value, dict) and isinstance(old, list) and value and all(_is_index(k) for k in value):
            items = list(old)
            for k, v in value.items():
                i = int(k)
                if not 0 <= i < len(items):
                    raise LongAdaptError(f"override {key}.{k}: {key} has {len(items)} item(s), numbered 0 to "
                                         f"{len(items) - 1}")
                items[i] = deep_merge(items[i], v) if isinstance(v, dict) and isinstance(items[i], dict) else v
            merged[key] = items
        else:
            merged[key] = value
    return merged


def _is_index(key: Any) -> bool:
    return isinstance(key, int) or (isinstance(key, str) and key.isdigit())


T = typing.TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config", lines: dict[str, int] | None = None,
              locate: typing.Callable[[str], str | None] | None = None) -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses.

    Unknown keys raise a LongAdaptError naming the key, the closest valid one and the valid ones; ``lines``
    (dotted key relative to ``data`` -> 1-based line, :func:`yaml_key_lines`) adds the line to messages;
    ``locate`` (dotted key -> where it was set, or None) is the general form.
    """
    import difflib

    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    lines = lines or {}
    kwargs = {}
    for key, value in (data or {}).items():
        found = locate(str(key)) if locate is not None else None
        at = f" (line {lines[str(key)]})" if str(key) in lines else f" ({found})" if found else ""
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            raise LongAdaptError(
                f"{where}{at}: unknown key {key!r}{f'; did you mean {close[0]!r}?' if close else ';'} "
                f"valid keys are: {', '.join(sorted(fields))}"
            )
        hint = hints.get(key)
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and type(None) in typing.get_args(hint) and dataclasses.is_dataclass(inner[0]):
            hint = inner[0]  # Optional[SomeDataclass]: null stays None, a mapping builds the dataclass
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{key}", sub_lines(lines, str(key)),
                              (lambda k, _key=key: locate(f"{_key}.{k}")) if locate is not None else None)
        else:
            value = _typed(value, hint, f"{where}: {key}{at}")
        kwargs[key] = value
    return cls(**kwargs)


def sub_lines(lines: dict[str, int] | None, key: str) -> dict[str, int]:
    """The part of a :func:`yaml_key_lines` map under ``key``, relative to it."""
    prefix = f"{key}."
    return {k[len(prefix):]: n for k, n in (lines or {}).items() if k.startswith(prefix)}


def yaml_key_lines(path: str | Path) -> dict[str, int]:
    """Map each dotted key of a YAML file to the 1-based line where it is written; list items count from
    0 (``phases.1.steps``). Empty when the file cannot be parsed (its loader reports that)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}{key_node.value}"
                out[key] = key_node.start_mark.line + 1
                walk(value_node, key + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                out[f"{prefix}{i}"] = item.start_mark.line + 1
                walk(item, f"{prefix}{i}.")

    walk(root, "")
    return out


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
