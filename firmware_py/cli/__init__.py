"""`firmware-py` command line: run, probe-sim, models, bench, selftest, config.

Exit codes: 0 success, 2 usage or configuration error, 1 runtime failure. Errors a user can
cause print one line (``firmware-py: error: ...``), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from firmware_py import __version__
from firmware_py.errors import FirmwareError

# Subcommands whose argument parsing lives with the code they drive: name -> (module, help).
DELEGATED = {
    "probe-sim": ("firmware_py.drivers.sim_cli", "run the probe simulator on a serial port or pseudo-terminal"),
    "models": ("firmware_py.cli.models", "list, verify, sign, build and evaluate the model tiers"),
    "bench": ("firmware_py.cli.bench", "run a benchmark (link, kernels, inference) and write JSON"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="firmware-py",
        description="Runtime for handheld ultrasound probes: reads probe frames over USB serial, "
        "preprocesses them and runs int8 models on the accelerator or its CPU twin.",
        epilog="Run 'firmware-py COMMAND --help' for the options of a command. "
        "Exit codes: 0 ok, 2 usage/configuration error, 1 runtime failure.",
    )
    parser.add_argument("--version", action="version", version=f"firmware-py {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from firmware_py.cli import run as run_cmd
    from firmware_py.cli import selftest as selftest_cmd
    from firmware_py.cli import config_cmd

    run_cmd.add_parser(sub)
    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    selftest_cmd.add_parser(sub)
    config_cmd.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] in DELEGATED:
            module = importlib.import_module(DELEGATED[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except FirmwareError as exc:
        print(f"firmware-py: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("firmware-py: interrupted", file=sys.stderr)
        return 130
