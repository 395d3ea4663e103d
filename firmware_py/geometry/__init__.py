"""Probe frame geometry: the one description of where each sample sits in the body.

Shared by the wire protocol (drivers), the preprocessing kernels (scan conversion and mask
area) and the model manifest. ``Geometry`` (base.py) fixes the conventions every kind shares;
each probe kind is one class in its own file, owning its validation, bounds, forward and
inverse maps, lookup-table plan and frame sub-header fields.

Adding a probe geometry touches two files:

1. ``firmware_py/geometry/<kind>.py``: a ``Geometry`` subclass (see ``linear.py``);
2. this file: one entry in ``PROTOCOL_KINDS`` below, the protocol's kind code for it.

The frame parser, the protocol's capabilities, the simulator, the NumPy reference and the
kernels then know it. (A kind can also be registered at run time with ``register_kind``; its
``Geometry.kind`` is then the plain int code, as ``ProbeKind`` holds the table's kinds only.)
"""
from __future__ import annotations

import enum

from firmware_py.geometry.base import (Geometry, geometry_class, kind_named, kind_names, register_kind,
                                       registered_kinds)
from firmware_py.geometry.convex import ConvexGeometry
from firmware_py.geometry.linear import LinearGeometry
from firmware_py.geometry.phased import PhasedGeometry
from firmware_py.geometry.sector import SectorGeometry

# The protocol's probe kind codes (frame sub-header byte 12; capabilities mask bit), docs/protocol.md.
PROTOCOL_KINDS: dict[int, type[Geometry]] = {
    0: LinearGeometry,
    1: ConvexGeometry,
    2: PhasedGeometry,
}

# ProbeKind.LINEAR etc., generated from the table so that it cannot drift from it.
ProbeKind = enum.IntEnum("ProbeKind", [(cls.kind_name.upper(), code) for code, cls in PROTOCOL_KINDS.items()],
                         module=__name__)
for _kind in ProbeKind:
    register_kind(_kind, PROTOCOL_KINDS[_kind])
del _kind

__all__ = ["ConvexGeometry", "Geometry", "LinearGeometry", "PROTOCOL_KINDS", "PhasedGeometry", "ProbeKind",
           "SectorGeometry", "geometry_class", "kind_named", "kind_names", "register_kind", "registered_kinds"]
