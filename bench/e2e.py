"""`firmware-py bench e2e`: drive a device like a probe and measure what a rig operator needs.

The bench plays probe frames (phantoms, a dataset folder or a recording) over a serial line at a
set rate and geometry, reads the device's result channel (``output.host.port``), asks its
service console for ``counters`` between steps, and reports per step:

* latency: the bench runs the simulator, so it owns the probe's clock: a result's
  ``probe_time_us`` maps back to the bench's monotonic time at which that frame was stamped (for a
  recording, to the time the chunk holding the frame's last byte was written), and latency is
  the result's arrival on the host line minus that; p50 / p95 / p99 / max;
* accounting: ``sent = processed + dropped + corrupt`` exactly, every drop and corruption
  attributed to a daemon counter (stale in the latest-frame slot, no buffer, result undelivered on
  the host line, ...); the bench waits for the device to settle after each step so nothing is in
  flight when it reads the counters; whatever no counter explains is ``unattributed``;
* sustained results per second, the model's own p99 (``latency_ms.inference`` of the results),
  CPU % and RSS of the daemon (psutil, when it is a child), energy per frame.

``--sweep`` runs rising frame rates per tier (pinned with ``models.start_tier``). A step is saturated
when more than 1 % of its frames are lost or its results fall behind the rate sent; a tier stops
at a saturated step that gains no more than 10 % throughput on its best earlier step (the
plateau), and its ``saturation_fps`` is the highest sustained rate measured.

Energy: no INA219/INA260 API exists in ``firmware_py.power`` yet, so energy comes from a power model
of a Raspberry Pi 4 B (``POWER_MODEL``): ``board = idle W x wall time + W per busy core x daemon CPU
seconds``, per processed frame; ``marginal`` is the CPU term alone.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import threading
import time

import numpy as np

from firmware_py.bench.e2e_report import Progress, compare, machine, markdown, plots
from firmware_py.bench.e2e_rig import Console, DaemonChild, HostReader, Line, ProcessSampler

# Raspberry Pi 4 B, published whole-board figures (about 2.7 W idle, 6.4 W with all four cores
# busy, at 5.1 V): assumed constants, not measured here. Override with --power-idle-w/--power-core-w.
POWER_MODEL = {"idle_w": 2.7, "per_busy_core_w": 0.9}
DEFAULT_SWEEP = (30.0, 60.0, 120.0, 240.0, 480.0, 960.0)
WARMUP_FRAMES = 10
CONNECT_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 5.0
LOSS_SATURATED = 0.01  # a step losing more than this share of frames is saturated
BEHIND_SATURATED = 0.9  # ... or whose results arrive at less than this share of the rate sent


# -- accounting -----------------------------------------------------------------------------------

def flat_counters(c: dict | None) -> dict[str, int]:
    """The console's ``counters`` as flat integers (the ones the accounting needs)."""
    if c is None:
        return {}
    host = c.get("HostChannel", {})
    out = {k: int(c.get(k, 0)) for k in ("frames_processed", "frames_dropped_stale", "frames_no_buffer",
                                          "frames_lost_gap", "frames_rejected_processing", "frames_in_progress",
                                          "frames_skipped_by_rate")}
    out["host_delivered"], out["host_undelivered"] = int(host.get("delivered", 0)), int(host.get("undelivered", 0))
    for reason, n in c.get("frames_rejected_by_reason", {}).items():
        out[f"rejected:{reason}"] = int(n)
    return out


