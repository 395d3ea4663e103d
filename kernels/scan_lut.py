"""Scan-conversion lookup table: built once per (geometry, output grid), compact and fixed-point.

Layout (struct of arrays, one entry per output pixel in raster order, 8 bytes per pixel):

* ``src``  int32  ``(line << 16) | sample`` of the upper-left source neighbour (line in the high
  bits, 0..4094; sample in the low 16 bits, 0..65534), or ``-1`` for a pixel outside the sector;
* ``wl``   uint16 weight of the next line, Q15 (0..32768 = 0..1);
* ``ws``   uint16 weight of the next depth sample, Q15; ``0xFFFF`` marks an outside pixel so the
  vectorised blend loop, which reads ``ws`` anyway, can select the fill without reading ``src``.

The float64 positions come from ``reference.source_coordinates`` (the contract's one definition);
this module only rounds them to the fixed-point format the kernel reads.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_py.geometry import Geometry
from firmware_py.kernels import reference

Q15_ONE = 32768
OUTSIDE = 0xFFFF


@dataclass(frozen=True)
class ScanLUT:
    geometry: Geometry
    out_h: int
    out_w: int
    src: np.ndarray  # int32 (H*W,)
    wl: np.ndarray  # uint16 (H*W,)
    ws: np.ndarray  # uint16 (H*W,)
    line_step: int  # elements between a sample and the same sample on the next line (0: one line)

    @property
    def nbytes(self) -> int:
        return self.src.nbytes + self.wl.nbytes + self.ws.nbytes

    @property
    def inside(self) -> np.ndarray:
        return (self.src >= 0).reshape(self.out_h, self.out_w)


def _lower_and_weight(pos: np.ndarray, n: int):
    """Lower neighbour and Q15 weight of the upper one (cell centres at i + 0.5, edges clamped)."""
    p = np.clip(pos - 0.5, 0.0, n - 1.0)
    if n == 1:
        return np.zeros(p.shape, np.int64), np.zeros(p.shape, np.uint16)
    i0 = np.minimum(np.floor(p).astype(np.int64), n - 2)
    w = np.rint((p - i0) * Q15_ONE).astype(np.uint16)
    return i0, w


def build_scan_lut(geometry: Geometry, out_h: int, out_w: int) -> ScanLUT:
    u, v, inside = reference.source_coordinates(geometry, out_h, out_w)
    i0, wl = _lower_and_weight(u, geometry.n_lines)
    k0, ws = _lower_and_weight(v, geometry.n_samples)
    src = np.where(inside, (i0 << 16) | k0, -1).astype(np.int32).ravel()
    wl = np.where(inside, wl, 0).astype(np.uint16).ravel()
    ws = np.where(inside, ws, OUTSIDE).astype(np.uint16).ravel()
    step = geometry.n_samples if geometry.n_lines > 1 else 0
    return ScanLUT(geometry, out_h, out_w, src, wl, ws, step)
