"""A TFLite interpreter over verified model bytes: the LoadedModel of the CPU twin and of delegates.

The TFLite Python API refuses invoke() while any NumPy view of an interpreter buffer is alive
(Interpreter._ensure_safe counts references). So this keeps only the *accessors* returned by
Interpreter.tensor() and hands out a fresh view per call; a caller that keeps the input view
across run() gets a one-line error.
"""
from __future__ import annotations

import numpy as np

from firmware_py.errors import ModelError
from firmware_py.inference.backend import InterpreterBackend
from firmware_py.inference.validate import ModelCheckError, custom_op_error


class TFLiteModel:
    def __init__(self, interp: InterpreterBackend, data: bytes, path: str, *, threads: int = 1, delegate=None,
                 cpu_twin: str | None = None):
        try:
            kwargs = {"model_content": data, "num_threads": max(1, int(threads))}
            if delegate is not None:
                kwargs["experimental_delegates"] = [delegate]
            self.interpreter = interp.Interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            translated = custom_op_error(e, path, cpu_twin)
            if translated is not None:
                raise translated from None
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelCheckError("load", f"{path}: the interpreter cannot load it ({first}); rebuild") from None
        self._path = path
        self._inputs = self._details(self.interpreter.get_input_details)
        self._outputs = self._details(self.interpreter.get_output_details)
        # Accessors of the first tensors; the engine refuses models with more before using them.
        self._input = self.interpreter.tensor(self._inputs[0]["index"]) if self._inputs else None
        self._output = self.interpreter.tensor(self._outputs[0]["index"]) if self._outputs else None

    def _details(self, get) -> list[dict]:
        # The interpreter decodes tensor names from the file as UTF-8 and lets a bad one escape as
        # UnicodeDecodeError (found by `make fuzz-models`: a mutated name string).
        try:
            return get()
        except UnicodeDecodeError as e:
            raise ModelCheckError("load", f"{self._path}: a tensor name in the file is not UTF-8 (byte "
                                  f"{e.start}); the file is corrupt, rebuild it") from None

    def input_details(self) -> list[dict]:
        return self._inputs

    def output_details(self) -> list[dict]:
        return self._outputs

    def input_view(self) -> np.ndarray:
        return self._input()

    def output_view(self) -> np.ndarray:
        return self._output()

    def run(self) -> None:
        try:
            self.interpreter.invoke()
        except RuntimeError as e:
            if "reference to internal data" in str(e):
                raise ModelError(
                    "engine.input_view() result is still referenced at invoke(); write into it and drop it "
                    "before invoke() (e.g. preprocessor.run(samples, geometry, engine.input_view()))"
                ) from None
            raise

    def memory_bytes(self) -> int:
        """Every tensor's size: with the file, an upper bound of the arena, used for the budget."""
        total = 0
        for d in self._details(self.interpreter.get_tensor_details):
            shape = d.get("shape")
            if shape is not None and len(shape):
                total += int(np.prod(shape)) * np.dtype(d["dtype"]).itemsize
        return total

    def close(self) -> None:
        # Interpreter before delegate (the TFLite wrapper relies on this order in __del__).
        self._input = self._output = None
        self.interpreter = None


class CpuTwin:
    """The CPU backend every tier has: plain TFLite (XNNPACK), the `tflite` format."""

    model_format = "tflite"

    def __init__(self, interp: InterpreterBackend):
        self._interp = interp

    def open_model(self, data: bytes, path: str, *, threads: int, cpu_twin: str | None) -> TFLiteModel:
        return TFLiteModel(self._interp, data, path, threads=threads, cpu_twin=cpu_twin)
