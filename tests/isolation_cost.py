"""What the child-process model check costs at engine start and at reload (docs/model-manifest.md).

One process, the shipped model set (every tier is checked, the classify ladder's start tier is
loaded): the first start with the check (it starts the forkserver), then REPS rounds alternating
start and reload without and with the check. Medians and ratios, because the machine is shared.

    .venv/bin/python tests/isolation_cost.py --reps 7 [--interpreter tflite_runtime.interpreter]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

from firmware_py.inference import Engine
from firmware_py.inference.backend import CANDIDATES, interpreter_backend
from firmware_py.inference.engine import default_manifest, default_public_key


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def start(timeout_s):
    return Engine(default_manifest(), public_key=default_public_key(), isolation_timeout_s=timeout_s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--interpreter", choices=CANDIDATES, help="interpreter package when both are installed "
                   "(default: the engine's choice, ai_edge_litert first)")
    args = p.parse_args(argv)
    print(f"interpreter: {interpreter_backend((args.interpreter,) if args.interpreter else CANDIDATES).name}")
    first_ms, eng = timed(lambda: start(10.0))
    files = eng.models.checked["files"]
    eng.close()
    ms = {k: [] for k in ("start off", "start on", "reload off", "reload on")}
    engines = {"off": start(None), "on": start(10.0)}
    try:
        for _ in range(args.reps):
            for mode, timeout_s in (("off", None), ("on", 10.0)):
                dt, e = timed(lambda: start(timeout_s))
                e.close()
                ms[f"start {mode}"].append(dt)
                dt, ok = timed(engines[mode].reload)
                assert ok, engines[mode].models.last_error
                ms[f"reload {mode}"].append(dt)
    finally:
        for e in engines.values():
            e.close()
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"shipped set: {files} files checked; first start with the check in a process (forkserver start): "
          f"{first_ms:.0f} ms")
    for what in ("start", "reload"):
        off, on = med[f"{what} off"], med[f"{what} on"]
        print(f"{what:>6}: median of {args.reps}: without {off:.0f} ms, with {on:.0f} ms "
              f"(+{on - off:.0f} ms, x{on / off:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
