"""Run one fuzz harness under atheris (libFuzzer) for a while: ``make fuzz SECONDS=N`` runs each.

    .venv/bin/python tests/fuzz/fuzz.py parser --seconds 60
    .venv/bin/python tests/fuzz/fuzz.py console --seconds 60 [-- extra libFuzzer flags]

Seeds come from tests/fuzz/corpus/<harness>/ (committed; tests/fuzz/make_corpus.py writes them);
what the run discovers goes to out/fuzz/<harness>/corpus, crashing inputs to
out/fuzz/<harness>/crash-*, so the committed seeds are never rewritten. Only the project's own
modules (firmware_py) are instrumented. The process exits non-zero when an input breaks a
promise; replay one with ``python tests/fuzz/fuzz.py HARNESS out/fuzz/HARNESS/crash-...``.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("harness", choices=("parser", "console"))
    p.add_argument("inputs", nargs="*", help="replay these files instead of fuzzing")
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--out", default=os.path.join(REPO, "out", "fuzz"))
    args, extra = p.parse_known_args(argv)
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]' (or make fuzz)", file=sys.stderr)
        return 2
    with atheris.instrument_imports(include=["firmware_py"]):
        sys.path.insert(0, HERE)
        import harnesses
        harnesses.preload(args.harness)  # what it imports later must be instrumented too
    target = harnesses.HARNESSES[args.harness]
    if args.inputs:
        for path in args.inputs:
            with open(path, "rb") as f:
                target(f.read())
            print(f"{path}: ok")
        harnesses.close()
        return 0
    work = os.path.join(args.out, args.harness)
    os.makedirs(os.path.join(work, "corpus"), exist_ok=True)
    seeds = os.path.join(HERE, "corpus", args.harness)
    flags = [f"-max_total_time={args.seconds}", f"-artifact_prefix={work}/crash-", "-print_final_stats=1",
             "-max_len=65536", "-timeout=30", "-rss_limit_mb=4096"]
    atheris.Setup([sys.argv[0], *flags, *extra, os.path.join(work, "corpus"), seeds], target)
    atheris.Fuzz()  # exits the process (libFuzzer), with status 0 when the time is up
    return 0


if __name__ == "__main__":
    sys.exit(main())
