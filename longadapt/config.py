"""YAML configs with command-line overrides (``key.sub=value``) onto dataclass defaults.

Defaults live in the dataclasses only; YAML files and the command line override them.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from longadapt.errors import LongAdaptError

logger = logging.getLogger(__name__)


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


@dataclass
class ConfigSource:
    """Where the keys of one config were written, so that every config error names a file, a line and a
    key, whatever the command: recipes, training configs, task files and study files all say it this way."""

    # the file the config was read from (None: built in code or from the command line only)
    path: Path | None = None
    # dotted key -> 1-based line in ``path`` (:func:`yaml_key_lines`; list items count from 0)
    lines: dict[str, int] = dataclasses.field(default_factory=dict)
    # dotted key -> the command-line text that set it (``train.lr=1e-3``, ``--steps 4``)
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)
    # dotted key -> ``file:line`` of another file that supplied the value as a default (a language pack)
    defaults: dict[str, str] = dataclasses.field(default_factory=dict)
    # what to call the config when it has no file (``corpus``, ``baseline minilm-4096: make_long``)
    label: str | None = None

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths of the config are resolved against."""
        return self.path.resolve().parent if self.path is not None else Path.cwd()

    def known(self, key: str) -> str | None:
        """Where ``key`` (or the section holding it) was set, when this source knows; else None."""
        probe = key
        while probe:
            if probe in self.overrides:
                return self.overrides[probe]
            if probe in self.lines and self.path is not None:
                return f"{self.path}:{self.lines[probe]}"
            if probe in self.defaults:
                return f"{self.defaults[probe]} (a default of the language pack)"
            probe = probe.rpartition(".")[0]
        return None

    def where(self, key: str) -> str:
        """``file.yaml:12 (key)``, the override that set it (``command-line override 'key=value'``), or
        ``file.yaml (key)``."""
        found = self.known(key)
        if found is not None:
            return found if found in self.overrides.values() else f"{found} ({key})"
        name = self.path if self.path is not None else self.label or "config"
        if self.lines and key:
            return f"{name} ({key}: not set in the file)"
        return f"{name} ({key})" if key else str(name)


def as_source(where: "str | Path | ConfigSource | None") -> ConfigSource:
    """A :class:`ConfigSource` from a source, a file path or a plain label."""
    if isinstance(where, ConfigSource):
        return where
    return ConfigSource(label=str(where) if where is not None else None)


def source_for(path: str | Path | None, overrides: typing.Sequence[str] = (), flag: str | None = None) -> ConfigSource:
    """The source of a config read from YAML file ``path`` (its lines) with ``key.sub=value`` ``overrides``,
    each key described by the text that set it: ``command-line override 'train.lr=1e-3'``, or with ``flag``
    (``--set``, or the study file line of ``finetune:``) ``--set training.epochs=3``."""
    typed = {item.split("=", 1)[0].strip(): item for item in overrides}
    keys: dict[str, str] = {}

    def walk(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            text = typed.get(dotted, dotted)
            keys[dotted] = f"{flag} {text}" if flag else f"command-line override {text!r}"
            if isinstance(value, dict):
                walk(value, dotted + ".")

    walk(parse_overrides(list(overrides)), "")
    return ConfigSource(path=Path(path) if path is not None else None,
                        lines=yaml_key_lines(path) if path is not None else {}, overrides=keys)


def override_items(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"a": {"b": 1}}`` as the overrides ``["a.b=1"]`` that :func:`parse_overrides` reads back."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.extend(override_items(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix(chr(10) + '...').strip()}")
    return out


def did_you_mean(word: Any, choices: typing.Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to ``word``, or an empty string: the one wording
    of every did-you-mean in longadapt (keys, strategies, tasks, baselines)."""
    found = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {prefix + found[0]!r}?)" if found else ""


def unknown_key(where: str, key: str, valid: typing.Iterable[str], prefix: str = "") -> LongAdaptError:
    """The one error for a key that a config does not have: where, the key, the closest valid one, and the
    valid keys of that section."""
    valid = sorted(valid)
    under = f" under {prefix.rstrip('.')}" if prefix else ""
    return LongAdaptError(f"{where}: unknown key {prefix + str(key)!r}{did_you_mean(key, valid, prefix)}; "
                          f"valid keys{under}: {', '.join(valid)}")


def from_dict(cls: type[T], data: dict[str, Any], where: "str | Path | ConfigSource | None" = "config",
              prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, recursing into nested dataclasses (``X`` or ``X | None``): the
    one place where config keys and scalar types are checked.

    ``where`` (a :class:`ConfigSource`, or a label) says where each key was written; ``prefix`` is the dotted
    position of ``data`` in that source (``phases.0.``). Unknown keys, values of the wrong type and missing
    required keys raise a LongAdaptError naming the place, the key and what to write. A dataclass may declare
    ``_renamed = {"old": "new"}``: an old spelling is read as the new one, with a warning naming both.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    source = as_source(where)
    if data is not None and not isinstance(data, dict):
        raise LongAdaptError(f"{source.where(prefix.rstrip('.'))}: must be a mapping of keys "
                             f"({', '.join(f.name for f in dataclasses.fields(cls))}), got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for written, name, value in _renamed(cls, data or {}, source, prefix):
        at = source.where(f"{prefix}{written}")  # the key as written: its line
        if name not in fields:
            raise unknown_key(at, name, fields, prefix)
        hint = hints.get(name)
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and type(None) in typing.get_args(hint) and dataclasses.is_dataclass(inner[0]):
            hint = inner[0]  # Optional[SomeDataclass]: null stays None, a mapping builds the dataclass
        if dataclasses.is_dataclass(hint) and value is not None:
            value = from_dict(hint, value, source, f"{prefix}{written}.")
        else:
            value = _typed(value, hint, f"{at}: {prefix}{name}")
        kwargs[name] = value
    missing = [f.name for f in fields.values() if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise LongAdaptError(f"{source.where(prefix.rstrip('.'))}: missing required key(s) "
                             f"{', '.join(prefix + m for m in missing)}")
    return cls(**kwargs)


def _renamed(cls: type, data: dict[str, Any], source: ConfigSource, prefix: str) -> list[tuple[str, str, Any]]:
    """``(key as written, field name, value)`` for each key of ``data``: the old spelling of a renamed key
    (``cls._renamed``) is read as the new name, with a warning that names both."""
    renamed = getattr(cls, "_renamed", None) or {}
    out = []
    for key, value in data.items():
        new = renamed.get(key)
        if new is None:
            out.append((key, key, value))
            continue
        if new in data:
            raise LongAdaptError(f"{source.where(prefix + key)}: {prefix + key} is the old name of {prefix + new}, "
                                 f"which is also set; keep {prefix + new} only")
        logger.warning("%s: %s is now called %s (one name per knob, docs/architecture.md); read as %s",
                       source.where(prefix + key), prefix + key, prefix + new, prefix + new)
        out.append((key, new, value))
    return out


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
