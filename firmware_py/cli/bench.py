"""`firmware-py bench NAME [options]`: benchmarks live in bench/ (firmware_py.bench.NAME)."""
from __future__ import annotations

import argparse
import importlib

from firmware_py.errors import UsageError

BENCHES = {
    "link": "probe-sim -> ProbeLink throughput, parser and CRC speed (MB/s), ratio to a raw pty",
    "kernels": "fused preprocessing kernels against the OpenCV and NumPy chains (same process)",
    "inference": "per tier and backend: init, first inference, latency percentiles, RSS, engine overhead",
    "battery": "simulated discharge with the policy on the measured tiers: runtime gain, accuracy lost, analysed fps, plot",
    "e2e": "drive a running daemon like a probe over serial lines: latency, losses, saturation, energy, plots",
    "soak": "the daemon at the simulator's maximum rate for N frames: RSS growth, fd/thread leaks, journal bound",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        parser = argparse.ArgumentParser(prog="firmware-py bench", description="Run a benchmark and write "
                                         "its results as JSON. Benchmarks quote ratios against a baseline "
                                         "measured in the same process.")
        parser.add_argument("name", choices=sorted(BENCHES), help="; ".join(f"{k}: {v}" for k, v in BENCHES.items()))
        parser.print_help()
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHES:
        raise UsageError(f"unknown benchmark '{name}'; choose one of {', '.join(sorted(BENCHES))}")
    module = importlib.import_module(f"firmware_py.bench.{name}")
    return int(module.main(rest) or 0)
