"""Convex (curvilinear) array: a sector whose lines start on the array's arc of radius ``radius_mm``."""
from __future__ import annotations

import math

from firmware_py.geometry.sector import SectorGeometry


class ConvexGeometry(SectorGeometry):
    __slots__ = ()
    kind_name = "convex"
    typical = {"end_depth_mm": 150.0, "width": 60.0, "radius_mm": 50.0}

    @property
    def arc_radius_mm(self) -> float:
        return self.radius_mm

    def _shape_problems(self) -> list[str]:
        out = super()._shape_problems()
        if not (math.isfinite(self.radius_mm) and self.radius_mm > 0):
            out.append(f"convex probe radius {self.radius_mm} mm must be > 0")
        return out
