"""systemd service notifications (sd_notify): READY, STATUS, WATCHDOG, STOPPING.

The documented datagram protocol (sd_notify(3)): newline-separated ``KEY=value`` assignments
sent to the Unix datagram socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` is the abstract
namespace). A dozen lines, so no dependency. Without ``$NOTIFY_SOCKET`` (not run by systemd with
``Type=notify``) every call is a no-op.

The watchdog period comes from ``$WATCHDOG_USEC`` (set by ``WatchdogSec=``); pings are sent at
half of it, as systemd recommends. ``$WATCHDOG_PID``, when set, must be ours.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger(__name__)


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None, clock=time.monotonic):
        env = os.environ if environ is None else environ
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._address: str | bytes | None = None
        path = env.get("NOTIFY_SOCKET") or ""
        if path:
            self._address = b"\0" + path[1:].encode() if path.startswith("@") else path
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC") or ""
        pid = env.get("WATCHDOG_PID") or ""
        watched = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 2e6 if watched and self.enabled else None
        self._last_ping = float("-inf")
        self.sent_failures = 0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one message (``READY=1``, ``STATUS=...``); False when not under systemd or it failed."""
        if self._sock is None:
            return False
        text = "\n".join(f"{k}={_one_line(v)}" for k, v in fields.items())
        try:
            with self._lock:
                self._sock.sendto(text.encode("utf-8", "replace"), self._address)
            return True
        except OSError as exc:  # systemd gone or the socket full: never fatal for the pipeline
            self.sent_failures += 1
            if self.sent_failures == 1:
                log.warning("cannot notify systemd at %s (%s)", self._address, exc)
            return False

    def ready(self, status: str) -> bool:
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify(STOPPING=1, STATUS=status)

    def watchdog(self) -> bool:
        """Ping the watchdog if half its period has passed since the last ping; True when sent."""
        if self.watchdog_interval_s is None:
            return False
        now = self._clock()
        if now - self._last_ping < self.watchdog_interval_s:
            return False
        self._last_ping = now
        return self.notify(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(value: str | int) -> str:
    # A newline would start a new assignment: a status text must not be able to say READY=1.
    return str(value).replace("\n", " ")
