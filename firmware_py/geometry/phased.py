"""Phased array: a sector whose lines all start at one apex (a convex probe with R = 0)."""
from __future__ import annotations

from firmware_py.geometry.sector import SectorGeometry


class PhasedGeometry(SectorGeometry):
    __slots__ = ()
    kind_name = "phased"
    typical = {"end_depth_mm": 140.0, "width": 75.0, "radius_mm": 0.0}
    arc_radius_mm = 0.0  # the apex is on the face; radius_mm is neither used nor checked
