"""TensorFlow helpers shared by the trainers: deterministic set-up, resize, int8 conversion, MACs."""
from __future__ import annotations

import os
import warnings

import numpy as np


def setup_tf(seed: int, threads: int = 2):
    """Import TensorFlow with a fixed seed and a thread cap (the build machine is shared)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as exc:  # the daemon never needs TensorFlow; the build does
        raise ImportError("TensorFlow is not installed: pip install 'firmware-py[train]' "
                          "(tensorflow-cpu) to build models") from exc
    _cap_threads(tf, intra=threads, inter=1)
    tf.keras.utils.set_random_seed(seed)
    return tf


def _cap_threads(tf, intra: int, inter: int) -> None:
    """Set TensorFlow's thread pools, once per process: they are fixed when the first op runs, and
    setting them after that raises. A second build in the same process (a test after another, a
    notebook) keeps the pools it has, with one warning when they differ from what it asked."""
    th = tf.config.threading
    for name, get, put, want in (("intra-op", th.get_intra_op_parallelism_threads,
                                  th.set_intra_op_parallelism_threads, intra),
                                 ("inter-op", th.get_inter_op_parallelism_threads,
                                  th.set_inter_op_parallelism_threads, inter)):
        if get() == want:
            continue
        try:
            put(want)
        except RuntimeError:
            warnings.warn(f"TensorFlow's {name} threads are already fixed in this process "
                          f"({get() or 'all cores'}); this build keeps them instead of {want}", stacklevel=3)


def resize_batch(images: list, grid: tuple) -> np.ndarray:
    """uint8 (H, W) images -> float32 (N, h, w, 1) in [0, 1].

    Half-pixel-centred bilinear without antialiasing, then /255: the preprocessing contract the
    daemon's Preprocessor implements (docs/architecture.md).
    """
    import tensorflow as tf

    out = np.empty((len(images), grid[0], grid[1], 1), np.float32)
    for i, im in enumerate(images):
        t = tf.convert_to_tensor(im[:, :, None].astype(np.float32))
        out[i] = tf.image.resize(t, grid, method="bilinear", antialias=False).numpy() / 255.0
    return np.clip(out, 0.0, 1.0)


def resize_masks(masks: list, grid: tuple) -> np.ndarray:
    """0/1 masks -> float32 (N, h, w, 1) soft targets on the model grid (same bilinear resize)."""
    import tensorflow as tf

    out = np.empty((len(masks), grid[0], grid[1], 1), np.float32)
    for i, m in enumerate(masks):
        t = tf.convert_to_tensor(m[:, :, None].astype(np.float32))
        out[i] = tf.image.resize(t, grid, method="bilinear", antialias=False).numpy()
    return out


def convert_int8(model, representative: np.ndarray, n_calib: int = 200) -> bytes:
    """Full-integer int8 TFLite with int8 input and output tensors.

    The first calibration sample is pinned to the full [0, 1] display range so the input
    quantization comes out scale 1/255, zero point -128: display value v maps to q = v - 128.
    """
    import tensorflow as tf

    calib = representative[:n_calib].astype(np.float32).copy()
    calib[0].flat[0] = 0.0
    calib[0].flat[-1] = 1.0

    def gen():
        for x in calib:
            yield [x[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass (conv, depthwise, dense; elementwise ops ignored)."""
    import tensorflow as tf

    L = tf.keras.layers
    macs = 0
    for layer in _flat_layers(model):
        if isinstance(layer, (L.DepthwiseConv2D,)):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            macs += h * w * c * kh * kw
        elif isinstance(layer, L.SeparableConv2D):
            _, h, w, co = layer.output.shape
            ci = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            macs += h * w * ci * (kh * kw * layer.depth_multiplier) + h * w * ci * layer.depth_multiplier * co
        elif isinstance(layer, L.Conv2DTranspose):
            _, h, w, ci = layer.input.shape
            co = layer.filters
            kh, kw = layer.kernel_size
            macs += h * w * ci * co * kh * kw
        elif isinstance(layer, L.Conv2D):
            _, h, w, co = layer.output.shape
            ci = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            macs += h * w * co * kh * kw * ci // max(1, getattr(layer, "groups", 1))
        elif isinstance(layer, L.Dense):
            ci = layer.input.shape[-1]
            macs += ci * layer.units
    return int(macs)


def _flat_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _flat_layers(layer)
        else:
            yield layer
