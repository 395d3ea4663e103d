"""One queue for every command that changes the running device, applied by one thread.

The console, signal handlers and any later remote channel never touch the daemon's parts
directly: they ``post`` a command and get a Future back, and the daemon's control thread applies
commands one after the other, in the order they were posted, and resolves each Future with the
real outcome (a one-line ``ok: ...`` text, or the FirmwareError that says why not). Two reloads
posted together therefore run one after the other, and a tier request answers with what the
engine actually did.

``queue.SimpleQueue`` because its ``put`` is reentrant: a signal handler may post while the
control thread is inside ``get`` on the same queue.
"""
from __future__ import annotations

import logging
import queue
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from firmware_py.errors import FirmwareError

log = logging.getLogger(__name__)

# Longest a caller (a technician at the console) waits for a command's outcome; a tier load on
# a slow board takes seconds, a probe command one round trip.
DEFAULT_WAIT_S = 60.0


@dataclass
class Command:
    name: str
    args: dict[str, Any]
    source: str  # "console", "signal", ...: for the log and the journal
    future: Future = field(default_factory=Future)


class CommandQueue:
    """Commands in, outcomes out. ``handlers`` maps a command name to ``handler(**args) -> str``."""

    def __init__(self, handlers: dict[str, Callable[..., str]] | None = None):
        self._queue: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.handlers: dict[str, Callable[..., str]] = dict(handlers or {})
        self.applied = 0
        self.failed = 0
        self._closed_because: str | None = None

    def post(self, name: str, /, *, source: str = "api", **args: Any) -> Future:
        """Queue a command; the Future resolves once the control thread has applied it."""
        cmd = Command(name, args, source)
        if self._closed_because is not None:
            cmd.future.set_exception(FirmwareError(f"{name} not applied: {self._closed_because}"))
            return cmd.future
        if name not in self.handlers:
            cmd.future.set_exception(FirmwareError(f"unknown daemon command {name!r}; "
                                                   f"known: {', '.join(sorted(self.handlers))}"))
            return cmd.future
        self._queue.put(cmd)
        return cmd.future

    def call(self, name: str, /, *, source: str = "api", timeout: float = DEFAULT_WAIT_S, **args: Any) -> str:
        """Post and wait for the outcome; raises the command's FirmwareError."""
        future = self.post(name, source=source, **args)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise FirmwareError(f"{name} was not applied within {timeout:g} s (the daemon is busy or "
                                "stopping); try again") from None

    def apply_pending(self, timeout: float = 0.0) -> int:
        """Apply queued commands in order (waiting up to ``timeout`` for the first); how many ran.

        Only the control thread calls this.
        """
        count = 0
        block = timeout > 0
        while True:
            try:
                cmd = self._queue.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return count
            block = False
            self._apply(cmd)
            count += 1

    def _apply(self, cmd: Command) -> None:
        if not cmd.future.set_running_or_notify_cancel():
            return
        try:
            outcome = self.handlers[cmd.name](**cmd.args)
        except (FirmwareError, ValueError) as exc:  # refused: the caller gets the reason
            self.failed += 1
            log.warning("%s command %s refused: %s", cmd.source, cmd.name, exc)
            cmd.future.set_exception(exc if isinstance(exc, FirmwareError) else FirmwareError(str(exc)))
            return
        except Exception as exc:  # a bug: keep the control thread alive, tell the caller and the log
            self.failed += 1
            log.exception("%s command %s failed", cmd.source, cmd.name)
            cmd.future.set_exception(FirmwareError(f"{cmd.name} failed ({type(exc).__name__}: {exc}); "
                                                   "see the daemon log"))
            return
        self.applied += 1
        log.info("%s command %s: %s", cmd.source, cmd.name, outcome)
        cmd.future.set_result(outcome)

    def close(self, reason: str) -> None:
        """At shutdown: callers still waiting, and any that post later, learn it was not applied."""
        self._closed_because = reason
        while True:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                return
            if cmd.future.set_running_or_notify_cancel():
                cmd.future.set_exception(FirmwareError(f"{cmd.name} not applied: {reason}"))
