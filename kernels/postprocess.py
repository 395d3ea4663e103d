"""Postprocessing of int8 model outputs: dequantize, softmax, segmentation mask, area in mm^2.

Validating wrappers over ``_postprocess`` (Cython); ``reference`` holds the NumPy twins.
"""
from __future__ import annotations

import numbers

import numpy as np

from firmware_py.geometry import Geometry
try:
    from firmware_py.kernels import _postprocess
except ImportError as exc:  # a source checkout without the compiled extension
    raise ImportError(
        f"firmware_py.kernels._postprocess is not compiled ({exc}): run "
        "`python setup.py build_ext --inplace` (or `pip install -e .`) in the repository"
    ) from exc


def _quant_params(scale, zero_point) -> tuple[float, int]:
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale={scale!r}: pass the output tensor's quantization scale (a number)") from None
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"scale={scale!r}: pass the output tensor's scale, a finite number > 0")
    if isinstance(zero_point, bool) or not isinstance(zero_point, numbers.Integral):
        raise TypeError(f"zero_point={zero_point!r}: pass the output tensor's integer zero point")
    if not -(2**31) < zero_point < 2**31:
        raise ValueError(f"zero_point={zero_point!r}: pass the output tensor's zero point (an int8/uint8 code)")
    return s, int(zero_point)


def dequantize(q, scale, zero_point) -> np.ndarray:
    """``(q - zero_point) * scale`` as float32, same shape as ``q`` (int8 or uint8 codes)."""
    if not isinstance(q, np.ndarray) or q.dtype not in (np.int8, np.uint8):
        got = q.dtype if isinstance(q, np.ndarray) else type(q).__name__
        raise TypeError(f"dequantize got {got}: pass the int8 (or uint8) output tensor as a numpy array")
    s, zp = _quant_params(scale, zero_point)
    flat = np.ascontiguousarray(q).reshape(-1)
    out = np.empty(flat.shape, np.float32)
    _postprocess.dequantize(flat, s, zp, out)
    return out.reshape(q.shape)


def softmax(x, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (float32 in, float32 out)."""
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 0 or a.size == 0:
        raise ValueError(f"softmax got shape {a.shape}: pass at least one logit")
    if not np.all(np.isfinite(a)):
        raise ValueError("softmax got NaN or infinite logits: dequantize a valid model output first")
    moved = np.ascontiguousarray(np.moveaxis(a, axis, -1))
    rows = moved.reshape(-1, moved.shape[-1])
    out = np.empty_like(rows)
    _postprocess.softmax_rows(rows, out)
    return np.moveaxis(out.reshape(moved.shape), -1, axis)


def mask_from_output(output, *, scale, zero_point, threshold: float = 0.5) -> np.ndarray:
    """Segmentation output -> bool mask (H, W).

    Accepts ``(1, H, W, C)``, ``(H, W, C)``, ``(1, H, W)`` or ``(H, W)`` int8 codes. One channel:
    foreground where the dequantized probability >= ``threshold`` (decided per code through a
    256-entry table, so it matches the float definition exactly). Several channels: class 0 is
    background, foreground where the argmax is another class (argmax of the codes equals the
    argmax of the dequantized scores because the scale is positive).
    """
    if not isinstance(output, np.ndarray) or output.dtype != np.int8:
        got = output.dtype if isinstance(output, np.ndarray) else type(output).__name__
        raise TypeError(f"mask_from_output got {got}: pass the model's int8 output tensor")
    s, zp = _quant_params(scale, zero_point)
    a = output
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"output shape {output.shape}: pass one image (batch 1)")
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    elif a.ndim == 3 and a.shape[0] == 1 and output.ndim == 3:
        a = a[0]  # (1, H, W): one-channel map with a batch axis
    if a.ndim == 2:
        codes = np.arange(-128, 128, dtype=np.int8)
        table = dequantize(codes, s, zp) >= np.float32(threshold)
        return table[a.astype(np.int16) + 128]
    if a.ndim == 3:
        if a.shape[-1] < 2:
            raise ValueError(f"output shape {output.shape}: pass (H, W, classes) with >= 2 classes")
        return np.argmax(a, axis=-1) != 0
    raise ValueError(f"output shape {output.shape}: pass (1, H, W, C), (H, W, C) or (H, W)")


def largest_component(mask) -> np.ndarray:
    """The largest 4-connected foreground component of a 2-D mask (bool array, same shape)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask shape {m.shape}: pass a 2-D (H, W) mask")
    if m.dtype != bool and not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"mask dtype {m.dtype}: pass a bool or integer 0/1 mask")
    src = np.ascontiguousarray(m != 0, dtype=np.uint8)
    out = np.empty_like(src)
    _postprocess.largest_component(src, out)
    return out.view(bool)


def mask_area_mm2(mask, geometry: Geometry) -> float:
    """Area in mm^2 of the mask's pixels on the output grid spanning the geometry's bounding box."""
    if not isinstance(geometry, Geometry):
        raise TypeError(f"geometry is {type(geometry).__name__}: pass the frame's firmware_py.geometry.Geometry")
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask shape {m.shape}: pass the 2-D (H, W) mask on the model's output grid")
    dz, dx = geometry.pixel_size_mm(m.shape[0], m.shape[1])
    return float(np.count_nonzero(m)) * dz * dx
