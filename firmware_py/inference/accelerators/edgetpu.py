"""Coral Edge TPU through libedgetpu: USB or PCIe, builds compiled by edgetpu_compiler.

devices() finds attached Edge TPUs as pycoral's list_edge_tpus does: USB devices with the ids of
an Edge TPU before (1a6e:089a) and after (18d1:9302) its firmware is loaded, and PCIe devices
as /dev/apex_N nodes.
"""
from __future__ import annotations

import glob
import os
import platform
import re

from firmware_py.errors import ConfigError, ModelError
from firmware_py.inference.accelerators import ACCELERATORS
from firmware_py.inference.accelerators.delegate import DelegateKind
from firmware_py.inference.accelerators.kind import Device
from firmware_py.inference.flatbuffer import check_flatbuffer
from firmware_py.inference.formats import ModelFormat, register_format
from firmware_py.inference.validate import EDGETPU_CUSTOM_OP
from firmware_py.registry import Key

LIBRARY = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}.get(platform.system(), "libedgetpu.so.1")
USB_IDS = (("1a6e", "089a"), ("18d1", "9302"))  # Global Unichip (no firmware yet), Google (running)
_DEVICE = re.compile(r"^(usb|pci)(:\d+)?$")


def _check_compiled(data: bytes, path: str) -> None:
    check_flatbuffer(data, path)
    if EDGETPU_CUSTOM_OP.encode() not in data:
        raise ModelError(f"{path}: listed as an Edge TPU build but has no {EDGETPU_CUSTOM_OP}; compile it with "
                         "edgetpu_compiler or list it under files.cpu")


FORMAT = register_format(ModelFormat("edgetpu-tflite", (".tflite",), _check_compiled))


@ACCELERATORS.register("edgetpu", doc="Coral Edge TPU via libedgetpu; tiers run their `edgetpu` builds.", keys={
    "device": Key("str", "usb", "Edge TPU device: `usb`, `usb:N` or `pci:N` (see `firmware-py selftest`).",
                  pattern=r"(usb|pci)(:\d+)?", pattern_hint="usb, usb:N or pci:N"),
    "library": Key("str", LIBRARY, "Edge TPU runtime library (found on the loader path, or an absolute path)."),
})
class EdgeTpu(DelegateKind):
    name = "edgetpu"
    model_format = FORMAT.name
    fix = "install the Edge TPU runtime (libedgetpu1-std) and check the device is connected"

    def __init__(self, *, device: str = "usb", library: str | None = None, interp=None):
        if not _DEVICE.match(device or ""):
            raise ConfigError(f"accelerator.edgetpu.device {device!r}: use usb, usb:N or pci:N")
        super().__init__(library=library or LIBRARY, options={"device": device}, key="edgetpu", interp=interp)

    @classmethod
    def from_config(cls, section) -> "EdgeTpu":
        return cls(device=section.device, library=section.library)

    @classmethod
    def devices(cls, root: str = "/") -> list[Device]:
        found = []
        usb = sorted(glob.glob(os.path.join(root, "sys/bus/usb/devices/*")))
        for path in usb:
            ids = (_read(os.path.join(path, "idVendor")), _read(os.path.join(path, "idProduct")))
            if ids in USB_IDS:
                found.append(Device(cls.name, f"usb:{sum(d.device.startswith('usb') for d in found)}", path,
                                    f"{ids[0]}:{ids[1]}"))
        for i, path in enumerate(sorted(glob.glob(os.path.join(root, "dev/apex_*")))):
            found.append(Device(cls.name, f"pci:{i}", path, "PCIe"))
        return found


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip().lower()
    except OSError:
        return None
