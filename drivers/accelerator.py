"""Accelerator delegate loader: the Edge TPU or any TFLite external delegate, with a CPU fallback.

The delegate is loaded once (lazily, on the first tier that asks) and shared by every tier's
interpreter. When loading fails, delegate() returns None and `error` says why in one line; the
engine then runs the tiers' CPU twins and says so in status and results. After a failure during
operation the engine calls mark_failed() and later reload() (with back-off) to re-attach.
"""
from __future__ import annotations

import ctypes
import logging
import platform
import re
import threading
from typing import Any

from firmware_py.errors import ConfigError

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}.get(platform.system(), "libedgetpu.so.1")
_DEVICE = re.compile(r"^(usb|pci)(:\d+)?$")


class DelegateLoader:
    """One accelerator configuration.

    kind: "edgetpu" (libedgetpu, device usb / usb:N / pci:N) or "external" (library + options).
    key: the manifest `files` key of the builds for this accelerator ("edgetpu" by default for the
        Edge TPU; for an external delegate the configured name, default "external").
    interp: the InterpreterBackend whose load_delegate is used (the delegate must come from the
        same runtime as the interpreters).
    """

    def __init__(
        self,
        kind: str,
        *,
        interp,
        device: str = "usb",
        library: str | None = None,
        options: dict[str, Any] | None = None,
        key: str | None = None,
    ):
        if kind not in ("edgetpu", "external"):
            raise ConfigError(f"accelerator.kind {kind!r}: use edgetpu or external (or none for CPU only)")
        self.kind = kind
        self._interp = interp
        self.options = {str(k): str(v) for k, v in (options or {}).items()}
        if kind == "edgetpu":
            if not _DEVICE.match(device or ""):
                raise ConfigError(f"accelerator.edgetpu_device {device!r}: use usb, usb:N or pci:N")
            self.library = library or EDGETPU_LIBRARY
            self.options.setdefault("device", device)
            self.key = key or "edgetpu"
        else:
            if not library:
                raise ConfigError("accelerator.external_library is not set; give the delegate's .so path")
            self.library = library
            self.key = key or "external"
        self._lock = threading.Lock()
        self._delegate = None
        self._attempted = False
        self.error: str | None = None
        self.loads = 0
        self.failures = 0

    @classmethod
    def from_config(cls, acc, *, interp) -> "DelegateLoader | None":
        """From the `accelerator` config section (mapping or attribute object); None for kind none."""
        get = acc.get if isinstance(acc, dict) else (lambda k, d=None: getattr(acc, k, d))
        kind = get("kind", "none") or "none"
        if kind == "none":
            return None
        return cls(
            kind,
            interp=interp,
            device=get("edgetpu_device", "usb") or "usb",
            library=get("external_library") if kind == "external" else get("edgetpu_library"),
            options=get("external_options", {}) if kind == "external" else None,
            key=get("external_name") if kind == "external" else None,
        )

    def delegate(self):
        """The loaded delegate, loading it on the first call; None when it cannot be loaded."""
        with self._lock:
            if not self._attempted:
                self._load_locked()
            return self._delegate

    def _load_locked(self) -> None:
        self._attempted = True
        self._delegate = None
        try:
            # dlopen first: a missing library is the common case (accelerator runtime not
            # installed) and tflite's Delegate object would otherwise be half-built.
            ctypes.CDLL(self.library)
            self._delegate = self._interp.load_delegate(self.library, self.options or None)
        except (OSError, ValueError, RuntimeError, AttributeError) as e:
            text = " ".join(str(e).split()) or type(e).__name__
            fix = ("install the Edge TPU runtime (libedgetpu1-std) and check the device is connected"
                   if self.kind == "edgetpu" else "check accelerator.external_library and external_options")
            self.error = f"cannot load {self.kind} delegate {self.library} ({text}; {fix})"
            self.failures += 1
            log.warning("%s; tiers run on their CPU twins", self.error)
            return
        self.error = None
        self.loads += 1
        log.info("%s delegate loaded from %s options=%s", self.kind, self.library, self.options)

    def mark_failed(self, reason: str) -> None:
        """The accelerator failed during operation: forget the delegate until reload()."""
        with self._lock:
            self.failures += 1
            self.error = f"{self.kind} failed during operation ({reason})"
            self._delegate = None  # interpreters built on it keep their own reference

    def reload(self) -> bool:
        """Try to load the delegate again (re-attach); True when it is loaded."""
        with self._lock:
            self._load_locked()
            return self._delegate is not None

    @property
    def loaded(self) -> bool:
        return self._delegate is not None

    def status(self) -> dict:
        return {
            "kind": self.kind, "key": self.key, "library": self.library, "options": dict(self.options),
            "loaded": self._delegate is not None, "error": self.error,
            "loads": self.loads, "failures": self.failures,
        }
