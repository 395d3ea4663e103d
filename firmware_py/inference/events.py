"""Engine events (tier refused, accelerator failed, security refusals): logged, kept, forwarded.

Security events go to the `firmware_py.security` logger at ERROR so a journal filter on that name
catches every refused signature or digest; the rest go to this module's logger.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

log = logging.getLogger("firmware_py.inference")
security_log = logging.getLogger("firmware_py.security")

SECURITY_KINDS = frozenset({
    "missing-signature", "bad-signature", "wrong-key", "unreadable-signature", "missing-file",
    "extra-file", "digest-mismatch", "signature-not-checked", "missing-manifest", "unreadable-public-key",
    # a file of a candidate set crashed, hung or raised in the child-process check (isolation.py)
    "model-crashed", "model-hung", "model-raised", "model-check-failed",
})
INFO_KINDS = frozenset({"tier_swapped", "accelerator_loaded", "accelerator_reattached"})


class EventLog:
    def __init__(self, sink: Callable[[dict], None] | None = None, keep: int = 200):
        self._sink = sink
        self._lock = threading.Lock()
        self.recent: deque[dict] = deque(maxlen=keep)

    def emit(self, kind: str, message: str, *, security: bool | None = None, **fields) -> dict:
        security = kind in SECURITY_KINDS if security is None else security
        event = {"time": time.time(), "kind": kind, "security": security, "message": message, **fields}
        if security:
            security_log.error("security event %s: %s", kind, message)
        else:
            log.log(logging.INFO if kind in INFO_KINDS else logging.WARNING, "%s: %s", kind, message)
        with self._lock:
            self.recent.append(event)
        if self._sink is not None:
            try:
                self._sink(event)
            except Exception:  # a broken sink must not take the frame path down
                log.exception("event sink failed for %s", kind)
        return event

    def kinds(self) -> list[str]:
        with self._lock:
            return [e["kind"] for e in self.recent]
