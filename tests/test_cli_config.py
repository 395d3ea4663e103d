"""`firmware-py config show FILE`: the configuration the daemon would run with, every key."""
from __future__ import annotations

import subprocess
import sys

import yaml

from firmware_py.config import load_config


def test_config_show_file_prints_the_merged_configuration(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("probe:\n  port: /dev/ttyACM0\npower:\n  battery:\n    kind: sysfs\n")
    p = subprocess.run([sys.executable, "-m", "firmware_py", "config", "show", str(site)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    shown = yaml.safe_load(p.stdout)
    assert shown == load_config(site).as_dict()
    assert shown["probe"]["port"] == "/dev/ttyACM0" and shown["power"]["battery"]["kind"] == "sysfs"
    assert shown["probe"]["baudrate"] == load_config(None).probe.baudrate  # defaults filled in


def test_config_show_of_a_bad_file_is_one_line_and_exit_2(tmp_path):
    site = tmp_path / "bad.yaml"
    site.write_text("probe:\n  baudrate: fast\n")
    p = subprocess.run([sys.executable, "-m", "firmware_py", "config", "show", str(site)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "probe.baudrate" in p.stderr


def test_a_config_path_at_an_endless_file_is_refused_in_one_line():
    p = subprocess.run([sys.executable, "-m", "firmware_py", "config", "check", "/dev/zero"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "config file /dev/zero cannot be read" in p.stderr and "larger than 1048576 bytes" in p.stderr
