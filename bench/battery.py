"""`firmware-py bench battery --json PATH [--plot PATH.png]`: what power adaptation buys in battery life.

Two parts, in one process:

1. Cost, measured. The real engine loads every shipped tier of the task (the verified model set)
   and runs ``--frames`` phantom probe frames through each: the daemon's fused preprocessing
   into the tier's input tensor, then ``invoke()``. CPU seconds per frame (``time.thread_time``,
   the interpreter runs on the calling thread with ``accelerator.cpu_threads: 1``) and wall
   latency (p50 / p95) per tier.
2. A discharge, simulated faster than real time with a fake clock: a steady frame stream at the
   probe's ``--fps``; the configured policy (``power.*``: ladder, bands, hysteresis, dwell) decides
   every second from a simulated battery's gauge (Gaussian noise ``--noise`` points, 2 % of reads
   missing); the battery is drained by the power model's draw of the rung that runs (its tier's
   measured CPU time x analysed frames a second, the probe at the rung's frame rate). The same
   discharge always on the top tier at full rate is the baseline.

Figures, per power model:
  runtime_vs_top_tier   time to empty with adaptation / time to empty always on the top rung
  accuracy_lost_points  time-weighted mean of (top tier's accuracy - the running rung's tier's
                        accuracy) x 100, the accuracies being the tiers' measured figures on the
                        leakage-free (clean) test images (``--accuracy``). A rung analysing 1 frame
                        in k counts its tier's accuracy: the frames between keep the last result,
                        which is not counted as a further loss.
  analysed_fps_min      the lowest analysed frame rate (probe fps / k) of any rung that ran

Measured on this machine's CPU: on a Pi the tiers' CPU seconds are larger (run the bench there).
Under an Edge TPU model nothing here runs on an Edge TPU: the invoke time measured on the CPU is
charged as the accelerator's busy time (at its active power), the preprocessing as CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np

from firmware_py.errors import FirmwareError, UsageError

TARGETS = {"runtime_vs_top_tier": 1.5, "accuracy_lost_points": 3.0, "analysed_fps_min": 5.0}
REPORT_MODELS = ("pi4-cpu", "pi5-cpu", "pi4-edgetpu")  # besides the configured one
LEAKAGE_FILE = os.path.join("report", "leakage_busi_fold0.json")
TEMPERATURE_C = 45.0  # a board well below power.hot_c: this bench is about the battery


@dataclass(frozen=True)
class TierCost:
    cpu_s: float  # CPU seconds per analysed frame (preprocess + invoke)
    preprocess_cpu_s: float
    invoke_s: float  # CPU seconds of invoke() (charged as the accelerator's busy time under an accelerator model)
    p50_ms: float
    p95_ms: float


class FakeClock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- 1. cost, measured ------------------------------------------------------------------------

def phantom_frames(n: int, seed: int = 0):
    from firmware_py.drivers.sources import PhantomSource

    source = PhantomSource.from_options("linear", 128, 512, 8, seed=seed)
    return [source.next() for _ in range(min(n, 8))]


def measure_tiers(engine, preprocess_cfg, frames: int, warmup: int = 5) -> dict[str, TierCost]:
    """Every tier of the engine's ladder, on the daemon's preprocessing + invoke path."""
    from firmware_py.daemon.frames import preprocessor_for_tier

    source = phantom_frames(frames)
    costs = {}
    for name in engine.ladder:
        engine.request_tier(name, wait=True).result(120)
        tier = engine.active_tier
        pp = preprocessor_for_tier(tier, preprocess_cfg)
        cpu, pre, inv, wall = [], [], [], []
        for i in range(warmup + frames):
            f = source[i % len(source)]
            c0, w0 = time.thread_time(), time.perf_counter()
            view = engine.input_view()
            pp.run(f.samples, f.geometry, view)
            del view
            c1, w1 = time.thread_time(), time.perf_counter()
            engine.invoke()
            c2, w2 = time.thread_time(), time.perf_counter()
            if i >= warmup:
                cpu.append(c2 - c0)
                pre.append(c1 - c0)
                inv.append(c2 - c1)  # CPU, not wall: a stall caused by another process is not our energy
                wall.append((w2 - w0) * 1e3)
        costs[name] = TierCost(float(np.mean(cpu)), float(np.mean(pre)), float(np.mean(inv)),
                               float(np.percentile(wall, 50)), float(np.percentile(wall, 95)))
    return costs


def load_accuracy(path: str, split: str, tiers: list[str]) -> dict[str, float]:
    """Each tier's accuracy on the ``split`` images of a `models evaluate`/leakage report."""
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--accuracy {path}: {exc}; pass the leakage report (models/report/"
                         "leakage_busi_fold0.json, from python -m firmware_py.models.build.leakage)") from None
    section = report.get("evaluate", {}).get(split, report.get(split, report)).get("tiers", {})
    missing = [t for t in tiers if not isinstance(section.get(t, {}).get("accuracy"), (int, float))]
    if missing:
        raise UsageError(f"--accuracy {path} has no {split} accuracy for {', '.join(missing)}; pass a report of "
                         "this model set (or --accuracy-split)")
    return {t: float(section[t]["accuracy"]) for t in tiers}


