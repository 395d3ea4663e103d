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


@dataclass(frozen=True)
class LinearAxes:
    """A linear probe's scan conversion, exactly separable: per output row and per output column.

    Rows (depth): ``k0`` lower sample, ``ws`` Q15 weight of ``k0 + 1`` (capped at 32767, so 16-bit lanes hold it), ``row_in``; columns
    (lines): ``i0``/``i1`` the two lines (``i1 = i0`` on a one-line frame), ``wl`` Q15 weight of
    ``i1`` (capped alike), ``col_in``. A pixel is inside when its row and its column are.
    """
    k0: np.ndarray  # int32 (H,)
    ws: np.ndarray  # int16 (H,)
    row_in: np.ndarray  # bool (H,)
    i0: np.ndarray  # int32 (W,)
    i1: np.ndarray  # int32 (W,)
    wl: np.ndarray  # int16 (W,)
    col_in: np.ndarray  # bool (W,)


def build_linear_axes(geometry: Geometry, out_h: int, out_w: int) -> LinearAxes:
    """Per-row and per-column tables of a separable geometry (``geometry.separable``: a linear
    probe), from the same float64 positions."""
    if not geometry.separable:
        raise ValueError(f"build_linear_axes needs a separable geometry such as linear, got {geometry.kind_name}")
    u, v, inside = reference.source_coordinates(geometry, out_h, out_w)
    u, v = u[0, :], v[:, 0]  # u depends on the column only, v on the row only
    col_in = (u >= 0) & (u <= geometry.n_lines)
    row_in = (v >= 0) & (v <= geometry.n_samples)
    assert np.array_equal(inside, row_in[:, None] & col_in[None, :])

    def lower(pos, n):
        p = np.clip(pos - 0.5, 0.0, n - 1.0)
        if n == 1:
            return np.zeros(p.shape, np.int32), np.zeros(p.shape, np.int16)
        i = np.minimum(np.floor(p).astype(np.int64), n - 2)
        return i.astype(np.int32), np.minimum(np.rint((p - i) * Q15_ONE), Q15_ONE - 1).astype(np.int16)

    k0, ws = lower(v, geometry.n_samples)
    i0, wl = lower(u, geometry.n_lines)
    k0, ws = np.where(row_in, k0, 0).astype(np.int32), np.where(row_in, ws, 0).astype(np.int16)
    i1 = np.minimum(i0 + 1, geometry.n_lines - 1).astype(np.int32)
    return LinearAxes(k0, ws, row_in, i0, i1, wl, col_in)
