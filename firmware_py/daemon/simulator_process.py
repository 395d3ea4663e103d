"""The built-in probe simulator, run as a child process on a pseudo-terminal.

A separate process, not a thread: the simulator then competes with the daemon the way a real
probe does (through the serial line only), and its frame synthesis does not share our GIL.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import tty

from firmware_py.errors import ConfigError, LinkError

log = logging.getLogger(__name__)


class SimulatorProcess:
    def __init__(self, sim_cfg, *, extra_args: list[str] | None = None, log_path: str | None = None):
        self._cfg = sim_cfg
        self._extra = list(extra_args or [])
        self._log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._slave_fd: int | None = None
        self._stderr = None
        self.port: str | None = None

    def command(self, master_fd: int) -> list[str]:
        c = self._cfg
        args = [sys.executable, "-m", "firmware_py", "probe-sim", "--fd", str(master_fd),
                "--fps", str(c.fps), "--seed", str(c.seed)]
        if c.frame_log:
            args += ["--frame-log", c.frame_log]
        if c.images_dir:
            args += ["--images", c.images_dir]
        else:
            args += ["--geometry", c.geometry, "--lines", str(c.scan_lines), "--samples",
                     str(c.samples_per_line), "--bits", str(c.bits)]
        return args + self._extra

    def start(self) -> str:
        master, slave = os.openpty()
        # Raw at once: in cooked mode the line discipline would rewrite CR/LF and echo bytes
        # before pyserial gets to configure the port.
        tty.setraw(slave)
        tty.setraw(master)
        self._slave_fd = slave
        self.port = os.ttyname(slave)
        # Its stderr is kept: when the simulator exits early (no images in --images, a bad option)
        # its one-line reason is what the daemon reports.
        self._stderr = open(self._log_path, "a+b") if self._log_path else tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(self.command(master), pass_fds=(master,), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=self._stderr)
        except OSError as exc:
            os.close(master)
            raise LinkError(f"cannot start the probe simulator ({exc}); check the installation") from None
        os.close(master)  # the child holds its own copy
        log.info("probe simulator pid %d on %s", self.proc.pid, self.port)
        return self.port

    def failure(self) -> Exception | None:
        """Why the simulator exited on its own, or None while it runs (or was stopped by us)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        size = self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, size - 4096))
        lines = [ln.strip() for ln in self._stderr.read().decode("utf-8", "replace").splitlines()]
        said = next((ln for ln in reversed(lines) if ln), f"exit status {self.proc.returncode}")
        said = said.removeprefix("probe-sim: ")
        if self.proc.returncode == 2:  # the simulator's usage errors are configuration errors here
            return ConfigError(f"the probe simulator refused its settings: {said}; fix simulator.* (or --images)")
        return LinkError(f"the probe simulator exited ({said}); see its log or run firmware-py probe-sim --pty")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT first: the simulator stops cleanly and flushes its frame and fault logs.
            for sig, grace in ((signal.SIGINT, 3.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, None)):
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._slave_fd is not None:
            os.close(self._slave_fd)
            self._slave_fd = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
