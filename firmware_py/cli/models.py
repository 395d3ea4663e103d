"""`firmware-py models ...`: the signed manifest (list, verify, sign, keygen) and the zoo build.

list / verify / sign / keygen live with the inference engine (firmware_py.inference.cli);
build / evaluate / robustness / abstention / dedup with the training pipeline (firmware_py.models.build.cli), which needs the
`train` extra for build.
"""
from __future__ import annotations

import importlib

BUILD_COMMANDS = {"build", "evaluate", "robustness", "abstention", "dedup"}


def main(argv: list[str]) -> int:
    if argv and argv[0] in BUILD_COMMANDS:
        module = importlib.import_module("firmware_py.models.build.cli")
    else:
        module = importlib.import_module("firmware_py.inference.cli")
    return int(module.main(argv) or 0)
