"""Background tier loads at a lower CPU priority, without leaving the loaded tier's threads there.

Linux gives each thread its own nice value and a new thread inherits its creator's. TFLite creates
an interpreter's worker pool at its first invoke (the warm-up, on the loader thread) and the engine
creates the accelerator's invoke thread there too, so after a swap those threads would run every
frame of the new tier at the loader's low priority. Going back up needs CAP_SYS_NICE or a
RLIMIT_NICE allowance, so the loader is lowered only when this process may restore the threads the
load created; otherwise the load runs at normal priority (it competes with the frame path for a
few milliseconds, instead of the tier running slower for good).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

LOADER_PREFIX = "load-"  # Engine names its loader threads load-<tier>
_can_restore: bool | None = None


def _thread_ids() -> set[int]:
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


def _probe_restore(niceness: int) -> bool:
    """Whether a thread of this process may lower its nice value again after raising it."""
    if not sys.platform.startswith("linux"):  # elsewhere setpriority(PRIO_PROCESS) means the process
        return False
    result = []

    def probe():
        tid = threading.get_native_id()
        try:
            base = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, base + niceness)
            os.setpriority(os.PRIO_PROCESS, tid, base)
            result.append(True)
        except (AttributeError, OSError):
            result.append(False)

    t = threading.Thread(target=probe, name="priority-probe")  # a throwaway thread: the probe may
    t.start()                                                  # leave its priority lowered
    t.join()
    return bool(result and result[0])


def can_restore_priority(niceness: int = 10) -> bool:
    global _can_restore
    if _can_restore is None:
        _can_restore = _probe_restore(niceness)
        if not _can_restore:
            log.info("tier loads run at normal priority: this process may not raise a thread's priority "
                     "back (grant CAP_SYS_NICE or LimitNICE) and the loaded tier's threads would inherit it")
    return _can_restore


@contextmanager
def background_priority(niceness: int = 10) -> Iterator[None]:
    """Run the block at `niceness` above this thread's priority; threads it creates get it back."""
    me = threading.get_native_id()
    if not can_restore_priority(niceness):
        yield
        return
    base = os.getpriority(os.PRIO_PROCESS, me)
    before = _thread_ids()
    os.setpriority(os.PRIO_PROCESS, me, base + niceness)
    try:
        yield
    finally:
        other_loaders = {t.native_id for t in threading.enumerate()
                         if t.name.startswith(LOADER_PREFIX) and t.native_id != me}
        for tid in _thread_ids() - before - other_loaders - {me}:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, base)
            except OSError:  # the thread already exited
                pass
