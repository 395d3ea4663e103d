"""`firmware-py bench kernels --json PATH`: fused preprocessing vs the OpenCV and NumPy chains.

Method. One process, one thread everywhere (``cv2.setNumThreads(1)``, ``Preprocessor(threads=1)``),
the same seeded frame for all three implementations, each writing into a preallocated int8
buffer of the model's input size. Every implementation's output is first checked against
``kernels.reference.preprocess``: ours and NumPy within 1 LSB; OpenCV's remap interpolates at
1/32 of a cell on uint8 display values and misses by a few LSB on speckle (recorded per case as
``max_err_lsb``; it is the baseline's error, not a tolerance we accept for ours). Timing: rounds in which the three run in turn
(so machine noise hits all of them alike), each round timing a batch of calls; the figure is the
median over rounds of the per-call time, and each speedup is the median over rounds of the
per-round ratio (so a load change on this shared machine hits both sides of a ratio alike). The memory-bandwidth bound of a case is (frame bytes + output bytes) / copy bandwidth,
with the copy bandwidth measured in the same run (``np.copyto`` of 64 MiB, read + write bytes).

OpenCV chain (what a competent engineer writes, all tables and maps built once per geometry):

* 16-bit envelope: OpenCV has no 16-bit LUT, so NumPy ``np.take`` through a 65536-entry float32
  log-compression table, ``+=`` the per-depth TGC row, then ``cv2.convertScaleAbs`` after
  ``np.maximum(., 0)`` (rounding + saturation to uint8 display values in one OpenCV call);
* scan conversion: ``cv2.remap`` INTER_LINEAR, BORDER_CONSTANT(fill) with fixed-point
  ``CV_16SC2`` maps from ``cv2.convertMaps`` (outside-sector pixels mapped off the image);
  for a linear probe also ``cv2.resize`` INTER_LINEAR of the transposed frame (linear scan
  conversion is a resize) — the faster of the two is the baseline;
* normalise + quantize: ``cv2.LUT`` with a 256-entry display -> int8 code table, written
  straight into the int8 output viewed as uint8.

NumPy chain (``numpy_s``): the same precomputed table/indices/weights (float32), per frame
``np.take`` + TGC + clip, four fancy-index gathers, bilinear blend, normalise, ``np.rint``, clip,
``astype``. Also recorded: ``numpy_reference_s``, the float64 reference twin that recomputes the
geometry every frame (what a first NumPy version looks like), and per-call median and minimum
with ``threads=2`` (OpenMP; only meaningful on otherwise idle cores).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

from firmware_py.geometry import Geometry, ProbeKind
from firmware_py.kernels import Preprocessor, reference
from firmware_py.kernels.scan_lut import build_scan_lut

SCALE, ZERO_POINT, DR = 1 / 255, -128, 60.0

CASES = {
    "convex_256x1024_u16_tgc_to_224x224": (
        Geometry(ProbeKind.CONVEX, 256, 1024, 16, 0.0, 120.0, 60.0, 49.6, (0.0, 6.0, 14.0, 22.0)), 224, 224),
    "linear_128x512_u8_to_96x96": (Geometry(ProbeKind.LINEAR, 128, 512, 8, 2.0, 40.0, 38.0), 96, 96),
    "phased_128x1024_u16_to_128x128": (Geometry(ProbeKind.PHASED, 128, 1024, 16, 0.0, 140.0, 90.0), 128, 128),
}


def make_frame(g: Geometry, seed: int = 0) -> np.ndarray:
    """Speckle-like frame: Rayleigh envelope with depth attenuation (16-bit) or its log image."""
    rng = np.random.default_rng(seed)
    att = np.exp(-np.linspace(0, 4.0, g.n_samples))[None, :]
    env = rng.rayleigh(1.0, (g.n_lines, g.n_samples)) * att
    env16 = np.clip(env / env.max() * 65535 * 4, 0, 65535)
    if g.bits == 16:
        return np.ascontiguousarray(env16.astype(np.uint16))
    return np.ascontiguousarray(reference.display_values(env16.astype(np.uint16), Geometry(
        g.kind, g.n_lines, g.n_samples, 16, g.start_depth_mm, g.end_depth_mm, g.width, g.radius_mm), DR).astype(np.uint8))


def _codes_table() -> np.ndarray:
    """display 0..255 -> int8 code, as uint8 bytes for cv2.LUT."""
    return reference.quantize(np.arange(256.0), SCALE, ZERO_POINT).view(np.uint8)


def _source_positions(g: Geometry, h: int, w: int):
    """Clamped 0-based (line, sample) positions, and the inside mask (the contract's convention)."""
    u, v, inside = reference.source_coordinates(g, h, w)
    pu = np.clip(u - 0.5, 0, g.n_lines - 1)
    pv = np.clip(v - 0.5, 0, g.n_samples - 1)
    return pu, pv, inside


class OpenCVChain:
    def __init__(self, cv2, g: Geometry, h: int, w: int):
        self.cv2, self.g = cv2, g
        pu, pv, inside = _source_positions(g, h, w)
        mapx = np.where(inside, pv, -10.0).astype(np.float32)  # remap x = column = sample
        mapy = np.where(inside, pu, -10.0).astype(np.float32)
        self.map1, self.map2 = cv2.convertMaps(mapx, mapy, cv2.CV_16SC2)
        self.codes = _codes_table()
        self.log_table = (255.0 * (reference.log_compress_db(np.arange(65536)) + DR) / DR).astype(np.float32)
        self.gain = (reference.tgc_db_per_sample(g) * 255.0 / DR).astype(np.float32)[None, :]
        self.has_gain = bool(np.any(self.gain))
        self.size, self.resize = (w, h), g.kind == ProbeKind.LINEAR
        self.display = np.empty((g.n_lines, g.n_samples), np.float32)
        self.use_resize = False

    def _display8(self, samples):
        if self.g.bits == 8 and not self.has_gain:
            return samples
        if self.g.bits == 8:
            d = samples.astype(np.float32)
        else:
            d = np.take(self.log_table, samples, out=self.display)
        if self.has_gain:
            d += self.gain
        np.maximum(d, 0, out=d)
        return self.cv2.convertScaleAbs(d)

    def run_remap(self, samples, out):
        cv2 = self.cv2
        img = cv2.remap(self._display8(samples), self.map1, self.map2, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cv2.LUT(img, self.codes, dst=out.reshape(img.shape).view(np.uint8))

    def run_resize(self, samples, out):
        cv2 = self.cv2
        img = cv2.resize(self._display8(samples), (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
        cv2.LUT(np.ascontiguousarray(img.T), self.codes, dst=out.reshape(img.shape[::-1]).view(np.uint8))

    def run(self, samples, out):
        (self.run_resize if self.use_resize else self.run_remap)(samples, out)


class NumpyChain:
    def __init__(self, g: Geometry, h: int, w: int):
        pu, pv, inside = _source_positions(g, h, w)
        i0 = np.minimum(np.floor(pu), max(g.n_lines - 2, 0)).astype(np.intp)
        k0 = np.minimum(np.floor(pv), g.n_samples - 2).astype(np.intp)
        self.tl = (pu - i0).astype(np.float32)
        self.ts = (pv - k0).astype(np.float32)
        step = g.n_samples if g.n_lines > 1 else 0
        self.j00 = np.where(inside, i0 * g.n_samples + k0, 0)
        self.j10 = self.j00 + step
        self.inside = inside
        if g.bits == 16:
            self.table = (255.0 * (reference.log_compress_db(np.arange(65536)) + DR) / DR).astype(np.float32)
        else:
            self.table = np.arange(256, dtype=np.float32)
        self.gain = (reference.tgc_db_per_sample(g) * 255.0 / DR).astype(np.float32)[None, :]
        self.a, self.b = np.float32(1 / (255 * SCALE)), np.float32(ZERO_POINT)

    def run(self, samples, out):
        d = np.clip(np.take(self.table, samples) + self.gain, 0, 255).ravel()
        top = d[self.j00] * (1 - self.ts) + d[self.j00 + 1] * self.ts
        bottom = d[self.j10] * (1 - self.ts) + d[self.j10 + 1] * self.ts
        val = np.where(self.inside, top + self.tl * (bottom - top), 0)
        q = np.clip(np.rint(val * self.a + self.b), -128, 127)
        out[...] = q.astype(np.int8).reshape(out.shape)


def copy_bandwidth_bytes_per_s(nbytes: int = 64 << 20, repeats: int = 5) -> float:
    src = np.ones(nbytes, np.uint8)
    dst = np.empty_like(src)
    best = min(_time(lambda: np.copyto(dst, src), 1) for _ in range(repeats))
    return 2 * nbytes / best


def _time(fn, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def _interleaved(fns: dict, rounds: int, target_s: float = 0.01) -> dict:
    """Per-call seconds of each function in every round (rounds run the functions in turn)."""
    batch = {k: max(1, int(target_s / max(_time(f, 3), 1e-7))) for k, f in fns.items()}
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            samples[k].append(_time(f, batch[k]))
    return samples


def _ratio(num: list, den: list) -> float:
    """Median over rounds of the per-round ratio: load changes hit both sides of a round alike."""
    return statistics.median(a / b for a, b in zip(num, den))


def run_case(name: str, cv2, rounds: int) -> dict:
    g, h, w = CASES[name]
    frame = make_frame(g)
    ref = reference.preprocess(frame, g, h, w, scale=SCALE, zero_point=ZERO_POINT, dynamic_range_db=DR)
    outs = {k: np.empty((1, h, w, 1), np.int8) for k in ("ours", "opencv", "opencv_resize", "numpy")}
    pp = Preprocessor(h, w, scale=SCALE, zero_point=ZERO_POINT, dynamic_range_db=DR, threads=1)
    ocv, npc = OpenCVChain(cv2, g, h, w), NumpyChain(g, h, w)
    fns = {
        "ours": lambda: pp.run(frame, g, outs["ours"]),
        "opencv": lambda: ocv.run_remap(frame, outs["opencv"]),
        "numpy": lambda: npc.run(frame, outs["numpy"]),
    }
    if ocv.resize:
        fns["opencv_resize"] = lambda: ocv.run_resize(frame, outs["opencv_resize"])
    errors = {}
    for k, f in fns.items():  # correctness first: a fast wrong answer is not a result
        f()
        errors[k] = int(np.abs(outs[k][0, :, :, 0].astype(np.int16) - ref).max())
        # cv2.remap/resize interpolate at 1/32 (remap) or 1/2048 (resize) of a cell on uint8 display
        # values, so they miss the contract by a few LSB on speckle; more than 8 would be a bug here.
        limit = 1 if k in ("ours", "numpy") else 8
        if errors[k] > limit:
            raise AssertionError(f"{name}: {k} differs from the reference by {errors[k]} LSB (> {limit})")
    per_round = _interleaved(fns, rounds)
    if "opencv_resize" in per_round:  # the baseline is the faster OpenCV chain, round by round
        per_round["opencv_best"] = [min(a, b) for a, b in zip(per_round["opencv"], per_round["opencv_resize"])]
    else:
        per_round["opencv_best"] = per_round["opencv"]
    t = {k: statistics.median(v) for k, v in per_round.items()}
    opencv_s = t["opencv_best"]
    kernel_only = _kernel_only(pp, frame, g, outs["ours"])
    kw = dict(scale=SCALE, zero_point=ZERO_POINT, dynamic_range_db=DR)
    naive_rounds = _interleaved({"ref": lambda: reference.preprocess(frame, g, h, w, **kw),
                                 "ours": fns["ours"]}, 3, target_s=0.05)
    naive = statistics.median(naive_rounds["ref"])
    pp2 = Preprocessor(h, w, threads=2, **kw)
    two = [_time(lambda: pp2.run(frame, g, outs["ours"]), 1) for _ in range(300)]
    frame_bytes, out_bytes = frame.nbytes, h * w
    return {
        "case": name,
        "ours_s": t["ours"],
        "ours_kernel_only_s": kernel_only,
        "opencv_s": opencv_s,
        "opencv_chain": "resize" if t.get("opencv_resize", np.inf) < t["opencv"] else "remap",
        "opencv_remap_s": t["opencv"],
        "numpy_s": t["numpy"],
        "speedup_vs_opencv": _ratio(per_round["opencv_best"], per_round["ours"]),
        "speedup_vs_numpy": _ratio(per_round["numpy"], per_round["ours"]),
        "ns_per_output_pixel": t["ours"] * 1e9 / (h * w),
        "numpy_reference_s": naive,
        "speedup_vs_numpy_reference": _ratio(naive_rounds["ref"], naive_rounds["ours"]),
        "ours_2_threads_median_s": statistics.median(two),
        "ours_2_threads_min_s": min(two),
        "max_err_lsb": errors,
        "bytes_touched": frame_bytes + out_bytes,
        "lut_bytes": pp.lut_for(g).nbytes,
    }


def _kernel_only(pp: Preprocessor, frame, g, out) -> float:
    """The Cython plan alone, without the wrapper's validation (the wrapper's cost is the rest)."""
    pp.lut_for(g)
    flat = out.reshape(-1)
    return statistics.median(_time(lambda: pp._plan.run(frame, flat), 200) for _ in range(7))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firmware-py bench kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="write the records here (default: stdout only)")
    parser.add_argument("--rounds", type=int, default=31, help="interleaved timing rounds (default 31)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only this case (repeatable)")
    args = parser.parse_args(argv)
    try:
        import cv2
    except ImportError:
        print("bench kernels needs OpenCV for its baseline: install the bench extra, "
              "pip install -e '.[bench]' (make bench does; never a runtime dependency)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    bandwidth = copy_bandwidth_bytes_per_s()
    records = []
    for name in args.case or list(CASES):
        rec = run_case(name, cv2, args.rounds)
        rec["copy_bandwidth_GBps"] = bandwidth / 1e9
        rec["bandwidth_bound_s"] = rec["bytes_touched"] / bandwidth
        rec["times_bandwidth_bound"] = rec["ours_s"] / rec["bandwidth_bound_s"]
        rec["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        records.append(rec)
        print(f"{name}: ours {rec['ours_s'] * 1e6:.1f} us (kernel {rec['ours_kernel_only_s'] * 1e6:.1f}), "
              f"opencv[{rec['opencv_chain']}] {rec['opencv_s'] * 1e6:.1f} us, numpy {rec['numpy_s'] * 1e6:.1f} us "
              f"-> x{rec['speedup_vs_opencv']:.2f} vs OpenCV, x{rec['speedup_vs_numpy']:.1f} vs NumPy, "
              f"{rec['ns_per_output_pixel']:.2f} ns/px, {rec['times_bandwidth_bound']:.1f}x the bandwidth bound")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
