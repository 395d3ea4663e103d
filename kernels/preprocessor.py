"""Preprocessor: probe frame samples -> the model's int8 input tensor, without full-frame temporaries.

Public, validating wrapper over the private Cython kernels: ``_preprocess.FusedPlan`` (one fused
pass over the output pixels; convex and phased probes) and ``_linear.LinearPlan`` (linear probes,
whose scan conversion is exactly separable: a depth pass per scan line, a line pass per column).
The math is docs/architecture.md "Preprocessing contract"; ``reference.preprocess`` is its NumPy
twin and both kernels agree with it within one int8 LSB (see docs/kernels.md).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from firmware_py.geometry import Geometry
try:
    from firmware_py.kernels import _linear, _preprocess
except ImportError as exc:  # a source checkout without the compiled extension
    raise ImportError(
        f"firmware_py.kernels._preprocess is not compiled ({exc}): run "
        "`python setup.py build_ext --inplace` (or `pip install -e .`) in the repository"
    ) from exc
from firmware_py.kernels.scan_lut import ScanLUT, build_linear_axes, build_scan_lut

_MAX_GRID = 4096


def _log_table(dynamic_range_db: float, q: int) -> np.ndarray:
    """uint16 amplitude -> display value before TGC and clipping, int16 in units of 1/q.

    Entries far below 0 are clamped at ``-32768``; the caller picks ``q`` so that the largest
    positive TGC gain cannot lift a clamped entry above 0, which keeps the clamp exact.
    """
    a = np.maximum(np.arange(65536, dtype=np.float64), 1.0)
    display = 255.0 * (20.0 * np.log10(a / 65535.0) + dynamic_range_db) / dynamic_range_db
    return np.clip(np.rint(display * q), -32768, 32767).astype(np.int16)


def _table_unit(max_abs_gain_display: float) -> int:
    """Largest power-of-two q <= 64 with (max |gain| + 1) * q <= 32767 (display steps of 1/q).

    The int16 per-pixel gains then fit, and a log-table entry clamped at -32768 stays <= 0 after
    any gain, so the clamp never changes a clipped display value.
    """
    q = 64
    while q > 1 and (max_abs_gain_display + 1.0) * q > 32767:
        q //= 2
    return q


def _sample_gains(geometry: Geometry, dynamic_range_db: float):
    """TGC of every depth sample in display units (float64), or None when there is no TGC."""
    from firmware_py.kernels.reference import tgc_db_per_sample

    if not geometry.tgc_db or not any(geometry.tgc_db):
        return None
    return tgc_db_per_sample(geometry) * 255.0 / dynamic_range_db


def _kernel_lut(lut: ScanLUT, n_samples: int, gain):
    """The fused kernel's per-pixel arrays: element offsets of the upper-left cells (0 outside,
    so its gather needs no branch and no multiply) and, with TGC, each pixel's gain pair
    (gains of samples k0, k0 + 1 as two int16 in one uint32, low half first), so the gather
    does not fetch gains per pixel either: 4 more bytes of LUT per pixel, read in order."""
    inside = lut.src >= 0
    line, k0 = lut.src >> 16, lut.src & 0xFFFF
    offsets = np.where(inside, line * n_samples + k0, 0).astype(np.int32)
    if gain is None:
        return offsets, None
    pair = np.zeros((lut.src.size, 2), np.int16)
    pair[inside, 0] = gain[k0[inside]]
    pair[inside, 1] = gain[k0[inside] + 1]
    return offsets, pair.view("<u4").astype(np.uint32).ravel()


_NO_TABLE = np.zeros(1, np.int16)
_U8, _U16, _I8 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int8)


def _positive_int(name: str, value, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= upper:
        raise ValueError(f"{name}={value!r}: pass an integer from 1 to {upper}")
    return int(value)


def _finite(name: str, value, *, positive: bool = False, lo=None, hi=None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}={value!r}: pass a number") from None
    if not math.isfinite(v) or (positive and v <= 0) or (lo is not None and v < lo) or (hi is not None and v > hi):
        want = "a finite number > 0" if positive else f"a finite number in [{lo}, {hi}]"
        raise ValueError(f"{name}={value!r}: pass {want}")
    return v


class Preprocessor:
    """Fused TGC -> log compression -> bilinear scan conversion -> normalise -> int8 quantization.

    Parameters
    ----------
    out_h, out_w : the model's input size; the grid spans ``geometry.bounding_box_mm()``.
    scale, zero_point : the model input tensor's quantization parameters.
    dynamic_range_db : displayed dynamic range (16-bit envelope data and TGC scaling).
    mean, std : normalisation ``(display / 255 - mean) / std``.
    fill : display value in [0, 255] for pixels outside the sector.
    speckle_filter : 3x3 median on the output grid after interpolation (second pass over the
        int8 codes, an H x W scratch buffer; the median commutes with the monotone quantization).
    threads : OpenMP threads over output rows (1 = run on the calling thread only); linear probes
        always run on the calling thread (their separable path takes a few microseconds).

    One instance per processing thread: ``run`` reuses one scratch buffer and swaps the cached
    LUT on a geometry change, so concurrent calls on the same instance would race.
    """

    def __init__(self, out_h, out_w, *, scale, zero_point, dynamic_range_db=60.0, mean=0.0, std=1.0,
                 fill=0.0, speckle_filter=False, threads=1):
        self.out_h = _positive_int("out_h", out_h, _MAX_GRID)
        self.out_w = _positive_int("out_w", out_w, _MAX_GRID)
        self.scale = _finite("scale", scale, positive=True)
        if isinstance(zero_point, bool) or not isinstance(zero_point, numbers.Integral) or not -128 <= zero_point <= 127:
            raise ValueError(f"zero_point={zero_point!r}: pass the int8 input zero point, an integer in -128..127")
        self.zero_point = int(zero_point)
        self.dynamic_range_db = _finite("dynamic_range_db", dynamic_range_db, positive=True)
        self.mean = _finite("mean", mean, lo=-1e6, hi=1e6)
        self.std = _finite("std", std, positive=True)
        self.fill = _finite("fill", fill, lo=0.0, hi=255.0)
        self.speckle_filter = bool(speckle_filter)
        self.threads = _positive_int("threads", threads, 256)
        if (1.0 + abs(self.mean)) / (self.std * self.scale) + 128 > 2.0**21:
            raise ValueError(
                f"scale={scale!r} with std={std!r} maps one display level to more than 2**21 codes: "
                "pass the model input tensor's real quantization scale (about 1/255 for [0, 1] inputs)"
            )
        # Display value d maps to the code rint(d * a + b), saturated to int8 (the kernel's
        # rounding trick needs |d * a + b| < 2**22, guaranteed by the check above).
        self._a = np.float32(1.0 / (255.0 * self.std * self.scale))
        self._b = np.float32(-self.mean / (self.std * self.scale) + self.zero_point)
        self._fill_code = self.fill_code
        self._tables: dict[int, np.ndarray] = {}  # q -> 16-bit log table (depends on DR and q only)
        self._lut: ScanLUT | None = None
        self._fast_run = None  # the plan's C-checked entry point, when it has one
        self._gain: np.ndarray | None = None
        self._table = _NO_TABLE
        self._q = 1
        self._scratch = np.empty(self.out_h * self.out_w, np.int8) if self.speckle_filter else None
        h, w = self.out_h, self.out_w
        self._out_shapes = ((h, w), (1, h, w, 1), (1, h, w))
        self.lut_builds = 0  # how many times the LUT was (re)built: once per geometry change

    @property
    def fill_code(self) -> int:
        """int8 code written for outside-sector pixels (same float32 arithmetic as the kernel)."""
        x = np.float32(self.fill) * self._a + self._b
        return int(np.rint(np.clip(x, np.float32(-128), np.float32(127))))

    def lut_for(self, geometry: Geometry) -> ScanLUT:
        """The cached LUT for this geometry; rebuilt only when the geometry differs from the last."""
        if self._lut is None or self._lut.geometry != geometry:
            lut = build_scan_lut(geometry, self.out_h, self.out_w)
            gains = _sample_gains(geometry, self.dynamic_range_db)
            q = _table_unit(0.0 if gains is None else float(np.abs(gains).max(initial=0.0)))
            self._gain = None if gains is None else np.rint(gains * q).astype(np.int16)
            if geometry.bits == 16:
                if q not in self._tables:
                    self._tables[q] = _log_table(self.dynamic_range_db, q)
                self._table = self._tables[q]
            else:
                self._table = _NO_TABLE
            self._q = q
            self._lut = lut
            self._fast_run = None
            if geometry.separable:  # the kind says whether rows and columns interpolate apart
                self._plan = self._linear_plan(geometry, q)
                if not self.speckle_filter:
                    self._fast_run = self._plan.run_checked
            else:
                offsets, gpair = _kernel_lut(lut, geometry.n_samples, self._gain)
                self._plan = _preprocess.FusedPlan(
                    self._table, gpair, offsets, lut.wl, lut.ws, self.out_h, self.out_w,
                    geometry.n_samples, lut.line_step, q, self._a, self._b, self._fill_code, self.threads,
                )
            self.lut_builds += 1
        return self._lut

    def _linear_plan(self, geometry: Geometry, q: int):
        """Separable path: a linear probe's rows and columns interpolate independently
        (kernels/_linear.pyx); single-threaded, it takes a few microseconds."""
        ax = build_linear_axes(geometry, self.out_h, self.out_w)
        g0 = g1 = None
        if self._gain is not None:
            g0, g1 = self._gain[ax.k0], self._gain[ax.k0 + 1]
        if geometry.bits == 8 and g0 is None:
            q = 1  # the bytes themselves are the display values
        used = ax.col_in
        line0 = int(ax.i0[used].min()) if used.any() else 0
        n_used = int(ax.i1[used].max()) - line0 + 1 if used.any() else 0
        return _linear.LinearPlan(
            self._table, ax.k0, ax.ws, g0, g1, np.where(ax.row_in, 0, -1).astype(np.int32),
            ax.i0, ax.i1, ax.wl, ax.col_in.astype(np.uint8), line0, n_used, geometry.n_lines, geometry.n_samples, geometry.bits, q,
            self._a, self._b, self._fill_code,
        )

    def _check(self, samples, geometry, out) -> np.ndarray:
        if not isinstance(geometry, Geometry):
            raise TypeError(f"geometry is {type(geometry).__name__}: pass a firmware_py.geometry.Geometry")
        if not isinstance(samples, np.ndarray):
            raise TypeError(f"samples is {type(samples).__name__}: pass a numpy array (n_lines, n_samples)")
        want = _U8 if geometry.bits == 8 else _U16
        if samples.dtype != want:
            raise TypeError(f"samples dtype {samples.dtype} does not match bits={geometry.bits}: pass {want}")
        if samples.shape != (geometry.n_lines, geometry.n_samples):
            raise ValueError(
                f"samples shape {samples.shape} != geometry (n_lines, n_samples) = "
                f"({geometry.n_lines}, {geometry.n_samples}): pass the frame as (lines, samples)"
            )
        if not samples.flags.c_contiguous:
            raise ValueError("samples is not C-contiguous: pass np.ascontiguousarray(samples)")
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out is {type(out).__name__}: pass an int8 numpy array (e.g. the input tensor view)")
        if out.dtype != _I8:
            raise TypeError(f"out dtype {out.dtype}: pass an int8 buffer (the model's int8 input tensor)")
        h, w = self.out_h, self.out_w
        if out.shape not in self._out_shapes:
            raise ValueError(f"out shape {out.shape}: pass ({h}, {w}), (1, {h}, {w}) or (1, {h}, {w}, 1)")
        flags = out.flags
        if not flags.c_contiguous or not flags.writeable:
            raise ValueError("out must be a writeable C-contiguous int8 buffer: pass the tensor view itself")
        return out.reshape(-1)

    def run(self, samples: np.ndarray, geometry: Geometry, out: np.ndarray) -> np.ndarray:
        """Preprocess one frame into ``out`` (written in place, also returned)."""
        lut = self._lut
        # Linear plans check the arrays in C; on any doubt they return False and _check says why.
        if (self._fast_run is not None and (lut.geometry is geometry or lut.geometry == geometry)
                and self._fast_run(samples, out)):
            return out
        flat = self._check(samples, geometry, out)
        if lut is None or (lut.geometry is not geometry and lut.geometry != geometry):
            lut = self.lut_for(geometry)
        target = self._scratch if self.speckle_filter else flat
        self._plan.run(samples, target)
        if self.speckle_filter:
            _preprocess.median3x3_int8(target, lut.ws, self.out_h, self.out_w, self.fill_code, flat, self.threads)
        return out

    def __call__(self, samples, geometry):
        """Allocate and return a fresh (H, W) int8 image (tests, tools; the daemon uses run)."""
        out = np.empty((self.out_h, self.out_w), np.int8)
        return self.run(samples, geometry, out)