# -- 2. the discharge, simulated -----------------------------------------------------------------

def simulate(rungs, costs: dict[str, TierCost], accuracy: dict[str, float], model, power_cfg, *,
             capacity_wh: float, native_fps: float, adapt: bool, noise: float, seed: int,
             step_s: float = 1.0, sample_s: float = 60.0, max_h: float = 48.0) -> dict:
    """One discharge from full to empty; the trace sampled every ``sample_s`` simulated seconds."""
    from firmware_py.power import PolicyInputs, TierPolicy
    from firmware_py.power.battery_sim import SimulatedBattery

    rng = random.Random(seed)
    clock = FakeClock()
    draw = [0.0]
    battery = SimulatedBattery(capacity_wh, 100.0, load=lambda: draw[0], clock=clock)
    policy = TierPolicy.from_config(power_cfg, len(rungs), clock=clock)
    top = len(rungs) - 1
    accel = model.accel_active_w > 0
    top_acc = accuracy[rungs[top].tier]
    current = top
    first = True
    seconds = [0.0] * len(rungs)
    energy_j = [0.0] * len(rungs)
    trace = {k: [] for k in ("t_h", "battery_percent", "voltage_v", "rung", "tier", "analysed_fps", "power_w",
                             "latency_p95_ms", "expected_accuracy")}
    switches, next_sample = 0, 0.0
    while not battery.empty and clock.t < max_h * 3600:
        rung = rungs[current]
        fps = rung.fps or native_fps
        analysed = fps / rung.every
        c = costs[rung.tier]
        cpu_s = c.preprocess_cpu_s if accel else c.cpu_s
        draw[0] = model.draw_w(fps, analysed, cpu_s, c.invoke_s if accel else 0.0)
        if clock.t >= next_sample:
            reading = battery.read()
            for k, v in (("t_h", clock.t / 3600), ("battery_percent", reading.percent),
                         ("voltage_v", reading.voltage_v), ("rung", rung.label), ("tier", rung.tier),
                         ("analysed_fps", analysed), ("power_w", draw[0]), ("latency_p95_ms", c.p95_ms),
                         ("expected_accuracy", accuracy[rung.tier])):
                trace[k].append(round(v, 4) if isinstance(v, float) else v)
            next_sample += sample_s
        clock.t += step_s
        seconds[current] += step_s
        energy_j[current] += draw[0] * step_s
        reading = battery.read()  # integrates this step's draw
        if not adapt:
            continue
        pct = None if rng.random() < 0.02 else min(100.0, max(0.0, reading.percent + rng.gauss(0, noise)))
        target = policy.decide(current, PolicyInputs(pct, TEMPERATURE_C, c.p95_ms, charging=reading.charging,
                                                     budget_ms=1000.0 * rung.every / fps))
        if first:  # like the daemon's start: straight to the policy's goal for the charge it reads
            target, first = policy.goal, False
            policy.moved()
        switches += target != current
        current = target
    runtime = clock.t
    lost = sum(s * (top_acc - accuracy[rungs[i].tier]) for i, s in enumerate(seconds)) / runtime * 100.0
    ran = [i for i, s in enumerate(seconds) if s > 0]
    return {"runtime_h": round(runtime / 3600, 4), "empty": battery.empty, "switches": switches,
            "mean_w": round(sum(energy_j) / runtime, 4),
            "runtime_s": runtime,
            "per_rung": {rungs[i].label: {"seconds": seconds[i], "hours": round(seconds[i] / 3600, 4), "energy_wh": round(energy_j[i] / 3600, 4),
                                          "accuracy": accuracy[rungs[i].tier],
                                          "analysed_fps": (rungs[i].fps or native_fps) / rungs[i].every}
                         for i in ran},
            "accuracy_lost_points": round(lost, 3),
            "analysed_fps_min": min((rungs[i].fps or native_fps) / rungs[i].every for i in ran),
            "trace": trace}


