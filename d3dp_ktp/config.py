"""Frozen-dataclass configs with type-checked overrides.

Each module defines one frozen dataclass for its concern (``ModelConfig``,
``DiffusionConfig``, ...). YAML files and ``key=value`` command-line overrides
only *override* the defaults; an unknown key or a value of the wrong type is a
``ValueError`` that lists what is valid. YAML is read with ``yaml.safe_load``
so a config file can never execute code.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

C = TypeVar("C")


# YAML 1.1 (PyYAML) reads exponent floats without a dot, such as 1e-4 or 6e-5, as strings.
_YAML11_MISSED_FLOAT = re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert lists to tuples, ints to floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(f"{where}: {value!r} matches none of {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is typing.Any:
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_MISSED_FLOAT.match(value):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    raise TypeError(f"unsupported config annotation {tp!r} at {where}")  # programming error


def from_dict(cls: type[C], values: Mapping[str, Any], prefix: str = "") -> C:
    """Build ``cls`` from defaults overridden by ``values`` (nested for nested dataclasses)."""
    return override(cls(), values, prefix)


def override(cfg: C, values: Mapping[str, Any], prefix: str = "") -> C:
    """Return a copy of ``cfg`` with ``values`` applied, type-checked, unknown keys rejected."""
    if values is None:
        return cfg
    if not isinstance(values, Mapping):
        raise ValueError(f"{prefix or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes = {}
    for key, value in values.items():
        if key not in names:
            raise ValueError(
                f"unknown config key '{prefix}{key}' for {type(cfg).__name__}; "
                f"valid keys: {', '.join(names)}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = override(current, value, prefix=f"{prefix}{key}.")
        else:
            changes[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict:
    """Plain dict (tuples as lists) suitable for YAML/JSON."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(cfg)


def parse_overrides(items: list[str]) -> dict:
    """Turn ``["model.channels=64", "train.lr=1e-4"]`` into a nested dict (values parsed as YAML)."""
    nested: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like section.key=value")
        dotted, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:  # also python/* tags, which safe_load refuses to construct
            problem = getattr(err, "problem", None) or err
            raise ValueError(f"override '{item}': the value is not valid YAML ({problem})") from None
        node = nested
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}' conflicts with an earlier override of '{part}'")
        node[parts[-1]] = value
    return nested


def read_yaml_file(path: str | Path, what: str = "config file"):
    """Parse a YAML file safely (no code execution); ``what`` names it in the errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{what} {path} is not valid YAML: {err}") from None


def load_yaml(path: str | Path) -> dict:
    """Read a YAML override file: a mapping of sections (empty file: no overrides)."""
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out
