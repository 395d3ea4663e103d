"""Speckle phantoms with known ground truth, synthesised directly on a probe's scan-line grid.

A phantom is a uniform tissue background with circular lesions (position, radius and echogenicity
known exactly). Each frame draws fully developed speckle: the complex sum of many random scatterers
per resolution cell is circular Gaussian, so its magnitude is Rayleigh distributed; a short
smoothing along depth and across lines gives it the elongated grain of a real point-spread
function. Amplitude falls with depth as ``attenuation_db_cm_mhz * f * 2 * depth``; an optional
TGC curve in the geometry describes the gain the consumer should add back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from firmware_py.geometry import Geometry, geometry_class, kind_named


@dataclass(frozen=True)
class Lesion:
    x_mm: float  # lateral position, 0 = probe centre
    z_mm: float  # depth below the probe face (same z as Geometry.bounding_box_mm)
    radius_mm: float
    echogenicity_db: float  # relative to background: -inf/-40 anechoic cyst, < 0 hypo-, > 0 hyperechoic

    def as_dict(self) -> dict:
        return {"x_mm": self.x_mm, "z_mm": self.z_mm, "radius_mm": self.radius_mm,
                "echogenicity_db": self.echogenicity_db}


@dataclass(frozen=True)
class GroundTruth:
    """What a frame shows: lesions, and a (n_lines, n_samples) mask of the cells inside any lesion."""

    geometry: Geometry
    lesions: tuple[Lesion, ...]
    mask: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return {"lesions": [l.as_dict() for l in self.lesions],
                "lesion_cells": int(self.mask.sum())}


def cell_positions_mm(g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(x, z) in mm of every (line, sample) cell centre, each of shape (n_lines, n_samples)."""
    return g.forward_mm(g.line_laterals()[:, None], g.sample_depths_mm()[None, :])


def default_lesions(g: Geometry) -> tuple[Lesion, ...]:
    """Three lesions spread over the imaged region: an anechoic cyst, a hypo- and a hyperechoic one."""
    x0, x1, z0, z1 = g.bounding_box_mm()
    depth = g.end_depth_mm - g.start_depth_mm
    r = max(depth * 0.08, 1.0)
    zs = [g.start_depth_mm + depth * f for f in (0.3, 0.5, 0.72)]
    span = (x1 - x0) * g.phantom_lesion_offset
    return (
        Lesion(-span, zs[0], r, -40.0),
        Lesion(span, zs[1], r * 1.2, -9.0),
        Lesion(0.0, zs[2], r * 0.9, 9.0),
    )


class SpecklePhantom:
    """Frames of one geometry. ``frame(rng)`` -> (samples, GroundTruth).

    bits=8: log-compressed B-mode over ``dynamic_range_db``; bits=16: linear envelope amplitude
    with the brightest expected echo near 65535 (so that 20 log10(a / 65535) is in [-DR, 0]).
    """

    def __init__(self, geometry: Geometry, lesions: tuple[Lesion, ...] | None = None, *,
                 frequency_mhz: float = 5.0, attenuation_db_cm_mhz: float = 0.5,
                 dynamic_range_db: float = 60.0, smooth_axial: int = 3, smooth_lateral: int = 2):
        self.geometry = geometry
        self.lesions = default_lesions(geometry) if lesions is None else tuple(lesions)
        self.dynamic_range_db = dynamic_range_db
        x, z = cell_positions_mm(geometry)
        gain_db = np.zeros((geometry.n_lines, geometry.n_samples), np.float64)
        mask = np.zeros(gain_db.shape, bool)
        for les in self.lesions:
            inside = (x - les.x_mm) ** 2 + (z - les.z_mm) ** 2 <= les.radius_mm ** 2
            gain_db[inside] = max(les.echogenicity_db, -80.0)
            mask |= inside
        depth_cm = geometry.sample_depths_mm() / 10
        gain_db -= (attenuation_db_cm_mhz * frequency_mhz * 2 * depth_cm)[None, :]
        # Rayleigh mean is sqrt(pi/2) sigma; leave ~12 dB headroom for bright speckle and lesions
        self._amplitude = (10 ** (gain_db / 20)) * 10 ** (-12 / 20)
        self.truth = GroundTruth(geometry, self.lesions, mask)
        self._sa, self._sl = smooth_axial, smooth_lateral

    def envelope(self, rng: np.random.Generator) -> np.ndarray:
        """Linear envelope in [0, ~1] (float32), Rayleigh speckle times the echogenicity map."""
        g = self.geometry
        field_ = (rng.standard_normal((g.n_lines, g.n_samples), np.float32)
                  + 1j * rng.standard_normal((g.n_lines, g.n_samples), np.float32))
        field_ = _box_smooth(_box_smooth(field_, self._sa, axis=1), self._sl, axis=0)
        # box smoothing of n unit-variance samples has variance 1/n: renormalise to sigma 1/sqrt(2)
        field_ *= math.sqrt(self._sa * self._sl / 2.0)
        return (np.abs(field_) * self._amplitude).astype(np.float32)

    def frame(self, rng: np.random.Generator) -> tuple[np.ndarray, GroundTruth]:
        env = self.envelope(rng)
        if self.geometry.bits == 16:
            return np.clip(env * 65535.0, 0, 65535).astype(np.uint16), self.truth
        db = 20 * np.log10(np.maximum(env, 1e-12))
        bmode = np.clip((db + self.dynamic_range_db) / self.dynamic_range_db, 0, 1) * 255
        return np.round(bmode).astype(np.uint8), self.truth


def _box_smooth(a: np.ndarray, n: int, axis: int) -> np.ndarray:
    if n <= 1:
        return a
    c = np.cumsum(a, axis=axis)
    out = np.empty_like(a)
    sl = [slice(None)] * a.ndim

    def idx(s):
        sl2 = list(sl)
        sl2[axis] = s
        return tuple(sl2)

    out[idx(slice(0, n))] = c[idx(slice(0, n))] / n
    out[idx(slice(n, None))] = (c[idx(slice(n, None))] - c[idx(slice(0, -n))]) / n
    return out


def make_geometry(kind: str = "linear", n_lines: int = 128, n_samples: int = 512, bits: int = 8,
                  start_depth_mm: float = 0.0, end_depth_mm: float | None = None,
                  tgc_db: tuple[float, ...] | None = None) -> Geometry:
    """A typical geometry of a kind named in the registry (each class's ``typical``): linear 38 mm
    aperture to 40 mm, convex 60 deg / R 50 mm to 150 mm, phased 75 deg to 140 mm."""
    code = kind_named(kind)
    t = geometry_class(code).typical
    return Geometry(code, n_lines, n_samples, bits, start_depth_mm, end_depth_mm or t["end_depth_mm"],
                    t["width"], t["radius_mm"], tgc_db)
