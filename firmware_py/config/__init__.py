"""Configuration: one YAML file, defaults shipped in the package, validated at load.

``load_config(path)`` merges the file over the shipped defaults and refuses unknown keys,
wrong types and out-of-range values with a one-line ``ConfigError`` naming the key and, where
the file gives one, its line. The result is a ``Config``: frozen dataclasses generated from
``schema.py`` (``cfg.probe.port``, ``cfg.power.battery.mock.percent``), so the schema is the only
place a default is written and consumers read attributes without restating defaults.

Shape: sections of keys, and sub-sections nested below them. A pluggable part (a battery gauge,
a temperature sensor) is a *kind group*: ``kind`` names one registered kind, and every kind with
options has a sub-section of its own, declared in the kind's file (see ``firmware_py.registry``)::

    power:
      low_battery_percent: 30.0
      battery:
        kind: sysfs                  # mock | sysfs | psutil (whatever is registered)
        mock: {percent: 80.0, drain_percent_per_min: 1.0}
        sysfs: {root: /sys/class/power_supply}
      thermal:
        kind: mock
        mock: {temperature_c: 45.0}

Only the chosen kind's sub-section is used, but every sub-section given is validated, so a typo
in one is reported whichever kind is chosen. A file may give any subset of keys at any depth.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from importlib import resources
from typing import Any

import yaml

from firmware_py.config.schema import SCHEMA, Key, Section, defaults, number_text
from firmware_py.errors import ConfigError, one_line, shown
from firmware_py.files import MiB, read_bounded

MAX_CONFIG_BYTES = MiB  # a configuration is a few kB; anything this big is the wrong file

__all__ = ["Config", "load_config", "default_config_text", "validate_mapping"]


class Config:
    """Base of the generated configuration class: sections as attributes, plus these helpers."""

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dicts (a copy), in the shape of ``schema.defaults()``."""
        return dataclasses.asdict(self)

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with some keys changed, validated like a file (used by CLI overrides)."""
        validate_mapping(sections, source="command line")
        return _to_config(_merge(SCHEMA, self.as_dict(), sections))


def default_config_text() -> str:
    return resources.files("firmware_py.config").joinpath("default.yaml").read_text(encoding="utf-8")


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Shipped defaults, overridden by the file at ``path`` when given."""
    merged = defaults()
    if path is None:
        return _to_config(merged)
    path = os.fspath(path)
    try:
        text = read_bounded(path, MAX_CONFIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; pass an existing YAML file to --config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc}); check the path and permissions") from None
    data, lines = _parse(text, path)
    validate_mapping(data, source=path, lines=lines)
    return _to_config(_merge(SCHEMA, merged, data))


