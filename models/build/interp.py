"""Run and time int8 .tflite files with the same interpreter the daemon uses (TensorFlow-free)."""
from __future__ import annotations

import gzip
import time

import numpy as np

from firmware_py.inference.backend import NoInterpreterError, interpreter_backend


def interpreter_class():
    """The daemon's interpreter package (firmware_py.inference.backend), or TensorFlow's own in a
    build environment that has only TensorFlow."""
    try:
        return interpreter_backend().Interpreter
    except NoInterpreterError:
        from tensorflow.lite import Interpreter
        return Interpreter


def interpreter(model, threads: int = 1, cls=None):
    """An allocated interpreter of `cls` (default: the daemon's package, interpreter_class())."""
    kw = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {"model_path": model}
    it = (cls or interpreter_class())(num_threads=threads, **kw)
    it.allocate_tensors()
    return it


def frame_geometry(h: int, w: int, pixel_mm: float = 0.1):
    """A stored (h, w) image replayed as an 8-bit linear-probe frame: lines = columns, samples =
    rows, `pixel_mm` per pixel (the datasets carry no spacing; only areas depend on it)."""
    from firmware_py.geometry import Geometry, ProbeKind

    return Geometry(ProbeKind.LINEAR, n_lines=w, n_samples=h, bits=8, start_depth_mm=0.0,
                    end_depth_mm=h * pixel_mm, width=w * pixel_mm)


def device_codes(images: list, pp) -> np.ndarray:
    """int8 input codes (N, h, w) of uint8 images through the daemon's Preprocessor `pp`: the one
    rounding contract for int8 inputs. The build never rounds model inputs itself."""
    codes = np.empty((len(images), pp.out_h, pp.out_w), np.int8)
    for k, img in enumerate(images):
        pp.run(np.ascontiguousarray(np.asarray(img, np.uint8).T), frame_geometry(*img.shape), codes[k])
    return codes


def invoke_all(it, q_all: np.ndarray) -> np.ndarray:
    """Raw int8 outputs (N, ...) for int8 inputs, one invoke per input."""
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    outs = []
    for q in q_all:
        it.set_tensor(i["index"], q.reshape(i["shape"]))
        it.invoke()
        outs.append(it.get_tensor(o["index"])[0].copy())
    return np.stack(outs)


def run_int8_inputs(it, q_all: np.ndarray) -> np.ndarray:
    """Dequantized outputs (N, ...) for int8 inputs."""
    s_out, z_out = it.get_output_details()[0]["quantization"]
    return (invoke_all(it, q_all).astype(np.float32) - z_out) * s_out


def run_images(model, images: list) -> np.ndarray:
    """Dequantized outputs of an int8 model over uint8 images, fed exactly as on the device:
    the kernels' Preprocessor at the model's input grid and quantization (the manifest's
    preprocessing defaults: 60 dB, no normalisation, fill 0)."""
    from firmware_py.kernels import Preprocessor

    it = interpreter(model)
    i = it.get_input_details()[0]
    scale, zero_point = i["quantization"]
    pp = Preprocessor(int(i["shape"][1]), int(i["shape"][2]), scale=scale, zero_point=int(zero_point))
    return run_int8_inputs(it, device_codes(images, pp))


def latency_ms(model, runs: int = 50, warmup: int = 5, threads: int = 1, cls=None) -> dict:
    """Median and p90 single-invoke CPU latency on this machine (shared and noisy: compare tiers
    measured in the same process, not against other runs); `cls` as interpreter()."""
    it = interpreter(model, threads, cls)
    i = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    it.set_tensor(i["index"], rng.integers(-128, 128, i["shape"], dtype=np.int8))
    for _ in range(warmup):
        it.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        it.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"cpu_p50": float(np.median(times)), "cpu_p90": float(np.percentile(times, 90)), "threads": threads}


def gzip_bytes(model: bytes) -> int:
    """Compressed size: what unstructured sparsity buys on disk or over the air (TFLite itself
    stores pruned weights densely)."""
    return len(gzip.compress(bytes(model), compresslevel=9))
