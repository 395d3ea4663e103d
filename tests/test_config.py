"""Configuration: defaults, merging, and refusal of bad files with one-line messages."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from firmware_py.config import docs, load_config
from firmware_py.config.schema import SCHEMA, Section, defaults
from firmware_py.errors import ConfigError


def write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_shipped_defaults_match_schema_and_docs_are_current():
    assert yaml.safe_load(docs.DEFAULT_YAML.read_text()) == defaults()
    assert docs.main([]) == 0, "run: python -m firmware_py.config.docs --write"
    text = docs.DOCS_MD.read_text()

    def names(section, path):
        for key, spec in section.items():
            yield f"{path}.{key}"
            if isinstance(spec, Section):
                yield from names(spec, f"{path}.{key}")

    for sec, keys in SCHEMA.items():
        for name in names(keys, sec):
            assert f"`{name}`" in text


def test_no_file_gives_defaults():
    cfg = load_config(None)
    assert cfg.simulator.enabled is True
    assert cfg.probe.port is None
    assert cfg.as_dict() == defaults()


def test_partial_file_merges_over_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "simulator:\n  fps: 30\nprobe:\n  port: loop://\n"))
    assert cfg.simulator.fps == 30
    assert cfg.probe.port == "loop://"
    assert cfg.simulator.geometry == defaults()["simulator"]["geometry"]


def test_empty_file_and_empty_section_are_defaults(tmp_path):
    assert load_config(write(tmp_path, "")).as_dict() == defaults()
    assert load_config(write(tmp_path, "probe:\n")).as_dict() == defaults()


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("probe:\n  prot: /dev/ttyACM0\n", ["cfg.yaml:2", "unknown key 'probe.prot'", "probe.port"]),
        ("probes:\n  port: x\n", ["cfg.yaml:1", "unknown section 'probes'"]),
        ("simulator:\n  fps: fast\n", ["cfg.yaml:2", "'simulator.fps' must be a number"]),
        ("simulator:\n  scan_lines: 12.5\n", ["'simulator.scan_lines' must be an integer"]),
        ("simulator:\n  scan_lines: true\n", ["'simulator.scan_lines' must be an integer"]),
        ("simulator:\n  enabled: 1\n", ["'simulator.enabled' must be true or false"]),
        ("\n\nsimulator:\n  fps: 0\n", ["cfg.yaml:4", "'simulator.fps' must be >= 0.1"]),
        ("simulator:\n  bits: 12\n", ["'simulator.bits' must be one of 8, 16"]),
        ("simulator:\n  geometry: sector\n", ["must be one of linear, convex, phased", "'sector'"]),
        ("probe:\n  vid_pid: 1234\n", ["'probe.vid_pid' must be", "four hex digits"]),
        ("accelerator:\n  edgetpu:\n    device: usb0\n", ["usb, usb:N or pci:N"]),
        ("models:\n  task: null\n", ["'models.task' must not be empty"]),
        ("simulator:\n  fps: .nan\n", ["must be a finite number"]),
        ("probe: [1, 2]\n", ["section 'probe' must be a mapping"]),
        ("- probe\n", ["must be a mapping of sections"]),
        ("probe:\n  port: [unclosed\n", ["not valid YAML", "line"]),
        ("probe:\n  port: x\n port2: y\n", ["not valid YAML"]),
        ("power:\n  critical_battery_percent: 50\n  low_battery_percent: 20\n",
         ["critical_battery_percent is above power.low_battery_percent"]),
        ("accelerator:\n  kind: external\n", ["external.library is not set"]),
        ("probe:\n  reconnect_initial_s: 10\n  reconnect_max_s: 1\n", ["reconnect_initial_s is larger"]),
        ("probe:\n  pool_buffers: 16\n", ["pool_buffers is larger than probe.pool_max_buffers"]),
        ("probe:\n  max_frame_bytes: 100000000\n", ["cfg.yaml:2", "'probe.max_frame_bytes' must be <= 67108864"]),
        ("probe:\n  record_max_bytes: 4096\n", ["cfg.yaml:2", "'probe.record_max_bytes' must be >= 8192"]),
        ("power:\n  battery:\n    mock:\n      percent: 120\n",
         ["cfg.yaml:4", "'power.battery.mock.percent' must be <= 100"]),
        ("power:\n  battery:\n    sysfs:\n      rot: /sys\n",
         ["cfg.yaml:4", "unknown key 'power.battery.sysfs.rot'", "power.battery.sysfs.root"]),
        ("power:\n  thermal:\n    kind: mock\n    mock:\n      temperature_c: hot\n",
         ["cfg.yaml:5", "'power.thermal.mock.temperature_c' must be a number"]),
        ("power:\n  battery: sysfs\n", ["cfg.yaml:2", "'power.battery' must be a mapping like {kind: mock}"]),
        ("power:\n  mock_battery_percent: 50\n", ["'power.mock_battery_percent' has moved to "
                                                  "'power.battery.mock.percent'"]),
        ("power:\n  battery:\n    psutil: {}\n", ["unknown key 'power.battery.psutil'"]),  # no options, no section
    ],
)
def test_bad_files_are_refused_naming_the_key(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_command_line_overrides_are_validated_too():
    cfg = load_config(None)
    assert cfg.replace(run={"duration_s": 3.0}).run.duration_s == 3.0
    with pytest.raises(ConfigError, match="'run.duration_s' must be >= 0"):
        cfg.replace(run={"duration_s": -1.0})


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "firmware_py", *args], capture_output=True, text=True,
                          timeout=60)


def test_cli_config_check_exit_codes(tmp_path):
    good = write(tmp_path, "simulator:\n  fps: 5\n")
    assert run_cli("config", "check", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulator:\n  fps: -3\n")
    r = run_cli("config", "check", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml:2" in lines[0] and "simulator.fps" in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_run_with_bad_config_exits_2_before_touching_anything(tmp_path):
    bad = write(tmp_path, "probe:\n  baudrate: fast\n")
    r = run_cli("run", "--config", str(bad), "--duration", "1")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "probe.baudrate" in r.stderr


def test_cli_help_on_every_subcommand():
    for sub in ("run", "config", "selftest"):
        r = run_cli(sub, "--help")
        assert r.returncode == 0 and "usage" in r.stdout.lower(), (sub, r.stderr)
    r = run_cli("--help")
    assert r.returncode == 0
    for sub in ("run", "probe-sim", "models", "bench", "selftest"):
        assert sub in r.stdout
    assert run_cli("no-such-command").returncode == 2


def test_cli_config_pin_prints_a_salted_scrypt_line_for_console_pin_hash():
    from firmware_py.console.auth import verify_pin

    r = subprocess.run([sys.executable, "-m", "firmware_py", "config", "pin"], input="2468\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "2468" not in r.stdout
    digest = r.stdout.split()[1]
    assert load_config(None).replace(console={"pin_hash": digest}).console.pin_hash == digest
    assert verify_pin("2468", digest) and not verify_pin("2469", digest)
    bad = subprocess.run([sys.executable, "-m", "firmware_py", "config", "pin"], input="12\n", capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "4 to 12 digits" in bad.stderr
