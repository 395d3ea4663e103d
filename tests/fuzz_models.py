"""Model-loader fuzz: correctly signed but mutated model files, at engine start and at reload.

Each mutation (seeded: bit flips, truncation, random overwrite of a region, an aligned 32-bit word
set to an edge value -- offsets, lengths and indices of the flatbuffer are such words) damages one
file of a three-tier set, the manifest is rewritten for the damaged bytes and signed without the
load check, as a compromised or broken build pipeline would. Then, in this process, playing the
daemon: an Engine starts on it (it serves, or refuses in one line), and a long-lived engine
reloads it (on refusal the last good set keeps serving); after each, frames run on every tier the
engine accepts, so a file the child-process check passed is exercised by this process's
interpreter too. A crash would take this process down: surviving the run is the result.

    make fuzz-models N=500          # or: .venv/bin/python tests/fuzz_models.py -n 500 --seed 1
    .venv/bin/python tests/fuzz_models.py -n 500 --interpreter tflite_runtime.interpreter
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import sys
import tempfile

import numpy as np
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
from model_sets import TWO_CLASSIFIERS, file_entry, make_model_set  # noqa: E402

from firmware_py.errors import ModelError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.backend import CANDIDATES, interpreter_backend  # noqa: E402
from firmware_py.inference.signing import ModelSetRefused, sign_model_set  # noqa: E402

TIERS = TWO_CLASSIFIERS + [{"name": "seg", "cpu": "seg_int8.tflite", "task": "segment", "rank": 0}]
FILES = [t["cpu"] for t in TIERS]
EDGE_WORDS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
_SIGNAL = re.compile(r"signal \d+, (SIG\w+)")


def mutate(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One seeded mutation of a model file: (what was done, the new bytes)."""
    b = bytearray(data)
    op = ("flip", "truncate", "overwrite", "word")[int(rng.integers(4))]
    if op == "flip":
        for bit in rng.choice(len(b) * 8, int(rng.integers(1, 9)), replace=False):
            b[bit // 8] ^= 1 << (bit % 8)
        return op, bytes(b)
    if op == "truncate":
        return op, bytes(b[: int(rng.integers(8, len(b)))])
    if op == "overwrite":
        start, n = int(rng.integers(len(b))), int(rng.integers(1, 65))
        b[start:start + n] = rng.integers(0, 256, len(b[start:start + n]), dtype=np.uint8).tobytes()
        return op, bytes(b)
    pos = int(rng.integers(len(b) // 4)) * 4
    b[pos:pos + 4] = int(rng.choice(EDGE_WORDS)).to_bytes(4, "little")
    return op, bytes(b)


def write_mutated(folder: str, pristine: str, private: str, rng: np.random.Generator) -> str:
    """Make `folder` the pristine set with one file mutated, re-signed; returns a description."""
    for name in [*FILES, "manifest.yaml"]:
        shutil.copyfile(os.path.join(pristine, name), os.path.join(folder, name))
    name = FILES[int(rng.integers(len(FILES)))]
    with open(os.path.join(pristine, name), "rb") as f:
        op, data = mutate(f.read(), rng)
    install(folder, name, data, private)
    return f"{op} {name}"


def install(folder: str, name: str, data: bytes, private: str) -> None:
    """Write `data` as the set's file `name`, list its digest in the manifest and sign the set
    without the load check (the signed update of a broken or compromised build pipeline)."""
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)
    path = os.path.join(folder, "manifest.yaml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    for tier in doc["tiers"]:
        for backend, entry in tier["files"].items():
            if entry["path"] == name:
                tier["files"][backend] = file_entry(folder, name)
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    sign_model_set(folder, private, load_check=False)


def outcome(err: ModelError | None, engine: Engine | None = None) -> str:
    """passed; refused (a one-line check: format, I/O, load; the set serves its other tiers, or at
    start with none left, the engine refuses to start); crashed:SIGNAME, hung or raised (the child
    process check refused the set)."""
    if err is None:
        return "refused" if engine.models.checked["refused"] else "passed"
    kind = err.kind if isinstance(err, ModelSetRefused) else ""
    if kind == "model-crashed":
        m = _SIGNAL.search(str(err))
        return f"crashed:{m.group(1) if m else 'exit'}"
    return {"model-hung": "hung", "model-raised": "raised"}.get(kind, "refused")


def run_frames(engine: Engine, rng: np.random.Generator) -> None:
    """Every tier of the engine's ladder that loads, a few random frames each (what a daemon does)."""
    for name in engine.ladder:
        try:
            engine.request_tier(name, wait=True)
        except ModelError:
            pass  # a refused tier: the engine stays on its current one
        for _ in range(2):
            view = engine.input_view()
            view[...] = rng.integers(-128, 128, view.shape, dtype=np.int8)
            del view
            engine.invoke()


def fuzz(n: int, seed: int, workdir: str, log=None) -> dict:
    """n mutations at start and at reload; returns the tally of outcomes per path."""
    rng = np.random.default_rng(seed)
    good = make_model_set(os.path.join(workdir, "pristine"), TIERS)
    live = make_model_set(os.path.join(workdir, "live"), TIERS, keys_dir=os.path.dirname(good["private"]))
    trial = os.path.join(workdir, "trial")
    shutil.copytree(good["dir"], trial)
    tally = {"start": collections.Counter(), "reload": collections.Counter()}
    served = Engine(live["dir"], public_key=live["public"])
    try:
        for i in range(n):
            what = write_mutated(trial, good["dir"], good["private"], rng)
            try:
                engine = Engine(trial, public_key=good["public"])
            except ModelError as e:
                assert "\n" not in str(e), f"mutation {i} ({what}): multi-line error at start"
                start = outcome(e)
            else:
                start = outcome(None, engine)
                run_frames(engine, rng)
                engine.close()
            before = served.models.digest
            for name in os.listdir(trial):  # the update arrives in the live engine's folder
                shutil.copyfile(os.path.join(trial, name), os.path.join(live["dir"], name))
            if served.reload():
                reload = outcome(None, served)
            else:
                assert served.models.digest == before, f"mutation {i} ({what}): refused, but the set changed"
                refusal = served.events.recent[-1]
                reload = outcome(ModelSetRefused(refusal["kind"], refusal["message"]))
            run_frames(served, rng)  # the last good set (or the accepted update) keeps serving
            tally["start"][start] += 1
            tally["reload"][reload] += 1
            if log is not None:
                log(f"{i:5d} {what:<28} start {start:<16} reload {reload}")
    finally:
        served.close()
    return tally


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=200, help="mutations (default 200)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("-v", action="store_true", help="one line per mutation")
    p.add_argument("--interpreter", choices=CANDIDATES, help="interpreter package when both are installed "
                   "(default: the engine's choice, ai_edge_litert first)")
    args = p.parse_args(argv)
    print(f"interpreter: {interpreter_backend((args.interpreter,) if args.interpreter else CANDIDATES).name}")
    with tempfile.TemporaryDirectory() as workdir:
        tally = fuzz(args.n, args.seed, workdir, log=print if args.v else None)
    for path, counts in tally.items():
        print(f"{path:>6}: {args.n} mutations, " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("this process survived every mutation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
