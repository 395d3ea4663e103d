"""One result per processed frame: the record, the sink registry, and the JSON-lines sinks.

A sink is an object with ``write(record)`` and ``close()``. The daemon opens every registered
sink factory in registration order (``SINKS.open(cfg.output)``); a factory returns its sink, or
None when the configuration leaves it off. A sink with options declares them with
``keys={...}`` and reads them from ``output.<name>`` (the schema picks the sub-section up).
"""
from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Callable

from firmware_py.errors import FirmwareError
from firmware_py.registry import Key, Section


log = logging.getLogger(__name__)


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
    run_id: str = ""  # one id per daemon run: results of two runs never mix up
    extra: dict[str, Any] = field(default_factory=dict)
    # Not a diagnosis, and why (inference/abstain.py REASONS): label and area_mm2 are then None; the
    # probabilities stay for audit, and extra["abstention"] holds the scores that decided it.
    indeterminate: str | None = None

    def to_json(self) -> str:
        d = asdict(self)
        if not d["extra"]:
            del d["extra"]
        return json.dumps(d, separators=(",", ":"))


class JsonLinesSink:
    """Writes each result as one line; flushes per line so a reader sees it at once."""

    def __init__(self, target: str = "-"):
        self._own = target != "-"
        self.target, self.undelivered = target, 0
        try:
            self._fh: IO[str] = open(target, "a", encoding="utf-8") if self._own else sys.stdout
        except OSError as exc:
            raise FirmwareError(f"cannot write results to {target} ({exc.strerror}); create its folder or point "
                                "output.results (--results) at a writable file") from None
        self._lock = threading.Lock()

    def write(self, record: ResultRecord) -> None:
        line = record.to_json() + "\n"
        with self._lock:
            try:
                self._fh.write(line)
                self._fh.flush()
            except OSError as exc:  # a full or read-only disk: the journal still has the result
                self.undelivered += 1
                if self.undelivered == 1:
                    log.error("cannot write results to %s (%s); they stay in the journal, free space or fix "
                              "output.results", self.target, exc.strerror)

    def close(self) -> None:
        if self._own:
            try:
                self._fh.close()
            except OSError:  # the unwritten tail was counted and reported by write()
                pass


class ResultFeed:
    """Live copies of results for whoever watches (the console's ``watch``). The daemon adds it
    after the journal, so a watcher sees what has left the device; a watcher too slow to keep up
    loses the oldest results it has not read, and the pipeline never waits for it."""

    def __init__(self, depth: int = 256):
        self._depth = depth
        self._watchers: list[queue.Queue] = []
        self._lock = threading.Lock()
        self.dropped = 0

    @contextmanager
    def subscription(self):
        q: queue.Queue = queue.Queue(self._depth)
        with self._lock:
            self._watchers.append(q)
        try:
            yield q
        finally:
            with self._lock:
                self._watchers.remove(q)

    def write(self, record: ResultRecord) -> None:
        with self._lock:
            for q in self._watchers:
                while True:
                    try:
                        q.put_nowait(record)
                        break
                    except queue.Full:
                        q.get_nowait()
                        self.dropped += 1

    def stats(self) -> dict:
        with self._lock:
            return {"watchers": len(self._watchers), "dropped": self.dropped}

    def close(self) -> None:
        pass


class SinkRegistry:
    def __init__(self):
        self._factories: dict[str, Callable[[Any], Any]] = {}
        self._sections: dict[str, Section] = {}

    def register(self, name: str, *, keys: dict[str, Key] | None = None):
        def add(factory: Callable[[Any], Any]):
            if name in self._factories:
                raise ValueError(f"result sink {name!r} is already registered")
            self._factories[name] = factory
            if keys:
                self._sections[name] = Section(keys, doc=f"Options of the `{name}` result sink.")
            return factory

        return add

    def unregister(self, name: str) -> None:
        del self._factories[name]
        self._sections.pop(name, None)

    def sections(self) -> dict[str, Section]:
        return dict(self._sections)

    def open(self, output) -> list:
        """Every configured sink; the ones already open are closed again if a later one fails."""
        sinks: list = []
        try:
            for factory in self._factories.values():
                sink = factory(output)
                if sink is not None:
                    sinks.append(sink)
        except BaseException:
            for sink in sinks:
                sink.close()
            raise
        return sinks


SINKS = SinkRegistry()


@SINKS.register("results")
def _results_file(output) -> JsonLinesSink | None:
    return JsonLinesSink(output.results) if output.results else None


@SINKS.register("print_results")
def _stdout_copy(output) -> JsonLinesSink | None:
    return JsonLinesSink("-") if output.results != "-" and output.print_results else None
