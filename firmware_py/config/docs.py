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

from firmware_py.config.schema import SCHEMA, Key, Section, number_text

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
        parts.append(f"{number_text(spec.min)} .. {number_text(spec.max)}")
    if spec.pattern_hint:
        parts.append(spec.pattern_hint)
    if spec.nullable:
        parts.append("or `null`")
    return ", ".join(parts)


def _yaml_lines(section: Section, indent: str) -> list[str]:
    out = []
    for name, spec in section.items():
        for line in textwrap.wrap(spec.doc.replace("`", ""), 96 - len(indent)):
            out.append(f"{indent}# {line}")
        if not isinstance(spec, Section):
            out.append(f"{indent}{name}: {_yaml_scalar(spec.default)}")
        elif spec:
            out += [f"{indent}{name}:", *_yaml_lines(spec, indent + "  ")]
        else:
            out.append(f"{indent}{name}: {{}}")
    return out


def render_default_yaml() -> str:
    out = ["# firmware-py default configuration (generated from firmware_py/config/schema.py).",
           "# Copy the keys you want to change into your own file and pass it with --config PATH;",
           "# every key is documented in docs/configuration.md.", ""]
    for sec, keys in SCHEMA.items():
        out += [f"{sec}:", *_yaml_lines(keys, "  "), ""]
    return "\n".join(out)


def _doc_tables(section: Section, path: str, depth: int) -> list[str]:
    """A heading and table of the section's own keys, then each sub-section the same way."""
    out = [f"{'#' * depth} `{path}`", ""]
    if section.doc:
        out += [section.doc, ""]
    keys = {name: spec for name, spec in section.items() if not isinstance(spec, Section)}
    if keys:
        out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        out += [f"| `{path}.{name}` | {spec.kind} | `{_yaml_scalar(spec.default)}` | {_range(spec)} | {spec.doc} |"
                for name, spec in keys.items()]
        out.append("")
    for name, spec in section.items():
        if isinstance(spec, Section):
            out += _doc_tables(spec, f"{path}.{name}", depth + 1)
    return out


def render_docs() -> str:
    out = ["# Configuration", "",
           "firmware-py reads one YAML file. The defaults ship inside the package "
           "(`firmware_py/config/default.yaml`); `--config PATH` merges your file over them, so it only needs "
           "the keys you change. Unknown keys, wrong types and out-of-range values are refused at load with one "
           "line naming the key and its line in your file, and the daemon exits with code 2.", "",
           "Sections hold keys and sub-sections. A pluggable part (battery gauge, temperature sensor) is chosen "
           "by its `kind` key, and each kind's options sit in a sub-section named after the kind, e.g. "
           "`power.battery.kind: sysfs` with `power.battery.sysfs.root`; only the chosen kind's sub-section is "
           "used, but every one given is checked.", "",
           "Print the defaults with `firmware-py config show`; check a file with `firmware-py config check PATH`.",
           "", "This page is generated from `firmware_py/config/schema.py` "
           "(`python -m firmware_py.config.docs --write`).", ""]
    for sec, keys in SCHEMA.items():
        out += _doc_tables(keys, sec, 2)
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
