"""End to end: `firmware-py run` with the probe simulator on a pseudo-terminal pair.

The simulator (a child process) sends real BUSI images as linear B-mode frames over the pty;
the daemon reads them through pyserial, preprocesses them with the Cython kernel, runs the
shipped int8 classifier and writes one JSON result per frame. Each result must match the same
classifier run directly (tflite_runtime Interpreter, no daemon) on the same image prepared by
the NumPy reference twin of the preprocessing.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
import yaml

from firmware_py.geometry import Geometry, ProbeKind
from firmware_py.inference import load_manifest
from firmware_py.inference.abstain import REASONS
from firmware_py.inference.backend import interpreter_backend
from firmware_py.kernels import reference
from timing import TIME_SCALE

PER_CLASS = 2


@pytest.fixture(scope="module")
def busi_images(data_dir, tmp_path_factory):
    """A few images of each class, copied to a temporary folder (never into the repository)."""
    folder = tmp_path_factory.mktemp("busi_subset")
    labels = {}
    for cls in ("benign", "malignant", "normal"):
        for src in sorted((data_dir / "busi" / cls).glob("*.png"))[:PER_CLASS]:
            shutil.copy(src, folder / src.name)
            labels[src.name] = cls
    return folder, labels


def classify_directly(image_path, tier, model_path):
    """The reference path: the image straight from disk, the same preprocessing kernel, a bare
    interpreter. The kernel's input tensor is first checked against the NumPy reference twin
    (within 1 LSB); the comparison itself uses the kernel's tensor, because 1-LSB input
    differences move some tiers' probabilities by a few hundredths and would hide what this test
    is about: that the daemon's transport and pipeline deliver exactly this computation."""
    from PIL import Image

    from firmware_py.kernels import Preprocessor

    img = np.asarray(Image.open(image_path).convert("L"))
    h, w = img.shape
    geometry = Geometry(ProbeKind.LINEAR, w, h, 8, 0.0, h * 0.2, w * 0.2)
    samples = np.ascontiguousarray(img.T)
    q, spec = tier.input.quantization, tier.preprocess
    gh, gw = spec.grid
    x = np.empty((gh, gw), np.int8)
    Preprocessor(gh, gw, scale=q.scale, zero_point=q.zero_point, dynamic_range_db=spec.dynamic_range_db,
                 mean=spec.mean, std=spec.std, fill=spec.fill).run(samples, geometry, x)
    ref = reference.preprocess(samples, geometry, gh, gw, scale=q.scale, zero_point=q.zero_point,
                               dynamic_range_db=spec.dynamic_range_db, mean=spec.mean, std=spec.std, fill=spec.fill)
    assert np.abs(x.astype(np.int16) - ref).max() <= 1
    interp = interpreter_backend().Interpreter(model_path=str(model_path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], x.reshape(inp["shape"]).astype(np.int8))
    interp.invoke()
    raw = interp.get_tensor(out["index"]).reshape(-1)
    oq = tier.output.quantization
    logits = (raw.astype(np.int64) - oq.zero_point) * oq.scale
    if tier.output.applied_in_model:
        probs = logits
    else:
        if tier.calibration is not None:  # temperature scaling, as the decoder applies it
            logits = logits / tier.calibration.temperature
        e = np.exp(logits - logits.max())
        probs = e / e.sum()
    return dict(zip(tier.output.labels, probs.tolist()))


def shipped_classify_tiers():
    from firmware_py.inference.engine import default_manifest

    return [t.name for t in load_manifest(default_manifest()).ladder("classify")]


