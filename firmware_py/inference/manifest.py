"""Parse and validate models/manifest.yaml (schema documented in docs/model-manifest.md).

The manifest is the contract between the model trainer and the device: which tiers exist, which
file implements each tier on each backend (and its digest, which the signature covers), how to
feed a model (input quantization and preprocessing) and how to read its output. Every problem is
reported as one line naming the manifest, the field path and what to write instead.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from firmware_py.errors import ModelError, one_line, shown
from firmware_py.files import read_bounded

SCHEMA_VERSIONS = (1,)
TASKS = ("classify", "segment")
DECODES = {"classify": ("softmax",), "segment": ("sigmoid", "argmax")}
DTYPES = ("int8", "uint8", "int16", "float32")
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")  # \Z: "$" would let a trailing newline in
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class ModelFile:
    backend: str  # "cpu" or an accelerator key such as "edgetpu"
    path: str  # relative to the manifest's folder
    sha256: str
    bytes: int


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None


@dataclass(frozen=True)
class PreprocessSpec:
    grid: tuple[int, int]  # (H, W) output grid of scan conversion
    dynamic_range_db: float
    mean: float
    std: float
    fill: float


@dataclass(frozen=True)
class Threshold:
    label: str | None
    value: float


@dataclass(frozen=True)
class OutputSpec:
    dtype: str
    quantization: Quantization | None
    decode: str
    labels: tuple[str, ...]
    threshold: Threshold | None
    applied_in_model: bool = True  # the model ends in the decode activation (softmax/sigmoid)


@dataclass(frozen=True)
class Calibration:
    temperature: float  # classify: probabilities are softmax(logits / temperature)
    extra: dict = field(default_factory=dict)  # how it was fitted (method, split, ece, ...), free-form


@dataclass(frozen=True)
class FeatureGate:
    """A score on the abstention features (firmware_py.inference.abstain) and its threshold."""

    max_score: float
    mean: np.ndarray | None = None  # typical: z-scores against these
    std: np.ndarray | None = None
    weights: np.ndarray | None = None  # anatomy: linear score weights . features + bias
    bias: float = 0.0


@dataclass(frozen=True)
class AbstentionSpec:
    features: str  # the feature set version the vectors follow ("v1")
    min_confidence: float | None = None  # classify: max calibrated probability below this -> indeterminate
    typical: FeatureGate | None = None
    anatomy: FeatureGate | None = None
    min_area_px: int = 0  # segment: a largest component smaller than this (model grid pixels) is no nodule
    # segment (sigmoid): a frame whose most confident pixel's probability is under this has no nodule
    min_peak_probability: float | None = None
    extra: dict = field(default_factory=dict)  # how it was chosen (splits, n, note), free-form


@dataclass(frozen=True)
class Tier:
    name: str
    task: str
    rank: int
    files: dict[str, ModelFile]
    input: InputSpec
    preprocess: PreprocessSpec
    output: OutputSpec
    params: int | None = None
    macs: int | None = None
    file_bytes: int | None = None
    metrics: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)
    energy_mj: dict = field(default_factory=dict)
    calibration: Calibration | None = None
    abstention: AbstentionSpec | None = None


@dataclass(frozen=True)
class Manifest:
    path: str  # the manifest.yaml it was read from
    schema_version: int
    tiers: tuple[Tier, ...]

    @property
    def root(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.tiers) or "none"
        raise ModelError(f"{self.path}: no tier named {shown(name)}; known tiers: {known}")

    def ladder(self, task: str) -> list[Tier]:
        """Tiers of one task, cheapest first."""
        return sorted((t for t in self.tiers if t.task == task), key=lambda t: t.rank)

    def files(self) -> list[ModelFile]:
        """Every model file listed, once per path (what the signature's digests cover)."""
        seen: dict[str, ModelFile] = {}
        for t in self.tiers:
            for f in t.files.values():
                seen.setdefault(f.path, f)
        return list(seen.values())

    def abspath(self, f: ModelFile) -> str:
        return os.path.join(self.root, f.path)


def _finite(x) -> bool:
    return isinstance(x, int) or math.isfinite(x)  # an int is finite (and may be too big for a float)


class _Reader:
    """Typed field access that turns every schema problem into one line with the field path."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, problem: str) -> ModelError:
        return ModelError(f"{self.source}: {where}: {problem}")

    def mapping(self, obj: Any, where: str) -> dict:
        if not isinstance(obj, dict):
            raise self.fail(where, f"expected a mapping, got {type(obj).__name__}")
        return obj

    def get(self, obj: dict, key: str, where: str, kind, *, required=True, default=None):
        if key not in obj or obj[key] is None:
            if required:
                raise self.fail(f"{where}.{key}" if where else key, "missing; see docs/model-manifest.md")
            return default
        value = obj[key]
        path = f"{where}.{key}" if where else key
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
                raise self.fail(path, f"expected a finite number, got {shown(value)}")
            return float(value)
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.fail(path, f"expected an integer, got {shown(value)}")
            return value
        if not isinstance(value, kind):
            raise self.fail(path, f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
        return value


def _quantization(r: _Reader, obj: dict, where: str, dtype: str) -> Quantization | None:
    q = r.get(obj, "quantization", where, dict, required=dtype != "float32")
    if q is None:
        return None
    w = f"{where}.quantization"
    scale = r.get(q, "scale", w, float)
    zp = r.get(q, "zero_point", w, int)
    if not scale > 0:
        raise r.fail(f"{w}.scale", f"must be > 0, got {scale}")
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (0, 0)}.get(dtype, (-(2**31), 2**31 - 1))
    if not lo <= zp <= hi:
        raise r.fail(f"{w}.zero_point", f"{zp} outside {lo}..{hi} for {dtype}")
    return Quantization(scale, zp)


def _dtype(r: _Reader, obj: dict, where: str) -> str:
    dtype = r.get(obj, "dtype", where, str)
    if dtype not in DTYPES:
        raise r.fail(f"{where}.dtype", f"{shown(dtype)} is not one of {', '.join(DTYPES)}")
    return dtype


def _model_file(r: _Reader, obj: Any, where: str, backend: str) -> ModelFile:
    obj = r.mapping(obj, where)
    path = r.get(obj, "path", where, str)
    if os.path.isabs(path) or ".." in path.replace("\\", "/").split("/"):
        raise r.fail(f"{where}.path", f"{shown(path)} must be relative to the manifest folder, without '..'")
    digest = r.get(obj, "sha256", where, str).lower()
    if not _HEX64.match(digest):
        raise r.fail(f"{where}.sha256", "expected 64 hex digits (sha256sum of the file)")
    size = r.get(obj, "bytes", where, int)
    if size <= 0:
        raise r.fail(f"{where}.bytes", f"must be > 0, got {size}")
    return ModelFile(backend, path, digest, size)


def _calibration(r: _Reader, obj: dict, where: str, task: str, output: OutputSpec) -> Calibration | None:
    c = r.get(obj, "calibration", where, dict, required=False)
    if c is None:
        return None
    w = f"{where}.calibration"
    if task != "classify":
        raise r.fail(w, "temperature scaling applies to classify tiers only; remove it")
    if output.applied_in_model:
        raise r.fail(w, "the model applies its own softmax (output.applied_in_model: true), so there are no "
                     "logits to scale; export logits or fold the temperature into the model")
    t = r.get(c, "temperature", w, float)
    if not 0.05 <= t <= 20.0:
        raise r.fail(f"{w}.temperature", f"{t} is outside 0.05..20 (a fitted temperature is near 1); refit it")
    return Calibration(t, {k: v for k, v in c.items() if k != "temperature"})


def _vector(r: _Reader, obj: dict, key: str, where: str, n: int, positive: bool = False) -> np.ndarray:
    v = r.get(obj, key, where, list)
    if len(v) != n or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                              for x in v):
        raise r.fail(f"{where}.{key}", f"expected {n} finite numbers, got {len(v)} entries")
    a = np.asarray(v, np.float64)
    if positive and not (a > 0).all():
        raise r.fail(f"{where}.{key}", "every entry must be > 0")
    return a


def _abstention(r: _Reader, obj: dict, where: str, task: str) -> AbstentionSpec | None:
    from firmware_py.inference.abstain import FEATURE_SETS

    a = r.get(obj, "abstention", where, dict, required=False)
    if a is None:
        return None
    w = f"{where}.abstention"
    version = r.get(a, "features", w, str)
    if version not in FEATURE_SETS:
        raise r.fail(f"{w}.features", f"{shown(version)} is not a feature set this firmware computes "
                     f"({', '.join(FEATURE_SETS)}); refit with firmware-py models abstention")
    n = len(FEATURE_SETS[version])
    conf = r.get(a, "min_confidence", w, float, required=False)
    if conf is not None and (task != "classify" or not 0.0 <= conf < 1.0):
        raise r.fail(f"{w}.min_confidence", f"{conf}: a classify tier's probability threshold in 0..1 (below 1)"
                     if task == "classify" else "only classify tiers have a confidence threshold")
    gates = {}
    for name in ("typical", "anatomy"):
        g = r.get(a, name, w, dict, required=False)
        if g is None:
            gates[name] = None
            continue
        gw = f"{w}.{name}"
        thr = r.get(g, "max_score", gw, float)
        if name == "typical":
            if not thr > 0:
                raise r.fail(f"{gw}.max_score", f"must be > 0 (a mean squared z-score), got {thr}")
            gates[name] = FeatureGate(thr, mean=_vector(r, g, "mean", gw, n), std=_vector(r, g, "std", gw, n, True))
        else:
            # one weight per feature, then one per squared feature (abstain.anatomy_score)
            gates[name] = FeatureGate(thr, weights=_vector(r, g, "weights", gw, 2 * n), bias=r.get(g, "bias", gw, float))
    min_area = r.get(a, "min_area_px", w, int, required=False, default=0)
    if min_area < 0:
        raise r.fail(f"{w}.min_area_px", f"must be >= 0, got {min_area}")
    peak = r.get(a, "min_peak_probability", w, float, required=False)
    if peak is not None and (task != "segment" or not 0.0 <= peak < 1.0):
        raise r.fail(f"{w}.min_peak_probability", f"{peak}: a segment tier's mask probability in 0..1 (below 1)"
                     if task == "segment" else "only segment tiers have a no-nodule peak probability")
    known = {"features", "min_confidence", "typical", "anatomy", "min_area_px", "min_peak_probability"}
    return AbstentionSpec(version, conf, gates["typical"], gates["anatomy"], min_area, peak,
                          {k: v for k, v in a.items() if k not in known})


def _tier(r: _Reader, obj: Any, where: str) -> Tier:
    obj = r.mapping(obj, where)
    name = r.get(obj, "name", where, str)
    if not _NAME.match(name):
        raise r.fail(f"{where}.name", f"{shown(name)}: use 1-64 letters, digits, '_', '-', '.'")
    where = f"tiers[{name}]"
    task = r.get(obj, "task", where, str)
    if task not in TASKS:
        raise r.fail(f"{where}.task", f"{shown(task)} is not one of {', '.join(TASKS)}")
    rank = r.get(obj, "rank", where, int)

    files_obj = r.mapping(r.get(obj, "files", where, dict), f"{where}.files")
    if "cpu" not in files_obj:
        raise r.fail(f"{where}.files", "no 'cpu' entry: every tier needs a CPU twin")
    files = {k: _model_file(r, v, f"{where}.files.{one_line(k)}", str(k)) for k, v in files_obj.items()}

    inp = r.mapping(r.get(obj, "input", where, dict), f"{where}.input")
    shape = r.get(inp, "shape", f"{where}.input", list)
    if len(shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise r.fail(f"{where}.input.shape", f"{shown(shape)}: expected [1, H, W, C] with positive integers")
    if shape[0] != 1:
        raise r.fail(f"{where}.input.shape", f"batch {shape[0]}: the engine feeds one frame, use 1")
    in_dtype = _dtype(r, inp, f"{where}.input")
    input_spec = InputSpec(tuple(shape), in_dtype, _quantization(r, inp, f"{where}.input", in_dtype))

    pre = r.mapping(r.get(obj, "preprocess", where, dict), f"{where}.preprocess")
    grid = r.get(pre, "grid", f"{where}.preprocess", list)
    if len(grid) != 2 or list(grid) != list(shape[1:3]):
        raise r.fail(f"{where}.preprocess.grid", f"{shown(grid)} must equal the input's [H, W] {list(shape[1:3])}")
    dr = r.get(pre, "dynamic_range_db", f"{where}.preprocess", float)
    if not dr > 0:
        raise r.fail(f"{where}.preprocess.dynamic_range_db", f"must be > 0, got {dr}")
    norm = r.get(pre, "normalise", f"{where}.preprocess", dict, required=False, default={})
    mean = r.get(norm, "mean", f"{where}.preprocess.normalise", float, required=False, default=0.0)
    std = r.get(norm, "std", f"{where}.preprocess.normalise", float, required=False, default=1.0)
    if not std > 0:
        raise r.fail(f"{where}.preprocess.normalise.std", f"must be > 0, got {std}")
    fill = r.get(pre, "fill", f"{where}.preprocess", float, required=False, default=0.0)
    preprocess = PreprocessSpec((grid[0], grid[1]), dr, mean, std, fill)

    out = r.mapping(r.get(obj, "output", where, dict), f"{where}.output")
    out_dtype = _dtype(r, out, f"{where}.output")
    decode = r.get(out, "decode", f"{where}.output", str)
    if decode not in DECODES[task]:
        raise r.fail(f"{where}.output.decode", f"{shown(decode)} does not fit task {task}; use {' or '.join(DECODES[task])}")
    labels = r.get(out, "labels", f"{where}.output", list, required=task == "classify", default=[])
    if not all(isinstance(x, str) for x in labels) or len(set(labels)) != len(labels):
        raise r.fail(f"{where}.output.labels", "must be distinct strings")
    if task == "classify" and len(labels) < 2:
        raise r.fail(f"{where}.output.labels", "a classifier needs at least two labels")
    thr_obj = r.get(out, "threshold", f"{where}.output", dict, required=False)
    threshold = None
    if thr_obj is not None:
        value = r.get(thr_obj, "value", f"{where}.output.threshold", float)
        if not 0.0 <= value <= 1.0:
            raise r.fail(f"{where}.output.threshold.value", f"{value} is not a probability in 0..1")
        label = r.get(thr_obj, "label", f"{where}.output.threshold", str, required=task == "classify")
        if label is not None and label not in labels:
            raise r.fail(f"{where}.output.threshold.label", f"{shown(label)} is not one of the labels {shown(labels)}")
        threshold = Threshold(label, value)
    applied = r.get(out, "applied_in_model", f"{where}.output", bool, required=False, default=True)
    output = OutputSpec(
        out_dtype, _quantization(r, out, f"{where}.output", out_dtype), decode, tuple(labels), threshold, applied
    )

    def opt_int(key):
        v = r.get(obj, key, where, int, required=False)
        if v is not None and v < 0:
            raise r.fail(f"{where}.{key}", f"must be >= 0, got {v}")
        return v

    def opt_map(key):
        return dict(r.get(obj, key, where, dict, required=False, default={}))

    return Tier(
        name, task, rank, files, input_spec, preprocess, output,
        opt_int("params"), opt_int("macs"), opt_int("file_bytes"),
        opt_map("metrics"), opt_map("latency_ms"), opt_map("energy_mj"),
        _calibration(r, obj, where, task, output), _checked_abstention(r, obj, where, task, files),
    )


def _checked_abstention(r: _Reader, obj: dict, where: str, task: str, files: dict) -> AbstentionSpec | None:
    """The abstention block, refused when it was fitted for another model file than the tier's CPU twin."""
    spec = _abstention(r, obj, where, task)
    fitted = spec.extra.get("model_sha256") if spec is not None else None
    if fitted is not None and str(fitted).lower() != files["cpu"].sha256:
        raise r.fail(f"{where}.abstention.model_sha256", "fitted for another model file than files.cpu; rerun "
                     "firmware-py models abstention --write and regenerate the manifest")
    return spec


def parse_manifest(text: str | bytes, path: str = "manifest.yaml") -> Manifest:
    """Parse manifest text; raises ModelError with a one-line message on any schema problem."""
    r = _Reader(path)
    try:
        doc = yaml.safe_load(text)
    except RecursionError:
        raise ModelError(f"{path}: nested too deeply to be a manifest; rebuild the manifest") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ModelError(f"{path}: not valid YAML{at}; fix the syntax or rebuild the manifest") from None
    doc = r.mapping(doc, "top level")
    version = r.get(doc, "schema_version", "", int)
    if version not in SCHEMA_VERSIONS:
        raise r.fail("schema_version", f"{version} is not supported (this firmware reads {SCHEMA_VERSIONS})")
    tiers_obj = r.get(doc, "tiers", "", list)
    if not tiers_obj:
        raise r.fail("tiers", "empty: list at least one tier")
    try:
        tiers = tuple(_tier(r, t, f"tiers[{i}]") for i, t in enumerate(tiers_obj))
    except OverflowError:  # float() of a huge integer somewhere in a tier
        raise ModelError(f"{path}: a number too large for a float; rebuild the manifest") from None
    names = [t.name for t in tiers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise r.fail("tiers", f"duplicate tier name(s) {sorted(dup)}")
    ranks = [(t.task, t.rank) for t in tiers]
    dup_rank = {x for x in ranks if ranks.count(x) > 1}
    if dup_rank:
        raise r.fail("tiers", f"two tiers share task/rank {sorted(dup_rank)[0]}; ranks order a ladder")
    by_path: dict[str, str] = {}
    for t in tiers:
        for f in t.files.values():
            if by_path.setdefault(f.path, f.sha256) != f.sha256:
                raise r.fail(f"tiers[{t.name}].files", f"{f.path} listed twice with different sha256")
    return Manifest(path, version, tiers)


# A manifest is tens of kilobytes: anything far bigger is the wrong file (a disk, /dev/zero),
# refused before it is read into memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def load_manifest(path: str) -> Manifest:
    try:
        text = read_bounded(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ModelError(f"{path}: manifest not found; install the model set or set models.manifest") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read the manifest ({e.strerror}); point models.manifest at the set's "
                         "manifest.yaml") from None
    return parse_manifest(text, path)
