"""TFLite delegates (the Edge TPU, any external delegate): one shared delegate, TFLite interpreters.

The delegate is loaded once and handed to every tier's interpreter; it must come from the same
interpreter package as the interpreters (firmware_py.inference.backend).
"""
from __future__ import annotations

import ctypes
from typing import Any

from firmware_py.inference.accelerators.kind import AcceleratorKind
from firmware_py.inference.backend import InterpreterBackend, interpreter_backend
from firmware_py.inference.tflite import TFLiteModel


class DelegateKind(AcceleratorKind):
    """A TFLite delegate library loaded with load_delegate(library, options)."""

    def __init__(self, *, library: str, options: dict[str, Any] | None, key: str,
                 interp: InterpreterBackend | None = None):
        super().__init__(key)
        self.library = library
        self._options = {str(k): str(v) for k, v in (options or {}).items()}
        self._interp = interp or interpreter_backend()

    def _open(self):
        # dlopen first: a missing library is the common case (accelerator runtime not
        # installed) and tflite's Delegate object would otherwise be half-built.
        ctypes.CDLL(self.library)
        return self._interp.load_delegate(self.library, self._options or None)

    def open_model(self, data: bytes, path: str, *, threads: int, cpu_twin: str | None) -> TFLiteModel:
        return TFLiteModel(self._interp, data, path, threads=threads, delegate=self.handle(), cpu_twin=cpu_twin)

    def delegate(self):
        """The loaded TFLite delegate (None when it cannot be loaded), for tools that build their own
        interpreters (bench)."""
        return self.handle()

    def describe(self) -> str:
        return f"delegate {self.library}"

    def options(self) -> dict[str, str]:
        return dict(self._options)