@pytest.mark.slow
@pytest.mark.parametrize("start_tier", ["auto"] + shipped_classify_tiers())
def test_daemon_classifies_dataset_images_sent_over_a_pty(busi_images, tmp_path, repo_root, start_tier):
    folder, _ = busi_images
    n_images = len(list(folder.glob("*.png")))
    frame_log = tmp_path / "frames.jsonl"
    results = tmp_path / "results.jsonl"
    journal = tmp_path / "journal.sqlite"
    cfg = tmp_path / "rig.yaml"
    cfg.write_text(yaml.safe_dump({
        "simulator": {"images_dir": str(folder), "fps": 5.0 / TIME_SCALE, "frame_log": str(frame_log)},
        "output": {"results": str(results), "journal": str(journal), "status_interval_s": 0.5},
        "run": {"duration_s": 120.0 * TIME_SCALE, "max_frames": 2 * n_images},
        "models": {"start_tier": start_tier},
    }))
    proc = subprocess.run([sys.executable, "-m", "firmware_py", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=180 * TIME_SCALE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("firmware-py: ran") and "processed" in summary
    assert "rx " in proc.stderr and "| tier " in proc.stderr  # the live status line

    source_of = {}
    for line in frame_log.read_text().splitlines():
        entry = json.loads(line)
        source_of[entry["seq"]] = entry["source"]
    by_image = defaultdict(list)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) >= 2 * n_images
    for r in records:
        by_image[source_of[r["seq"]]].append(r)
    assert set(by_image) == {p.name for p in folder.glob("*.png")}, "a result must arrive for every image"

    manifest = load_manifest(str(repo_root / "models" / "manifest.yaml"))
    classify_tiers = {t.name for t in manifest.ladder("classify")}
    for name, recs in by_image.items():
        for r in recs:
            # Compare with the tier that produced the result (the power policy may pick any).
            assert r["tier"] in classify_tiers and r["backend"] == "cpu"
            assert start_tier == "auto" or r["tier"] == start_tier  # a named tier is pinned
            tier = manifest.tier(r["tier"])
            expected = classify_directly(folder / name, tier, repo_root / "models" / tier.files["cpu"].path)
            want = max(expected, key=expected.get)
            if r["indeterminate"] is not None:  # abstained (docs/abstention.md): never shown as a diagnosis
                assert r["indeterminate"] in REASONS and r["label"] is None, r
            else:
                assert r["label"] == want, (name, r["probabilities"], expected)
            for label, p in expected.items():
                # Same model, same input tensor: the same numbers (JSON keeps full precision).
                assert r["probabilities"][label] == pytest.approx(p, abs=1e-9), (name, label)

    rows = sqlite3.connect(journal).execute("SELECT seq FROM results ORDER BY seq").fetchall()
    assert [row[0] for row in rows] == sorted(r["seq"] for r in records)


@pytest.mark.slow
def test_demo_default_run_with_synthetic_phantoms_exits_cleanly(tmp_path):
    """What `make demo` runs, shortened: no data needed, summary line, exit 0."""
    results = tmp_path / "r.jsonl"
    proc = subprocess.run([sys.executable, "-m", "firmware_py", "run", "--duration", f"{3 * TIME_SCALE:g}",
                           "--results", str(results), "--status-interval", "1"],
                          capture_output=True, text=True, timeout=120 * TIME_SCALE)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("firmware-py: ran")
    processed = int(last.split(" processed")[0].split(", ")[-1])
    assert processed > 0
    assert len(results.read_text().splitlines()) == processed


@pytest.mark.slow
def test_segmentation_ladder_reports_the_nodule_area(tmp_path):
    """models.task: segment runs the DDTI tiers; each result carries the largest component's area."""
    results = tmp_path / "r.jsonl"
    cfg = tmp_path / "seg.yaml"
    # abstention off: the synthetic phantom is no thyroid, and this test is about the area path
    cfg.write_text(yaml.safe_dump({"models": {"task": "segment"}, "simulator": {"fps": 10.0},
                                   "abstention": {"enabled": False},
                                   "output": {"results": str(results), "status_interval_s": 0},
                                   "run": {"duration_s": 60.0, "max_frames": 5}}))
    proc = subprocess.run([sys.executable, "-m", "firmware_py", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(records) >= 5
    for r in records:
        assert r["tier"].startswith("ddti-") and r["label"] is None and r["area_mm2"] >= 0.0
