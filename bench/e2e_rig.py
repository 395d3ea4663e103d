"""The rig's wiring for `bench e2e`: serial lines, the daemon under test, its console and result channel.

A line is a pseudo-terminal (the bench keeps both ends open until the daemon has exited, so no
pty number is freed while the daemon might still reopen it by name) or a real serial device (a
rig wired to a device on another board). The bench writes probe frames on one line, reads the
daemon's result channel (``output.host.port``) on a second and asks its service console for
``counters`` on a third.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import tty

import yaml

PROMPT = b"\r\n> "


class Line:
    """One serial line: ``fd`` is the bench's end, ``device_path`` what the daemon opens."""

    def __init__(self, port: str | None = None):
        self._port = None
        if port is None:
            self.fd, self._slave = os.openpty()
            tty.setraw(self.fd)
            tty.setraw(self._slave)
            self.device_path = os.ttyname(self._slave)
        else:
            import serial

            self._port = serial.serial_for_url(port, timeout=0)
            self.fd, self._slave, self.device_path = self._port.fileno(), None, port
        os.set_blocking(self.fd, False)

    def close(self) -> None:
        if self._port is not None:
            self._port.close()
            return
        os.close(self.fd)
        os.close(self._slave)


def read_until(fd: int, marker: bytes, timeout: float) -> bytes:
    buf = b""
    end = time.monotonic() + timeout
    while marker not in buf:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"no {marker!r} within {timeout:g} s (got {buf[-200:]!r})")
        try:
            buf += os.read(fd, 65536)
        except BlockingIOError:
            continue
    return buf


class Console:
    """The daemon's service console, spoken to like a technician would (one command, one reply)."""

    def __init__(self, line: Line, *, banner: bool):
        """``banner``: the daemon opens the port after us and greets; an attached one did long ago."""
        self.line = line
        self._banner_read = not banner
        while not banner and select.select([line.fd], [], [], 0)[0]:
            os.read(line.fd, 65536)  # whatever an earlier session left unread

    def call(self, command: str, banner_timeout: float = 5.0, timeout: float = 5.0) -> str:
        if not self._banner_read:  # the banner and first prompt come when the daemon opens the port
            read_until(self.line.fd, PROMPT, banner_timeout)
            self._banner_read = True
        os.write(self.line.fd, command.encode() + b"\r")
        reply = read_until(self.line.fd, PROMPT, timeout)
        return reply[:reply.rindex(PROMPT)].decode("utf-8", "replace").strip()

    def counters(self, banner_timeout: float = 5.0) -> dict:
        # the JSON object alone: a console may echo what was typed before its reply
        text = self.call("counters", banner_timeout)
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end < start:
            raise ValueError(f"the console's counters reply is not JSON: {text[:200]!r}")
        return json.loads(text[start:end + 1])


class HostReader(threading.Thread):
    """Reads result lines from the host channel and stamps each with the bench's arrival time."""

    def __init__(self, line: Line):
        super().__init__(name="host-reader", daemon=True)
        self.line = line
        self.results: list[tuple[float, dict]] = []  # (time.monotonic() at arrival, result)
        self.garbled = 0  # lines that were not a JSON object
        self._halt = threading.Event()

    def run(self) -> None:
        pending = b""
        while not self._halt.is_set():
            if not select.select([self.line.fd], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(self.line.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            now = time.monotonic()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                try:
                    self.results.append((now, json.loads(raw)))
                except ValueError:
                    self.garbled += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


class ProcessSampler(threading.Thread):
    """CPU time and RSS of the daemon (psutil), sampled at 4 Hz; none when it runs elsewhere."""

    PERIOD_S = 0.25

    def __init__(self, pid: int):
        import psutil

        super().__init__(name="sampler", daemon=True)
        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, cpu seconds, rss bytes)
        self._halt = threading.Event()

    def sample(self) -> tuple[float, float, int] | None:
        import psutil

        try:
            with self.proc.oneshot():
                t = self.proc.cpu_times()
                s = (time.monotonic(), t.user + t.system, self.proc.memory_info().rss)
        except psutil.Error:
            return None
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self._halt.wait(self.PERIOD_S):
            self.sample()

    def window(self, t0: float, t1: float) -> dict:
        """CPU % (100 = one core) and RSS over [t0, t1], from the samples nearest its ends."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {"cpu_percent": None, "cpu_seconds": None, "rss_mb_max": None}
        cpu = inside[-1][1] - inside[0][1]
        return {"cpu_percent": round(100 * cpu / (inside[-1][0] - inside[0][0]), 1),
                "cpu_seconds": round(cpu, 3), "rss_mb_max": round(max(s[2] for s in inside) / 2**20, 1)}

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def terminate(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, and SIGKILL if it has not ended within ``grace_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DaemonChild:
    """`firmware-py run` as a child process, its probe, host channel and console on the bench's lines."""

    def __init__(self, workdir: str, *, probe: Line, host: Line, console: Line, task: str, tier: str,
                 extra_config: dict | None = None):
        self.workdir = workdir
        cfg = {
            "probe": {"port": probe.device_path},
            "simulator": {"enabled": False},
            # a real port, so the development key needs a development unit (a bench rig is one)
            "models": {"development_device": True, "task": task, "start_tier": tier},
            # the device's own output path: journal first, then the host channel
            "output": {"results": None, "journal": os.path.join(workdir, "journal.sqlite"),
                       "status_interval_s": 0, "host": {"port": host.device_path}},
            "console": {"port": console.device_path},
            "log": {"level": "warning"},
        }
        for section, keys in (extra_config or {}).items():
            cfg.setdefault(section, {}).update(keys)
        self.config_path = os.path.join(workdir, "daemon.yaml")
        with open(self.config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f)
        self.log_path = os.path.join(workdir, "daemon.log")
        self._log = open(self.log_path, "wb")
        # -P: the installed firmware_py, never a folder of that name in the bench's working directory
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "firmware_py", "run", "--config", self.config_path],
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def failed(self) -> str | None:
        """The daemon's last log line when it has exited."""
        if self.proc.poll() is None:
            return None
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        return f"the daemon exited with {self.proc.returncode}: {lines[-1] if lines else 'no output'}"

    def stop(self) -> str:
        """SIGTERM, wait; returns the daemon's closing summary line."""
        terminate(self.proc, 15)
        self._log.close()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return next((ln for ln in reversed(f.read().splitlines()) if ln.startswith("firmware-py: ran")), "")
