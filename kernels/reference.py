"""Plain NumPy twins of every kernel: the executable definition of the preprocessing contract.

docs/architecture.md ("Preprocessing contract") states the math in words; these functions state
it in float64 NumPy, slowly and obviously. The Cython kernels must agree with them within one
int8 LSB; the trained models rely on exactly this mapping. Nothing here is tuned for speed.
"""
from __future__ import annotations

import math

import numpy as np

from firmware_py.geometry import Geometry

__all__ = [
    "tgc_db_per_sample",
    "log_compress_db",
    "display_values",
    "source_coordinates",
    "scan_convert",
    "median3x3",
    "quantize",
    "preprocess",
    "dequantize",
    "softmax",
    "mask_from_output",
    "largest_component",
    "mask_area_mm2",
]


def tgc_db_per_sample(geometry: Geometry) -> np.ndarray:
    """Gain in dB of every depth sample: the curve's points sit evenly from start to end depth."""
    n = geometry.n_samples
    if not geometry.tgc_db:
        return np.zeros(n)
    s, e = geometry.start_depth_mm, geometry.end_depth_mm
    depth = s + (np.arange(n) + 0.5) * (e - s) / n
    gains = np.asarray(geometry.tgc_db, dtype=np.float64)
    if gains.size == 1:
        return np.full(n, gains[0])
    return np.interp(depth, np.linspace(s, e, gains.size), gains)


def log_compress_db(amplitude: np.ndarray) -> np.ndarray:
    """20 log10(max(a, 1) / 65535): dB below full scale of a 16-bit envelope amplitude."""
    a = np.maximum(np.asarray(amplitude, dtype=np.float64), 1.0)
    return 20.0 * np.log10(a / 65535.0)


def display_values(samples: np.ndarray, geometry: Geometry, dynamic_range_db: float = 60.0) -> np.ndarray:
    """Display value in [0, 255] of every source cell (TGC, then log compression or pass-through)."""
    dr = float(dynamic_range_db)
    gain = tgc_db_per_sample(geometry)[None, :]
    if geometry.bits == 16:
        return 255.0 * np.clip((log_compress_db(samples) + gain + dr) / dr, 0.0, 1.0)
    return np.clip(samples.astype(np.float64) + gain * 255.0 / dr, 0.0, 255.0)


def source_coordinates(geometry: Geometry, out_h: int, out_w: int):
    """Fractional (line, sample) position of every output pixel centre, in cell units.

    Returns ``(u, v, inside)``: ``u`` along the lines and ``v`` along depth, both measured from the
    first cell's outer edge (so cell ``i`` spans ``[i, i + 1)`` and its centre is ``i + 0.5``), and
    ``inside`` (bool) telling whether the pixel lies in the imaged sector and depth range.
    """
    x0, x1, z0, z1 = geometry.bounding_box_mm()
    x = x0 + (np.arange(out_w) + 0.5) * (x1 - x0) / out_w
    z = z0 + (np.arange(out_h) + 0.5) * (z1 - z0) / out_h
    xx, zz = np.meshgrid(x, z)
    s, e = geometry.start_depth_mm, geometry.end_depth_mm
    lateral, depth = geometry.inverse_mm(xx, zz)
    u = (lateral + geometry.width / 2.0) / geometry.width * geometry.n_lines
    v = (depth - s) / (e - s) * geometry.n_samples
    inside = (u >= 0) & (u <= geometry.n_lines) & (v >= 0) & (v <= geometry.n_samples)
    return u, v, inside


def _neighbours(pos: np.ndarray, n: int):
    """Lower neighbour index and weight of the upper one; clamped to the edge cells."""
    p = np.clip(pos - 0.5, 0.0, n - 1.0)
    if n == 1:
        return np.zeros(p.shape, dtype=np.int64), np.zeros(p.shape)
    i0 = np.minimum(np.floor(p).astype(np.int64), n - 2)
    return i0, p - i0