def account(sent: int, results: int, before: dict, after: dict, with_counters: bool) -> dict:
    """sent = processed + dropped + corrupt, each loss attributed to the counter that saw it."""
    if not with_counters:
        return {"sent": sent, "processed": results, "dropped_by_cause": {"unattributed (no console)": sent - results},
                "corrupt_by_cause": {}}
    d = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
    dropped = {"stale (slot: a newer frame replaced it)": d.get("frames_dropped_stale", 0),
               "no free frame buffer": d.get("frames_no_buffer", 0),
               "processed, not emitted": d.get("frames_processed", 0) - d.get("host_delivered", 0)
               - d.get("host_undelivered", 0),
               "undelivered on the host line": d.get("host_undelivered", 0),
               "emitted, not read by the bench": d.get("host_delivered", 0) - results,
               "cut off mid-frame": d.get("frames_in_progress", 0),
               # the power policy's every:K rung (or latency over budget on a slow board) analyses
               # one frame in K: the others are dropped on purpose, not lost
               "skipped by the analysis rate (every:K rung)": d.get("frames_skipped_by_rate", 0)}
    corrupt = {k.split(":", 1)[1]: v for k, v in d.items() if k.startswith("rejected:")}
    # Intact frames that came before the session's handshake are dropped, not corrupt (the status line agrees).
    dropped["arrived before the handshake"] = corrupt.pop("no_handshake", 0)
    corrupt["lost in a sequence gap"] = d.get("frames_lost_gap", 0)
    corrupt["rejected by processing"] = d.get("frames_rejected_processing", 0)
    seen = results + sum(dropped.values()) + sum(corrupt.values())
    dropped["unattributed"] = sent - seen  # frames no counter has seen (yet): must be 0
    return {"sent": sent, "processed": results, "dropped_by_cause": dropped, "corrupt_by_cause": corrupt}


def settled(sent: int, results: int, before: dict, after: dict) -> bool:
    """Every sent frame is counted by the daemon and every emitted result has been read."""
    a = account(sent, results, before, after, True)
    return a["dropped_by_cause"]["unattributed"] == 0 and a["dropped_by_cause"]["emitted, not read by the bench"] == 0


# -- one rig --------------------------------------------------------------------------------------

