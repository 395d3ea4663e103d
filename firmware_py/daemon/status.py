"""The live status line and the closing summary."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Snapshot:
    elapsed_s: float
    received: int
    processed: int
    dropped_stale: int
    corrupt: int
    lost_gap: int
    rejected: int
    in_flight: int  # a frame partly received when the link stopped (not corrupt)
    connected: bool
    tier: str
    backend: str
    battery_percent: float | None
    temperature_c: float | None
    p50_ms: float | None
    p99_ms: float | None
    last: str
    link_error: str = ""  # the link's last error, shown while it is down
    warnings: list[str] = field(default_factory=list)  # the start-up selftest's
    skipped_rate: int = 0  # received but not analysed: the rung analyses one frame in k
    rung: str = ""  # the power policy's rung (tier, analysis rate, probe rate)
    reason: str = ""  # why the tier controller is on it
    sensor_faults: list[str] = field(default_factory=list)
    indeterminate: dict = field(default_factory=dict)  # results that are no diagnosis, by reason
    power_w: float | None = None  # measured board power (power monitor, else the discharging cell)
    draw_w: float | None = None  # the energy meter's current draw (measured when power_w is, else modelled)
    remaining_h: float | None = None  # battery left at that draw
    # intact frames dropped, not corrupt: no free pool buffer, or arrived before the session's handshake
    dropped_intact: int = 0


def _indeterminate(s: Snapshot) -> str:
    n = sum(s.indeterminate.values())
    return (f" indeterminate {n} (" + ", ".join(f"{k} {v}" for k, v in sorted(s.indeterminate.items())) + ")"
            if n else "")


def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    return "--" if v is None else f"{v:{spec}}{unit}"


def format_status(s: Snapshot) -> str:
    link = "" if s.connected else f" LINK DOWN ({s.link_error})" if s.link_error else " LINK DOWN"
    rung = f" rung {s.rung}" if s.rung and s.rung != s.tier else ""
    why = f" [{s.reason}]" if s.reason else ""
    return (f"[{s.elapsed_s:6.1f}s] rx {s.received} proc {s.processed}{_indeterminate(s)} skip {s.skipped_rate} drop {s.dropped_stale + s.dropped_intact} "
            f"bad {s.corrupt + s.rejected} lost {s.lost_gap}{link} | tier {s.tier} ({s.backend}){rung}{why} | "
            f"batt {_fmt(s.battery_percent, '.0f', '%')} {_fmt(s.temperature_c, '.0f', 'C')}"
            + (f" {s.power_w:.2f}W" if s.power_w is not None else f" ~{s.draw_w:.2f}W" if s.draw_w is not None else "")
            + (f" {s.remaining_h:.1f}h left" if s.remaining_h is not None else "")
            + "".join(f" SENSOR FAILED {f}" for f in s.sensor_faults) + " | "
            f"lat p50 {_fmt(s.p50_ms, '.1f')} p99 {_fmt(s.p99_ms, '.1f')} ms | last {s.last}"
            + "".join(f" | WARNING {w}" for w in s.warnings))


def format_summary(s: Snapshot, tiers_used: list[str]) -> str:
    return (f"firmware-py: ran {s.elapsed_s:.1f} s: {s.received} frames received, {s.processed} processed{_indeterminate(s)}, "
            f"{s.skipped_rate} skipped by the analysis rate, {s.dropped_stale} dropped stale, "
            f"{f'{s.dropped_intact} dropped intact (no buffer or before the handshake), ' if s.dropped_intact else ''}"
            f"{s.corrupt} corrupt, {s.rejected} rejected, {s.lost_gap} lost in "
            f"gaps{f', {s.in_flight} cut off by the stop' if s.in_flight else ''}; tiers {', '.join(tiers_used) or '-'}; latency p50 {_fmt(s.p50_ms, '.1f')} ms "
            f"p99 {_fmt(s.p99_ms, '.1f')} ms; battery {_fmt(s.battery_percent, '.0f', '%')}")


class StatusLine:
    """Rewrites one line in place on a terminal; prints one line per update otherwise."""

    def __init__(self, stream: IO[str] = sys.stderr):
        self._stream = stream
        self._tty = hasattr(stream, "isatty") and stream.isatty()
        self._shown = False

    def show(self, text: str) -> None:
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
            self._shown = True
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._tty and self._shown:
            self._stream.write("\n")
            self._stream.flush()
