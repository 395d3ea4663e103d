"""Processing side of the daemon: latest-frame slot and the processing thread.

The acquisition thread (ProbeLink) only frames bytes and hands each intact frame to
``LatestFrameSlot.put``. When processing falls behind, the newest frame wins: the frame it
replaces is released back to the buffer pool and counted as dropped stale, so every received
frame ends up processed, dropped stale, or (at shutdown) drained.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)


class LatestFrameSlot:
    def __init__(self):
        self._cond = threading.Condition()
        self._frame = None
        self._closed = False
        self.accepted = 0
        self.dropped_stale = 0

    def put(self, frame) -> None:
        with self._cond:
            stale, self._frame = self._frame, frame
            self.accepted += 1
            if stale is not None:
                self.dropped_stale += 1
            self._cond.notify()
        if stale is not None:
            stale.release()

    def take(self, timeout: float):
        """The newest frame, or None after ``timeout`` seconds / when closed and empty."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LatencyWindow:
    """Recent per-frame latencies (ms) for the status line and the tier policy."""

    def __init__(self, size: int = 512):
        self._values: collections.deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def percentiles(self, *qs: float) -> tuple[float | None, ...]:
        with self._lock:
            if not self._values:
                return tuple(None for _ in qs)
            arr = np.fromiter(self._values, dtype=np.float64)
        return tuple(float(v) for v in np.percentile(arr, qs))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class ProcessingThread(threading.Thread):
    """Takes frames from the slot, runs ``process_frame`` on each, counts outcomes.

    ``process_frame(frame)`` does preprocessing, inference and result emission; an exception
    from it rejects that frame (counted, logged once per kind) without stopping the daemon.
    ``on_tick()`` runs after every frame and every idle wait (at least every 0.1 s while the loop
    is alive): the systemd watchdog is fed from there, so a stuck frame stops the pings.
    """

    def __init__(self, slot: LatestFrameSlot, process_frame: Callable[[object], None], *,
                 max_frames: int = 0, on_limit: Callable[[], None] | None = None,
                 on_tick: Callable[[], None] | None = None):
        super().__init__(name="processing", daemon=True)
        self._slot = slot
        self._process = process_frame
        self._stop_event = threading.Event()
        self._max_frames = max_frames
        self._on_limit = on_limit
        self._on_tick = on_tick
        self.processed = 0
        self.rejected = 0
        self.rejected_reasons: collections.Counter[str] = collections.Counter()
        self.fatal: BaseException | None = None

    def stop(self) -> None:
        self._stop_event.set()
        self._slot.close()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                frame = self._slot.take(0.1)
                if frame is not None:
                    self._run_one(frame)
                if self._on_tick is not None:
                    self._on_tick()
            # Drain: a frame already accepted into the slot is processed, not lost.
            frame = self._slot.take(0)
            if frame is not None:
                self._run_one(frame)
        except BaseException as exc:  # a bug: make it visible to the runner, which exits 1
            self.fatal = exc
            log.exception("processing thread failed")

    def _run_one(self, frame) -> None:  # not _handle: Python 3.13's Thread keeps its thread handle there
        try:
            self._process(frame)
            self.processed += 1
        except (ValueError, TypeError, ArithmeticError) as exc:
            self.rejected += 1
            kind = type(exc).__name__ + ": " + str(exc).split(";")[0][:80]
            if self.rejected_reasons[kind] == 0:
                log.warning("frame %s rejected: %s", getattr(frame, "seq", "?"), exc)
            self.rejected_reasons[kind] += 1
        finally:
            frame.release()
        if self._max_frames and self.processed >= self._max_frames and self._on_limit:
            self._on_limit()
