"""The console through real picocom, minicom and screen (their defaults, 115200 8N1) in tmux, as a
technician would use it.

The daemon's console port and the terminal program's port are two pseudo-terminals joined by a
thread here, like the two ends of a USB-serial cable. `.ci/run` installs the programs and tmux so
CI runs this.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
import tty
import uuid

import pytest

from tests.console_rig import PIN, Rig
from tests.conftest_drivers import wait_for

# program -> (command line for the port, text on screen once it is connected)
TERMINALS = {
    "picocom": ("picocom -b 115200 {port}", "Terminal ready"),
    "minicom": ("minicom -o -b 115200 -D {port}", "Welcome to minicom"),
    "screen": ("env TERM=xterm screen {port} 115200", ""),
}


class NullModem(threading.Thread):
    """Copies bytes between two pty masters until stopped."""

    def __init__(self, a: int, b: int):
        super().__init__(name="null-modem", daemon=True)
        self.a, self.b = a, b
        self.halt = threading.Event()

    def run(self) -> None:
        peer = {self.a: self.b, self.b: self.a}
        while not self.halt.is_set():
            for fd in select.select(list(peer), [], [], 0.05)[0]:
                try:
                    os.write(peer[fd], os.read(fd, 4096))
                except OSError:
                    return


class Tmux:
    """picocom in a detached tmux session on a private tmux server (its own socket)."""

    def __init__(self, command: str):
        self.socket = f"fwpy-console-{uuid.uuid4().hex[:8]}"
        self._tmux("new-session", "-d", "-s", "console", "-x", "132", "-y", "50", command)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "console", *keys)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "console", "-S", "-200")

    def wait(self, text: str, timeout: float = 20.0) -> str:
        assert wait_for(lambda: text in self.screen(), timeout, 0.1), f"no {text!r} on screen:\n{self.screen()}"
        return self.screen()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize("program", list(TERMINALS))
def test_a_technician_session_through_a_terminal_program(tmp_path, capsys, program):
    if not (shutil.which(program) and shutil.which("tmux")):
        pytest.skip(f"{program} or tmux is not installed (apt-get install -y {program} tmux)")
    command, connected = TERMINALS[program]
    rig = Rig(tmp_path)
    laptop, far = os.openpty()
    tty.setraw(laptop)
    name = os.ttyname(far)  # picocom opens it by name; held open until the end, as a master reads EIO
    modem = NullModem(rig.cable.master, laptop)
    modem.start()
    term = Tmux(command.format(port=name))
    try:
        term.wait(connected)
        term.keys("Enter")
        term.wait("\n>\n")  # the prompt (tmux drops the space after it)
        term.keys("login 2468", "Enter")
        screen = term.wait("ok: logged in")
        assert "login ****" in screen and PIN not in screen
        term.keys("statsu", "BSpace", "BSpace", "us", "Enter")  # a typo, corrected with Backspace
        screen = term.wait("| tier ")
        assert "> status\n" in screen and "statsu" not in screen
        term.keys("watch 3", "Enter")
        term.wait("ok: 3 result(s) shown")
        term.keys("tier small", "Enter")
        term.wait("ok: small pinned")
        assert wait_for(lambda: rig.daemon.engine.active_tier.name == "small", 20)
        term.keys("logout", "Enter")
        screen = term.wait("ok: logged out")
        term.keys("tier auto", "Enter")
        screen = term.wait("error: log in first")
        lines = [line.rstrip() for line in screen.splitlines()]
        assert all(line.isprintable() for line in lines)
        (tmp_path / f"{program}-session.txt").write_text("\n".join(lines).strip() + "\n")
        with capsys.disabled():
            print(f"\n--- {program} session, captured from tmux ---\n" + "\n".join(lines).strip())
    finally:
        term.close()
        modem.halt.set()
        modem.join(2)
        time.sleep(0.1)
        os.close(laptop)
        os.close(far)
        rig.close()