def runtime_bound(rungs, costs: dict[str, TierCost], model, native_fps: float, min_fps: float) -> float:
    """The most any ladder could buy while analysing at least ``min_fps``: the top rung's draw over the
    draw of the cheapest tier analysing every frame of a probe slowed to ``min_fps``."""
    accel = model.accel_active_w > 0

    def draw(tier, fps, every):
        c = costs[tier]
        return model.draw_w(fps, fps / every, c.preprocess_cpu_s if accel else c.cpu_s, c.invoke_s if accel else 0.0)

    top = rungs[-1]
    cheapest = min(costs, key=lambda t: draw(t, min_fps, 1))
    return draw(top.tier, native_fps, 1) / draw(cheapest, min_fps, 1)


def figures(adaptive: dict, baseline: dict) -> dict:
    out = {"runtime_vs_top_tier": round(adaptive["runtime_h"] / baseline["runtime_h"], 4),
           "accuracy_lost_points": adaptive["accuracy_lost_points"],
           "analysed_fps_min": adaptive["analysed_fps_min"]}
    out["targets_met"] = {"runtime_vs_top_tier": out["runtime_vs_top_tier"] >= TARGETS["runtime_vs_top_tier"],
                          "accuracy_lost_points": out["accuracy_lost_points"] <= TARGETS["accuracy_lost_points"],
                          "analysed_fps_min": out["analysed_fps_min"] >= TARGETS["analysed_fps_min"]}
    return out


