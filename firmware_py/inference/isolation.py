"""Crash isolation: every model file of a candidate set runs once in a short-lived child process first.

tflite-runtime builds its model without the flatbuffer verifier, so a damaged but correctly signed
file can kill the process that loads it (SIGSEGV in the constructor, SIGFPE in invoke: issue 18's
loader fuzz). Before the engine's own interpreter touches a new set (start, reload) and before
`models sign` / `models verify` vouch for one, each file the host can run goes through the exact
load path of the engine (TierRuntime: digest, format check, interpreter, allocation, I/O checked
against the manifest) and is invoked once on a seeded random input of the declared shape, and the
output decoded, in a child process. The child is forked from multiprocessing's forkserver, a
clean interpreter started once per process with the interpreter package preloaded: it inherits no
daemon thread and no interpreter state, and a check after the first one costs a fork, not a start.

All files of a set run in one child. When it dies (a signal) or stops reporting for longer than the
timeout (a hang), the file it was on is named and the files after it run in a new child. Each
model's interpreter is released and collected before its result is sent, so a crash in a destructor
is charged to the file that caused it.

As with any multiprocessing start method but fork, the child imports the parent's main module: a
script that builds an Engine or signs a set keeps its top level under `if __name__ == "__main__":`
(the `firmware-py` entry point and `python -m ...` are fine).
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import signal
from dataclasses import dataclass

import numpy as np

from firmware_py.errors import ModelError
from firmware_py.inference.accelerators import ACCELERATORS
from firmware_py.inference.accelerators.delegate import DelegateKind
from firmware_py.inference.accelerators.kind import AcceleratorKind
from firmware_py.inference.backend import CANDIDATES, find_backend, interpreter_backend
from firmware_py.inference.decode import InferenceOutput
from firmware_py.inference.formats import FORMATS, model_format
from firmware_py.inference.manifest import Manifest, Tier
from firmware_py.inference.runtime import TierRuntime
from firmware_py.inference.signing import ModelSetRefused
from firmware_py.inference.tflite import CpuTwin
from firmware_py.inference.validate import read_verified

DEFAULT_TIMEOUT_S = 10.0
OK, REFUSED, RAISED, CRASHED, HUNG = "ok", "refused", "raised", "crashed", "hung"
# What the engine's own process would not survive or contain: such a file refuses the whole set.
# REFUSED is a one-line ModelError the engine already turns into a refused tier.
UNSAFE = (RAISED, CRASHED, HUNG)
NOT_OK = (REFUSED, *UNSAFE)  # what `models sign` and `models verify` refuse
_LOADING, _INVOKING = "loading", "invoking"
_INPUT_SEED = 20240611

_ctx = multiprocessing.get_context("forkserver")
# Modules the forkserver imports once, so a child starts with them loaded (ImportError is ignored:
# only one interpreter package is installed).
_ctx.set_forkserver_preload([__name__, *CANDIDATES])


@dataclass(frozen=True)
class FileCheck:
    """The check of one (tier, backend) file: ok, or the one-line reason it cannot run."""

    tier: str
    backend: str
    path: str
    status: str  # OK, REFUSED, RAISED, CRASHED or HUNG
    reason: str | None = None  # one line naming the file and the fix; None when ok
    ran: bool = True  # loaded and invoked in the child; False: only the format check (see reason)


def check_model_set(manifest: Manifest, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                    accelerator: AcceleratorKind | None = None, threads: int = 1) -> list[FileCheck]:
    """Check every file of every tier; one FileCheck per (tier, backend), in manifest order.

    The CPU twins always run in the child. Builds of `accelerator` run there too when it is a TFLite
    delegate that opens in this process (the child opens its own); any other build gets its
    format's check here, which never runs model code.
    """
    delegate = accelerator if isinstance(accelerator, DelegateKind) and accelerator.handle() is not None else None
    jobs, results = [], {}
    for tier in manifest.tiers:
        for backend in tier.files:
            if backend == "cpu" or (delegate is not None and backend == delegate.key):
                jobs.append((tier.name, backend))
            else:
                results[tier.name, backend] = _format_only(manifest, tier, backend, accelerator,
                                                           f"no {backend} accelerator here to run it")
    pending = jobs
    while pending:
        results.update(_run_child(manifest, pending, timeout_s, delegate, threads))
        pending = [j for j in pending if j not in results]
    return [results[t.name, b] for t in manifest.tiers for b in t.files]


def refuse(results: list[FileCheck], statuses: tuple[str, ...] = UNSAFE) -> None:
    """Raise ModelSetRefused (kind `model-<status>`) naming the first file whose status is in `statuses`."""
    bad = [r for r in results if r.status in statuses]
    if bad:
        more = f" (and {len(bad) - 1} more: {', '.join(os.path.basename(r.path) for r in bad[1:])})" \
            if len(bad) > 1 else ""
        raise ModelSetRefused(f"model-{bad[0].status}", f"{bad[0].reason}{more}")


def _format_only(manifest: Manifest, tier: Tier, backend: str, accelerator: AcceleratorKind | None,
                 why: str) -> FileCheck:
    f = tier.files[backend]
    path = manifest.abspath(f)
    fmt = _format_name(backend, path, accelerator)
    if fmt is None:
        return FileCheck(tier.name, backend, path, OK, f"{path}: no registered format loads it here; not checked",
                         ran=False)
    try:
        model_format(fmt).check(read_verified(manifest, f), path)
    except ModelError as e:
        return FileCheck(tier.name, backend, path, REFUSED, str(e), ran=False)
    return FileCheck(tier.name, backend, path, OK, f"{path}: {fmt} format check only ({why})", ran=False)


def _format_name(backend: str, path: str, accelerator: AcceleratorKind | None) -> str | None:
    """The format of a `files.<backend>` build: the configured kind's, a registered kind's of that
    name, else the one format whose suffix the file has (`tflite` for .tflite)."""
    if accelerator is not None and backend == accelerator.key:
        return accelerator.model_format
    if backend in ACCELERATORS and getattr(ACCELERATORS[backend].cls, "model_format", None):
        return ACCELERATORS[backend].cls.model_format
    by_suffix = [f.name for f in FORMATS.values() if path.endswith(f.suffixes)]
    return "tflite" if "tflite" in by_suffix else (by_suffix[0] if len(by_suffix) == 1 else None)


# -- the parent's side of one child -----------------------------------------------------------
def _run_child(manifest: Manifest, jobs: list[tuple[str, str]], timeout_s: float,
               delegate: DelegateKind | None, threads: int) -> dict[tuple[str, str], FileCheck]:
    """Results of the jobs the child finished, plus the one it died or hung on."""
    parent, child = _ctx.Pipe(duplex=False)
    proc = _ctx.Process(target=_child_main, name="model-check", daemon=True,
                        args=(child, manifest, jobs, interpreter_backend().name, delegate, threads))
    proc.start()
    child.close()  # the child's end lives in the child only, so its death reads as EOF here
    results: dict[tuple[str, str], FileCheck] = {}
    current, stage = None, None
    try:
        while True:
            if not parent.poll(timeout_s):
                if current is None:
                    raise ModelSetRefused("model-check-failed", f"the model check process did not report within "
                                          f"{timeout_s:g} s; raise models.isolation_timeout_s")
                return {**results, current: _failed(manifest, current, HUNG,
                                                    f"still {stage} it after the {timeout_s:g} s check timeout; "
                                                    "rebuild the model, or raise models.isolation_timeout_s")}
            try:
                msg = parent.recv()
            except EOFError:
                break
            if msg[0] == "done":
                results[jobs[msg[1]]] = msg[2]
                current = None
            else:  # a stage of job msg[1] begins
                current, stage = jobs[msg[1]], msg[0]
        proc.join(timeout_s)
        if current is not None:
            return {**results, current: _failed(manifest, current, CRASHED,
                                                f"killed the check process ({_exit_text(proc)}) while {stage} it; "
                                                "the file cannot run here, rebuild it")}
        if len(results) < len(jobs):
            raise ModelSetRefused("model-check-failed", f"the model check process ended ({_exit_text(proc)}) "
                                  "between two files; run `firmware-py models verify` on the set to see why")
        return results
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join()


def _failed(manifest: Manifest, job: tuple[str, str], status: str, what: str) -> FileCheck:
    path = manifest.abspath(manifest.tier(job[0]).files[job[1]])
    return FileCheck(*job, path, status, f"{path}: {what}")


def _exit_text(proc) -> str:
    code = proc.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {-code}, {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


# -- the child ---------------------------------------------------------------------------------
def _child_main(conn, manifest: Manifest, jobs: list[tuple[str, str]], backend_name: str,
                delegate: DelegateKind | None, threads: int) -> None:
    cpu = CpuTwin(find_backend((backend_name,)))
    rng = np.random.default_rng(_INPUT_SEED)
    gc.freeze()  # what the child started with is never garbage: the collection after each file skips it
    for i, (tier_name, backend) in enumerate(jobs):
        tier = manifest.tier(tier_name)
        if backend != "cpu" and delegate.handle() is None:  # e.g. a USB device the parent holds open
            conn.send(("done", i, _format_only(manifest, tier, backend, delegate, delegate.error)))
            continue
        conn.send((_LOADING, i))
        result = _check_one(conn, i, manifest, tier, backend, cpu if backend == "cpu" else delegate, threads, rng)
        gc.collect()  # interpreter destructors run now, charged to this file
        conn.send(("done", i, result))
    conn.close()


def _check_one(conn, i: int, manifest: Manifest, tier: Tier, backend: str, runtime, threads: int,
               rng: np.random.Generator) -> FileCheck:
    path = manifest.abspath(tier.files[backend])
    stage, rt = _LOADING, None
    try:
        rt = TierRuntime(manifest, tier, backend, runtime, threads=threads)
        conn.send((_INVOKING, i))
        stage = _INVOKING
        view = rt.input_view()
        view[...] = rng.integers(-128, 128, view.shape, dtype=view.dtype)
        del view
        rt.run()
        rt.decode(InferenceOutput(tier.name, tier.task, backend, 0.0))
        return FileCheck(tier.name, backend, path, OK)
    except ModelError as e:  # at load: the engine refuses the tier with this line; later it would not
        return FileCheck(tier.name, backend, path, REFUSED if stage == _LOADING else RAISED, str(e))
    except Exception as e:  # what the engine's own load or frame path would not have caught
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
        return FileCheck(tier.name, backend, path, RAISED,
                         f"{path}: raised {type(e).__name__} while {stage} it: {first}; rebuild the model")
    finally:
        if rt is not None:
            rt.close()
