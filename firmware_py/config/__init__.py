"""Configuration: one YAML file, defaults shipped in the package, validated at load.

``load_config(path)`` merges the file over the shipped defaults and refuses unknown keys,
wrong types and out-of-range values with a one-line ``ConfigError`` naming the key and, where
the file gives one, its line.
"""
from __future__ import annotations

import difflib
import math
import os
import re
from importlib import resources
from types import SimpleNamespace
from typing import Any

import yaml

from firmware_py.config.schema import SCHEMA, Key, defaults
from firmware_py.errors import ConfigError

__all__ = ["Config", "load_config", "default_config_text", "validate_mapping"]


class Config(SimpleNamespace):
    """Sections as attributes (``cfg.probe.port``); ``as_dict()`` for logging and overrides."""

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {sec: dict(vars(getattr(self, sec))) for sec in SCHEMA}

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some keys changed, validated like a file (used by CLI overrides)."""
        merged = self.as_dict()
        validate_mapping(sections, source="command line")
        for sec, values in sections.items():
            merged[sec].update(values)
        return _to_config(merged)


def default_config_text() -> str:
    return resources.files("firmware_py.config").joinpath("default.yaml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Shipped defaults, overridden by the file at ``path`` when given."""
    merged = defaults()
    if path is None:
        return _to_config(merged)
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; pass an existing YAML file to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); check the path and permissions") from None
    data, lines = _parse(text, path)
    validate_mapping(data, source=path, lines=lines)
    for sec, values in data.items():
        merged[sec].update(values or {})
    return _to_config(merged)


def _parse(text: str, path: str) -> tuple[dict, dict[str, int]]:
    """YAML -> plain data plus the line of every key (``"section.key" -> line``)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where.strip() or 'YAML'}: not valid YAML ({problem}); fix the syntax") from None
    if root is None:
        return {}, {}
    lines: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: line {root.start_mark.line + 1}: the file must be a mapping of sections "
                          f"(probe:, simulator:, ...), not a {_node_kind(root)}")
    for key_node, value_node in root.value:
        lines[str(key_node.value)] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            for k2, _ in value_node.value:
                lines[f"{key_node.value}.{k2.value}"] = k2.start_mark.line + 1
    loader = yaml.SafeLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:  # e.g. duplicate anchors; compose succeeded so rare
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    finally:
        loader.dispose()
    return data, lines


def _node_kind(node: yaml.Node) -> str:
    return {yaml.ScalarNode: "single value", yaml.SequenceNode: "list"}.get(type(node), "mapping")


def validate_mapping(data: Any, *, source: str, lines: dict[str, int] | None = None) -> None:
    """Raise ConfigError for the first problem in a user-supplied (partial) configuration."""
    lines = lines or {}

    def fail(name: str, message: str) -> None:
        line = lines.get(name) or lines.get(name.split(".")[0])
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail("", "the configuration must be a mapping of sections (probe:, simulator:, ...)")
    for sec, values in data.items():
        if sec not in SCHEMA:
            fail(str(sec), f"unknown section '{sec}'; known sections: {', '.join(SCHEMA)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            fail(sec, f"section '{sec}' must be a mapping of keys, not {type(values).__name__}")
        for key, value in values.items():
            name = f"{sec}.{key}"
            spec = SCHEMA[sec].get(key)
            if spec is None:
                close = difflib.get_close_matches(str(key), list(SCHEMA[sec]), n=1, cutoff=0.6)
                hint = f"; did you mean '{sec}.{close[0]}'?" if close else f"; known keys: {', '.join(SCHEMA[sec])}"
                fail(name, f"unknown key '{name}'{hint}")
            problem = _check_value(spec, value)
            if problem:
                fail(name, f"'{name}' {problem}")


def _check_value(spec: Key, value: Any) -> str | None:
    if value is None:
        return None if spec.nullable else f"must not be empty (null); default is {spec.default!r}"
    if spec.kind == "bool":
        if not isinstance(value, bool):
            return f"must be true or false, got {value!r}"
        return None
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
    elif spec.kind == "str":
        if not isinstance(value, str):
            hint = f" ({spec.pattern_hint})" if spec.pattern_hint else ""
            return f"must be a quoted string{hint}, got {value!r}"
        if spec.choices and value not in spec.choices:
            return f"must be one of {', '.join(spec.choices)}; got {value!r}"
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            return f"must be {spec.pattern_hint or 'of the form ' + spec.pattern}; got {value!r}"
        return None
    elif spec.kind == "map":
        if not isinstance(value, dict):
            return f"must be a mapping of option names to values, got {value!r}"
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, (str, int, float, bool)):
                return f"entries must be name: scalar value, got {k!r}: {v!r}"
        return None
    allowed = spec.extra.get("allowed")
    if allowed and value not in allowed:
        return f"must be one of {', '.join(map(str, allowed))}; got {value!r}"
    if spec.min is not None and value < spec.min:
        return f"must be >= {spec.min:g}, got {value!r}"
    if spec.max is not None and value > spec.max:
        return f"must be <= {spec.max:g}, got {value!r}"
    return None


def _to_config(merged: dict[str, dict[str, Any]]) -> Config:
    _check_relations(merged)
    return Config(**{sec: SimpleNamespace(**values) for sec, values in merged.items()})


def _check_relations(c: dict[str, dict[str, Any]]) -> None:
    """Constraints between keys, checked on the merged result."""
    if c["probe"]["reconnect_initial_s"] > c["probe"]["reconnect_max_s"]:
        raise ConfigError("probe.reconnect_initial_s is larger than probe.reconnect_max_s; lower the first "
                          "or raise the second")
    if c["accelerator"]["reattach_initial_s"] > c["accelerator"]["reattach_max_s"]:
        raise ConfigError("accelerator.reattach_initial_s is larger than accelerator.reattach_max_s; lower the "
                          "first or raise the second")
    if c["power"]["critical_battery_percent"] > c["power"]["low_battery_percent"]:
        raise ConfigError("power.critical_battery_percent is above power.low_battery_percent; the critical "
                          "level must be the lower one")
    if c["accelerator"]["kind"] == "external" and not c["accelerator"]["external_library"]:
        raise ConfigError("accelerator.kind is 'external' but accelerator.external_library is not set; give the "
                          "delegate library path or set kind: none")