def run(args) -> dict:
    from firmware_py.bench.e2e_report import machine
    from firmware_py.config import load_config
    from firmware_py.inference import Engine
    from firmware_py.inference.engine import default_manifest, default_public_key
    from firmware_py.power.energy import PowerModel
    from firmware_py.power.ladder import build_rungs

    cfg = load_config(args.config)
    what_if = {k: v for k, v in (("ladder", args.ladder), ("bands", args.bands)) if v is not None}
    if what_if:  # a policy to try, validated like the configuration file's
        cfg = cfg.replace(power=what_if)
    manifest = args.manifest or cfg.models.manifest or default_manifest()
    if os.path.isdir(manifest):
        manifest = os.path.join(manifest, "manifest.yaml")
    engine = Engine(manifest, public_key=cfg.models.public_key or default_public_key(), task=cfg.models.task,
                    threads=1)
    try:
        ladder = list(engine.ladder)
        accuracy_path = args.accuracy or os.path.join(os.path.dirname(manifest), LEAKAGE_FILE)
        accuracy = load_accuracy(accuracy_path, args.accuracy_split, ladder)
        print(f"measuring {len(ladder)} tiers, {args.frames} frames each ...", file=sys.stderr)
        costs = measure_tiers(engine, cfg.preprocess, args.frames)
        metrics = {n: engine.manifest.tier(n).metrics for n in ladder}
    finally:
        engine.close()
    rungs = build_rungs(cfg.power.ladder, ladder, metrics)
    configured = PowerModel.from_config(cfg.power.model)
    models = [configured] + [PowerModel.preset(n, battery_wh=configured.battery_wh) for n in REPORT_MODELS
                             if n != configured.name]
    capacity = args.capacity_wh or configured.battery_wh
    results = {}
    for model in models:
        kw = dict(capacity_wh=capacity, native_fps=args.fps, noise=args.noise, seed=args.seed, step_s=1.0,
                  sample_s=args.sample_s)
        adaptive = simulate(rungs, costs, accuracy, model, cfg.power, adapt=True, **kw)
        baseline = simulate(rungs, costs, accuracy, model, cfg.power, adapt=False, **kw)
        results[model.name] = {"power_model": model.describe(), "configured": model is configured,
                               "figures": figures(adaptive, baseline), "adaptive": adaptive,
                               "runtime_vs_top_tier_bound": round(runtime_bound(
                                   rungs, costs, model, args.fps, TARGETS["analysed_fps_min"]), 4),
                               "top_tier": {k: baseline[k] for k in ("runtime_h", "mean_w", "empty")}}
    p = cfg.power
    return {
        "bench": "battery", "machine": machine(cfg.accelerator.kind),
        "policy": {"ladder": p.ladder, "bands": p.bands, "low_battery_percent": p.low_battery_percent,
                   "critical_battery_percent": p.critical_battery_percent, "hysteresis": p.hysteresis,
                   "min_dwell_s": p.min_dwell_s},
        "simulation": {"capacity_wh": capacity, "probe_fps": args.fps, "gauge_noise_points": args.noise,
                       "gauge_missing_share": 0.02, "decision_period_s": 1.0, "seed": args.seed,
                       "temperature_c": TEMPERATURE_C},
        "accuracy": {"source": os.path.abspath(accuracy_path), "split": args.accuracy_split},
        "tiers": {n: {"cpu_ms_per_inference": round(c.cpu_s * 1e3, 4),
                      "preprocess_cpu_ms": round(c.preprocess_cpu_s * 1e3, 4),
                      "invoke_ms": round(c.invoke_s * 1e3, 4), "latency_p50_ms": round(c.p50_ms, 4),
                      "latency_p95_ms": round(c.p95_ms, 4), "accuracy": accuracy[n], "frames": args.frames}
                  for n, c in costs.items()},
        "rungs": [{"label": g.label, "tier": g.tier, "every": g.every, "fps": g.fps, "cost": g.cost} for g in rungs],
        "targets": TARGETS, "default_model": configured.name,
        "figures": results[configured.name]["figures"],
        "models": results,
    }


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    labels = [g["label"] for g in report["rungs"]]
    for name in names:
        r = report["models"][name]
        tr, f = r["adaptive"]["trace"], r["figures"]
        tag = (f"{name}: {f['runtime_vs_top_tier']:.2f}x runtime, -{f['accuracy_lost_points']:.1f} pts, "
               f">= {f['analysed_fps_min']:g} fps")
        line, = axes[0].plot(tr["t_h"], tr["battery_percent"], label=tag)
        axes[0].axvline(r["top_tier"]["runtime_h"], color=line.get_color(), ls=":", lw=0.8)
        axes[1].step(tr["t_h"], [labels.index(x) for x in tr["rung"]], where="post", color=line.get_color())
        axes[2].step(tr["t_h"], [100 * a for a in tr["expected_accuracy"]], where="post", color=line.get_color())
        axes[3].step(tr["t_h"], tr["latency_p95_ms"], where="post", color=line.get_color())
    axes[0].set(ylabel="battery %", title="simulated discharge (dotted: always the top tier at full rate)")
    axes[0].legend(fontsize=7)
    axes[1].set(ylabel="rung")
    axes[1].set_yticks(range(len(labels)), labels, fontsize=6)
    axes[2].set(ylabel="expected accuracy %")
    axes[3].set(ylabel="latency p95 (ms, measured)", xlabel="hours (simulated)")
    fig.suptitle(f"{report['machine'].get('board', '')}; ladder {report['policy']['ladder']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bands(text: str) -> dict:
    try:
        bands = json.loads(text)
    except ValueError:
        bands = None
    if not isinstance(bands, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object of percent: rungs below the top, "
                                         'e.g. {"80": 1, "60": 2}')
    return bands


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="firmware-py bench battery", description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="write the results here ('-' for stdout)")
    p.add_argument("--plot", help="battery %%, rung and expected accuracy over time (PNG; needs the bench extra)")
    p.add_argument("--config", help="configuration file (power.*, models.*; default: the built-in defaults)")
    p.add_argument("--manifest", help="manifest file or model folder (default: the configured / shipped one)")
    p.add_argument("--accuracy", help="per-tier accuracy report (default: report/leakage_busi_fold0.json "
                   "beside the manifest)")
    p.add_argument("--accuracy-split", default="clean", help="which images' accuracy: clean (leakage-free, "
                   "default), all, leaked")
    p.add_argument("--ladder", help="power.ladder to try instead of the configured one")
    p.add_argument("--bands", type=_bands, help='power.bands to try, as JSON, e.g. \'{"80": 1, "60": 2}\'')
    p.add_argument("--frames", type=int, default=200, help="frames measured per tier (default 200)")
    p.add_argument("--fps", type=float, default=30.0, help="the probe's own frame rate (default 30)")
    p.add_argument("--capacity-wh", type=float, help="pack energy (default power.model.battery_wh)")
    p.add_argument("--noise", type=float, default=1.0, help="gauge noise, percent points (default 1)")
    p.add_argument("--sample-s", type=float, default=60.0, help="trace sample period, simulated s (default 60)")
    p.add_argument("--seed", type=int, default=1)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if args.frames < 5 or args.fps <= 0 or (args.capacity_wh is not None and args.capacity_wh <= 0):
            raise UsageError("--frames >= 5, --fps > 0 and --capacity-wh > 0 are required")
        report = run(args)
        if args.plot:
            plot(report, args.plot)
    except FirmwareError as e:
        print(f"firmware-py bench battery: {e}", file=sys.stderr)
        return e.exit_code
    text = json.dumps(report, indent=1)
    if args.json == "-":
        print(text)
    else:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    for name, r in report["models"].items():
        f = r["figures"]
        print(f"{name}: runtime_vs_top_tier {f['runtime_vs_top_tier']:.3f}, accuracy_lost_points "
              f"{f['accuracy_lost_points']:.2f}, analysed_fps_min {f['analysed_fps_min']:g} "
              f"({r['adaptive']['runtime_h']:.2f} h vs {r['top_tier']['runtime_h']:.2f} h; no ladder can exceed "
              f"{r['runtime_vs_top_tier_bound']:.3f} at >= {TARGETS['analysed_fps_min']:g} fps)", file=sys.stderr)
    return 0
