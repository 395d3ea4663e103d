"""Shared fixtures: repository paths and the shared data folder.

The real ultrasound data lives outside the repository (../shared/data from the project root,
or FIRMWARE_PY_DATA); tests that need it skip with the reason when it is absent.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FIRMWARE_PY_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared ultrasound data not found at {DATA}; set FIRMWARE_PY_DATA to its folder")
    return DATA
