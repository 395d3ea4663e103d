"""Linear array: parallel scan lines, ``width`` is the aperture in mm."""
from __future__ import annotations

import math

import numpy as np

from firmware_py.geometry.base import Geometry


class LinearGeometry(Geometry):
    """Line ``i`` at lateral ``x = -width/2 + (i + 0.5) * width / n_lines`` (mm), straight down."""

    __slots__ = ()
    kind_name = "linear"
    separable = True  # x picks the line, z the sample
    typical = {"end_depth_mm": 40.0, "width": 38.4, "radius_mm": 0.0}
    phantom_lesion_offset = 0.25  # every depth is imaged across the whole aperture

    def _shape_problems(self) -> list[str]:
        if not (math.isfinite(self.width) and self.width > 0):
            return [f"aperture width {self.width} mm must be > 0"]
        return []

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        return (-self.width / 2, self.width / 2, self.start_depth_mm, self.end_depth_mm)

    def forward_mm(self, lateral, depth):
        return tuple(np.broadcast_arrays(lateral, depth))

    def inverse_mm(self, x, z):
        return x, z
