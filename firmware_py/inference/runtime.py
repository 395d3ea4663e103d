"""One tier loaded on one backend: its model on a runtime, checked against the manifest, and the decoder.

The runtime is the CPU twin (tflite.CpuTwin) or an accelerator kind; each loads files of its own
format (firmware_py.inference.formats) into a LoadedModel. This class reads and verifies the
bytes, checks them with the runtime's format, compares the model's tensors with the manifest,
and drops its own output view before returning from decode().
"""
from __future__ import annotations

import time

import numpy as np

from firmware_py.inference.decode import Decoder, InferenceOutput
from firmware_py.inference.formats import model_format
from firmware_py.inference.manifest import Manifest, Tier
from firmware_py.inference.validate import ModelCheckError, check_tensors, read_verified


class TierRuntime:
    """`tier` loaded for `backend` ("cpu" or an accelerator key) by `runtime` (CpuTwin or a kind)."""

    def __init__(self, manifest: Manifest, tier: Tier, backend: str, runtime, *, threads: int = 1):
        self.tier = tier
        self.backend = backend
        f = tier.files[backend]
        self.path = manifest.abspath(f)
        data = read_verified(manifest, f)
        model_format(runtime.model_format).check(data, self.path)
        t0 = time.perf_counter()
        self.model = runtime.open_model(data, self.path, threads=threads,
                                        cpu_twin=None if backend == "cpu" else tier.files["cpu"].path)
        self.init_ms = (time.perf_counter() - t0) * 1e3
        info = check_tensors(tier, self.path, self.model.input_details(), self.model.output_details())
        self.input_index = info["input_index"]
        self.input_scale = info["input_scale"]
        self.input_zero_point = info["input_zero_point"]
        try:
            self.decoder = Decoder(tier.task, tier.output, info["output_scale"], info["output_zero_point"],
                                   info["output_shape"],
                                   tier.calibration.temperature if tier.calibration is not None else 1.0,
                                   **_no_nodule_rule(tier))
        except ValueError as e:
            raise ModelCheckError("output", f"{self.path}: {e}; fix the manifest's labels") from None
        self.memory_bytes = f.bytes + self.model.memory_bytes()
        self.first_invoke_ms: float | None = None

    def input_view(self) -> np.ndarray:
        return self.model.input_view()

    def fill_input(self, value: int | None = None) -> None:
        v = self.input_zero_point if value is None else value
        self.model.input_view().fill(v)

    def copy_input_from(self, other: "TierRuntime") -> None:
        """Move the frame already written into another runtime's input (same tier, other backend)."""
        np.copyto(self.model.input_view(), other.model.input_view())

    def run(self) -> None:
        self.model.run()

    def decode(self, out: InferenceOutput) -> None:
        q = self.model.output_view()
        try:
            self.decoder.decode(q, out)
        finally:
            del q

    def warm_up(self, n: int = 2) -> float:
        """Run n inferences on a zero (mid-grey) frame; returns the first one's time in ms."""
        self.fill_input()
        first = None
        for _ in range(max(1, n)):
            t0 = time.perf_counter()
            self.run()
            dt = (time.perf_counter() - t0) * 1e3
            first = dt if first is None else first
        self.first_invoke_ms = first
        return first

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


def _no_nodule_rule(tier) -> dict:
    """The decoder's no-nodule rule from the manifest's abstention block (none without one)."""
    a = tier.abstention
    return {} if a is None else {"min_area_px": a.min_area_px, "min_peak_probability": a.min_peak_probability}
