"""Preprocessing and postprocessing kernels (installed as firmware_py.kernels).

Cython kernels (``_preprocess``, ``_postprocess``) behind validating wrappers, and their NumPy
reference twins in ``firmware_py.kernels.reference``. See docs/kernels.md.
"""
import os

# OpenMP workers (threads > 1) share the board's cores with the inference threads: spinning at
# the end of a parallel region steals their cycles, and on an oversubscribed machine a spinning
# barrier can wait a whole scheduler slice (measured: p90 16 ms instead of 0.2 ms here). Must be
# set before libgomp loads with the first kernel module; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from firmware_py.kernels import reference  # noqa: E402
from firmware_py.kernels.postprocess import (  # noqa: E402
    dequantize,
    largest_component,
    mask_area_mm2,
    mask_from_output,
    softmax,
)
from firmware_py.kernels.preprocessor import Preprocessor  # noqa: E402
from firmware_py.kernels.scan_lut import ScanLUT, build_scan_lut  # noqa: E402

__all__ = [
    "Preprocessor",
    "ScanLUT",
    "build_scan_lut",
    "dequantize",
    "largest_component",
    "mask_area_mm2",
    "mask_from_output",
    "reference",
    "softmax",
]
