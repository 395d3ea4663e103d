"""Output decoding at the edge of the engine: int8 tensor -> label / probabilities / mask.

Dequantization is (int64(q) - zero_point) * scale in float64, so no int8 wrap-around or float32
rounding leaks into the probabilities a clinician sees. A mask threshold is moved into the
quantized domain once per tier (the smallest code at or above it, found over every code with the
same float64 arithmetic), so a segmentation frame costs one integer comparison per pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from firmware_py.inference.manifest import OutputSpec


@dataclass
class InferenceOutput:
    """What one invoke() produced and where it ran."""

    tier: str
    task: str
    backend: str  # "cpu" or the accelerator key (e.g. "edgetpu")
    latency_ms: float  # invoke + decode wall time
    label: str | None = None  # classify: arg-max label
    probabilities: dict[str, float] = field(default_factory=dict)  # classify
    positive: bool | None = None  # classify: probability of threshold.label >= threshold.value
    mask: np.ndarray | None = None  # segment: uint8 (H, W), 1 = foreground (argmax: class != 0)
    fallback: str | None = None  # why the accelerator did not run this frame, when it was expected to
    indeterminate: str | None = None  # why this is not a diagnosis (abstain.REASONS), None when it is one
    abstention: dict = field(default_factory=dict)  # the abstention scores of this frame (abstain.Abstainer)
    min_area_px: int = 0  # segment: a largest component smaller than this is no nodule (manifest)
    nodule: np.ndarray | None = None  # segment: the largest component of the mask when it is a nodule
    no_nodule: str | None = None  # segment: why this frame has no nodule (the manifest's no-nodule rule), or None

    def as_dict(self) -> dict:
        d = {
            "tier": self.tier, "task": self.task, "backend": self.backend,
            "latency_ms": round(self.latency_ms, 3),
        }
        if self.task == "classify":
            d.update(label=self.label, probabilities={k: round(v, 6) for k, v in self.probabilities.items()},
                     positive=self.positive)
        elif self.mask is not None:
            d["mask_pixels"] = int(np.count_nonzero(self.mask))
        if self.fallback:
            d["fallback"] = self.fallback
        if self.no_nodule:
            d["no_nodule"] = self.no_nodule
        if self.indeterminate:
            d["indeterminate"] = self.indeterminate
        return d


class Decoder:
    """Decodes one tier's output tensor according to its manifest output spec."""

    def __init__(self, task: str, spec: OutputSpec, scale: float, zero_point: int, out_shape: tuple[int, ...],
                 temperature: float = 1.0, min_area_px: int = 0, min_peak_probability: float | None = None):
        self.task = task
        # The no-nodule rule (manifest `abstention`): a frame whose largest component is under
        # min_area_px, or whose most confident pixel is under min_peak_probability, has no nodule.
        self.min_area_px = int(min_area_px)
        self.min_peak_probability = min_peak_probability
        # Temperature scaling (manifest `calibration`): softmax(logits / T). A model that applies its own
        # softmax has no logits left to scale, so the manifest loader keeps the two apart.
        self.temperature = float(temperature)
        self.spec = spec
        self.scale = float(scale)
        self.zero_point = int(zero_point)
        self.labels = spec.labels
        if task == "classify" and int(np.prod(out_shape)) != len(self.labels):
            raise ValueError(
                f"output has {int(np.prod(out_shape))} values but the manifest lists {len(self.labels)} labels"
            )
        self._threshold_index = None
        if spec.threshold is not None and spec.threshold.label is not None:
            self._threshold_index = self.labels.index(spec.threshold.label)
        self._mask_q = None
        if task == "segment" and spec.decode == "sigmoid":
            p = spec.threshold.value if spec.threshold is not None else 0.5
            # compare the dequantized output with the threshold in the output's own domain
            self._mask_q = _code_threshold(spec.dtype, self.scale, self.zero_point,
                                           p if spec.applied_in_model else _logit(p))

    def classify(self, q: np.ndarray, out: InferenceOutput) -> None:
        # A handful of classes: Python ints (unbounded) and floats (double) beat NumPy's per-call
        # overhead by ~3 us a frame and keep the same int64/float64 semantics.
        zp, scale = self.zero_point, self.scale
        x = [(v - zp) * scale for v in q.ravel().tolist()]
        if not self.spec.applied_in_model:
            if self.temperature != 1.0:
                x = [v / self.temperature for v in x]
            m = max(x)
            e = [math.exp(v - m) for v in x]
            total = math.fsum(e)
            x = [v / total for v in e]
        best = max(range(len(x)), key=x.__getitem__)
        out.label = self.labels[best]
        out.probabilities = dict(zip(self.labels, x))
        if self._threshold_index is not None:
            out.positive = x[self._threshold_index] >= self.spec.threshold.value

    def segment(self, q: np.ndarray, out: InferenceOutput) -> None:
        q = q.reshape(q.shape[-3:]) if q.ndim == 4 else q
        if self.spec.decode == "argmax":
            out.mask = (np.argmax(q, axis=-1) != 0).view(np.uint8)
        else:
            out.mask = (q[..., 0] >= self._mask_q).view(np.uint8)
        self.nodule(q, out)

    def nodule(self, q: np.ndarray, out: InferenceOutput) -> None:
        """The largest component as the nodule, or no nodule (out.no_nodule says why)."""
        from firmware_py.kernels import largest_component

        out.min_area_px = self.min_area_px
        if out.mask.ndim != 2:  # not a mask (a refused model being checked): the caller says what is wrong
            return
        out.nodule, out.no_nodule = largest_component(out.mask), None
        if self.min_peak_probability is not None and self.spec.decode == "sigmoid":
            v = (int(q[..., 0].max()) - self.zero_point) * self.scale  # the most confident pixel, float64
            peak = v if self.spec.applied_in_model else 1.0 / (1.0 + math.exp(-v))
            if peak < self.min_peak_probability:
                out.no_nodule = f"peak probability {peak:.4f} < {self.min_peak_probability}"
        px = int(out.nodule.sum())
        if out.no_nodule is None and (px == 0 or px < self.min_area_px):
            out.no_nodule = "no mask pixel" if px == 0 else f"largest component {px} px < {self.min_area_px}"
        if out.no_nodule is not None:
            out.nodule = None

    def decode(self, q: np.ndarray, out: InferenceOutput) -> None:
        if self.task == "classify":
            self.classify(q, out)
        else:
            self.segment(q, out)


def _code_threshold(dtype: str, scale: float, zero_point: int, level: float) -> float:
    """The smallest output code whose dequantized value (float64) is >= level, for a mask test
    `q >= threshold` per pixel that equals the float definition exactly (scale > 0: monotonic)."""
    if dtype not in ("int8", "uint8"):  # a float output is compared as it is
        return level
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.int64)
    above = (codes - zero_point) * float(scale) >= level
    return int(codes[above.argmax()]) if above.any() else info.max + 1


def _logit(p: float) -> float:
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))
