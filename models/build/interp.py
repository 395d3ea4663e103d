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


def interpreter(model, threads: int = 1):
    kw = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {"model_path": model}
    it = interpreter_class()(num_threads=threads, **kw)
    it.allocate_tensors()
    return it


def run_float_inputs(model, x: np.ndarray) -> np.ndarray:
    """Quantize float inputs in [0, 1] with the model's input parameters, invoke one by one,
    return the dequantized outputs (N, ...)."""
    it = interpreter(model)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    s_in, z_in = i["quantization"]
    q_all = np.clip(np.round(x / s_in) + z_in, -128, 127).astype(np.int8)
    return run_int8_inputs(it, q_all)


def run_int8_inputs(it, q_all: np.ndarray) -> np.ndarray:
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    s_out, z_out = o["quantization"]
    outs = []
    for q in q_all:
        it.set_tensor(i["index"], q.reshape(i["shape"]))
        it.invoke()
        outs.append((it.get_tensor(o["index"])[0].astype(np.float32) - z_out) * s_out)
    return np.stack(outs)


def latency_ms(model, runs: int = 50, warmup: int = 5, threads: int = 1) -> dict:
    """Median and p90 single-invoke CPU latency on this machine (shared and noisy: compare tiers
    measured in the same process, not against other runs)."""
    it = interpreter(model, threads)
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
