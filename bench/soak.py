"""`firmware-py bench soak` (`make soak FRAMES=N`): the daemon at the simulator's maximum rate for N frames.

The rig of `bench e2e` (bench/e2e_rig.py): `firmware-py run` as a child process, the probe
simulator writing phantom frames on one pseudo-terminal as fast as the line takes (``fps`` 0), the
result channel read on a second, the console's ``counters`` on a third. The journal is on with a
small size bound (so the run crosses it and rotates) and the JSON-lines file sink is on.

Measured after a warm-up (the tier loaded, the first frames through, the journal open):

* RSS growth of the daemon, warm-up end to run end (target < 5 MB);
* open file descriptors and threads at both ends (target: no more at the end);
* the live journal file (+ its WAL) against ``output.journal_max_mb``, its largest size seen
  while the run went on (target: within the bound plus one commit's overshoot, and rotated when
  the run wrote more than the bound);
* frames sent / processed / dropped / corrupt, each loss attributed to a daemon counter (target:
  ``sent = processed + dropped + corrupt`` exactly, nothing unattributed, nothing corrupt on a
  clean line).

Prints the figures and one ``PASS``/``FAIL`` line per target; exits 1 when a target fails. The run
is bounded by ``--timeout`` seconds: a soak that cannot finish says so and fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

from firmware_py.bench.e2e import CONNECT_TIMEOUT_S, account, flat_counters, summarise
from firmware_py.bench.e2e_rig import Console, DaemonChild, HostReader, Line

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


def settle(console: Console, reader: HostReader, sent: int, n0: int, before: dict) -> dict:
    """Counters once every sent frame is counted and every emitted result read (or the timeout)."""
    end = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        time.sleep(0.2)
        after = flat_counters(console.counters())
        acc = account(sent, len(reader.results) - n0, before, after, True)["dropped_by_cause"]
        if (acc["unattributed"] == 0 and acc["emitted, not read by the bench"] == 0) or time.monotonic() >= end:
            return after


def serve(sim, fd: int, frames: int, deadline: float, daemon: DaemonChild) -> None:
    """The simulator's own loop in a thread until ``frames`` more are on the line or the deadline."""
    t = threading.Thread(target=sim.serve_fd, args=(fd,),
                         kwargs={"duration": max(1.0, deadline - time.monotonic()),
                                 "max_frames": sim.summary.frames_sent + frames}, daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.5)
        if daemon.failed():
            sim.stop()
            raise RuntimeError(daemon.failed())


def run(args) -> dict:
    import psutil

    from firmware_py.drivers.probe_sim import ProbeSimulator
    from firmware_py.drivers.sources import PhantomSource

    from firmware_py.bench.e2e import pick_tiers

    task, tier = pick_tiers(args.tier)[0]
    t_start = time.monotonic()
    deadline = t_start + args.timeout
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        journal = os.path.join(workdir, "journal.sqlite")
        results = os.path.join(workdir, "results.jsonl")
        probe, host, con = Line(), Line(), Line()
        daemon = DaemonChild(workdir, probe=probe, host=host, console=con, task=task, tier=tier, extra_config={
            "output": {"journal": journal, "journal_max_mb": args.journal_max_mb, "results": results}})
        sim = ProbeSimulator(PhantomSource.from_options(args.geometry, args.lines, args.samples, 8, seed=0), fps=0)
        reader = HostReader(host)
        reader.start()
        console = Console(con, banner=True)
        watcher = None
        try:
            proc = psutil.Process(daemon.pid)
            before = flat_counters(console.counters(CONNECT_TIMEOUT_S))
            serve(sim, probe.fd, args.warmup, deadline, daemon)
            warm = settle(console, reader, sim.summary.frames_sent, 0, before)
            start = snapshot(proc)
            n0, s0 = len(reader.results), sim.summary.frames_sent
            watcher = Watcher(proc, journal)
            watcher.start()
            t0 = time.monotonic()
            serve(sim, probe.fd, args.frames, deadline, daemon)
            wall = time.monotonic() - t0
            sent = sim.summary.frames_sent - s0
            after = settle(console, reader, sent, n0, warm)
            end = snapshot(proc)
            watcher.stop()
            raw = console.counters()
        finally:
            if watcher:
                watcher.stop()
            sim.stop()
            summary = daemon.stop()
            reader.stop()
            for line in (probe, host, con):
                line.close()
        acc = account(sent, len(reader.results) - n0, warm, after, True)
        figures = summarise(acc, [], [])
        journal_stats = raw.get("ResultJournal", {})
        rotated_file = os.path.exists(journal + ".1")
        results_lines = sum(1 for _ in open(results, "rb")) if os.path.exists(results) else 0
        bound = args.journal_max_mb * 2 ** 20
    figures.pop("latency_ms"), figures.pop("model_p99_ms")
    rss_growth = (end["rss_bytes"] - start["rss_bytes"]) / 2 ** 20
    res = {
        "frames_requested": args.frames, "tier": tier, "frame": f"{args.lines} x {args.samples} uint8 {args.geometry}",
        "wall_s": round(wall, 1), "sent_fps": round(sent / wall, 1) if wall else None,
        "processed_fps": round(figures["processed"] / wall, 1) if wall else None,
        **figures,
        "start": {**start, "rss_mb": round(start["rss_bytes"] / 2 ** 20, 2)},
        "end": {**end, "rss_mb": round(end["rss_bytes"] / 2 ** 20, 2)},
        "rss_growth_mb": round(rss_growth, 3), "rss_max_mb": round(watcher.rss_max / 2 ** 20, 2),
        "journal": {"bound_mb": args.journal_max_mb, "live_max_mb": round(watcher.journal_max / 2 ** 20, 3),
                    "rotations": journal_stats.get("rotations"), "rotated_file": rotated_file,
                    "committed": journal_stats.get("committed"), "undurable": journal_stats.get("undurable")},
        "results_file_lines": results_lines, "host_garbled_lines": reader.garbled,
        "daemon_summary": summary,
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
                                f"journal rotated {j['rotations']} time(s), JOURNAL.1 present: {j['rotated_file']}")
    return t


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="firmware-py bench soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100_000, help="frames measured after the warm-up (default 100000)")
    ap.add_argument("--warmup", type=int, default=2000, help="frames before the start figures (default 2000)")
    ap.add_argument("--geometry", default="linear", help="phantom probe kind (default linear)")
    ap.add_argument("--lines", type=int, default=64, help="scan lines (default 64)")
    ap.add_argument("--samples", type=int, default=256, help="samples per line (default 256)")
    ap.add_argument("--tier", default="smallest", help="tier name or 'smallest' (default)")
    ap.add_argument("--journal-max-mb", type=float, default=4.0,
                    help="output.journal_max_mb for the run (default 4: a 100000-frame run rotates)")
    ap.add_argument("--expect-rotation", action=argparse.BooleanOptionalAction, default=True,
                    help="fail unless the journal rotated at least once (default on)")
    ap.add_argument("--rss-limit-mb", type=float, default=RSS_LIMIT_MB)
    ap.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="bound on the whole run (default 1800)")
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
