"""`firmware-py run` failures a user can cause: one line naming the problem and the fix, the
right exit code (2 configuration, 1 runtime), never a traceback."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
import yaml

from tests.data.model_sets import make_model_set
from tests.timing import TIME_SCALE


def run(*args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware_py", "run", "--status-interval", "0", *args],
                          capture_output=True, text=True, timeout=timeout * TIME_SCALE)


def error_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("firmware-py: error: ")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("case", ["missing", "empty", "not-images"])
def test_a_bad_images_folder_is_a_configuration_error_naming_the_folder(tmp_path, case):
    folder = tmp_path / "imgs"
    if case != "missing":
        folder.mkdir()
    if case == "not-images":
        (folder / "notes.txt").write_text("no pictures here")
    p = run("--images", str(folder), "--duration", "20", "--results", str(tmp_path / "r.jsonl"))
    line = error_line(p)
    assert p.returncode == 2
    assert "probe simulator refused its settings" in line and str(folder) in line and "--images" in line


def bench_unit(tmp_path) -> str:
    """A configuration for a development unit with a real probe port: the development key is allowed."""
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump({"models": {"development_device": True}}))
    return str(path)


def test_a_port_that_is_not_a_url_is_a_configuration_error(tmp_path):
    p = run("--config", bench_unit(tmp_path), "--port", "bogus://probe", "--duration", "5",
            "--results", str(tmp_path / "r.jsonl"))
    assert p.returncode == 2
    assert "probe.port 'bogus://probe' is not a device path or pyserial URL" in error_line(p)


def test_a_missing_port_in_a_bounded_run_fails_with_the_links_reason(tmp_path):
    p = run("--config", bench_unit(tmp_path), "--port", str(tmp_path / "ttyACM9"), "--duration", "2",
            "--results", str(tmp_path / "r.jsonl"))
    assert p.returncode == 1
    line = error_line(p)
    assert "no frame received in 2 s" in line and "ttyACM9" in line
    assert "0 frames received" in p.stdout  # the summary still says what happened


def test_results_into_a_missing_folder(tmp_path):
    target = tmp_path / "nowhere" / "r.jsonl"
    p = run("--duration", "5", "--results", str(target))
    assert p.returncode == 1
    assert f"cannot write results to {target} (No such file or directory); create its folder" in error_line(p)


def test_a_journal_with_another_results_table_is_refused_before_the_probe_starts(tmp_path):
    journal = tmp_path / "j.sqlite"
    db = sqlite3.connect(journal)
    db.execute("CREATE TABLE results (id INTEGER PRIMARY KEY, verdict TEXT)")
    db.commit()
    db.close()
    p = run("--duration", "5", "--results", str(tmp_path / "r.jsonl"), "--journal", str(journal))
    assert p.returncode == 1
    assert "has a 'results' table of another layout (id, verdict); move the file aside" in error_line(p)


def test_a_pinned_start_tier_that_cannot_load_is_an_error_not_a_substitute(tmp_path):
    s = make_model_set(str(tmp_path / "models"), [
        {"name": "good", "cpu": "cls_int8.tflite", "rank": 0},
        {"name": "bad", "cpu": "cls_float.tflite", "io_from": "cls_int8.tflite", "rank": 1}])
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"models": {"manifest": f"{s['dir']}/manifest.yaml", "public_key": s["public"],
                                              "start_tier": "bad"}}))
    p = run("--config", str(cfg), "--duration", "5", "--results", str(tmp_path / "r.jsonl"))
    assert p.returncode == 1
    line = error_line(p)
    assert "models.start_tier bad cannot be loaded (" in line and "float model" in line
    assert not (tmp_path / "r.jsonl").exists() or (tmp_path / "r.jsonl").read_text() == ""


def test_a_device_with_a_real_probe_refuses_the_development_key(tmp_path):
    p = run("--port", str(tmp_path / "ttyACM9"), "--duration", "2", "--results", str(tmp_path / "r.jsonl"))
    assert p.returncode == 2
    line = error_line(p)
    assert "models.public_key is not set" in line and "models.development_device: true" in line


def missing_accelerator(tmp_path, *, required: bool) -> str:
    path = tmp_path / "npu.yaml"
    # the simulator's hello answer and the run's first frame wait on a slow (emulated) machine too
    path.write_text(yaml.safe_dump({"probe": {"handshake_timeout_s": 2.0 * TIME_SCALE},
                                    "accelerator": {"kind": "external", "required": required,
                                                    "external": {"library": str(tmp_path / "libnpu.so")}},
                                    "power": {"battery": {"kind": "sysfs", "sysfs": {"root": str(tmp_path)}}}}))
    return str(path)


def test_a_required_accelerator_that_is_absent_stops_the_start(tmp_path):
    p = run("--config", missing_accelerator(tmp_path, required=True), "--duration", "5",
            "--results", str(tmp_path / "r.jsonl"))
    assert p.returncode == 1
    line = error_line(p)
    assert "selftest: accelerator external not available (" in line and "accelerator.required: false" in line


def test_an_optional_absent_accelerator_and_a_missing_battery_are_warnings_in_the_status(tmp_path):
    p = run("--config", missing_accelerator(tmp_path, required=False), "--duration", f"{3 * TIME_SCALE:g}",
            "--results", str(tmp_path / "r.jsonl"), "--status-interval", "1")
    assert p.returncode == 0, p.stderr
    status = [ln for ln in p.stderr.splitlines() if ln.startswith("[")]
    assert status and "WARNING accelerator external not available" in status[-1]
    assert "WARNING battery sensor power.battery unreadable" in status[-1]
    assert "frames received" in p.stdout  # it ran, on the CPU twins


@pytest.mark.parametrize("key, what", [("manifest", "manifest"), ("public_key", "public key")])
def test_a_model_file_setting_at_an_endless_file_is_refused_not_read_until_memory_runs_out(tmp_path, key, what):
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"models": {key: "/dev/zero"}}))
    p = run("--config", str(cfg), "--duration", "2", "--results", str(tmp_path / "r.jsonl"), timeout=60)
    assert p.returncode == 1
    assert f"/dev/zero: cannot read the {what} (larger than" in error_line(p)
