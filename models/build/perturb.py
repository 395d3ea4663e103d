"""Image perturbations a probe produces, on stored uint8 B-mode images (NumPy + PIL, TensorFlow-free).

Shared by `models robustness` (the fixed suite below) and the training augmentation (the sector
masks). Every region the scanner does not image is set to the daemon's fill value (the tier's
manifest `preprocess.fill`, a display value), exactly what the Preprocessor writes outside a
convex or phased sector; the shapes come from the daemon's own scan geometry
(firmware_py.geometry, kernels.reference.source_coordinates), not from a drawing of ours.
"""
from __future__ import annotations

import numpy as np

DEVICE_FILL = 0        # display value outside the sector: the manifest's preprocess.fill (manifest.py)
# The suite's convex sector: the daemon's typical convex probe (60 degrees, R 50 mm, 150 mm deep).
CONVEX = dict(kind="convex", width=60.0, radius_mm=50.0, start_depth_mm=0.0, end_depth_mm=150.0)
SPECKLE_SIGMA = 0.15   # multiplicative speckle: x * (1 + 0.15 N(0, 1)), per pixel
BLUR_SIGMA = 1.5       # Gaussian blur, px of the stored image
ROTATE_DEG = 10.0


def sector_mask(h: int, w: int, kind: str = "convex", width: float = 60.0, radius_mm: float = 50.0,
                start_depth_mm: float = 0.0, end_depth_mm: float = 150.0) -> np.ndarray:
    """(h, w) bool: the pixels a convex/phased probe images when its bounding box spans the grid,
    from the daemon's scan geometry (what the Preprocessor does not fill)."""
    from firmware_py.geometry import Geometry, ProbeKind
    from firmware_py.kernels import reference

    g = Geometry(ProbeKind[kind.upper()], n_lines=64, n_samples=256, bits=8, start_depth_mm=start_depth_mm,
                 end_depth_mm=end_depth_mm, width=width, radius_mm=radius_mm)
    return reference.source_coordinates(g, h, w)[2]


def sector_bank(h: int, w: int, n: int = 24, seed: int = 0) -> np.ndarray:
    """(n, h, w) float32 0/1 masks of plausible convex (half) and phased (half) sectors: convex
    40-75 deg, R 30-60 mm, 60-160 mm deep, first sample 0-10 mm; phased 60-90 deg, 80-160 mm."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w), np.float32)
    for k in range(n):
        if k % 2 == 0:
            m = sector_mask(h, w, "convex", rng.uniform(40, 75), rng.uniform(30, 60), rng.uniform(0, 10),
                            rng.uniform(60, 160))
        else:
            m = sector_mask(h, w, "phased", rng.uniform(60, 90), 0.0, 0.0, rng.uniform(80, 160))
        out[k] = m
    return out


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gain(img: np.ndarray, factor: float) -> np.ndarray:
    return _u8(img.astype(np.float32) * factor)


def speckle(img: np.ndarray, rng, sigma: float = SPECKLE_SIGMA) -> np.ndarray:
    x = img.astype(np.float32)
    return _u8(x * (1.0 + sigma * rng.standard_normal(x.shape)))


def gaussian_blur(img: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Separable Gaussian (radius 3 sigma), edges replicated."""
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    x = np.pad(img.astype(np.float32), r, mode="edge")
    x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, x)
    x = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, x)
    return _u8(x)


def rotate(img: np.ndarray, degrees: float, fill: float) -> np.ndarray:
    """Bilinear rotation about the centre; the corners it uncovers hold `fill` (a rotated probe)."""
    from PIL import Image

    return np.asarray(Image.fromarray(img).rotate(degrees, resample=Image.BILINEAR,
                                                  fillcolor=int(round(fill))), np.uint8)


def sector(img: np.ndarray, fill: float, **geometry) -> np.ndarray:
    m = sector_mask(*img.shape, **(geometry or CONVEX))
    return np.where(m, img, np.uint8(int(round(fill)))).astype(np.uint8)


def suite(fill: float) -> dict:
    """{name: f(img, rng) -> img}: the robustness suite of issue 16."""
    return {
        "gain_x0.7": lambda im, rng: gain(im, 0.7),
        "gain_x1.4": lambda im, rng: gain(im, 1.4),
        f"speckle_{SPECKLE_SIGMA}": lambda im, rng: speckle(im, rng),
        f"blur_sigma{BLUR_SIGMA}": lambda im, rng: gaussian_blur(im),
        f"rotate_+{ROTATE_DEG:g}deg_fill": lambda im, rng: rotate(im, ROTATE_DEG, fill),
        f"rotate_-{ROTATE_DEG:g}deg_fill": lambda im, rng: rotate(im, -ROTATE_DEG, fill),
        "convex_sector_fill": lambda im, rng: sector(im, fill),
    }
