"""`firmware-py config show [FILE]|check FILE|pin`: the defaults or a merged file, validation, PIN digest."""
from __future__ import annotations

import sys

from firmware_py.config import default_config_text, load_config


def add_parser(sub) -> None:
    p = sub.add_parser("config", help="print the defaults, check a configuration file, make a PIN digest",
                       description="'show' prints the shipped defaults (every key, commented); 'show PATH' "
                       "prints the configuration the daemon would run with PATH: the file merged over the "
                       "defaults, every key; "
                       "'check PATH' validates a file and exits 0 if it is good, 2 if not; "
                       "'pin' reads a technician PIN (without echo on a terminal, else one line of stdin) and "
                       "prints the console.pin_hash line: a salted scrypt digest, its cost tuned on this "
                       "machine (run it on the device).")
    p.add_argument("action", choices=("show", "check", "pin"))
    p.add_argument("path", nargs="?", help="configuration file to show merged or to check")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.action == "show":
        if args.path:
            import yaml

            merged = load_config(args.path).as_dict()
            sys.stdout.write(f"# {args.path} merged over the shipped defaults\n")
            sys.stdout.write(yaml.safe_dump(merged, sort_keys=False, default_flow_style=False))
        else:
            sys.stdout.write(default_config_text())
        return 0
    if args.action == "pin":
        return _make_pin_hash()
    if not args.path:
        print("firmware-py: error: 'config check' needs the path of a YAML file", file=sys.stderr)
        return 2
    load_config(args.path)
    print(f"{args.path}: ok")
    return 0


def _make_pin_hash() -> int:
    import getpass

    from firmware_py.console.auth import hash_pin, tuned_cost

    if sys.stdin.isatty():
        pin = getpass.getpass("technician PIN: ")
        if getpass.getpass("again: ") != pin:
            print("firmware-py: error: the two PINs differ; run config pin again", file=sys.stderr)
            return 2
    else:
        pin = sys.stdin.readline().strip()
    if not 4 <= len(pin) <= 12 or not pin.isdigit():
        print("firmware-py: error: a PIN is 4 to 12 digits; type it again", file=sys.stderr)
        return 2
    print(f"pin_hash: {hash_pin(pin, tuned_cost())}   # under console: in the configuration")
    return 0
