"""`firmware-py models ...`: list, sign, verify and keygen for the signed model set.

Exit codes: 0 ok, 2 usage, 1 failure (a refused signature is a failure). Errors print one line.
`build` and `evaluate` belong to the training pipeline: firmware_py/cli/models.py sends them there.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from firmware_py.errors import FirmwareError, UsageError

def _defaults():
    from firmware_py.inference.engine import default_manifest, default_public_key

    return default_manifest(), default_public_key()


def _parser() -> argparse.ArgumentParser:
    manifest, public = _defaults()
    p = argparse.ArgumentParser(prog="firmware-py models", description="Inspect, sign and verify the model set.",
                                epilog="build and evaluate (the training pipeline): firmware-py models build --help")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ls = sub.add_parser("list", help="list the tiers of a manifest and whether its signature verifies")
    ls.add_argument("--manifest", default=manifest, help=f"manifest file or model folder (default: {manifest})")
    ls.add_argument("--public-key", default=public, help="Ed25519 public key (PEM) to verify with")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sg = sub.add_parser("sign", help="check every listed file's digest and load and run each in a child process, "
                        "then sign the manifest; a refused set is left unsigned (an old signature is removed)")
    sg.add_argument("--key", required=True, help="Ed25519 private key (PEM) of the signer")
    sg.add_argument("--manifest", default=manifest, help="manifest file or model folder")

    vf = sub.add_parser("verify", help="verify signature, digests, that no file is missing or extra, and that "
                        "every file loads, matches its declared input and output and runs (in a child process)")
    vf.add_argument("--public-key", default=public, help=f"Ed25519 public key (PEM) (default: {public})")
    vf.add_argument("--manifest", default=manifest, help="manifest file or model folder")

    kg = sub.add_parser("keygen", help="make an Ed25519 key pair (development / throwaway keys)")
    kg.add_argument("--private", required=True, help="where to write the private key (PEM, mode 0600)")
    kg.add_argument("--public", required=True, help="where to write the public key (PEM)")
    kg.add_argument("--force", action="store_true", help="overwrite existing files")
    for sp in (ls, sg, vf):  # `models sign --key K models/manifest.yaml` works too
        sp.add_argument("path", nargs="?", help="manifest file or model folder (same as --manifest)")
    return p


def _cmd_list(args) -> int:
    from firmware_py.inference.manifest import load_manifest
    from firmware_py.inference.signing import manifest_path_of, verify_model_set

    path = manifest_path_of(args.manifest)
    manifest = load_manifest(path)
    try:
        verify_model_set(path, args.public_key)
        signature = "verified"
    except FirmwareError as e:
        signature = f"NOT VERIFIED: {e}"
    rows = []
    for t in sorted(manifest.tiers, key=lambda t: (t.task, t.rank)):
        rows.append({
            "name": t.name, "task": t.task, "rank": t.rank, "backends": sorted(t.files),
            "input": list(t.input.shape), "params": t.params, "macs": t.macs,
            "file_bytes": t.files["cpu"].bytes, "metrics": t.metrics, "latency_ms": t.latency_ms,
        })
    if args.json:
        print(json.dumps({"manifest": path, "signature": signature, "tiers": rows}, indent=2))
        return 0
    print(f"{path}: signature {signature}")
    nw = max([len(r["name"]) for r in rows] + [24])  # tier names run to 64 characters
    print(f"{'tier':<{nw}} {'task':<9} {'rank':>4} {'input':<16} {'params':>9} {'MMACs':>8} {'KiB':>7}  backends")
    for r in rows:
        macs = f"{r['macs'] / 1e6:.1f}" if r["macs"] is not None else "-"
        params = str(r["params"]) if r["params"] is not None else "-"
        shape = "x".join(str(d) for d in r["input"][1:])
        print(f"{r['name']:<{nw}} {r['task']:<9} {r['rank']:>4} {shape:<16} {params:>9} {macs:>8} "
              f"{r['file_bytes'] / 1024:>7.1f}  {','.join(r['backends'])}")
    return 0


def _cmd_sign(args) -> int:
    from firmware_py.inference.signing import manifest_path_of, sign_model_set, signature_path_of

    kid = sign_model_set(args.manifest, args.key)
    print(f"signed {manifest_path_of(args.manifest)} with key {kid} -> {signature_path_of(manifest_path_of(args.manifest))}")
    return 0


def _cmd_verify(args) -> int:
    from firmware_py.inference import isolation
    from firmware_py.inference.signing import key_id, load_public_key, manifest_path_of, verify_model_set

    manifest, _ = verify_model_set(args.manifest, args.public_key)
    results = isolation.check_model_set(manifest)
    isolation.refuse(results, isolation.NOT_OK)
    print(f"OK {manifest_path_of(args.manifest)}: signed by key {key_id(load_public_key(args.public_key))}, "
          f"{len(manifest.tiers)} tier(s), {len(manifest.files())} file(s) match their digests, no extra files; "
          f"{_checked(results)}")
    return 0


def _checked(results) -> str:
    """What the child-process load check did, for sign and verify."""
    ran = sum(r.ran for r in results)
    text = f"{ran} build(s) loaded and ran in a child process"
    if ran < len(results):
        text += f", {len(results) - ran} accelerator build(s) format-checked only (no such accelerator here)"
    return text


def _cmd_keygen(args) -> int:
    from firmware_py.inference.signing import write_keypair

    for path in (args.private, args.public):
        if os.path.exists(path) and not args.force:
            raise UsageError(f"{path} exists; pass --force to overwrite it")
    kid = write_keypair(args.private, args.public)
    print(f"wrote Ed25519 key {kid}: private {args.private} (keep it offline), public {args.public}")
    return 0


COMMANDS = {"list": _cmd_list, "sign": _cmd_sign, "verify": _cmd_verify, "keygen": _cmd_keygen}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help exits 0, usage errors exit 2
        return int(e.code or 0)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("firmware-py models: choose a command: list, sign, verify, keygen", file=sys.stderr)
        return 2
    if getattr(args, "path", None):
        args.manifest = args.path
    try:
        return COMMANDS[args.command](args)
    except FirmwareError as e:
        print(f"firmware-py models {args.command}: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
