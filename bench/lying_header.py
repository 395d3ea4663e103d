"""Lying-header stall: what one CRC-valid frame header announcing a huge body costs the stream.

    .venv/bin/python -m firmware_py.bench.lying_header                 # the parser of this checkout
    .venv/bin/python -m firmware_py.bench.lying_header --parser-rev REV # the parser of commit REV

A writer thread plays the probe on a real pseudo-terminal (answers the link's hello with
capabilities announcing ``--probe-max`` bytes, then streams the daemon's default frame: convex
128 x 512 x 16 bit, 128 KiB, at ``--fps``). After ``--lead`` intact frames it writes a lone
16-byte frame header with a valid header CRC announcing ``--lie`` bytes (8 MiB, then 4 MiB), each
followed by ``--after`` intact frames. A ProbeLink (the daemon's defaults: 8 MiB maximum, a pool
of 4 growing to 8) reads it; the sink releases every frame at once, so any loss is the link's.

Printed per lying header: intact frames after it that never reached the sink, how many of them
the parser counted ``no_buffer``, and the stall (the longest time from a frame's write to its
delivery among the frames after it). ``--parser-rev`` swaps in drivers/parser.py of another
commit (``git show``) for the before/after comparison. The writer also serves the regression test
(tests/test_parser_lying_header.py).
"""
from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import threading
import time
import tty

from firmware_py.drivers import protocol as P
from firmware_py.drivers.phantom import make_geometry
from firmware_py.drivers.sources import PhantomSource

MiB = 1024 * 1024


class LyingProbe:
    """A probe on the master side of a pty: handshake, then ``plan`` (a list of ("frame", seq) and
    ("lie", length)) at ``fps`` frames per second. ``sent_at[seq]`` is when each frame was written."""

    def __init__(self, fd: int, plan: list, *, fps: float, probe_max: int, geometry=None):
        self.fd, self.plan, self.fps, self.probe_max = fd, plan, fps, probe_max
        self.geometry = geometry or make_geometry("convex", 128, 512, 16)
        self.source = PhantomSource(self.geometry, distinct=2)
        self.sent_at: dict[int, float] = {}
        self.lie_at: list[float] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lying-probe", daemon=True)

    def start(self) -> "LyingProbe":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            _, w, _ = select.select([], [self.fd], [], 0.1)
            if w:
                view = view[os.write(self.fd, view):]

    def _run(self) -> None:
        try:
            self._handshake()
            period = 1.0 / self.fps
            due = time.monotonic()
            for what, arg in self.plan:
                if self._stop.is_set():
                    return
                if what == "lie":
                    self.lie_at.append(time.monotonic())
                    self._write(P.encode_header(P.MsgType.FRAME, arg, P.SUPPORTED_MAX))
                    continue
                due += period
                time.sleep(max(0.0, due - time.monotonic()))
                sf = self.source.next()
                msg = P.encode_frame(arg, arg * 1000, self.geometry, sf.samples, P.SUPPORTED_MAX)
                self.sent_at[arg] = time.monotonic()
                self._write(msg)
            self.done.set()
            # keep the session up (the link's silence timeout) until stopped
            while not self._stop.wait(0.5):
                self._write(P.encode_telemetry(P.Telemetry(0, 80, 30.0), P.SUPPORTED_MAX))
        except BaseException as exc:  # the test reports it
            self.error = exc
        finally:
            self.done.set()

    def _handshake(self) -> None:
        deadline = time.monotonic() + 10
        got = b""
        while P.SYNC not in got or len(got) < P.OVERHEAD + 4:
            if time.monotonic() > deadline or self._stop.is_set():
                raise TimeoutError("no hello from the link")
            r, _, _ = select.select([self.fd], [], [], 0.1)
            if r:
                got += os.read(self.fd, 4096)
        info = P.ProbeInfo(P.SUPPORTED_MAX, P.SUPPORTED_MIN, P.SUPPORTED_MAX, "LIAR-1", "SN-LIE", "lie-1.0",
                           (self.geometry.kind,), self.probe_max)
        self._write(P.encode_capabilities(info))


def plan_for(lies: list[int], lead: int, after: int) -> tuple[list, list[list[int]]]:
    """The stream plan and, per lying header, the sequence numbers of the intact frames after it."""
    plan, seq, groups = [], 0, []
    for _ in range(lead):
        plan.append(("frame", seq))
        seq += 1
    for lie in lies:
        plan.append(("lie", lie))
        groups.append(list(range(seq, seq + after)))
        for _ in range(after):
            plan.append(("frame", seq))
            seq += 1
    return plan, groups


