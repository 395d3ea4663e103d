"""One tier loaded on one backend: interpreter, zero-copy tensor accessors and the decoder.

The TFLite Python API refuses invoke() while any NumPy view of an interpreter buffer is alive
(Interpreter._ensure_safe counts references). So this class keeps only the *accessors* returned
by Interpreter.tensor(), hands out a fresh input view per frame, and drops its own output view
before returning. A caller that keeps the input view across invoke() gets a one-line error.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from firmware_py.errors import ModelError
from firmware_py.inference.backend import InterpreterBackend
from firmware_py.inference.decode import Decoder, InferenceOutput
from firmware_py.inference.manifest import Manifest, Tier
from firmware_py.inference.flatbuffer import check_flatbuffer
from firmware_py.inference.validate import ModelCheckError, check_tensors, custom_op_error, read_verified

log = logging.getLogger(__name__)


class TierRuntime:
    """An allocated interpreter for `tier` running `backend` ("cpu" or an accelerator key)."""

    def __init__(
        self,
        manifest: Manifest,
        tier: Tier,
        backend: str,
        interp: InterpreterBackend,
        *,
        delegate=None,
        threads: int = 1,
    ):
        self.tier = tier
        self.backend = backend
        f = tier.files[backend]
        self.path = manifest.abspath(f)
        self.file_bytes = f.bytes
        data = read_verified(manifest, f)
        check_flatbuffer(data, self.path)
        cpu = tier.files["cpu"]
        cpu_twin = None if backend == "cpu" else cpu.path
        t0 = time.perf_counter()
        try:
            kwargs = {"model_content": data, "num_threads": max(1, int(threads))}
            if delegate is not None:
                kwargs["experimental_delegates"] = [delegate]
            self.interpreter = interp.Interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            translated = custom_op_error(e, self.path, cpu_twin)
            if translated is not None:
                raise translated from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelCheckError("load", f"{self.path}: the interpreter cannot load it ({first}); rebuild") from None
        self.init_ms = (time.perf_counter() - t0) * 1e3
        info = check_tensors(tier, self.path, self.interpreter.get_input_details(),
                             self.interpreter.get_output_details())
        self.input_index = info["input_index"]
        self.output_index = info["output_index"]
        self.input_scale = info["input_scale"]
        self.input_zero_point = info["input_zero_point"]
        self._input = self.interpreter.tensor(self.input_index)
        self._output = self.interpreter.tensor(self.output_index)
        try:
            self.decoder = Decoder(tier.task, tier.output, info["output_scale"], info["output_zero_point"],
                                   info["output_shape"])
        except ValueError as e:
            raise ModelCheckError("output", f"{self.path}: {e}; fix the manifest's labels") from None
        self.memory_bytes = self._estimate_memory()
        self.first_invoke_ms: float | None = None

    def _estimate_memory(self) -> int:
        """Model bytes + every tensor's size: an upper bound of the arena, used for the budget."""
        total = self.file_bytes
        for d in self.interpreter.get_tensor_details():
            shape = d.get("shape")
            if shape is not None and len(shape):
                total += int(np.prod(shape)) * np.dtype(d["dtype"]).itemsize
        return total

    def input_view(self) -> np.ndarray:
        return self._input()

    def fill_input(self, value: int | None = None) -> None:
        v = self.input_zero_point if value is None else value
        self._input().fill(v)

    def copy_input_from(self, other: "TierRuntime") -> None:
        """Move the frame already written into another runtime's input (same tier, other backend)."""
        np.copyto(self._input(), other._input())

    def run(self) -> None:
        try:
            self.interpreter.invoke()
        except RuntimeError as e:
            if "reference to internal data" in str(e):
                raise ModelError(
                    "engine.input_view() result is still referenced at invoke(); write into it and drop it "
                    "before invoke() (e.g. preprocessor.run(frame, engine.input_view()))"
                ) from None
            raise

    def decode(self, out: InferenceOutput) -> None:
        q = self._output()
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
        # Interpreter before delegate (the TFLite wrapper relies on this order in __del__).
        self._input = self._output = None
        self.interpreter = None
