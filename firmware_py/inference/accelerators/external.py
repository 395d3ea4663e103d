"""Any TFLite external delegate (.so implementing tflite_plugin_create_delegate / _destroy_delegate).

Its builds are ordinary `.tflite` files under the manifest key it is configured with (`npu`, ...).
It cannot enumerate devices: that is the delegate's business, so devices() finds none.
"""
from __future__ import annotations

from firmware_py.errors import ConfigError
from firmware_py.inference.accelerators import ACCELERATORS
from firmware_py.inference.accelerators.delegate import DelegateKind
from firmware_py.inference.formats import TFLITE
from firmware_py.registry import Key


@ACCELERATORS.register("external", doc="Any TFLite external delegate library.", keys={
    "library": Key("str", None, "Path of the delegate library (needed for `kind: external`).", nullable=True),
    "options": Key("map", {}, "Options passed to the delegate (string keys)."),
    "name": Key("str", "external", "Key of the delegate's model builds in the manifest's `files` (e.g. `npu`); "
                "tiers without such a build run their CPU twin.", pattern=r"[a-z][a-z0-9_-]{0,31}",
                pattern_hint="a lower-case name like npu or rknn"),
})
class ExternalDelegate(DelegateKind):
    name = "external"
    model_format = TFLITE.name
    fix = "check accelerator.external.library and accelerator.external.options"

    def __init__(self, *, library: str | None, options: dict | None = None, key: str = "external", interp=None):
        if not library:
            raise ConfigError("accelerator.external.library is not set; give the delegate's .so path")
        super().__init__(library=library, options=options, key=key, interp=interp)

    @classmethod
    def from_config(cls, section) -> "ExternalDelegate":
        return cls(library=section.library, options=section.options, key=section.name)
