"""`firmware-py config show|check`: print the shipped defaults, validate a file."""
from __future__ import annotations

import sys

from firmware_py.config import default_config_text, load_config


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="print the default configuration or check a configuration file",
                       description="'show' prints the shipped defaults (every key, commented); "
                       "'check PATH' validates a file and exits 0 if it is good, 2 if not.")
    p.add_argument("action", choices=("show", "check"))
    p.add_argument("path", nargs="?", help="configuration file to check")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.action == "show":
        sys.stdout.write(default_config_text())
        return 0
    if not args.path:
        print("firmware-py: error: 'config check' needs the path of a YAML file", file=sys.stderr)
        return 2
    load_config(args.path)
    print(f"{args.path}: ok")
    return 0