def _merge(section: Section, base: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """``override`` (validated) merged into ``base`` in place, sub-section by sub-section."""
    for name, value in (override or {}).items():
        if isinstance(section[name], Section):
            _merge(section[name], base[name], value)
        else:
            base[name] = value  # a map value (external.options) replaces the default, not merges
    return base


def _parse(text: str, path: str) -> tuple[dict, dict[str, int]]:
    """YAML -> plain data plus the line of every key (``"section.key" -> line``)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a configuration; fix the file") from None
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from None
    if root is None:
        return {}, {}
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{path}: line {root.start_mark.line + 1}: the file must be a mapping of sections "
                          f"(probe:, simulator:, ...), not a {_node_kind(root)}")
    lines: dict[str, int] = {}
    _key_lines(root, "", lines)
    loader = yaml.SafeLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:  # composed but cannot be built, e.g. a list as a mapping key
        raise _yaml_error(path, exc) from None
    finally:
        loader.dispose()
    return data, lines


def _yaml_error(path: str, exc: yaml.YAMLError) -> ConfigError:
    """One line: where and what (PyYAML's own text spans several lines with the snippet)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}" if mark is not None else "YAML"
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable"])[0]
    return ConfigError(f"{path}:{where}: not valid YAML ({one_line(problem, 200)}); fix the syntax")


def _key_lines(node: yaml.MappingNode, prefix: str, lines: dict[str, int]) -> None:
    for key_node, value_node in node.value:
        name = f"{prefix}{key_node.value}"
        lines[name] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            _key_lines(value_node, f"{name}.", lines)


def _node_kind(node: yaml.Node) -> str:
    return {yaml.ScalarNode: "single value", yaml.SequenceNode: "list"}.get(type(node), "mapping")


def validate_mapping(data: Any, *, source: str, lines: dict[str, int] | None = None) -> None:
    """Raise ConfigError for the first problem in a user-supplied (partial) configuration."""
    lines = lines or {}

    def fail(name: str, message: str) -> None:
        parts = name.split(".")
        # The key's own line, else the nearest enclosing section's (a value given on the command line has none).
        line = next((lines[k] for k in (".".join(parts[:n]) for n in range(len(parts), 0, -1)) if k in lines), None)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: {message}")

    if not isinstance(data, dict):
        fail("", "the configuration must be a mapping of sections (probe:, simulator:, ...)")
    for sec, values in data.items():
        if sec not in SCHEMA:
            fail(one_line(sec), f"unknown section '{one_line(sec)}'; known sections: {', '.join(SCHEMA)}")
        _validate_section(SCHEMA[sec], values, str(sec), fail)


def _validate_section(section: Section, values: Any, path: str, fail) -> None:
    if values is None:  # an empty section: its defaults
        return
    if not isinstance(values, dict):
        example = f" like {{kind: {section['kind'].default}}}" if section.kinds else " of keys"
        fail(path, f"section '{path}' must be a mapping{example}, not {type(values).__name__} {shown(values)}")
    for key, value in values.items():
        name = f"{path}.{one_line(key)}"
        spec = section.get(key)
        if spec is None:
            if key in section.moved:
                fail(name, f"'{name}' has moved to '{path}.{section.moved[key]}'")
            close = difflib.get_close_matches(one_line(key), list(section), n=1, cutoff=0.6)
            hint = f"; did you mean '{path}.{close[0]}'?" if close else f"; known keys: {', '.join(section)}"
            fail(name, f"unknown key '{name}'{hint}")
        if isinstance(spec, Section):
            _validate_section(spec, value, name, fail)
            continue
        problem = _check_value(spec, value)
        if problem:
            fail(name, f"'{name}' {problem}")


def _check_value(spec: Key, value: Any) -> str | None:
    if value is None:
        return None if spec.nullable else f"must not be empty (null); default is {spec.default!r}"
    if "check" in spec.extra:  # a key with a shape of its own (power.bands) says what is wrong with it
        return spec.extra["check"](value)
    if spec.kind == "bool":
        if not isinstance(value, bool):
            return f"must be true or false, got {shown(value)}"
        return None
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {shown(value)}"
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {shown(value)}"
        if isinstance(value, float) and not math.isfinite(value):  # (an int: finite, maybe too big for a float)
            return f"must be a finite number, got {shown(value)}"
    elif spec.kind == "str":
        if not isinstance(value, str):
            hint = f" ({spec.pattern_hint})" if spec.pattern_hint else ""
            return f"must be a quoted string{hint}, got {shown(value)}"
        if spec.choices and value not in spec.choices:
            return f"must be one of {', '.join(spec.choices)}; got {shown(value)}"
        if spec.pattern and not re.fullmatch(spec.pattern, value):
            return f"must be {spec.pattern_hint or 'of the form ' + spec.pattern}; got {shown(value)}"
        return None
    elif spec.kind == "map":
        if not isinstance(value, dict):
            return f"must be a mapping of option names to values, got {shown(value)}"
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, (str, int, float, bool)):
                return f"entries must be name: scalar value, got {shown(k)}: {shown(v)}"
        return None
    allowed = spec.extra.get("allowed")
    if allowed and value not in allowed:
        return f"must be one of {', '.join(map(str, allowed))}; got {shown(value)}"
    if spec.min is not None and value < spec.min:
        return f"must be >= {number_text(spec.min)}, got {shown(value)}"
    if spec.max is not None and value > spec.max:
        return f"must be <= {number_text(spec.max)}, got {shown(value)}"
    return None


def _to_config(merged: dict[str, dict[str, Any]]) -> Config:
    _check_relations(merged)
    return SCHEMA.build(merged, bases=(Config,))


def _check_relations(c: dict[str, dict[str, Any]]) -> None:
    """Constraints between keys, checked on the merged result."""
    if c["probe"]["pool_buffers"] > c["probe"]["pool_max_buffers"]:
        raise ConfigError("probe.pool_buffers is larger than probe.pool_max_buffers; lower the first or raise "
                          "the second")
    if c["probe"]["reconnect_initial_s"] > c["probe"]["reconnect_max_s"]:
        raise ConfigError("probe.reconnect_initial_s is larger than probe.reconnect_max_s; lower the first "
                          "or raise the second")
    if c["accelerator"]["reattach_initial_s"] > c["accelerator"]["reattach_max_s"]:
        raise ConfigError("accelerator.reattach_initial_s is larger than accelerator.reattach_max_s; lower the "
                          "first or raise the second")
    if c["power"]["critical_battery_percent"] > c["power"]["low_battery_percent"]:
        raise ConfigError("power.critical_battery_percent is above power.low_battery_percent; the critical "
                          "level must be the lower one")
    monitor = c["power"]["monitor"]
    if monitor["kind"] == "ina219":
        from firmware_py.power.monitor_ina219 import range_problem

        problem = range_problem(monitor["ina219"]["shunt_ohms"], monitor["ina219"]["max_current_a"])
        if problem:
            raise ConfigError(problem)
    if c["accelerator"]["kind"] == "external" and not c["accelerator"]["external"]["library"]:
        raise ConfigError("accelerator.kind is 'external' but accelerator.external.library is not set; give the "
                          "delegate library path or set kind: none")
