"""Model file formats: which files a model set may hold and the load-time check of each.

A format is named by the runtime that loads it: `tflite` for the CPU twins and TFLite external
delegates, `edgetpu-tflite` for Edge TPU builds, and whatever an NPU runtime with its own format
registers (its kind's file calls register_format). Verification refuses any file in a model
folder whose suffix belongs to a registered format and which the manifest does not list; the
engine checks each file with its runtime's format before handing it over.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from firmware_py.errors import ModelError
from firmware_py.inference.flatbuffer import check_flatbuffer


@dataclass(frozen=True)
class ModelFormat:
    name: str
    suffixes: tuple[str, ...]  # file name endings of this format, e.g. (".tflite",)
    check: Callable[[bytes, str], None]  # (verified bytes, path) -> None, or a one-line ModelError


FORMATS: dict[str, ModelFormat] = {}


def register_format(fmt: ModelFormat) -> ModelFormat:
    if FORMATS.get(fmt.name, fmt) != fmt:
        raise ValueError(f"model format {fmt.name!r} is already registered differently")
    FORMATS[fmt.name] = fmt
    return fmt


def model_format(name: str) -> ModelFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ModelError(f"model format {name!r} is not registered (known: {', '.join(FORMATS)}); "
                         "install or register the accelerator kind that loads it") from None


def model_suffixes() -> tuple[str, ...]:
    """Every registered format's file endings: the files a model folder must list."""
    import firmware_py.inference.accelerators  # noqa: F401  (registers the built-in kinds' formats)

    return tuple(sorted({s for f in FORMATS.values() for s in f.suffixes}))


TFLITE = register_format(ModelFormat("tflite", (".tflite",), check_flatbuffer))
