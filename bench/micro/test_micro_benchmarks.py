"""pytest-benchmark micro-benchmarks: the preprocessing kernels, the frame parser, the decode step.

Not part of the test suite (pyproject's testpaths is tests/; this folder is no package, so it is
not installed either). Seeded inputs, one thread. Run them with the stored baseline:

    make bench-compare     # compare with bench/micro/baseline (pytest-benchmark's --benchmark-compare)
    make bench-baseline    # measure again and store the result as the new baseline
"""
from __future__ import annotations

import numpy as np
import pytest

from firmware_py.drivers import protocol as P
from firmware_py.drivers.buffers import BufferPool
from firmware_py.drivers.parser import FrameParser
from firmware_py.drivers.phantom import make_geometry
from firmware_py.inference.decode import Decoder, InferenceOutput
from firmware_py.inference.manifest import load_manifest
from firmware_py.kernels import Preprocessor

FRAMES = {"linear-256x512-u8": ("linear", 256, 512, 8), "convex-128x512-u16": ("convex", 128, 512, 16)}


def frame(key: str):
    kind, lines, samples, bits = FRAMES[key]
    hi, dtype = (256, np.uint8) if bits == 8 else (65536, np.uint16)
    data = np.random.default_rng(0).integers(0, hi, (lines, samples)).astype(dtype)
    return make_geometry(kind, lines, samples, bits), data


@pytest.fixture(scope="module")
def manifest():
    from importlib.resources import files

    return load_manifest(str(files("firmware_py.models") / "manifest.yaml"))


@pytest.mark.parametrize("grid", [64, 128])
@pytest.mark.parametrize("key", sorted(FRAMES))
def test_fused_preprocess(benchmark, key, grid):
    g, data = frame(key)
    pp = Preprocessor(grid, grid, scale=1 / 255, zero_point=-128, dynamic_range_db=60.0, threads=1)
    out = np.empty((grid, grid), np.int8)
    pp.run(data, g, out)  # the lookup table is built once per geometry, as on the device
    benchmark(pp.run, data, g, out)


@pytest.mark.parametrize("key", sorted(FRAMES))
def test_frame_parser(benchmark, key):
    """16 frames through get_buffer()/buffer_updated() in 64 KiB reads, every frame released."""
    g, data = frame(key)
    msgs = [P.encode_frame(i, i * 33_000, g, data) for i in range(16)]
    stream, flen = memoryview(b"".join(msgs)), len(msgs[0])
    parser = FrameParser(BufferPool(count=4, size=flen), version=(1, 1), max_payload=1 << 22)

    def parse():
        pos, n = 0, len(stream)
        while pos < n:
            buf = parser.get_buffer()
            k = min(len(buf), 65536, n - pos)
            buf[:k] = stream[pos:pos + k]
            pos += k
            for f in parser.buffer_updated(k):
                f.release()

    benchmark(parse)
    assert not any(parser.frames_rejected.values())


@pytest.mark.parametrize("tier", ["busi-cls-fire-r64", "ddti-seg-ds-r64"])
def test_decode(benchmark, manifest, tier):
    t = manifest.tier(tier)
    shape = (1, 3) if t.task == "classify" else (1, 64, 64, 1)
    q = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    dec = Decoder(t.task, t.output, t.output.quantization.scale, t.output.quantization.zero_point, shape)
    out = InferenceOutput(tier=tier, task=t.task, backend="cpu", latency_ms=0.0)
    benchmark(dec.decode, q, out)
