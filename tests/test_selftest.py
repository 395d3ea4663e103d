"""`firmware-py selftest`: passes on a good install, fails (exit 1) and says why on a bad one."""
from __future__ import annotations

import subprocess
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def selftest(*args):
    return subprocess.run([sys.executable, "-m", "firmware_py", "selftest", *args], capture_output=True, text=True,
                          timeout=120)


def test_selftest_passes_every_check():
    r = selftest()
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["PASS", "PASS", "PASS"]
    assert lines[-1].startswith("selftest: ok")


def test_selftest_fails_when_the_manifest_is_not_signed_by_the_configured_key(tmp_path):
    wrong = tmp_path / "wrong.pub"
    wrong.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"models:\n  public_key: {wrong}\n")
    r = selftest("--config", str(cfg))
    assert r.returncode == 1
    models_line = next(line for line in r.stdout.splitlines() if " models " in f" {line} ")
    assert models_line.startswith("FAIL") and "signed by key" in models_line
    assert "Traceback" not in r.stdout + r.stderr


def test_selftest_names_the_interpreter_package_that_ran_the_tiers():
    from firmware_py.inference.backend import interpreter_backend

    chosen = interpreter_backend()
    r = selftest()
    models_line = next(line for line in r.stdout.splitlines() if " models " in f" {line} ")
    assert f"({chosen.name.split('.')[0]} {chosen.version})" in models_line