def run(lies: list[int], *, lead: int = 10, after: int = 105, fps: float = 15.0, probe_max: int = 8 * MiB,
        max_payload: int = 8 * MiB, geometry=None, settle: float = 1.0) -> dict:
    """Stream the plan through a ProbeLink on a fresh pty; per lying header, what it cost."""
    from firmware_py.drivers.link import ProbeLink

    plan, groups = plan_for(lies, lead, after)
    master, slave = os.openpty()
    tty.setraw(slave)
    arrived: dict[int, float] = {}
    lock = threading.Lock()

    def sink(frame):
        with lock:
            arrived[frame.seq] = time.monotonic()
        frame.release()

    probe = LyingProbe(master, plan, fps=fps, probe_max=probe_max, geometry=geometry)
    link = ProbeLink(os.ttyname(slave), max_payload=max_payload)
    try:
        link.start(sink)
        probe.start()
        probe.done.wait(len(plan) / fps + 30)
        last = max(g[-1] for g in groups) if groups else lead - 1
        end = time.monotonic() + settle + 5
        while time.monotonic() < end and last not in arrived:
            time.sleep(0.02)
        time.sleep(settle)  # anything still owed arrives (a stalled body is given up after 0.25 s)
        stats = link.stats()
    finally:
        probe.stop()
        link.stop()
        os.close(slave)  # the master last: a pty number closed here is never reopened by this run
        os.close(master)
    if probe.error is not None:
        raise RuntimeError(f"the probe thread failed: {probe.error!r}")
    rows = []
    for lie, seqs in zip(lies, groups):
        lost = [s for s in seqs if s not in arrived]
        delays = [arrived[s] - probe.sent_at[s] for s in seqs if s in arrived]
        rows.append({"lie_bytes": lie, "intact_after": len(seqs), "lost": len(lost),
                     "stall_s": round(max(delays), 3) if delays else None})
    lead_delays = [arrived[s] - probe.sent_at[s] for s in range(lead) if s in arrived]
    return {"rows": rows, "arrived": sorted(arrived), "sent": sorted(probe.sent_at), "stats": stats,
            "lead_delay_s": round(max(lead_delays), 3) if lead_delays else None}


def _load_parser(rev: str) -> None:
    """Make the link use drivers/parser.py as it was at commit ``rev``."""
    import firmware_py.drivers.link as link_mod
    import firmware_py.drivers.parser as parser_mod

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = subprocess.run(["git", "-C", repo, "show", f"{rev}:drivers/parser.py"], check=True,
                         capture_output=True, text=True).stdout
    exec(compile(src, f"{rev}:drivers/parser.py", "exec"), parser_mod.__dict__)
    link_mod.FrameParser = parser_mod.FrameParser


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lie", type=int, nargs="+", default=[8 * MiB, 4 * MiB], help="announced lengths (bytes)")
    p.add_argument("--lead", type=int, default=10)
    p.add_argument("--after", type=int, default=105, help="intact frames after each lying header")
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--probe-max", type=int, default=8 * MiB, help="max frame bytes the probe announces")
    p.add_argument("--parser-rev", help="use drivers/parser.py of this commit (git show)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.parser_rev:
        _load_parser(args.parser_rev)
    res = run(args.lie, lead=args.lead, after=args.after, fps=args.fps, probe_max=args.probe_max)
    s = res["stats"]
    print(f"parser: {args.parser_rev or 'this checkout'}; {args.fps:g} fps, 128 KiB frames, probe max {args.probe_max}")
    print(f"longest write-to-delivery delay of the {args.lead} frames before any lying header: {res['lead_delay_s']} s")
    for r in res["rows"]:
        print(f"lying header of {r['lie_bytes']:>8} bytes: lost {r['lost']:>3} of the {r['intact_after']} intact "
              f"frames after it, stall {r['stall_s']} s")
    print(f"frames: received {s['frames_received']}, delivered {s['frames_delivered']}, rejected "
          f"{s['frames_rejected_by_reason']}, no_buffer {s['frames_no_buffer']}, lost_gap {s['frames_lost_gap']}; "
          f"pool {s['pool']}; bytes in {s['bytes_in']} = accepted {s['bytes_accepted']} + discarded "
          f"{s['bytes_discarded']} + pending {s['bytes_pending']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"parser_rev": args.parser_rev, "fps": args.fps, "rows": res["rows"],
                       "lead_delay_s": res["lead_delay_s"],
                       "stats": {k: v for k, v in s.items() if k != "probe"}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
