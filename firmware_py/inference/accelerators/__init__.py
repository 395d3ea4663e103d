"""Accelerator kinds, found through a registry; each kind is one file in this folder.

Adding a kind: one file that subclasses AcceleratorKind (kind.py; delegate.py for a TFLite
delegate), registers it with ``@ACCELERATORS.register(name, doc=..., keys=...)`` (its keys become
the `accelerator.<name>` configuration sub-section) and, for a new model format, registers the
format (firmware_py.inference.formats); plus its import line below.
"""
from __future__ import annotations

from firmware_py.inference.accelerators.kind import AcceleratorKind, AcceleratorUnavailable, Device, LoadedModel
from firmware_py.registry import KindRegistry

ACCELERATORS = KindRegistry("accelerator")


@ACCELERATORS.register("none", doc="No accelerator: every tier runs its CPU twin.")
class CpuOnly:
    """`accelerator.kind: none`; make_accelerator() returns None for it (the engine holds none)."""


def make_accelerator(section) -> AcceleratorKind | None:
    """The kind the typed `accelerator` section chooses, or None for `none`."""
    return None if section.kind == "none" else ACCELERATORS.create(section)


def devices(root: str = "/") -> list[Device]:
    """Every accelerator attached to this machine that a registered kind can find (pycoral's
    list_edge_tpus for every kind); `root` is the file-system root (tests pass a fake tree)."""
    found: list[Device] = []
    for name in ACCELERATORS:
        cls = ACCELERATORS[name].cls
        if isinstance(cls, type) and issubclass(cls, AcceleratorKind):
            found.extend(cls.devices(root))
    return found


# Registration: importing a kind's file registers it, one line per kind (order = order in the docs).
from firmware_py.inference.accelerators import edgetpu  # noqa: E402,F401
from firmware_py.inference.accelerators import external  # noqa: E402,F401

__all__ = ["ACCELERATORS", "AcceleratorKind", "AcceleratorUnavailable", "Device", "LoadedModel", "devices",
           "make_accelerator"]
