"""Preprocessing and postprocessing kernels (installed as firmware_py.kernels).

Cython kernels (``_preprocess``, ``_postprocess``) behind validating wrappers, and their NumPy
reference twins in ``firmware_py.kernels.reference``. See docs/kernels.md.
"""
from firmware_py.kernels import reference
from firmware_py.kernels.postprocess import (
    dequantize,
    largest_component,
    mask_area_mm2,
    mask_from_output,
    softmax,
)
from firmware_py.kernels.preprocessor import Preprocessor
from firmware_py.kernels.scan_lut import ScanLUT, build_scan_lut

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
