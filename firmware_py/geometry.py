"""Probe frame geometry: the one description of where each sample sits in the body.

Shared by the wire protocol (drivers), the preprocessing kernels (scan conversion and mask
area) and the model manifest. Conventions (see docs/architecture.md, "Geometry"):

* A frame's samples are an array of shape ``(n_lines, n_samples)``: each scan line is
  contiguous, as it leaves the beamformer.
* Cell centres: scan line ``i`` and depth sample ``k`` sit at the centre of their cell,
  ``(i + 0.5)`` and ``(k + 0.5)`` cells from the first edge. Bilinear scan conversion with
  these centres is exactly a half-pixel-centred bilinear resize for a linear probe, so a
  B-mode image replayed as a linear frame lands on the grid a model was trained on.
* Linear: line ``i`` at lateral ``x = -width/2 + (i + 0.5) * width / n_lines`` (mm).
* Convex: line ``i`` at angle ``theta = -width/2 + (i + 0.5) * width / n_lines`` (degrees,
  0 = straight down); sample at depth ``d`` below the element surface lies at
  ``x = (R + d) sin(theta)``, ``z = (R + d) cos(theta) - R`` (``R = radius_mm``).
* Phased: convex with ``R = 0`` (all lines from one apex).
* Depth of sample ``k``: ``start + (k + 0.5) * (end - start) / n_samples`` (mm).
* ``tgc_db``: gains in dB at points spread evenly from start to end depth (first point at
  ``start``, last at ``end``), interpolated linearly per sample; ``None`` means 0 dB.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class ProbeKind(enum.IntEnum):
    LINEAR = 0
    CONVEX = 1
    PHASED = 2


@dataclass(frozen=True, slots=True)
class Geometry:
    """Immutable and hashable, so it can key the scan-conversion lookup-table cache."""

    kind: ProbeKind
    n_lines: int
    n_samples: int
    bits: int  # 8 = log-compressed B-mode, 16 = linear envelope amplitude
    start_depth_mm: float
    end_depth_mm: float
    width: float  # LINEAR: aperture width in mm; CONVEX/PHASED: sector angle in degrees
    radius_mm: float = 0.0  # CONVEX only: radius of the array's curvature
    tgc_db: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(f"invalid probe geometry: {problems[0]}")

    def problems(self) -> list[str]:
        """Reasons this geometry cannot be imaged; empty when it is valid."""
        out = []
        if not isinstance(self.kind, ProbeKind):
            out.append(f"kind {self.kind!r} is not linear, convex or phased")
        if not 1 <= self.n_lines <= 4096:
            out.append(f"n_lines={self.n_lines} outside 1..4096")
        if not 2 <= self.n_samples <= 65536:
            out.append(f"n_samples={self.n_samples} outside 2..65536")
        if self.bits not in (8, 16):
            out.append(f"bits={self.bits}; only 8 (B-mode) or 16 (envelope) are supported")
        if not (math.isfinite(self.start_depth_mm) and math.isfinite(self.end_depth_mm)):
            out.append("start/end depth must be finite")
        elif not 0.0 <= self.start_depth_mm < self.end_depth_mm:
            out.append(
                f"depth range {self.start_depth_mm}..{self.end_depth_mm} mm must satisfy 0 <= start < end"
            )
        if self.kind == ProbeKind.LINEAR:
            if not (math.isfinite(self.width) and self.width > 0):
                out.append(f"aperture width {self.width} mm must be > 0")
        else:
            if not (math.isfinite(self.width) and 0 < self.width < 180):
                out.append(f"sector angle {self.width} deg must be in (0, 180)")
        if self.kind == ProbeKind.CONVEX and not (math.isfinite(self.radius_mm) and self.radius_mm > 0):
            out.append(f"convex probe radius {self.radius_mm} mm must be > 0")
        if self.tgc_db is not None:
            if not 1 <= len(self.tgc_db) <= 256:
                out.append(f"TGC curve has {len(self.tgc_db)} points; give 1..256")
            elif not all(math.isfinite(g) and -120 <= g <= 120 for g in self.tgc_db):
                out.append("TGC gains must be finite and within +-120 dB")
        return out

    @property
    def sample_spacing_mm(self) -> float:
        return (self.end_depth_mm - self.start_depth_mm) / self.n_samples

    @property
    def bytes_per_sample(self) -> int:
        return self.bits // 8

    @property
    def payload_bytes(self) -> int:
        return self.n_lines * self.n_samples * self.bytes_per_sample

    def bounding_box_mm(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, z_min, z_max) of the imaged region; the output grid spans it."""
        s, e = self.start_depth_mm, self.end_depth_mm
        if self.kind == ProbeKind.LINEAR:
            return (-self.width / 2, self.width / 2, s, e)
        r = self.radius_mm if self.kind == ProbeKind.CONVEX else 0.0
        half = math.radians(self.width / 2)
        x_max = (r + e) * math.sin(half)
        z_min = (r + s) * math.cos(half) - r
        return (-x_max, x_max, z_min, e)

    def pixel_size_mm(self, out_h: int, out_w: int) -> tuple[float, float]:
        """(dz, dx) of one output pixel when the bounding box is stretched to out_h x out_w."""
        x0, x1, z0, z1 = self.bounding_box_mm()
        return ((z1 - z0) / out_h, (x1 - x0) / out_w)