def scan_convert(display: np.ndarray, geometry: Geometry, out_h: int, out_w: int, fill: float = 0.0):
    """Bilinear scan conversion of per-cell display values onto the output grid (float64)."""
    u, v, inside = source_coordinates(geometry, out_h, out_w)
    i0, ti = _neighbours(u, geometry.n_lines)
    k0, tk = _neighbours(v, geometry.n_samples)
    i1 = np.minimum(i0 + 1, geometry.n_lines - 1)
    k1 = k0 + 1
    d = np.asarray(display, dtype=np.float64)
    top = d[i0, k0] * (1 - tk) + d[i0, k1] * tk
    bottom = d[i1, k0] * (1 - tk) + d[i1, k1] * tk
    out = top * (1 - ti) + bottom * ti
    return np.where(inside, out, float(fill))


def median3x3(image: np.ndarray) -> np.ndarray:
    """3x3 median with the border replicated (edge pixels see copies of themselves)."""
    p = np.pad(image, 1, mode="edge")
    h, w = image.shape
    stack = np.stack([p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    return np.median(stack, axis=0)


def quantize(display: np.ndarray, scale: float, zero_point: int, mean: float = 0.0, std: float = 1.0):
    """Normalise display values to ``(d / 255 - mean) / std`` and quantize to int8 (half to even)."""
    x = (np.asarray(display, dtype=np.float64) / 255.0 - mean) / std
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def preprocess(
    samples: np.ndarray,
    geometry: Geometry,
    out_h: int,
    out_w: int,
    *,
    scale: float,
    zero_point: int,
    dynamic_range_db: float = 60.0,
    mean: float = 0.0,
    std: float = 1.0,
    fill: float = 0.0,
    speckle_filter: bool = False,
) -> np.ndarray:
    """Frame samples -> the model's int8 input (out_h, out_w): the whole contract in one call.

    The speckle filter is a 3x3 median over the interpolated output grid (outside-sector pixels
    included as their fill value), after which outside-sector pixels are set back to the fill.
    The median commutes with the monotone quantization, so the fast kernel may filter either
    the display values or the int8 codes and get the same answer.
    """
    display = display_values(samples, geometry, dynamic_range_db)
    image = scan_convert(display, geometry, out_h, out_w, fill)
    if speckle_filter:
        _, _, inside = source_coordinates(geometry, out_h, out_w)
        image = np.where(inside, median3x3(image), float(fill))
    return quantize(image, scale, zero_point, mean, std)


# ---- postprocessing -------------------------------------------------------------------------


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """``(q - zero_point) * scale`` in float64 from int64, returned as float32."""
    return ((np.asarray(q).astype(np.int64) - int(zero_point)) * float(scale)).astype(np.float32)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def mask_from_output(output: np.ndarray, *, scale: float, zero_point: int, threshold: float = 0.5):
    """Segmentation output -> bool mask (H, W).

    One channel (``(1,H,W,1)``, ``(H,W,1)`` or ``(H,W)``): foreground where the dequantized value
    is >= ``threshold``. Several channels (last axis, class 0 = background): foreground where the
    argmax over classes is not 0 (argmax of int8 codes equals argmax of their dequantized values).
    """
    a = np.asarray(output)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[0] == 1 and np.ndim(output) == 3:
        a = a[0]
    if a.ndim == 2:
        return dequantize(a, scale, zero_point) >= np.float32(threshold)
    return np.argmax(a, axis=-1) != 0


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 4-connected foreground component (ties: the one met first in raster order)."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    labels = np.where(m, np.arange(h * w).reshape(h, w) + 1, 0)
    big = h * w + 1
    while True:  # propagate the minimum label until nothing changes (slow but obvious)
        lab = np.where(m, labels, big)
        p = np.pad(lab, 1, constant_values=big)
        nb = np.minimum.reduce([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        new = np.where(m, nb, 0)
        if np.array_equal(new, labels):
            break
        labels = new
    if not m.any():
        return np.zeros_like(m)
    ids, counts = np.unique(labels[m], return_counts=True)
    best = ids[counts == counts.max()].min()  # smallest label = first met in raster order
    return labels == best


def mask_area_mm2(mask: np.ndarray, geometry: Geometry) -> float:
    """Area covered by the mask's pixels when the output grid spans the geometry's bounding box."""
    m = np.asarray(mask, dtype=bool)
    dz, dx = geometry.pixel_size_mm(m.shape[0], m.shape[1])
    return float(np.count_nonzero(m)) * dz * dx
