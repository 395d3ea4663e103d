"""Service console: a line-oriented command prompt on a second serial port.

Field technicians plug a USB-serial cable into the handheld and type commands. Read-only
commands (status, counters, tiers) need no login; commands that change what the device does
(pin a tier, reload models, command the probe) need the technician PIN, whose SHA-256 digest is
in the configuration. Three wrong PINs lock the console for a while, so a PIN cannot be guessed
at line speed. Human speed: byte-wise reads are fine here, and the frame path is not touched.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time

import serial

from firmware_py.console.commands import COMMANDS
from firmware_py.errors import FirmwareError

log = logging.getLogger(__name__)

MAX_LINE = 256
LOCKOUT_AFTER = 3

def pin_digest(pin: str) -> str:
    return hashlib.sha256(pin.encode("utf-8")).hexdigest()


class ServiceConsole:
    """Serves one port on its own thread; ``daemon`` is the running Daemon."""

    def __init__(self, url: str, daemon, *, pin_sha256: str | None, baudrate: int = 115200,
                 lockout_s: float = 30.0, clock=time.monotonic):
        self.url, self.daemon, self.pin_sha256 = url, daemon, pin_sha256
        self.baudrate, self.lockout_s, self._clock = baudrate, lockout_s, clock
        self.logged_in = False
        self.failures = 0
        self._locked_until = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.2)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise FirmwareError(f"cannot open console port {url} ({exc}); check console.port or set it to null") \
                from None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._port.close()

    def _serve(self) -> None:
        self._write("firmware-py service console; type help\r\n> ")
        line = bytearray()
        while not self._stop.is_set():
            try:
                chunk = self._port.read(1)
            except (serial.SerialException, OSError) as exc:
                log.warning("console port failed (%s); console stopped", exc)
                return
            if not chunk:
                continue
            if chunk in (b"\r", b"\n"):
                if line:
                    text = line.decode("utf-8", "replace").strip()
                    line.clear()
                    self._write(self.execute(text) + "\r\n> ")
                continue
            if len(line) < MAX_LINE:
                line += chunk

    def _write(self, text: str) -> None:
        try:
            self._port.write(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8"))
        except (serial.SerialException, OSError):
            pass

    # -- commands (the table is in console/commands.py) ----------------------------------------
    def execute(self, text: str) -> str:
        words = text.split()
        if not words:
            return ""
        name, args = words[0].lower(), words[1:]
        cmd = COMMANDS.get(name)
        if cmd is None:
            return f"error: unknown command '{name}'; type help"
        if cmd.login:
            denied = self._require_login()
            if denied:
                return denied
        try:
            return cmd.run(self, args)
        except (FirmwareError, ValueError) as exc:
            return f"error: {exc}"

    def post(self, name: str, /, **args) -> str:
        """A state change, through the daemon's command queue: the reply is the real outcome."""
        return self.daemon.commands.call(name, source="console", **args)

    def _require_login(self) -> str | None:
        if self.pin_sha256 is None:
            return "error: no technician PIN is configured (console.pin_sha256); this command is disabled"
        if not self.logged_in:
            return "error: log in first: login PIN"
        return None

    def login(self, pin: str) -> str:
        now = self._clock()
        if now < self._locked_until:
            return f"error: console locked after {LOCKOUT_AFTER} wrong PINs; try again in " \
                   f"{self._locked_until - now:.0f} s"
        if self.pin_sha256 is None:
            return "error: no technician PIN is configured (console.pin_sha256)"
        if hmac.compare_digest(pin_digest(pin), self.pin_sha256.lower()):
            self.logged_in, self.failures = True, 0
            log.warning("console: technician logged in")
            return "ok: logged in"
        self.failures += 1
        log.warning("console: wrong PIN (%d in a row)", self.failures)
        if self.failures >= LOCKOUT_AFTER:
            self._locked_until, self.failures = now + self.lockout_s, 0
            return f"error: wrong PIN; console locked for {self.lockout_s:.0f} s"
        return f"error: wrong PIN ({LOCKOUT_AFTER - self.failures} tries left)"
