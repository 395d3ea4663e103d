"""What convex and phased probes share: scan lines fanning out from an arc, ``width`` in degrees."""
from __future__ import annotations

import math

import numpy as np

from firmware_py.geometry.base import Geometry


class SectorGeometry(Geometry):
    """Line ``i`` at angle ``theta = -width/2 + (i + 0.5) * width / n_lines`` (degrees, 0 = straight
    down); the sample at depth ``d`` below the element surface lies at ``x = (R + d) sin(theta)``,
    ``z = (R + d) cos(theta) - R``, with ``R = arc_radius_mm`` (z = 0 at the centre element)."""

    __slots__ = ()

    @property
    def arc_radius_mm(self) -> float:
        """Radius of the arc the scan lines start from (0: they all start at one apex)."""
        raise NotImplementedError

    def _shape_problems(self) -> list[str]:
        if not (math.isfinite(self.width) and 0 < self.width < 180):
            return [f"sector angle {self.width} deg must be in (0, 180)"]
        return []

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        r, s, e = self.arc_radius_mm, self.start_depth_mm, self.end_depth_mm
        half = math.radians(self.width / 2)
        x_max = (r + e) * math.sin(half)
        z_min = (r + s) * math.cos(half) - r
        return (-x_max, x_max, z_min, e)

    def forward_mm(self, lateral, depth):
        r = self.arc_radius_mm
        theta = np.radians(lateral)
        rho = r + depth
        return rho * np.sin(theta), rho * np.cos(theta) - r

    def inverse_mm(self, x, z):
        r = self.arc_radius_mm
        return np.degrees(np.arctan2(x, z + r)), np.hypot(x, z + r) - r
