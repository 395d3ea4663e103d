"""The recent log lines, kept in memory for the console's ``log [N]`` (bounded)."""
from __future__ import annotations

import logging
import threading
from collections import deque


class RecentLog(logging.Handler):
    def __init__(self, lines: int = 500):
        super().__init__()
        self._lines: deque[str] = deque(maxlen=lines)
        self._lines_lock = threading.Lock()
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record).splitlines()[0]  # one line each: no traceback on the console
        except Exception:
            self.handleError(record)
            return
        with self._lines_lock:
            self._lines.append(line)

    def recent(self, n: int) -> list[str]:
        with self._lines_lock:
            return list(self._lines)[-n:]
