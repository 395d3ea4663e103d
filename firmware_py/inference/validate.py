"""Load-time checks of one model file against its manifest entry, each failing with one line.

Order matters: the bytes are read once, checked (size, sha256) and only those verified bytes are
handed to the interpreter (model_content), so a file swapped between the check and the load cannot
run. Tensor checks then compare what the interpreter sees with what the manifest promises.
"""
from __future__ import annotations

import hashlib
import re

import numpy as np

from firmware_py.errors import ModelError
from firmware_py.inference.manifest import Manifest, ModelFile, Quantization, Tier

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"
_UNRESOLVED = re.compile(r"unresolved custom op: ([^\s.]+(?:\.[^\s.]+)*)\.?", re.IGNORECASE)
# Tolerance between the manifest's quantization and the model's: the manifest is written from the
# converter's float32 value, YAML round-trips it through decimal.
_SCALE_RTOL = 1e-4


class ModelCheckError(ModelError):
    """A model file failed a load-time check; `kind` names the check for status and tests."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class CustomOpError(ModelCheckError):
    def __init__(self, op: str, message: str):
        super().__init__("custom-op", message)
        self.op = op


def read_verified(manifest: Manifest, f: ModelFile) -> bytes:
    """The file's bytes after the missing / truncated / checksum checks."""
    path = manifest.abspath(f)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ModelCheckError("missing", f"{path}: model file missing; reinstall the model set") from None
    except OSError as e:
        raise ModelCheckError("unreadable", f"{path}: cannot read ({e.strerror}); check the storage") from None
    if len(data) < f.bytes:
        raise ModelCheckError(
            "truncated", f"{path}: truncated ({len(data)} of {f.bytes} bytes); reinstall the model set"
        )
    if len(data) != f.bytes:
        raise ModelCheckError(
            "size", f"{path}: {len(data)} bytes but the manifest says {f.bytes}; reinstall the model set"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != f.sha256:
        raise ModelCheckError(
            "checksum", f"{path}: sha256 {digest[:12]}... does not match the manifest's {f.sha256[:12]}...; "
            "the file is damaged or was replaced, reinstall the model set"
        )
    return data


def custom_op_error(err: Exception, path: str, cpu_twin: str | None) -> ModelCheckError | None:
    """Translate TFLite's 'unresolved custom op' failure into our one-line error, else None."""
    m = _UNRESOLVED.search(str(err))
    if m is None:
        return None
    op = m.group(1).rstrip(".")
    # cpu_twin None: this file *is* the CPU twin, so there is nothing to fall back to.
    fallback = f"using CPU twin {cpu_twin}" if cpu_twin else "it cannot be the CPU twin: list the uncompiled " \
        "int8 model under files.cpu (tier refused)"
    if op == EDGETPU_CUSTOM_OP:
        return CustomOpError(op, f"{path}: compiled for the Edge TPU; no Edge TPU loaded; {fallback}")
    return CustomOpError(
        op, f"{path}: uses custom op {op!r} that no loaded delegate provides; {fallback}"
    )


def _quant(detail: dict) -> tuple[np.ndarray, np.ndarray]:
    qp = detail.get("quantization_parameters") or {}
    return np.asarray(qp.get("scales", [])), np.asarray(qp.get("zero_points", []))


def _check_quant(path: str, which: str, detail: dict, dtype: str, promised: Quantization | None) -> tuple[float, int]:
    """Per-tensor int8/uint8 quantization matching the manifest; returns (scale, zero_point)."""
    actual = np.dtype(detail["dtype"]).name
    if actual in ("int16", "int32", "int64"):
        raise ModelCheckError(
            "quantization", f"{path}: {which} is {actual} (16x8 or integer-only quantization is unsupported); "
            "rebuild with full int8 quantization"
        )
    if actual != dtype:
        raise ModelCheckError(
            "dtype", f"{path}: {which} dtype is {actual} but the manifest says {dtype}; fix the manifest or rebuild"
        )
    if dtype == "float32":
        return 1.0, 0
    scales, zps = _quant(detail)
    if scales.size != 1 or zps.size != 1:
        raise ModelCheckError(
            "quantization", f"{path}: {which} has {scales.size} quantization scales (per-channel or none); "
            "only per-tensor quantization is supported on inputs and outputs"
        )
    scale, zp = float(scales[0]), int(zps[0])
    if not scale > 0:
        raise ModelCheckError("quantization", f"{path}: {which} quantization scale {scale} is not > 0; rebuild")
    if promised is not None and (
        abs(scale - promised.scale) > _SCALE_RTOL * promised.scale or zp != promised.zero_point
    ):
        raise ModelCheckError(
            "quantization", f"{path}: {which} quantization (scale {scale:.8g}, zero_point {zp}) differs from the "
            f"manifest's (scale {promised.scale:.8g}, zero_point {promised.zero_point}); regenerate the manifest"
        )
    return scale, zp


def check_tensors(tier: Tier, path: str, inputs: list[dict], outputs: list[dict]) -> dict:
    """Compare the interpreter's I/O tensors with the tier's manifest entry."""
    if len(inputs) != 1:
        raise ModelCheckError("inputs", f"{path}: {len(inputs)} input tensors; the engine feeds exactly one, "
                              "rebuild the model with a single input")
    if len(outputs) != 1:
        raise ModelCheckError("outputs", f"{path}: {len(outputs)} output tensors; the engine decodes exactly one, "
                              "rebuild the model with a single output")
    inp, out = inputs[0], outputs[0]
    in_dtype = np.dtype(inp["dtype"]).name
    if in_dtype in ("float32", "float16"):
        raise ModelCheckError(
            "float", f"{path}: float model ({in_dtype} input) where int8 is required; "
            "ship the int8-quantized build of this tier"
        )
    if in_dtype == "uint8":
        raise ModelCheckError(
            "dtype", f"{path}: uint8 input where int8 is required (the preprocessor writes int8); "
            "rebuild with inference_input_type=tf.int8"
        )
    shape = tuple(int(d) for d in inp["shape"])
    if shape != tier.input.shape:
        raise ModelCheckError(
            "shape", f"{path}: input shape {list(shape)} differs from the manifest's {list(tier.input.shape)}; "
            "fix the manifest or rebuild the model"
        )
    in_scale, in_zp = _check_quant(path, "input", inp, tier.input.dtype, tier.input.quantization)
    out_scale, out_zp = _check_quant(path, "output", out, tier.output.dtype, tier.output.quantization)
    return {
        "input_index": inp["index"], "output_index": out["index"],
        "input_scale": in_scale, "input_zero_point": in_zp,
        "output_scale": out_scale, "output_zero_point": out_zp,
        "output_shape": tuple(int(d) for d in out["shape"]),
    }

