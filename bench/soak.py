"""`firmware-py bench soak` (`make soak FRAMES=N`): the daemon at the simulator's maximum rate for N frames.

The rig of `bench e2e` (bench/e2e_rig.py): `firmware-py run` as a child process with its probe,
result channel and console on three pseudo-terminals, and the probe simulator (`firmware-py
probe-sim --fd`, in a process of its own like the daemon's built-in one, so the bench's threads
never pause it mid-frame) writing phantom frames as fast as the line takes (``--fps 0``). The
journal is on with a small size bound (so the run crosses it and rotates) and the JSON-lines
file sink is on.

Measured after a warm-up (the tier loaded, the first frames through, the journal open):

* RSS growth of the daemon, warm-up end to run end (target < 5 MB);
* open file descriptors and threads at both ends (target: no more at the end);
* the live journal file (+ its WAL) against ``output.journal_max_mb``, its largest size seen
  while the run went on (target: within the bound plus one commit's overshoot, and rotated when
  the run wrote more than the bound);
* frames sent / processed / dropped / corrupt over the whole run (warm-up included), each loss
  attributed to a daemon counter (target: ``sent = processed + dropped + corrupt`` exactly,
  nothing unattributed, nothing corrupt on a clean line).

Prints the figures and one ``PASS``/``FAIL`` line per target; exits 1 when a target fails. The run
is bounded by ``--timeout`` seconds: a soak that cannot finish says so and fails.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from firmware_py.bench.e2e import CONNECT_TIMEOUT_S, account, flat_counters, summarise
from firmware_py.bench.e2e_rig import Console, DaemonChild, HostReader, Line, terminate

RSS_LIMIT_MB = 5.0
# The journal checks its size after each commit, so the live file may pass the bound by one
# commit's results (and the WAL's last frames) before it rotates.
JOURNAL_OVERSHOOT_MB = 0.5
SETTLE_TIMEOUT_S = 15.0


def snapshot(proc) -> dict:
    """RSS, open fds and threads of the daemon process (psutil)."""
    with proc.oneshot():
        return {"rss_bytes": proc.memory_info().rss, "fds": proc.num_fds(), "threads": proc.num_threads()}


def journal_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


class Watcher(threading.Thread):
    """Samples the daemon's RSS and the live journal's size at 4 Hz while frames flow."""

    def __init__(self, proc, journal: str):
        super().__init__(name="soak-watch", daemon=True)
        self.proc, self.journal = proc, journal
        self.rss_max = self.journal_max = 0
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.wait(0.25):
            try:
                self.rss_max = max(self.rss_max, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self.journal_max = max(self.journal_max, journal_bytes(self.journal))

    def stop(self) -> None:
        self._halt.set()
        self.join(2)


def settle(console: Console, reader: HostReader, sent: int, n0: int, before: dict,
           timeout_s: float = SETTLE_TIMEOUT_S) -> dict:
    """Counters once every sent frame is counted and every emitted result read (or the timeout)."""
    end = time.monotonic() + timeout_s
    while True:
        time.sleep(0.2)
        after = flat_counters(console.counters())
        acc = account(sent, len(reader.results) - n0, before, after, True)["dropped_by_cause"]
        # below 0: the host channel counted a line undelivered that the bench did read (a write
        # finishing just past pyserial's write timeout raises all the same)
        if (acc["unattributed"] == 0 and acc["emitted, not read by the bench"] <= 0) or time.monotonic() >= end:
            return after


class SimulatorChild:
    """`firmware-py probe-sim --fd` in a process of its own on the probe line's master, as the daemon's
    built-in simulator runs (daemon/simulator_process.py): blocking writes, its maximum rate."""

    def __init__(self, line: Line, args):
        os.set_blocking(line.fd, True)  # the child's writes; the bench never touches this end
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "firmware_py", "probe-sim", "--fd", str(line.fd), "--fps", "0",
             "--frames", str(args.warmup + args.frames), "--geometry", args.geometry, "--lines", str(args.lines),
             "--samples", str(args.samples)], pass_fds=(line.fd,), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.err)

    def wait(self, timeout: float) -> int:
        """Frames sent, from the simulator's closing line; raises when it did not end well in time."""
        try:
            self.proc.wait(max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"the simulator had not sent its frames within --timeout ({self.said()})") from None
        m = re.search(r"probe-sim: (\d+) frames", self.said())
        if self.proc.returncode != 0 or m is None:
            raise RuntimeError(f"the simulator exited with {self.proc.returncode}: {self.said()}")
        return int(m.group(1))

    def said(self) -> str:
        self.err.seek(0)
        lines = self.err.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        terminate(self.proc, 10)


