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
import tty

from firmware_py.errors import LinkError

log = logging.getLogger(__name__)


class SimulatorProcess:
    def __init__(self, sim_cfg, *, extra_args: list[str] | None = None, log_path: str | None = None):
        self._cfg = sim_cfg
        self._extra = list(extra_args or [])
        self._log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._slave_fd: int | None = None
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
        stderr = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(self.command(master), pass_fds=(master,), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        except OSError as exc:
            os.close(master)
            raise LinkError(f"cannot start the probe simulator ({exc}); check the installation") from None
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        os.close(master)  # the child holds its own copy
        log.info("probe simulator pid %d on %s", self.proc.pid, self.port)
        return self.port

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
