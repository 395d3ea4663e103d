"""Who is at the other end of the console cable, and since when.

A session runs from the banner to ``exit``/Ctrl-D, the idle timeout, or the cable going away;
its login ends with it, so whoever connects next starts logged out. A new connection is seen
by the carrier (DCD, or DSR on a null-modem cable: the laptop's DTR) where the port reports
modem lines, and otherwise by the first byte after a session ended (a pseudo-terminal, or a
USB gadget port, has no modem lines).
"""
from __future__ import annotations

import itertools
import time

_numbers = itertools.count(1)


class Session:
    def __init__(self, clock=time.monotonic):
        self.number = next(_numbers)
        self._clock = clock
        self.started = self.last_input = clock()
        self.logged_in = False
        self.json = False  # `json on`: every reply one JSON object per line, no echo, no prompt
        self.ended: str | None = None  # why, once it has ended

    def touch(self) -> None:
        self.last_input = self._clock()

    def idle_for(self) -> float:
        return self._clock() - self.last_input


def carrier(port) -> bool | None:
    """True while the remote end holds DTR (seen as DCD or DSR), None when the port has no modem lines."""
    try:
        return bool(port.cd or port.dsr)
    except (OSError, ValueError):  # a pty: "Inappropriate ioctl for device" (SerialException is an OSError)
        return None
