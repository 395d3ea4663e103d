"""Which project files one frame passes through: profile the acquisition and processing threads.

    .venv/bin/python tools/frame_path.py [--frames 200]

Runs the default demo daemon (simulator on a pty) for N frames with a profile hook on the
`probe-link` and `processing` threads, and prints (JSON) the project files entered on (nearly)
every frame and the calls from one project file into another per frame. docs/architecture.md
quotes its figures.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import threading

import firmware_py
from firmware_py.config import load_config
from firmware_py.daemon.runner import Daemon

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(firmware_py.__file__))) + os.sep
THREADS = ("processing", "probe-link")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    args = ap.parse_args()
    entered: collections.Counter[str] = collections.Counter()
    hops: collections.Counter[tuple[str, str]] = collections.Counter()
    lock = threading.Lock()

    def project_file(code) -> str | None:
        f = code.co_filename
        if not f.startswith(ROOT) or f"{os.sep}.venv" in f or f"{os.sep}tests{os.sep}" in f:
            return None
        return os.path.relpath(f, ROOT)

    def profile(frame, event, arg):
        if event != "call" or threading.current_thread().name not in THREADS:
            return
        here = project_file(frame.f_code)
        if here is None:
            return
        caller, there = frame.f_back, None
        while caller is not None and (there := project_file(caller.f_code)) is None:
            caller = caller.f_back
        with lock:
            entered[here] += 1
            if there is not None and there != here:
                hops[(there, here)] += 1

    threading.setprofile(profile)
    cfg = load_config(None).replace(run={"max_frames": args.frames}, simulator={"fps": 40.0},
                                    output={"results": os.devnull, "status_interval_s": 0.0})
    daemon = Daemon(cfg)
    daemon.run()
    n = daemon.proc.processed
    every = sorted(f for f, count in entered.items() if count / n >= 0.9)
    print(json.dumps({"frames": n, "files_per_frame": every, "n_files": len(every),
                      "cross_file_calls_per_frame": round(sum(c for (a, b), c in hops.items()
                                                              if a in every and b in every) / n, 1)}, indent=1))


if __name__ == "__main__":
    main()
