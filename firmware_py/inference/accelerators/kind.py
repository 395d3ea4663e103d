"""What an accelerator kind implements: open its device, load model files of its format, report.

Two shapes fit this interface. A TFLite delegate (Edge TPU, any external delegate; delegate.py)
opens a delegate and loads `.tflite` builds into a TFLite interpreter that uses it. A runtime
with its own model format (Hailo `.hef`, RKNN `.rknn`, an Ethos-U driver) opens its device and
loads its own files; it returns a LoadedModel, the same small surface a TFLite interpreter is
wrapped in, so the engine validates, feeds, runs and decodes every backend alike.

A kind is one file: a subclass registered with ``@ACCELERATORS.register(name, doc=..., keys=...)``
(its `accelerator.<name>` configuration sub-section), plus, for a new format, register_format().
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

log = logging.getLogger("firmware_py.inference.accelerators")


class AcceleratorUnavailable(Exception):
    """The device or runtime cannot be opened; the message is one line with the fix."""


@dataclass(frozen=True)
class Device:
    """One attached accelerator, as devices() lists it."""

    kind: str  # the accelerator.kind that drives it
    device: str  # what its configuration takes to select it (e.g. "usb:0", "pci:0")
    path: str  # where it was found (sysfs folder, device node)
    detail: str = ""  # e.g. USB ids


class LoadedModel(Protocol):
    """One model file loaded on a runtime: the single input and output tensor, run, release.

    input_details()/output_details(): one dict per tensor with the keys TFLite uses: `index`,
    `shape`, `dtype` (a NumPy type), `quantization_parameters` ({`scales`, `zero_points`}).
    input_view()/output_view(): NumPy arrays of the runtime's own buffers (int8, the tensor's
    shape); the engine writes a frame into the input view and drops it before run().
    """

    def input_details(self) -> list[dict]: ...
    def output_details(self) -> list[dict]: ...
    def input_view(self) -> np.ndarray: ...
    def output_view(self) -> np.ndarray: ...
    def run(self) -> None: ...  # raise RuntimeError (one line) when the device fails
    def memory_bytes(self) -> int: ...  # buffers the runtime holds for this model, for the budget
    def close(self) -> None: ...


class AcceleratorKind:
    """One configured accelerator; subclasses implement _open(), _close() and open_model().

    The device is opened once, lazily, and shared by every tier's model; after a failure during
    operation the engine calls mark_failed() and later reopen() (with back-off) to re-attach.
    """

    name: ClassVar[str]  # the accelerator.kind value
    model_format: ClassVar[str]  # the format of its model builds (firmware_py.inference.formats)
    fix: ClassVar[str] = "check the accelerator configuration"  # said when the device will not open

    def __init__(self, key: str):
        self.key = key  # the manifest `files` key of this accelerator's builds
        self._lock = threading.Lock()
        self._handle: Any = None
        self._attempted = False
        self.error: str | None = None
        self.loads = 0
        self.failures = 0

    # -- what a kind implements -------------------------------------------------------------
    @classmethod
    def devices(cls, root: str = "/") -> list[Device]:
        """Devices of this kind attached under `root` (a file-system root; tests pass a fake tree)."""
        return []

    def _open(self) -> Any:
        """Open the device or runtime; the handle is passed back to open_model(). Raise
        AcceleratorUnavailable, OSError, ValueError or RuntimeError when it cannot be opened."""
        raise NotImplementedError

    def _close(self, handle: Any) -> None:
        """Release a handle after a failure (models loaded on it keep their own reference)."""

    def open_model(self, data: bytes, path: str, *, threads: int, cpu_twin: str | None) -> LoadedModel:
        """Load verified model bytes of this kind's format on the open device; raise ModelError
        (one line naming `path`) when the file cannot run here."""
        raise NotImplementedError

    def options(self) -> dict[str, str]:
        return {}

    # -- shared by every kind -----------------------------------------------------------------
    def __getstate__(self) -> dict:
        """The configuration only, not the open device: the copy the model check's child process
        gets (firmware_py.inference.isolation) opens a device of its own."""
        state = dict(self.__dict__)
        state.update(_lock=None, _handle=None, _attempted=False, error=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def handle(self) -> Any:
        """The open device handle, opening it on the first call; None when it cannot be opened."""
        with self._lock:
            if not self._attempted:
                self._open_locked()
            return self._handle

    def _open_locked(self) -> None:
        self._attempted = True
        self._handle = None
        try:
            self._handle = self._open()
        except (AcceleratorUnavailable, OSError, ValueError, RuntimeError, AttributeError) as e:
            text = " ".join(str(e).split()) or type(e).__name__
            self.error = f"cannot load {self.name} {self.describe()} ({text}; {self.fix})"
            self.failures += 1
            log.warning("%s; tiers run on their CPU twins", self.error)
            return
        self.error = None
        self.loads += 1
        log.info("%s loaded: %s options=%s", self.name, self.describe(), self.options())

    def describe(self) -> str:
        """What is being opened, for messages (a library path, a device node)."""
        return self.key

    def mark_failed(self, reason: str) -> None:
        """The accelerator failed during operation: forget the handle until reopen()."""
        with self._lock:
            self.failures += 1
            self.error = f"{self.name} failed during operation ({reason})"
            handle, self._handle = self._handle, None
        if handle is not None:
            self._close(handle)

    def reopen(self) -> bool:
        """Try to open the device again (re-attach); True when it is open."""
        with self._lock:
            self._open_locked()
            return self._handle is not None

    @property
    def loaded(self) -> bool:
        return self._handle is not None

    def status(self) -> dict:
        return {
            "kind": self.name, "key": self.key, "format": self.model_format, "target": self.describe(),
            "options": self.options(), "loaded": self._handle is not None, "error": self.error,
            "loads": self.loads, "failures": self.failures,
        }
