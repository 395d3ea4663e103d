"""Which TFLite interpreter package runs the models: ai_edge_litert, else tflite_runtime.

Chosen once per process (the first call) and logged, so every tier and every delegate comes from
the same runtime: a delegate loaded by one package cannot be handed to the other's Interpreter.
"""
from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from firmware_py.errors import ModelError

log = logging.getLogger(__name__)

# Import paths in preference order: ai-edge-litert, the default (README "Interpreter"), then
# tflite-runtime 2.14 (its predecessor, same Interpreter/load_delegate API, Python <= 3.11).
CANDIDATES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


class NoInterpreterError(ModelError):
    """Neither interpreter package is importable."""


@dataclass(frozen=True)
class InterpreterBackend:
    name: str  # import path of the module the classes come from
    version: str
    Interpreter: Any
    load_delegate: Callable[..., Any]
    OpResolverType: Any


_lock = threading.Lock()
_chosen: InterpreterBackend | None = None


def _try(module_name: str) -> InterpreterBackend | None:
    try:
        mod = importlib.import_module(module_name)
    except ImportError:
        return None
    top = importlib.import_module(module_name.split(".")[0])
    version = getattr(top, "__version__", "unknown")
    return InterpreterBackend(module_name, version, mod.Interpreter, mod.load_delegate,
                             getattr(mod, "OpResolverType", None))


def interpreter_backend(candidates: tuple[str, ...] = CANDIDATES) -> InterpreterBackend:
    """The process-wide interpreter package; raises NoInterpreterError with the fix when none."""
    global _chosen
    with _lock:
        if _chosen is None:
            _chosen = find_backend(candidates)
            log.info("TFLite interpreter backend: %s %s", _chosen.name, _chosen.version)
        return _chosen


def find_backend(candidates: tuple[str, ...]) -> InterpreterBackend:
    """The first importable candidate, not cached (interpreter_backend() caches; tests, diagnostics)."""
    for name in candidates:
        found = _try(name)
        if found is not None:
            return found
    raise NoInterpreterError(
        "no TFLite interpreter installed: pip install tflite-runtime (Python <= 3.11, numpy<2) or ai-edge-litert"
    )
