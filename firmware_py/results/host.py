"""Result channel to the host: every result as one JSON line on a serial port (docs/results.md).

A rig or a host application reads the handheld's results over a USB-serial link (a second
cable, or the Pi's USB gadget serial). The channel never holds up the device: a write that
cannot go out within ``write_timeout_s`` (nobody reading, the cable pulled) counts the line as
undelivered and the port is reopened with back-off; the journal keeps every result regardless.
"""
from __future__ import annotations

import logging
import threading
import time

import serial

from firmware_py.registry import Key
from firmware_py.results.sinks import SINKS, ResultRecord

log = logging.getLogger(__name__)


class HostChannel:
    def __init__(self, port: str, *, baudrate: int = 115200, write_timeout_s: float = 0.5,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 10.0, clock=time.monotonic):
        self.url, self.baudrate, self.write_timeout_s = port, baudrate, write_timeout_s
        self._backoff_initial, self._backoff_max, self._clock = backoff_initial_s, backoff_max_s, clock
        self._backoff = backoff_initial_s
        self._retry_at = 0.0
        self._port = None
        self._lock = threading.Lock()
        self.delivered = self.undelivered = self.opens = 0
        self.last_error = ""

    def _open(self) -> bool:
        if self._clock() < self._retry_at:
            return False
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, write_timeout=self.write_timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._down(f"cannot open host channel {self.url} ({exc})")
            return False
        self.opens += 1
        self._backoff = self._backoff_initial
        if self.last_error:
            log.warning("host channel %s open again", self.url)
            self.last_error = ""
        return True

    def _down(self, why: str) -> None:
        if why != self.last_error:  # an unplugged cable fails the same way at every retry: say it once
            log.warning("%s; results stay in the journal, retrying", why)
        self.last_error = why
        if self._port is not None:
            try:
                self._port.close()
            except (serial.SerialException, OSError):
                pass
            self._port = None
        self._retry_at = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, self._backoff_max)

    def write(self, record: ResultRecord) -> None:
        line = (record.to_json() + "\n").encode("utf-8")
        with self._lock:
            if self._port is None and not self._open():
                self.undelivered += 1
                return
            try:
                self._port.write(line)
                self.delivered += 1
            except (serial.SerialException, serial.SerialTimeoutException, OSError) as exc:
                self.undelivered += 1
                self._down(f"host channel {self.url} write failed ({exc})")

    def stats(self) -> dict:
        return {"port": self.url, "delivered": self.delivered, "undelivered": self.undelivered,
                "opens": self.opens, "last_error": self.last_error}

    def close(self) -> None:
        with self._lock:
            if self._port is not None:
                self._port.close()
                self._port = None


@SINKS.register("host", keys={
    "port": Key("str", None, "Serial port (device path or pyserial URL) the results go to as JSON lines, for a "
                "host or a rig (docs/results.md). `null`: no host channel.", nullable=True),
    "baudrate": Key("int", 115200, "Line rate of the host channel (USB CDC-ACM ignores it).", min=1200,
                    max=50000000),
    "write_timeout_s": Key("float", 0.5, "A line that cannot be written for this long counts as undelivered "
                           "and the port is reopened with back-off.", min=0.01, max=60),
})
def _host(output) -> HostChannel | None:
    h = output.host
    return HostChannel(h.port, baudrate=h.baudrate, write_timeout_s=h.write_timeout_s) if h.port else None