class Rig:
    """The simulator on the probe line, the result reader, the console and (optionally) the daemon."""

    def __init__(self, args, sim, probe: Line, host: Line, console: Line | None, daemon: DaemonChild | None,
                 replay: tuple[dict[int, int], int] | None):
        self.args, self.sim, self.probe, self.daemon = args, sim, probe, daemon
        self.reader = HostReader(host)
        self.reader.start()
        self.console = Console(console, banner=daemon is not None) if console else None
        self.sampler = ProcessSampler(daemon.pid) if daemon else None
        if self.sampler:
            self.sampler.start()
        # recorded probe_time_us -> index of the chunk completing it, and the recording's frame count
        self.replay_frames, self.replay_sent = replay or (None, 0)
        self.replay_chunk_times: list[float] = []
        self.send_times: list[float] = []
        sim.on_frame = lambda *_: self.send_times.append(time.monotonic())

    def counters(self) -> dict:
        # the first call also waits for the console to come up with the daemon
        return flat_counters(self.console.counters(CONNECT_TIMEOUT_S)) if self.console else {}

    def serve(self, *, max_frames: int | None, timeout: float, progress: Progress | None, label: str) -> None:
        """Play frames in a thread (the simulator's own loop), showing progress until it ends."""
        t = threading.Thread(target=self.sim.serve_fd, args=(self.probe.fd,),
                             kwargs={"duration": timeout, "max_frames": max_frames}, daemon=True)
        start = time.monotonic()
        t.start()
        while t.is_alive():
            t.join(0.2)
            if self.daemon and self.daemon.failed():
                raise RuntimeError(self.daemon.failed())
            if progress:
                progress.show(label, time.monotonic() - start)

    def settle(self, sent: int, n0: int, before: dict) -> dict:
        """Counters once the device has accounted for every frame (or SETTLE_TIMEOUT_S passed)."""
        end = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            time.sleep(0.1)
            if not self.console:
                if time.monotonic() >= end or len(self.reader.results) - n0 >= sent:
                    return {}
                continue
            after = self.counters()
            if settled(sent, len(self.reader.results) - n0, before, after) or time.monotonic() >= end:
                return after

    def sent_at(self, result: dict) -> float:
        """The bench's monotonic time of the frame behind ``result`` (see the module docstring)."""
        if self.replay_frames is None:
            # The simulator stamps frames with time.monotonic() - its start (_t0); the bench made it.
            # ProbeSimulator has no public accessor for its clock's origin yet.
            return self.sim._t0 + result["probe_time_us"] / 1e6
        return self.replay_chunk_times[self.replay_frames[result["probe_time_us"]]]

    def step(self, tier: str, fps: float, frames: int | None, progress: Progress | None) -> tuple[dict, list]:
        """One measured step at ``fps``; returns its figures and the latencies (ms)."""
        self.sim.fps = fps
        before = self.counters()
        n0, s0, t_sent0 = len(self.reader.results), self.sim.summary.frames_sent, len(self.send_times)
        t0 = time.monotonic()
        timeout = (frames / fps if frames and fps else self.args.duration) * 3 + 30
        self.serve(max_frames=None if frames is None else s0 + frames, timeout=timeout, progress=progress,
                   label=f"{tier} {fps:g} fps")
        if self.replay_frames is not None:  # the chunks' write times, from the replay's start (after the hello)
            self.replay_chunk_times = [self.sim._replay_t0 + dt for dt, _ in self.sim.replay_log]
        sent = self.sim.summary.frames_sent - s0
        if self.replay_frames is not None:
            sent = self.replay_sent
        after = self.settle(sent, n0, before)
        t1 = time.monotonic()
        got = self.reader.results[n0:]
        acc = account(sent, len(got), before, after, self.console is not None)
        lat = [1000 * (t - self.sent_at(r)) for t, r in got]
        model = [r["latency_ms"]["inference"] for _, r in got]
        device = [r["latency_ms"]["total"] for _, r in got]  # last byte received -> result made
        sends = self.send_times[t_sent0:]
        step = {"tier": tier, "offered_fps": fps, **summarise(acc, lat, model),
                "device_total_p99_ms": percentiles(device)["p99"],
                "sent_fps": rate(sends), "fps_sustained": rate([t for t, _ in got]),
                "backends": sorted({r["backend"] for _, r in got}), "tiers_seen": sorted({r["tier"] for _, r in got})}
        cpu = self.sampler.window(t0, t1) if self.sampler else {"cpu_percent": None, "cpu_seconds": None,
                                                                 "rss_mb_max": None}
        step.update(cpu, energy=energy(cpu["cpu_seconds"], t1 - t0, step["processed"], self.args))
        step["saturated"] = bool(step["sent"]) and (
            (step["dropped"] + step["corrupt"]) > LOSS_SATURATED * step["sent"]
            or (step["fps_sustained"] or 0) < BEHIND_SATURATED * (step["sent_fps"] or 0))
        # a recording keeps its own timing: no offered rate to fall behind
        step["sender_limited"] = self.replay_frames is None and (step["sent_fps"] or 0) < BEHIND_SATURATED * fps
        return step, lat

    def close(self) -> str:
        self.sim.stop()
        summary = self.daemon.stop() if self.daemon else ""
        self.reader.stop()
        if self.sampler:
            self.sampler.stop()
        return summary


