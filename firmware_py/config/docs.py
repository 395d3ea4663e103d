"""Render ``default.yaml`` and ``docs/configuration.md`` from the schema.

Run ``python -m firmware_py.config.docs --write`` after changing ``schema.py``; the test suite
fails when either file is out of date.
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import yaml

from firmware_py.config.schema import SCHEMA, Key

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_YAML = PACKAGE_DIR / "default.yaml"
DOCS_MD = PACKAGE_DIR.parents[1] / "docs" / "configuration.md"


def _yaml_scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _range(spec: Key) -> str:
    parts = []
    if spec.choices:
        parts.append(" / ".join(f"`{c}`" for c in spec.choices))
    if spec.extra.get("allowed"):
        parts.append(" / ".join(f"`{c}`" for c in spec.extra["allowed"]))
    elif spec.min is not None or spec.max is not None:
        parts.append(f"{spec.min:g} .. {spec.max:g}")
    if spec.pattern_hint:
        parts.append(spec.pattern_hint)
    if spec.nullable:
        parts.append("or `null`")
    return ", ".join(parts)


def render_default_yaml() -> str:
    out = ["# firmware-py default configuration (generated from firmware_py/config/schema.py).",
           "# Copy the keys you want to change into your own file and pass it with --config PATH;",
           "# every key is documented in docs/configuration.md.", ""]
    for sec, keys in SCHEMA.items():
        out.append(f"{sec}:")
        for name, spec in keys.items():
            doc = spec.doc.replace("`", "")
            for line in textwrap.wrap(doc, 94):
                out.append(f"  # {line}")
            out.append(f"  {name}: {_yaml_scalar(spec.default)}")
        out.append("")
    return "\n".join(out)


def render_docs() -> str:
    out = ["# Configuration", "",
           "firmware-py reads one YAML file. The defaults ship inside the package "
           "(`firmware_py/config/default.yaml`); `--config PATH` merges your file over them, so it only needs "
           "the keys you change. Unknown keys, wrong types and out-of-range values are refused at load with one "
           "line naming the key and its line in your file, and the daemon exits with code 2.", "",
           "Print the defaults with `firmware-py config show`; check a file with `firmware-py config check PATH`.",
           "", "This page is generated from `firmware_py/config/schema.py` "
           "(`python -m firmware_py.config.docs --write`).", ""]
    for sec, keys in SCHEMA.items():
        out += [f"## `{sec}`", "", "| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        for name, spec in keys.items():
            out.append(f"| `{sec}.{name}` | {spec.kind} | `{_yaml_scalar(spec.default)}` | {_range(spec)} | "
                       f"{spec.doc} |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the files instead of checking them")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((DEFAULT_YAML, render_default_yaml()), (DOCS_MD, render_docs())):
        if args.write:
            path.write_text(text, encoding="utf-8")
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(str(path))
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m firmware_py.config.docs --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
