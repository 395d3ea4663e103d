"""A quick check that the compiled kernels agree with their NumPy twins on this machine.

Used by `firmware-py selftest` and by the daemon's start-up selftest: a wheel built for the
wrong CPU, or a vectoriser bug on a new compiler, shows here before any frame is trusted.
"""
from __future__ import annotations

import numpy as np


def check_kernels(threads: int = 1) -> str:
    """One line on success; AssertionError naming the difference otherwise."""
    from firmware_py.drivers.phantom import SpecklePhantom, make_geometry
    from firmware_py.kernels import Preprocessor, reference

    g = make_geometry("convex", 128, 512, bits=16)
    samples, _ = SpecklePhantom(g).frame(np.random.default_rng(0))
    out = np.empty((96, 96), np.int8)
    Preprocessor(96, 96, scale=1 / 255, zero_point=-128, threads=threads).run(samples, g, out)
    ref = reference.preprocess(samples, g, 96, 96, scale=1 / 255, zero_point=-128)
    worst = int(np.abs(out.astype(np.int16) - ref.astype(np.int16)).max())
    if worst > 1:
        raise AssertionError(f"Cython kernel differs from the NumPy reference by {worst} LSB (limit 1)")
    return f"fused convex preprocessing agrees with the NumPy reference (max {worst} LSB)"
