"""Registries of pluggable kinds and the configuration keys and sections they declare.

The configuration schema (``firmware_py/config/schema.py``) is built from these blocks, and a
kind's own file declares its keys with them; this module imports nothing of the project, so a
kind's file can import it without an import cycle through the configuration loader.

A ``Section`` is one mapping of the file: ``Key``s and nested ``Section``s. A section built
with ``kinds=REGISTRY`` is a *kind group*: it gains a ``kind`` key whose choices are the
registered kinds, and one sub-section per kind that declares keys, so a kind's options live
in the kind's own file (``@REGISTRY.register("name", keys={...})``) and nothing else in the
schema changes when a kind is added.

Loaded configurations are frozen dataclasses generated from the sections (``typed_class``):
the schema stays the single place a default or a type is written.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

_PYTHON_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "map": dict}


@dataclass(frozen=True)
class Key:
    kind: str  # "int" | "float" | "bool" | "str" | "map" (free-form str -> scalar)
    default: Any
    doc: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None  # regular expression a str must match in full
    pattern_hint: str = ""
    extra: dict = field(default_factory=dict)

    def python_type(self) -> Any:
        t = _PYTHON_TYPES[self.kind]
        return Optional[t] if self.nullable else t


@dataclass(frozen=True)
class Kind:
    name: str
    cls: type
    doc: str
    section: "Section"


class KindRegistry:
    """The kinds of one pluggable thing (battery gauge, thermal sensor, accelerator), by name.

    ``what`` names the thing in messages. A registered class with keys is built with
    ``cls.from_config(sub_section)``; one without keys with ``cls()``.
    """

    def __init__(self, what: str):
        self.what = what
        self._kinds: dict[str, Kind] = {}

    def register(self, name: str, *, doc: str, keys: dict[str, Key] | None = None) -> Callable[[type], type]:
        def add(cls: type) -> type:
            if name in self._kinds:
                raise ValueError(f"{self.what} kind {name!r} is already registered")
            if keys and not hasattr(cls, "from_config"):
                raise TypeError(f"{cls.__name__} declares keys, so it needs a from_config(section) classmethod")
            self._kinds[name] = Kind(name, cls, doc, Section(keys or {}, doc=f"Options of `kind: {name}`."))
            return cls

        return add

    def unregister(self, name: str) -> None:
        del self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __getitem__(self, name: str) -> Kind:
        return self._kinds[name]

    def create(self, group: Any) -> Any:
        """The object for a kind group's chosen kind (``group.kind``), from its typed sub-section."""
        kind = self._kinds.get(group.kind)
        if kind is None:
            raise ValueError(f"unknown {self.what} {group.kind!r}; use one of {', '.join(self._kinds)}")
        return kind.cls.from_config(getattr(group, kind.name)) if kind.section else kind.cls()


class Section(Mapping):
    """Keys and sub-sections of one mapping in the file, in file order; a Mapping of name -> field.

    ``kinds``: make this a kind group (see the module docstring); ``kind_default`` and
    ``kind_doc`` describe its ``kind`` key. ``moved``: old key name -> new dotted path below
    this section, so a file written for an older layout is told where its key went.
    """

    def __init__(self, keys: dict[str, "Key | Section"] | None = None, *, doc: str = "",
                 kinds: KindRegistry | None = None, kind_default: str | None = None, kind_doc: str = "",
                 moved: dict[str, str] | None = None):
        self.doc, self.kinds, self.moved = doc, kinds, moved or {}
        self._keys = dict(keys or {})
        self._kind_default, self._kind_doc = kind_default, kind_doc
        self._typed: dict[tuple, type] = {}

    def fields(self) -> dict[str, "Key | Section"]:
        # Computed on each call: kinds may be registered after the schema is built.
        if self.kinds is None:
            return self._keys
        names = tuple(self.kinds)
        listing = "; ".join(f"`{n}`: {self.kinds[n].doc}" for n in names)
        kind = Key("str", self._kind_default, f"{self._kind_doc} {listing}.", choices=names)
        subs = {name: self.kinds[name].section for name in self.kinds if self.kinds[name].section}
        return {"kind": kind, **self._keys, **subs}

    def __getitem__(self, name: str) -> "Key | Section":
        return self.fields()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields())

    def __len__(self) -> int:
        return len(self.fields())

    def defaults(self) -> dict[str, Any]:
        return {name: spec.defaults() if isinstance(spec, Section)
                else dict(spec.default) if isinstance(spec.default, dict) else spec.default
                for name, spec in self.fields().items()}

    def _shape(self) -> tuple:
        return tuple((name, spec._shape() if isinstance(spec, Section) else spec.python_type())
                     for name, spec in self.fields().items())

    def typed_class(self, path: str, bases: tuple[type, ...] = ()) -> type:
        """The frozen dataclass of this section at ``path`` (``"power.battery"``), made once per shape."""
        shape = self._shape()
        cls = self._typed.get(shape)
        if cls is None:
            name = "".join(part.title().replace("_", "") for part in path.split(".")) + "Config" if path else "Config"
            fields = [(n, spec.typed_class(f"{path}.{n}".lstrip(".")) if isinstance(spec, Section)
                       else spec.python_type()) for n, spec in self.fields().items()]
            cls = self._typed[shape] = dataclasses.make_dataclass(name, fields, bases=bases, frozen=True)
            cls.__module__ = "firmware_py.config"  # not this module: the type is named where configs come from
        return cls

    def build(self, values: dict[str, Any], path: str = "", bases: tuple[type, ...] = ()) -> Any:
        """A typed instance from a complete, validated mapping (see ``defaults()``)."""
        kwargs = {}
        for name, spec in self.fields().items():
            value = values[name]
            kwargs[name] = spec.build(value, f"{path}.{name}".lstrip(".")) if isinstance(spec, Section) else value
        return self.typed_class(path, bases)(**kwargs)
