"""Entry point for `firmware-py models build|evaluate|robustness|dedup` (dispatched by firmware_py.cli.models).

`main(argv)` receives the subcommand first: ["build", "--data", DIR, ...],
["evaluate", "--data", DIR, "--json", PATH], ["robustness" | "abstention", "--data", DIR, "--json", PATH] or
["dedup", "--data", DIR, "--out", DIR]. Exit codes: 0 ok, 2 usage/data error, 1 failure.
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("build", "evaluate", "robustness", "abstention", "dedup"):
        print("firmware-py models: choose build, evaluate, robustness, abstention or dedup (see --help of each)",
              file=sys.stderr)
        return 2
    if argv[0] == "abstention":
        from .abstention import main as abstention_main
        return abstention_main(argv[1:])
    if argv[0] == "robustness":
        from .robustness import main as robustness_main
        return robustness_main(argv[1:])
    if argv[0] == "dedup":
        from .dedup import main as dedup_main
        return dedup_main(argv[1:])
    if argv[0] == "evaluate":
        from .evaluate import main as evaluate_main
        return evaluate_main(argv[1:])
    from .__main__ import main as build_main
    return build_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