def wait_received(console: Console, daemon: DaemonChild, frames: int, deadline: float) -> dict:
    """The counters once the daemon has received ``frames`` frames (the warm-up's end)."""
    while True:
        c = flat_counters(console.counters())
        received = c.get("frames_processed", 0) + c.get("frames_dropped_stale", 0)
        if received >= frames:
            return c
        if daemon.failed():
            raise RuntimeError(daemon.failed())
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the daemon had taken {received} of {frames} warm-up frames by --timeout")
        time.sleep(0.2)


def run(args) -> dict:
    import psutil

    from firmware_py.bench.e2e import pick_tiers

    task, tier = pick_tiers(args.tier)[0]
    deadline = time.monotonic() + args.timeout
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        journal = os.path.join(workdir, "journal.sqlite")
        results = os.path.join(workdir, "results.jsonl")
        probe, host, con = Line(), Line(), Line()
        daemon = DaemonChild(workdir, probe=probe, host=host, console=con, task=task, tier=tier, extra_config={
            "output": {"journal": journal, "journal_max_mb": args.journal_max_mb, "results": results}})
        reader = HostReader(host)
        reader.start()
        console = Console(con, banner=True)
        watcher = sim = None
        try:
            proc = psutil.Process(daemon.pid)
            before = flat_counters(console.counters(CONNECT_TIMEOUT_S))
            sim = SimulatorChild(probe, args)
            wait_received(console, daemon, args.warmup, deadline)
            start = snapshot(proc)
            watcher = Watcher(proc, journal)
            watcher.start()
            t0 = time.monotonic()
            sent = sim.wait(deadline - time.monotonic())
            wall = time.monotonic() - t0
            # at once: a probe gone quiet is reconnected after probe.silence_timeout_s, which
            # closes and reopens the port (fewer fds for a while, not a leak or a fix of one)
            end = snapshot(proc)
            after = settle(console, reader, sent, 0, before, args.settle_timeout)
            watcher.stop()
            raw = console.counters()
        finally:
            if watcher:
                watcher.stop()
            if sim:
                sim.stop()
            summary = daemon.stop()
            reader.stop()
            for line in (probe, host, con):
                line.close()
        # the whole run, warm-up included: every frame the simulator sent is accounted for
        acc = account(sent, len(reader.results), before, after, True)
        figures = summarise(acc, [], [])
        journal_stats = raw.get("ResultJournal", {})
        rotated_file = os.path.exists(journal + ".1")
        results_lines = sum(1 for _ in open(results, "rb")) if os.path.exists(results) else 0
        bound = args.journal_max_mb * 2 ** 20
    figures.pop("latency_ms"), figures.pop("model_p99_ms")
    rss_growth = (end["rss_bytes"] - start["rss_bytes"]) / 2 ** 20
    measured = max(1, sent - args.warmup)
    res = {
        "frames_requested": args.warmup + args.frames, "warmup_frames": args.warmup, "tier": tier,
        "frame": f"{args.lines} x {args.samples} uint8 {args.geometry}",
        "wall_s_after_warmup": round(wall, 1), "sent_fps_after_warmup": round(measured / wall, 1) if wall else None,
        **figures,
        "start": {**start, "rss_mb": round(start["rss_bytes"] / 2 ** 20, 2)},
        "end": {**end, "rss_mb": round(end["rss_bytes"] / 2 ** 20, 2)},
        "rss_growth_mb": round(rss_growth, 3), "rss_max_mb": round(watcher.rss_max / 2 ** 20, 2),
        "journal": {"bound_mb": args.journal_max_mb, "live_max_mb": round(watcher.journal_max / 2 ** 20, 3),
                    "rotations": journal_stats.get("rotations"), "rotated_file": rotated_file,
                    "committed": journal_stats.get("committed"), "undurable": journal_stats.get("undurable")},
        "results_file_lines": results_lines, "host_garbled_lines": reader.garbled,
        "daemon_summary": summary,
        "counters_end": after,  # the daemon's own counts behind the accounting, for a run that fails it
    }
    res["targets"] = targets(res, args, bound)
    return res


