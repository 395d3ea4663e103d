"""Interpreter backend: chosen once and logged; a one-line fix when no interpreter package exists.

Runs under either package: INSTALLED is whichever of tflite-runtime / ai-edge-litert is here.
"""
import logging

import pytest

from firmware_py.inference import backend
from firmware_py.inference.backend import CANDIDATES, NoInterpreterError, find_backend, interpreter_backend

INSTALLED = find_backend(CANDIDATES).name  # the first importable candidate, in preference order


def test_backend_is_chosen_once_and_is_the_preferred_installed_package():
    a, b = interpreter_backend(), interpreter_backend()
    assert a is b
    assert a.name == INSTALLED and a.version[:1].isdigit()


def test_falls_back_to_the_next_candidate():
    found = find_backend(("no_such_runtime.interpreter", INSTALLED))
    assert found.name == INSTALLED


def test_neither_installed_is_one_line_naming_both_packages():
    with pytest.raises(NoInterpreterError) as e:
        find_backend(("no_such_runtime.interpreter", "also_missing.interpreter"))
    msg = str(e.value)
    assert "\n" not in msg and "tflite-runtime" in msg and "ai-edge-litert" in msg


def test_choice_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(backend, "_chosen", None)
    with caplog.at_level(logging.INFO, logger="firmware_py.inference.backend"):
        chosen = interpreter_backend(("no_such_runtime.interpreter", INSTALLED))
    assert chosen.name == INSTALLED
    assert f"TFLite interpreter backend: {INSTALLED} " in caplog.text
