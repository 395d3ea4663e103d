"""The technician's end of the console cable, for the console tests.

A daemon runs in this process with injected parts (a signed test model set, test gauges, the
probe simulator on a pty from a thread, as in tests/test_daemon_control.py); its console is
configured with a symlink that points at the slave of a pty pair, so a test can unplug the
cable (remove the link, close the master) and plug a NEW pty in (pty numbers are shared on
this machine: a closed one is never reopened). ``Technician`` is a terminal emulator (pyte) on
the master: it checks the screen a person would see.
"""
from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from firmware_py.config import load_config
from firmware_py.console.auth import hash_pin
from firmware_py.daemon.runner import Daemon
from firmware_py.inference import Engine
from tests.conftest_drivers import wait_for
from tests.data.model_sets import make_model_set
from tests.test_daemon_control import LADDER, Cell, Gauge, InProcessProbe

pyte = pytest.importorskip("pyte", reason="the console tests need pyte (pip install -e .[test])")

PIN = "2468"
PIN_HASH = hash_pin(PIN, 2 ** 10)  # the smallest cost the format takes: these tests check behaviour


class Cable:
    """A pty pair behind a stable path, like /dev/serial/by-id/... for a USB-serial cable."""

    def __init__(self, path: str):
        self.path = path
        self.master: int | None = None

    def plug(self) -> int:
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)  # the console opens it by name; the pair lives while the master is open
        if os.path.lexists(self.path):
            os.unlink(self.path)
        os.symlink(name, self.path)
        self.master = master
        return master

    def unplug(self) -> None:
        os.unlink(self.path)  # first, so nothing reopens the old pty number
        os.close(self.master)
        self.master = None


class Technician:
    """A terminal (pyte) on the cable's master end: what is typed, and the screen it shows."""

    def __init__(self, fd: int, cols: int = 240, rows: int = 80):
        self.fd = fd
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = b""

    def type(self, data: bytes | str, timeout: float = 60.0) -> None:
        """Send keys the way a terminal does: read the console's output while writing, so a long paste
        never blocks both ends of the line (a blocking write here, with the replies unread, would leave
        the console waiting on its own write until its write timeout)."""
        data = memoryview(data.encode() if isinstance(data, str) else data)
        sent, deadline = 0, time.monotonic() + timeout
        while sent < len(data):
            assert time.monotonic() < deadline, f"the console took {sent} of {len(data)} bytes in {timeout} s"
            readable, writable, _ = select.select([self.fd], [self.fd], [], 0.5)
            if readable:
                self.pump(0)
            if writable:
                blocking = os.get_blocking(self.fd)
                os.set_blocking(self.fd, False)
                try:
                    sent += os.write(self.fd, data[sent:sent + 4096])
                except BlockingIOError:
                    pass
                finally:
                    os.set_blocking(self.fd, blocking)
        self.pump(0)

    def pump(self, timeout: float) -> None:
        while select.select([self.fd], [], [], timeout)[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.raw += chunk
            self.stream.feed(chunk)
            timeout = 0

    def settle(self, quiet_s: float = 0.5) -> None:
        """Read until the console has sent nothing for ``quiet_s`` (it has caught up with the input)."""
        n = -1
        while n != len(self.raw):
            n = len(self.raw)
            self.pump(quiet_s)

    def wait_raw(self, marker: bytes, timeout: float = 20.0, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while (at := self.raw.find(marker, start)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} on the line; got {self.raw[-300:]!r}"
            self.pump(min(left, 0.1))
        return at + len(marker)

    def ask(self, line: str, timeout: float = 20.0) -> str:
        """Type a line and Enter; the reply between the echoed line and the next prompt."""
        start = len(self.raw)
        self.type(line + "\r")
        end = self.wait_raw(b"\r\n> ", timeout, start)
        text = self.raw[start:end - 4].decode("utf-8", "replace")
        return text.partition("\r\n")[2].replace("\r\n", "\n")

    def wait_screen(self, predicate, timeout: float = 10.0) -> bool:
        """Pump until ``predicate(self)`` holds (what the person sees after the echo arrives)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            self.pump(0.05)
        return True

    def lines(self) -> list[str]:
        return [row.rstrip() for row in self.screen.display if row.strip()]

    @property
    def cursor_line(self) -> str:
        return self.screen.display[self.screen.cursor.y].rstrip()


def make_console_daemon(tmp_path, port: str, **console) -> Daemon:
    s = make_model_set(str(tmp_path / "models"), LADDER)
    cfg = load_config(None).replace(
        console={"port": port, "pin_hash": PIN_HASH, "lockout_s": 1.0, "backoff_s": 0.0, "max_failures": 3,
                 **console},
        output={"results": str(tmp_path / "r.jsonl"), "journal": str(tmp_path / "journal.sqlite"),
                "status_interval_s": 0.0},
        run={"duration_s": 300.0})
    engine = Engine(s["dir"], public_key=s["public"])
    return Daemon(cfg, engine=engine, battery=Cell(77.0), thermal=Gauge(40.0), probe=InProcessProbe(fps=40.0),
                  policy_period_s=3600.0)


class Rig:
    def __init__(self, tmp_path, **console):
        self.cable = Cable(str(tmp_path / "console-tty"))
        self.cable.plug()
        self.daemon = make_console_daemon(tmp_path, self.cable.path, **console)
        self.runner = threading.Thread(target=self.daemon.run, daemon=True)
        self.runner.start()
        self.tech = Technician(self.cable.master)
        self.tech.wait_raw(b"type help\r\n> ")

    def frames(self) -> int:
        return self.daemon.proc.processed if self.daemon.proc is not None else 0

    def replug(self) -> "Technician":
        self.cable.unplug()
        self.tech = Technician(self.cable.plug())
        return self.tech

    def close(self) -> None:
        self.daemon.stop_event.set()
        self.runner.join(20)
        assert not self.runner.is_alive()
        assert self.daemon.proc.fatal is None
        if self.cable.master is not None:
            self.cable.unplug()


def rising(rig: Rig, by: int = 5, timeout: float = 20.0) -> bool:
    """The pipeline keeps processing frames: ``by`` more than now, within ``timeout``."""
    start = rig.frames()
    return wait_for(lambda: rig.frames() >= start + by, timeout)