def rate(times: list[float]) -> float | None:
    """Events per second between the first and the last event."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 2)


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    p = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p[0]), 3), "p95": round(float(p[1]), 3), "p99": round(float(p[2]), 3),
            "max": round(float(max(values)), 3)}


def summarise(acc: dict, lat: list[float], model: list[float]) -> dict:
    dropped, corrupt = sum(acc["dropped_by_cause"].values()), sum(acc["corrupt_by_cause"].values())
    return {"sent": acc["sent"], "processed": acc["processed"], "dropped": dropped, "corrupt": corrupt,
            "accounting_exact": acc["sent"] == acc["processed"] + dropped + corrupt
            and not acc["dropped_by_cause"].get("unattributed", 0),
            "dropped_by_cause": acc["dropped_by_cause"], "corrupt_by_cause": acc["corrupt_by_cause"],
            "latency_ms": percentiles(lat), "model_p99_ms": percentiles(model)["p99"]}


def energy(cpu_s: float | None, wall_s: float, frames: int, args) -> dict:
    if cpu_s is None or not frames:
        return {"board_mj_per_frame": None, "marginal_mj_per_frame": None}
    marginal = args.power_core_w * cpu_s
    return {"board_mj_per_frame": round(1000 * (args.power_idle_w * wall_s + marginal) / frames, 2),
            "marginal_mj_per_frame": round(1000 * marginal / frames, 3)}


# -- sources, tiers, the run ----------------------------------------------------------------------

def make_simulator(args):
    from firmware_py.drivers.probe_sim import ProbeSimulator

    if args.replay:
        from firmware_py.drivers.recorder import Recording

        rec = Recording(args.replay)
        sim = ProbeSimulator(None, replay=rec, version_min=rec.version or (1, 1), version_max=rec.version or (1, 1))
        return sim, replay_index(rec)
    if args.images:
        from firmware_py.drivers.sources import ImageFolderSource

        source = ImageFolderSource(args.images)
    else:
        from firmware_py.drivers.sources import PhantomSource

        source = PhantomSource.from_options(args.geometry, args.lines, args.samples, args.bits, seed=args.seed)
    return ProbeSimulator(source, fps=args.fps), None


def replay_index(rec) -> tuple[dict[int, int], int]:
    """probe_time_us of every frame in a recording -> the index of the chunk holding its last byte,
    and how many frames the recording puts on the line: every frame header (a frame cut off at
    the recording's end counts, the device sees its start)."""
    from firmware_py.drivers.parser import FrameParser

    parser, index = FrameParser(), {}
    for i, (_, data) in enumerate(rec.chunks):
        for item in parser.feed(data):
            if hasattr(item, "timestamp_us"):
                index[item.timestamp_us] = i
                item.release()
    return index, parser.frames_received


def shipped_tiers() -> list[tuple[str, str]]:
    """(task, name) of every tier in the shipped manifest, smallest first within a task."""
    from importlib.resources import files

    from firmware_py.inference.manifest import load_manifest

    m = load_manifest(str(files("firmware_py.models") / "manifest.yaml"))
    return [(task, t.name) for task in ("classify", "segment") for t in m.ladder(task)]


def pick_tiers(spec: str) -> list[tuple[str, str]]:
    tiers = shipped_tiers()
    if spec == "all":
        return tiers
    if spec == "smallest":
        return tiers[:1]
    by_name = {name: (task, name) for task, name in tiers}
    wanted = spec.split(",")
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise ValueError(f"unknown tier {', '.join(unknown)}; shipped: {', '.join(by_name)}")
    return [by_name[w] for w in wanted]


def run_tier(args, task: str, tier: str, rates: list[float], workdir: str,
             progress: Progress) -> tuple[list, dict, list, str]:
    sim, replay = make_simulator(args)
    if args.attach:
        probe, host = Line(args.probe_port), Line(args.host_port)
        console = Line(args.console_port) if args.console_port else None
        daemon = None
    else:
        probe, host, console = Line(), Line(), Line()
        daemon = DaemonChild(workdir, probe=probe, host=host, console=console, task=task, tier=tier,
                             extra_config=args.daemon_config)
    rig = Rig(args, sim, probe, host, console, daemon, replay)
    steps, lats, timeline, summary = [], {}, [], ""
    try:
        if replay is None:  # handshake and warm-up, not measured
            before = rig.counters()
            rig.serve(max_frames=WARMUP_FRAMES, timeout=CONNECT_TIMEOUT_S, progress=None, label="")
            if sim.summary.frames_sent < WARMUP_FRAMES:
                raise RuntimeError(f"the device did not take frames within {CONNECT_TIMEOUT_S:g} s "
                                   f"({daemon.failed() if daemon else 'check --probe-port'})")
            rig.settle(WARMUP_FRAMES, 0, before)
        for fps in rates:
            frames = None if replay is not None else max(WARMUP_FRAMES, round(fps * args.duration))
            step, lat = rig.step(tier, fps, frames, progress)
            steps.append(step)
            lats[f"{tier} {fps:g} fps"] = lat
            progress.step_done(args.duration, f"{tier} {fps:g} fps: sent {step['sent']} processed {step['processed']}"
                               f" dropped {step['dropped']} corrupt {step['corrupt']} p99 {step['latency_ms']['p99']}"
                               f" ms, {step['fps_sustained']} fps sustained" + (" SATURATED" if step["saturated"] else ""))
            # a plateau: losing frames and no longer gaining throughput (> 10 %) on the best step so far
            best = max((s["fps_sustained"] or 0 for s in steps[:-1]), default=0)
            if step["sender_limited"] or (step["saturated"] and (step["fps_sustained"] or 0) <= 1.1 * best):
                break
        timeline = [(t, r["tier"]) for t, r in rig.reader.results]
    finally:
        summary = rig.close()
        for line in (probe, host, console):
            if line:
                line.close()
    return steps, lats, timeline, summary


def run(args) -> tuple[dict, dict, list]:
    # an attached device runs the tier it runs (pin it there with models.start_tier)
    tiers = [("", "attached")] if args.attach else pick_tiers(args.tier)
    rates = ([args.fps] + [r for r in args.sweep if r != args.fps]) if args.sweep else [args.fps]
    progress = Progress(len(tiers) * len(rates) * args.duration)
    steps, lats, timeline, summaries = [], {}, [], {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as workdir:
        for task, tier in tiers:
            s, lat, tl, summaries[tier] = run_tier(args, task, tier, rates, workdir, progress)
            steps += s
            lats.update(lat)
            timeline += tl
    ref = steps[0]
    totals = {k: sum(s[k] for s in steps) for k in ("sent", "processed", "dropped", "corrupt")}
    by_cause = {k: {} for k in ("dropped_by_cause", "corrupt_by_cause")}
    for s in steps:
        for k in by_cause:
            for cause, n in s[k].items():
                by_cause[k][cause] = by_cause[k].get(cause, 0) + n
    saturation = {}
    for _, tier in tiers:
        mine = [s for s in steps if s["tier"] == tier]
        saturation[tier] = max((s["fps_sustained"] or 0 for s in mine), default=None) \
            if any(s["saturated"] for s in mine) else None
    accel = (args.daemon_config or {}).get("accelerator", {}).get("kind", "none")
    res = {**totals, **by_cause, "accounting_exact": all(s["accounting_exact"] for s in steps),
           "latency_ms": ref["latency_ms"], "fps_sustained": ref["fps_sustained"],
           "model_p99_ms": ref["model_p99_ms"], "device_total_p99_ms": ref["device_total_p99_ms"],
           "cpu_percent": ref["cpu_percent"], "rss_mb_max": ref["rss_mb_max"],
           "energy": {**ref["energy"], "source": f"power model {args.power_idle_w} W idle + "
                      f"{args.power_core_w} W per busy core (no INA219/INA260 reading: firmware_py.power has no "
                      "current-sensor API yet)"},
           "saturation_fps": saturation,
           "reference": {"tier": ref["tier"], "offered_fps": ref["offered_fps"]},
           "target": {"p99_le_model_p99_plus_5ms": None if ref["latency_ms"]["p99"] is None or ref["model_p99_ms"] is None
                      else ref["latency_ms"]["p99"] <= ref["model_p99_ms"] + 5.0,
                      "accounting_exact": all(s["accounting_exact"] for s in steps)},
           "steps": steps, "daemon_summaries": summaries,
           "config": {"frames": f"recording {args.replay}" if args.replay else
                      f"images of {args.images} (linear uint8, one scan line per image column)" if args.images else
                      f"{args.lines} x {args.samples} uint{args.bits} {args.geometry} phantom",
                      "duration_s_per_step": args.duration, "rates": rates, "attach": args.attach},
           "machine": machine(accel), "command": "firmware-py bench e2e " + shlex.join(args.argv),
           "warnings": [] if not any(s["sender_limited"] for s in steps) else
           ["the bench could not send at the offered rate in some steps (sender_limited): the line or this "
            "machine's CPU, not the device, set the pace there"]}
    for w in res["machine"]["warnings"]:
        print(f"bench e2e: warning: {w}", file=sys.stderr)
    return res, lats, timeline


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="firmware-py bench e2e", description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="send a dataset folder's images (linear 8-bit frames)")
    src.add_argument("--replay", metavar="FILE", help="play a recording (probe.record_path) once, at its timing")
    ap.add_argument("--geometry", default="linear", help="phantom probe kind (default linear)")
    ap.add_argument("--lines", type=int, default=256, help="scan lines (default 256)")
    ap.add_argument("--samples", type=int, default=512, help="samples per line (default 512)")
    ap.add_argument("--bits", type=int, choices=(8, 16), default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate (the reference step; default 30)")
    ap.add_argument("--duration", type=float, default=3.0, metavar="S", help="seconds per step (default 3)")
    ap.add_argument("--sweep", nargs="?", const=",".join(f"{r:g}" for r in DEFAULT_SWEEP), default=None,
                    metavar="FPS,FPS,...", help=f"rising rates per tier until saturation (default "
                    f"{','.join(f'{r:g}' for r in DEFAULT_SWEEP)})")
    ap.add_argument("--tier", default="smallest", help="tier name(s), comma-separated, 'smallest' (default) or 'all'")
    ap.add_argument("--daemon-config", metavar="YAML", help="extra configuration merged into the child daemon's")
    ap.add_argument("--attach", action="store_true", help="the device runs elsewhere: use --probe-port, "
                    "--host-port (and --console-port for the counters) instead of starting a daemon")
    ap.add_argument("--probe-port", metavar="DEV", help="with --attach: the line to the device's probe input")
    ap.add_argument("--host-port", metavar="DEV", help="with --attach: the device's result channel")
    ap.add_argument("--console-port", metavar="DEV", help="with --attach: the device's service console")
    ap.add_argument("--power-idle-w", type=float, default=POWER_MODEL["idle_w"])
    ap.add_argument("--power-core-w", type=float, default=POWER_MODEL["per_busy_core_w"])
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write a Markdown report")
    ap.add_argument("--plots", metavar="DIR", help="write latency.png, throughput.png, tiers.png (matplotlib)")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="no run: print (or --markdown) a table of two --json runs with the ratio of each figure")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
        args.argv = argv
        args.sweep = [float(r) for r in args.sweep.split(",")] if args.sweep else None
        if args.attach and not (args.probe_port and args.host_port):
            ap.error("--attach needs --probe-port and --host-port")
        if args.replay and args.sweep:
            ap.error("--sweep plays phantoms or images; a recording keeps its own timing")
        if args.fps <= 0 or args.duration <= 0:
            ap.error("--fps and --duration must be > 0")
    except SystemExit as exc:
        return int(exc.code or 0)
    except ValueError as exc:
        print(f"bench e2e: --sweep takes numbers like 30,60,120 ({exc})", file=sys.stderr)
        return 2
    if args.compare:
        text = compare(*args.compare)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(text)
        print(text)
        return 0
    if args.daemon_config:
        import yaml

        with open(args.daemon_config, encoding="utf-8") as f:
            args.daemon_config = yaml.safe_load(f) or {}
    try:
        res, lats, timeline = run(args)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"bench e2e: {exc}", file=sys.stderr)
        return 1
    if args.plots:
        res["plots"] = plots(res, lats, timeline, args.plots)
    text = json.dumps(res, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown(res))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
