"""Interpreter backend: chosen once and logged; a one-line fix when no interpreter package exists."""
import logging

import pytest

from firmware_py.inference import backend
from firmware_py.inference.backend import NoInterpreterError, find_backend, interpreter_backend


def test_backend_is_chosen_once_and_is_tflite_runtime_here():
    a, b = interpreter_backend(), interpreter_backend()
    assert a is b
    assert a.name == "tflite_runtime.interpreter" and a.version.startswith("2.")


def test_falls_back_to_the_next_candidate():
    found = find_backend(("no_such_runtime.interpreter", "tflite_runtime.interpreter"))
    assert found.name == "tflite_runtime.interpreter"


def test_neither_installed_is_one_line_naming_both_packages():
    with pytest.raises(NoInterpreterError) as e:
        find_backend(("no_such_runtime.interpreter", "also_missing.interpreter"))
    msg = str(e.value)
    assert "\n" not in msg and "tflite-runtime" in msg and "ai-edge-litert" in msg


def test_choice_is_logged(monkeypatch, caplog):
    monkeypatch.setattr(backend, "_chosen", None)
    with caplog.at_level(logging.INFO, logger="firmware_py.inference.backend"):
        chosen = interpreter_backend(("no_such_runtime.interpreter", "tflite_runtime.interpreter"))
    assert chosen.name == "tflite_runtime.interpreter"
    assert "TFLite interpreter backend: tflite_runtime.interpreter 2." in caplog.text
