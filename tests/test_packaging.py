"""The Debian install: the systemd unit verifies, the sysusers and udev files say what they must."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_py.config import load_config

PACKAGING = Path(__file__).resolve().parents[1] / "packaging"


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (PACKAGING / "firmware-py.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze not installed (Debian package systemd; .ci/run installs it); "
                           "test_unit_is_a_hardened_notify_service_with_a_watchdog checks the settings")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    # The unit names the installed path; point it at this checkout's console script so verify can
    # check the executable as it would on the device.
    script = Path(sys.executable).with_name("firmware-py")
    unit = tmp_path / "firmware-py.service"
    unit.write_text((PACKAGING / "firmware-py.service").read_text()
                    .replace("/opt/firmware-py/venv/bin/firmware-py", str(script)))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    # verify exits 0 on settings it ignores ("Failed to parse ..., ignoring"): any line about the unit
    # is a problem
    problems = [ln for ln in (p.stdout + p.stderr).splitlines() if str(unit) in ln]
    assert p.returncode == 0 and not problems, p.stdout + p.stderr


def test_unit_is_a_hardened_notify_service_with_a_watchdog():
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["WatchdogSec"] and s["Restart"] == ["on-failure"]
    assert s["RestartPreventExitStatus"] == ["2"]  # a configuration error is not retried
    assert s["StartLimitBurst"] and s["StartLimitIntervalSec"]
    assert s["User"] == ["firmware-py"] and "dialout" in s["SupplementaryGroups"][0].split()
    for hardening in ("ProtectSystem=strict", "NoNewPrivileges=yes", "ProtectHome=yes", "PrivateTmp=yes"):
        key, value = hardening.split("=")
        assert s[key] == [value]
    config = load_config(PACKAGING / "config.yaml")
    journal_dir = str(Path(config.output.journal).parent)
    assert s["ReadWritePaths"] == [journal_dir]  # the only writable place is where the journal lives
    assert f"--config /etc/firmware-py/config.yaml" in s["ExecStart"][0]


def test_shipped_device_config_is_valid_and_secure():
    config = load_config(PACKAGING / "config.yaml")
    assert config.models.public_key and not config.models.development_device
    assert config.probe.port == "/dev/ultrasound-probe" and not config.simulator.enabled


def test_udev_rules_name_the_probe_and_both_edge_tpu_ids():
    rules = (PACKAGING / "60-firmware-py.rules").read_text()
    probe = next(ln for ln in rules.splitlines() if 'SYMLINK+="ultrasound-probe"' in ln)
    assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in probe and 'GROUP="dialout"' in probe
    ids = set(re.findall(r'ATTRS\{idVendor\}=="([0-9a-f]{4})", ATTRS\{idProduct\}=="([0-9a-f]{4})"', rules))
    assert {("1a6e", "089a"), ("18d1", "9302")} <= ids


def test_sysusers_makes_the_user_the_unit_runs_as():
    lines = [ln.split() for ln in (PACKAGING / "firmware-py.sysusers").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert ["u", "firmware-py"] == lines[0][:2]
    assert {("m", "firmware-py", "dialout"), ("m", "firmware-py", "plugdev")} <= {tuple(ln[:3]) for ln in lines}
