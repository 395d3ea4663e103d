"""Run an accelerator invoke with a deadline, so a hung USB accelerator cannot stall the pipeline.

Interpreter.invoke releases the GIL, so the invoke runs on one persistent worker thread while the
processing thread waits for it with a timeout. On timeout the worker (and the interpreter it is
stuck in) is abandoned; the engine continues on the CPU twin and builds a fresh accelerator
runtime when it re-attaches. The hand-off uses two raw locks rather than threading.Event: it
costs ~15 us a frame instead of ~23 us (measured here), and it is paid on every accelerator frame.
"""
from __future__ import annotations

import _thread
import threading
from typing import Callable

from firmware_py.errors import FirmwareError


class AcceleratorFailure(RuntimeError):
    """The accelerator invoke raised or did not finish before the deadline."""


class DeadlineInvoker:
    def __init__(self, name: str):
        self._go = _thread.allocate_lock()
        self._go.acquire()
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self._fn: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._hung = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            if self._closed:
                return
            try:
                self._fn()
            except BaseException as e:  # handed to the caller's thread
                self._error = e
            self._done.release()

    def run(self, fn: Callable[[], None], timeout_s: float) -> None:
        if self._hung:
            raise AcceleratorFailure("accelerator worker is still stuck in an earlier invoke")
        if self._closed:
            raise AcceleratorFailure("accelerator worker was closed")
        self._fn, self._error = fn, None
        self._go.release()
        if not self._done.acquire(timeout=timeout_s):
            self._hung = True
            raise AcceleratorFailure(f"invoke did not finish within {timeout_s * 1e3:.0f} ms")
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, FirmwareError):  # a caller mistake (e.g. a held input view), not the device
                raise err
            raise AcceleratorFailure(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)

    def close(self) -> None:
        self._closed = True
        try:
            self._go.release()  # wakes an idle worker so it exits; a busy one exits after its invoke
        except RuntimeError:
            pass  # already released: the worker will see _closed when it takes it
