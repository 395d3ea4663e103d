"""One result per processed frame, as a JSON object on its own line."""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import IO, Any


@dataclass
class ResultRecord:
    seq: int  # probe sequence number of the frame
    probe_time_us: int
    tier: str
    backend: str  # "cpu", "edgetpu", ... : which twin actually ran
    label: str | None  # classify: top class; segment: None
    probabilities: dict[str, float] | None
    latency_ms: dict[str, float]  # preprocess, inference, total (frame received -> result)
    wall_time: float  # time.time() when the result was made
    area_mm2: float | None = None  # segment: area of the largest component
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        d = asdict(self)
        if not d["extra"]:
            del d["extra"]
        return json.dumps(d, separators=(",", ":"))


class JsonLinesSink:
    """Writes each result as one line; flushes per line so a reader sees it at once."""

    def __init__(self, target: str = "-"):
        self._own = target != "-"
        self._fh: IO[str] = open(target, "a", encoding="utf-8") if self._own else sys.stdout
        self._lock = threading.Lock()

    def write(self, record: ResultRecord) -> None:
        line = record.to_json() + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        if self._own:
            self._fh.close()
