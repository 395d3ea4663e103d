"""`firmware-py selftest`: check this device's stack end to end in a few seconds.

Each check prints PASS / FAIL / SKIP and one line of detail; exit 0 when none failed. Meant for
technicians after an install or an update, and for the rig before a run.
"""
from __future__ import annotations

import time
import traceback

from firmware_py.config import load_config


def add_parser(sub) -> None:
    p = sub.add_parser("selftest", help="check kernels, models, signature, accelerator and probe link",
                       description="Runs quick checks of the installed stack and prints one line per check. "
                       "Exit 0 when every check passed or was skipped, 1 otherwise.")
    p.add_argument("--config", metavar="PATH", help="YAML configuration merged over the shipped defaults")
    p.set_defaults(handler=run)


def _check_kernels(cfg) -> str:
    from firmware_py.kernels.selfcheck import check_kernels

    return check_kernels(cfg.preprocess.threads)


def _check_models(cfg) -> str:
    import numpy as np

    from firmware_py.inference import Engine
    from firmware_py.inference.backend import interpreter_backend

    engine = Engine.from_config(cfg)
    try:
        names = list(engine.ladder)
        for name in names:
            engine.request_tier(name, wait=True)
            engine.input_view()[...] = np.int8(0)
            out = engine.invoke()
            if out.tier != name:
                raise AssertionError(f"asked for tier {name}, ran {out.tier}")
        interp = interpreter_backend()
        return f"manifest signature ok; {len(names)} {cfg.models.task} tier(s) ran on {engine.backend_name} " \
               f"({interp.name.split('.')[0]} {interp.version}): " + ", ".join(names)
    finally:
        engine.close()


def _check_link(cfg, frames: int = 10, timeout_s: float = 10.0) -> str:
    """Simulated probe on a pseudo-terminal -> ProbeLink: handshake, frames, counters."""
    import os
    import threading
    import tty

    from firmware_py.drivers.link import ProbeLink
    from firmware_py.drivers.probe_sim import ProbeSimulator
    from firmware_py.drivers.sources import PhantomSource

    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    sim = ProbeSimulator(PhantomSource.from_options("convex", 64, 256, 16, distinct=2), fps=200.0)
    server = threading.Thread(target=sim.serve_fd, args=(master,), kwargs={"max_frames": frames}, daemon=True)
    got = []
    done = threading.Event()

    def sink(frame):
        got.append(frame.seq)
        frame.release()
        if len(got) >= frames:
            done.set()

    link = ProbeLink(os.ttyname(slave), handshake_timeout=cfg.probe.handshake_timeout_s)
    try:
        server.start()
        link.start(sink)
        if not done.wait(timeout_s):
            raise AssertionError(f"received {len(got)} of {frames} frames in {timeout_s:.0f} s over a pty")
        stats = link.stats()
        if stats["frames_rejected"] or stats["bytes_discarded"]:
            raise AssertionError(f"clean line but {stats['frames_rejected']} frames rejected, "
                                 f"{stats['bytes_discarded']} bytes discarded")
        return f"protocol {stats['version']} handshake and {len(got)} frames over a pseudo-terminal, no loss"
    finally:
        link.stop()
        sim.stop()
        server.join(5)
        os.close(master)
        os.close(slave)


class Skipped(Exception):
    """A check that does not apply to this configuration; the message says why."""


def _check_accelerator(cfg) -> str:
    """The configured accelerator is attached, opens, and runs a tier's build on it."""
    import numpy as np

    from firmware_py.inference import Engine
    from firmware_py.inference.accelerators import devices

    seen = ", ".join(f"{d.kind} {d.device} ({d.path})" for d in devices()) or "none found"
    if cfg.accelerator.kind == "none":
        raise Skipped(f"accelerator.kind is none, tiers run on their CPU twins; attached accelerators: {seen}")
    engine = Engine.from_config(cfg)
    try:
        kind = engine.accelerator.kind
        if kind.handle() is None:
            raise AssertionError(f"{kind.error}; attached accelerators: {seen}")
        built = [t.name for t in engine.manifest.ladder(engine.task) if kind.key in t.files]
        if not built:
            raise AssertionError(f"no {engine.task} tier of {engine.manifest.path} has a {kind.key} build; "
                                 "add one or set accelerator.kind: none")
        engine.request_tier(built[0], wait=True)
        engine.input_view()[...] = np.int8(0)
        out = engine.invoke()
        if out.backend != kind.key:
            raise AssertionError(f"tier {built[0]} ran on {out.backend}: {out.fallback}")
        return f"{kind.name} ({kind.describe()}) ran tier {built[0]}; attached accelerators: {seen}"
    finally:
        engine.close()


CHECKS = (("kernels", _check_kernels), ("models", _check_models), ("probe link", _check_link),
          ("accelerator", _check_accelerator))


def run(args) -> int:
    cfg = load_config(args.config)
    failed = 0
    for name, check in CHECKS:
        t0 = time.perf_counter()
        try:
            detail = check(cfg)
            status = "PASS"
        except Skipped as exc:
            status, detail = "SKIP", str(exc)
        except ImportError as exc:
            status, detail = "FAIL", f"not installed correctly: {exc}"
            failed += 1
        except Exception as exc:  # each check reports its own failure and the next one still runs
            status, detail = "FAIL", f"{exc}".splitlines()[0] if str(exc) else traceback.format_exc(limit=1)
            failed += 1
        print(f"{status:4} {name:11} {detail} ({(time.perf_counter() - t0) * 1000:.0f} ms)", flush=True)
    print(f"selftest: {'FAILED' if failed else 'ok'} ({failed} of {len(CHECKS)} checks failed)")
    return 1 if failed else 0
