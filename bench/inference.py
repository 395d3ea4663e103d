"""`firmware-py bench inference --json PATH`: per tier and backend, benchmark_model-style figures.

For each tier of the (verified) manifest and each backend it can run on here:
  init_ms            read + digest + flatbuffer check + Interpreter + allocate_tensors
  first_inference_ms the first invoke after allocation
  warmup_ms          mean of the warm-up invokes
  latency_ms         mean / std / p50 / p99 of the engine's per-frame time: write the frame into
                     input_view(), invoke() (inference + dequantize + decode)
  rss_delta_mb       process RSS after the tier's interpreter is built minus before (and after
                     warm-up: XNNPACK packs weights at the first invoke)
  overhead_vs_bare_invoke  engine per-frame mean / mean of a bare set_tensor + invoke + get_tensor
                     loop on the same model, threads and frames, run interleaved in short blocks in
                     the same process (also the ratios of medians, of minima and of 2 %-trimmed
                     means: on a shared machine one stall of another process moves the plain mean)
Plus a swap run: a steady frame stream while the engine swaps tiers; frames lost and the longest
frame interval against the frame period.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from firmware_py.errors import FirmwareError, UsageError


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _stats(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms)
    return {
        "n": int(a.size), "mean": round(float(a.mean()), 4), "std": round(float(a.std()), 4),
        "p50": round(float(np.percentile(a, 50)), 4), "p99": round(float(np.percentile(a, 99)), 4),
        "min": round(float(a.min()), 4), "max": round(float(a.max()), 4),
    }


def _trimmed_mean(samples_ms: list[float], cut: float = 0.02) -> float:
    """Mean without the slowest `cut` fraction: stalls caused by other processes, not by the code."""
    a = np.sort(np.asarray(samples_ms))
    return float(a[: max(1, int(round(a.size * (1 - cut))))].mean())


def _frames(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, shape, dtype=np.int8) for _ in range(n)]


def bench_load(manifest, tier, backend, runtime, threads, warmup) -> dict:
    """runtime: what loads the file (tflite.CpuTwin, or the accelerator kind for its builds)."""
    from firmware_py.inference.runtime import TierRuntime

    gc.collect()
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    rt = TierRuntime(manifest, tier, backend, runtime, threads=threads)
    init_ms = (time.perf_counter() - t0) * 1e3
    rss1 = _rss_mb()
    rt.fill_input()
    t0 = time.perf_counter()
    rt.run()
    first_ms = (time.perf_counter() - t0) * 1e3
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        rt.run()
        warm.append((time.perf_counter() - t0) * 1e3)
    rss2 = _rss_mb()
    rt.close()
    return {"init_ms": round(init_ms, 3), "first_inference_ms": round(first_ms, 3),
            "warmup_ms": round(statistics.fmean(warm), 4) if warm else None, "warmup_runs": warmup,
            "rss_delta_mb": round(rss1 - rss0, 3), "rss_delta_after_warmup_mb": round(rss2 - rss0, 3)}


def bench_frames(engine, model_path, interp, delegate, threads, frames, blocks) -> dict:
    """Engine loop vs bare loop, interleaved block by block so drift hits both alike."""
    kw = {"model_path": model_path, "num_threads": threads}
    if delegate is not None:
        kw["experimental_delegates"] = [delegate]
    bare = interp.Interpreter(**kw)
    bare.allocate_tensors()
    i_idx, o_idx = bare.get_input_details()[0]["index"], bare.get_output_details()[0]["index"]

    def run_bare(xs):
        out = []
        for x in xs:
            t0 = time.perf_counter_ns()
            bare.set_tensor(i_idx, x)
            bare.invoke()
            bare.get_tensor(o_idx)
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out

    def run_engine(xs):
        out = []
        for x in xs:
            t0 = time.perf_counter_ns()
            engine.input_view()[...] = x
            engine.invoke()
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out

    run_bare(frames[:5]), run_engine(frames[:5])
    eng_ms, bare_ms = [], []
    for b in range(blocks):
        if b % 2 == 0:
            eng_ms += run_engine(frames)
            bare_ms += run_bare(frames)
        else:
            bare_ms += run_bare(frames)
            eng_ms += run_engine(frames)
    e, r = _stats(eng_ms), _stats(bare_ms)
    return {"latency_ms": e, "bare_invoke_ms": r,
            "overhead_vs_bare_invoke": round(e["mean"] / r["mean"], 4),
            "overhead_vs_bare_invoke_p50": round(e["p50"] / r["p50"], 4),
            "overhead_vs_bare_invoke_min": round(e["min"] / r["min"], 4),
            "overhead_vs_bare_invoke_trimmed": round(_trimmed_mean(eng_ms) / _trimmed_mean(bare_ms), 4)}


def bench_swap(engine, names, period_s, n_frames) -> dict:
    """Frames at a fixed period while the engine swaps through `names`; counts lost/late frames."""
    frames_by_shape: dict[tuple, list] = {}  # tiers of a ladder differ in input size
    done, stamps, tiers = [], [], []
    swaps_at = {int(n_frames * (k + 1) / (len(names) + 1)): name for k, name in enumerate(names)}
    start = time.perf_counter()
    for i in range(n_frames):
        due = start + i * period_s
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        if i in swaps_at:
            engine.request_tier(swaps_at[i])
        view = engine.input_view()
        frames = frames_by_shape.get(view.shape)
        if frames is None:
            frames = frames_by_shape[view.shape] = _frames(view.shape, 8, seed=3)
        view[...] = frames[i % len(frames)]
        del view  # the interpreter refuses to invoke while a view into its input is alive
        out = engine.invoke()
        stamps.append(time.perf_counter())
        done.append(i)
        tiers.append(out.tier)
    intervals = np.diff(np.asarray(stamps)) * 1e3
    changes = [k for k in range(1, len(tiers)) if tiers[k] != tiers[k - 1]]
    late = np.asarray([stamps[k] - (start + k * period_s) for k in range(len(stamps))]) * 1e3
    typical = float(np.percentile(late, 50))
    per_swap = []
    requests = sorted(swaps_at)
    for req, k in zip(requests, changes):
        window = late[req:k + 2]  # frames run while the next tier loaded in the background, and the swap
        per_swap.append({"requested_at_frame": req, "swapped_at_frame": k, "frames_while_loading": k - req,
                         "max_extra_delay_ms": round(float(window.max()) - typical, 3)})
    # Control: the same statistic over windows of the same length with no swap in them, so a
    # reader can tell swap windows from the shared machine's background noise.
    width = max((k - req + 2 for req, k in zip(requests, changes)), default=2)
    busy = set()
    for req, k in zip(requests, changes):
        busy.update(range(req - width, k + 2))
    control = [float(late[a:a + width].max()) - typical for a in range(0, len(late) - width, width)
               if not busy.intersection(range(a, a + width))]
    return {
        "frames_sent": n_frames, "frames_processed": len(done), "frames_lost": n_frames - len(done),
        "period_ms": round(period_s * 1e3, 3), "swaps_requested": len(names), "swaps_done": len(changes),
        "typical_lateness_p50_ms": round(typical, 3),
        "control_windows": len(control),
        "control_max_extra_delay_p50_ms": round(float(np.percentile(control, 50)), 3) if control else None,
        "control_max_extra_delay_p90_ms": round(float(np.percentile(control, 90)), 3) if control else None,
        "control_max_extra_delay_max_ms": round(max(control), 3) if control else None,
        "swaps": per_swap,
        "max_extra_delay_at_swaps_ms": max((p["max_extra_delay_ms"] for p in per_swap), default=None),
        "max_frame_interval_ms": round(float(intervals.max()), 3),
        "lateness_p99_ms": round(float(np.percentile(late, 99)), 3),
        "tiers_seen": sorted(set(tiers)),
    }


def run(args) -> dict:
    from firmware_py.inference import Engine
    from firmware_py.inference.backend import interpreter_backend
    from firmware_py.inference.engine import default_manifest, default_public_key
    from firmware_py.inference.tflite import CpuTwin

    interp = interpreter_backend()
    manifest_path = args.manifest or default_manifest()
    public_key = args.public_key or default_public_key()
    accelerator = None
    if args.external_library or args.edgetpu:
        from firmware_py.inference.accelerators.edgetpu import EdgeTpu
        from firmware_py.inference.accelerators.external import ExternalDelegate

        if args.external_library:
            opts = dict(kv.split("=", 1) for kv in args.external_option)
            accelerator = ExternalDelegate(library=args.external_library, options=opts, key=args.external_name,
                                           interp=interp)
        else:
            accelerator = EdgeTpu(device=args.edgetpu, interp=interp)
    report = {
        "bench": "inference", "python": platform.python_version(), "machine": platform.machine(),
        "interpreter": f"{interp.name} {interp.version}", "threads": args.threads,
        "frames_per_block": args.frames, "blocks": args.blocks, "manifest": manifest_path, "tiers": [],
    }
    engine = Engine(manifest_path, public_key=public_key, threads=args.threads, accelerator=None,
                    warmup_runs=args.warmup, memory_budget_mb=args.memory_budget_mb)
    manifest = engine.manifest
    try:
        for tier in sorted(manifest.tiers, key=lambda t: (t.task, t.rank)):
            if args.tier and tier.name not in args.tier:
                continue
            backends = [("cpu", None)]
            if accelerator is not None and accelerator.key in tier.files and accelerator.delegate() is not None:
                backends.append((accelerator.key, accelerator.delegate()))
            for backend, delegate in backends:
                row = {"tier": tier.name, "task": tier.task, "backend": backend,
                       "model": tier.files[backend].path, "file_bytes": tier.files[backend].bytes}
                runtime = CpuTwin(interp) if backend == "cpu" else accelerator
                row.update(bench_load(manifest, tier, backend, runtime, args.threads, args.warmup))
                if engine.task != tier.task:
                    engine.close()
                    engine = Engine(manifest_path, public_key=public_key, task=tier.task, threads=args.threads,
                                    warmup_runs=args.warmup, memory_budget_mb=args.memory_budget_mb)
                eng = engine
                if backend != "cpu":
                    eng = Engine(manifest_path, public_key=public_key, task=tier.task, start_tier=tier.name,
                                 threads=args.threads, accelerator=accelerator, warmup_runs=args.warmup)
                else:
                    eng.request_tier(tier.name, wait=True)
                eng.input_view()[...] = 0
                ran = eng.invoke().backend
                frames = _frames(tier.input.shape, args.frames)
                row.update(bench_frames(eng, manifest.abspath(tier.files[backend]), interp, delegate,
                                        args.threads, frames, args.blocks))
                row["engine_backend"] = ran
                if eng is not engine:
                    eng.close()
                report["tiers"].append(row)
                print(f"{tier.name:<24} {backend:<8} init {row['init_ms']:8.2f} ms  first "
                      f"{row['first_inference_ms']:8.2f} ms  p50 {row['latency_ms']['p50']:8.3f} ms  "
                      f"p99 {row['latency_ms']['p99']:8.3f} ms  RSS +{row['rss_delta_mb']:.1f} MB  overhead "
                      f"{row['overhead_vs_bare_invoke']:.4f} (trimmed {row['overhead_vs_bare_invoke_trimmed']:.4f})",
                      file=sys.stderr)
        names = engine.ladder
        if len(names) >= 2 and args.swap_frames:
            p50 = max(r["latency_ms"]["p50"] for r in report["tiers"] if r["tier"] in names and r["backend"] == "cpu")
            period = max(2.5 * p50 / 1e3, 0.002)
            engine.request_tier(names[0], wait=True)
            order = (names[1:] + names[:1]) * max(1, args.swaps // len(names))
            report["swap"] = bench_swap(engine, order, period, args.swap_frames)
            report["swap"]["memory_budget_mb"] = args.memory_budget_mb
        elif args.swap_frames:
            report["swap"] = {"skipped": f"the {engine.task} ladder has {len(names)} tier(s); a swap needs two "
                                         "(bench a manifest with more tiers via --manifest)"}
    finally:
        engine.close()
    ratios = [r["overhead_vs_bare_invoke"] for r in report["tiers"]]
    report["overhead_vs_bare_invoke_max"] = max(ratios) if ratios else None
    report["overhead_target"] = 1.03
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="firmware-py bench inference", description=__doc__.split("\n")[0])
    p.add_argument("--json", required=True, help="write the results here ('-' for stdout)")
    p.add_argument("--manifest", help="manifest file or model folder (default: the shipped one)")
    p.add_argument("--public-key", help="Ed25519 public key (default: the shipped development key)")
    p.add_argument("--tier", action="append", help="only this tier (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (XNNPACK)")
    # Short blocks: a stall of another process lands in one ~50 ms block of either loop, not in
    # a long stretch of one of them.
    p.add_argument("--frames", type=int, default=20, help="frames per measurement block")
    p.add_argument("--blocks", type=int, default=30, help="interleaved engine/bare blocks")
    p.add_argument("--warmup", type=int, default=5, help="warm-up invokes")
    p.add_argument("--swap-frames", type=int, default=600, help="frames in the swap run (0: skip)")
    p.add_argument("--swaps", type=int, default=6, help="tier swaps during the swap run")
    p.add_argument("--memory-budget-mb", type=float, default=64.0)
    p.add_argument("--external-library", help="also bench an external delegate (.so)")
    p.add_argument("--external-option", action="append", default=[], help="KEY=VALUE for the delegate")
    p.add_argument("--external-name", default="external", help="manifest files key of its builds")
    p.add_argument("--edgetpu", metavar="DEVICE", help="also bench the Edge TPU (usb, usb:N, pci:N)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        if args.threads < 1 or args.frames < 10 or args.blocks < 2:
            raise UsageError("--threads >= 1, --frames >= 10 and --blocks >= 2 are required")
        report = run(args)
    except FirmwareError as e:
        print(f"firmware-py bench inference: {e}", file=sys.stderr)
        return e.exit_code
    text = json.dumps(report, indent=2)
    if args.json == "-":
        print(text)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