def targets(res: dict, args, bound: float) -> dict[str, tuple[bool, str]]:
    j = res["journal"]
    t = {
        "rss": (res["rss_growth_mb"] < args.rss_limit_mb,
                f"RSS growth {res['rss_growth_mb']:+.3f} MB after warm-up (limit < {args.rss_limit_mb:g} MB)"),
        "fds": (res["end"]["fds"] <= res["start"]["fds"],
                f"open fds {res['start']['fds']} -> {res['end']['fds']}"),
        "threads": (res["end"]["threads"] <= res["start"]["threads"],
                    f"threads {res['start']['threads']} -> {res['end']['threads']}"),
        "journal_bound": (j["live_max_mb"] * 2 ** 20 <= bound + JOURNAL_OVERSHOOT_MB * 2 ** 20,
                          f"live journal at most {j['live_max_mb']:.3f} MB (bound {j['bound_mb']:g} MB "
                          f"+ {JOURNAL_OVERSHOOT_MB:g} MB one commit's overshoot), {j['rotations']} rotation(s)"),
        "accounting": (res["accounting_exact"] and res["corrupt"] == 0 and res["sent"] >= res["frames_requested"],
                       f"sent {res['sent']} = processed {res['processed']} + dropped {res['dropped']} + corrupt "
                       f"{res['corrupt']}, unattributed {res['dropped_by_cause'].get('unattributed')}"),
        "results_durable": (j["undurable"] == 0 and bool(j["committed"]),
                            f"journal committed {j['committed']} results since start (warm-up too), {j['undurable']} undurable"),
    }
    if args.expect_rotation:
        t["journal_rotated"] = (bool(j["rotations"]) and j["rotated_file"],
                                f"journal rotated {j['rotations']} time(s), JOURNAL.1 present: {j['rotated_file']}"
                                + ("" if j["rotations"] else "; the run never reached the bound: lower "
                                   "--journal-max-mb or raise --frames (or --no-expect-rotation)"))
    return t


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="firmware-py bench soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000, help="frames measured after the warm-up (default 100000)")
    ap.add_argument("--warmup", type=int, default=2000, help="frames before the start figures (default 2000)")
    ap.add_argument("--geometry", default="linear", help="phantom probe kind (default linear)")
    ap.add_argument("--lines", type=int, default=64, help="scan lines (default 64)")
    ap.add_argument("--samples", type=int, default=256, help="samples per line (default 256)")
    ap.add_argument("--tier", default="smallest", help="tier name or 'smallest' (default)")
    ap.add_argument("--journal-max-mb", type=float, default=1.0,
                    help="output.journal_max_mb for the run (default 1: small, so that it rotates often)")
    ap.add_argument("--expect-rotation", action=argparse.BooleanOptionalAction, default=True,
                    help="fail unless the journal rotated at least once (default on)")
    ap.add_argument("--rss-limit-mb", type=float, default=RSS_LIMIT_MB)
    ap.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="bound on the whole run (default 1800)")
    ap.add_argument("--settle-timeout", type=float, default=SETTLE_TIMEOUT_S, metavar="S",
                    help=f"wait after the last frame for the daemon to count it (default {SETTLE_TIMEOUT_S:g}; "
                         "longer on a slow or emulated board)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.frames <= 0 or args.warmup <= 0 or args.journal_max_mb <= 0:
        print("bench soak: --frames, --warmup and --journal-max-mb must be > 0", file=sys.stderr)
        return 2
    try:
        res = run(args)
    except (ValueError, RuntimeError, OSError, TimeoutError) as exc:
        print(f"bench soak: FAIL: {exc}", file=sys.stderr)
        return 1
    targets_ = res.pop("targets")
    res["targets"] = {k: {"pass": ok, "detail": d} for k, (ok, d) in targets_.items()}
    text = json.dumps(res, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    for name, (ok, detail) in targets_.items():
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for ok, _ in targets_.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
