"""DDTI no-nodule rule (issue 16 point 7): the manifest's `abstention.min_peak_probability` and
`min_area_px`, applied by the daemon's decoder, so a frame without a nodule yields area 0 and the
result says why; a bad value is one manifest error line."""
from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import make_model_set  # noqa: E402

from firmware_py.errors import ModelError  # noqa: E402
from firmware_py.inference.decode import Decoder, InferenceOutput  # noqa: E402
from firmware_py.inference.manifest import parse_manifest  # noqa: E402
from test_abstention import manifest_text, spec_block  # noqa: E402


def seg_output():
    return parse_manifest(manifest_text(task="segment")).tiers[0].output  # sigmoid, scale 0.1, zero point 0


def decode(q: np.ndarray, **rule) -> InferenceOutput:
    out = InferenceOutput("t", "segment", "cpu", 0.0)
    Decoder("segment", seg_output(), 0.1, 0, q.shape, **rule).segment(q, out)
    return out


def blobs() -> np.ndarray:
    """Logit codes: a 4 x 4 blob at 5.0 (p 0.9933), a 2 x 2 blob at 3.0, background -5.0."""
    q = np.full((1, 16, 16, 1), -50, np.int8)
    q[0, 2:6, 2:6] = 50
    q[0, 10:12, 10:12] = 30
    return q


def test_a_peak_under_the_manifests_probability_is_no_nodule():
    out = decode(blobs(), min_peak_probability=0.995)
    peak = 1 / (1 + math.exp(-5.0))
    assert out.no_nodule == f"peak probability {peak:.4f} < 0.995" and out.nodule is None
    assert out.mask.sum() == 20  # the mask stays (audit); only the nodule is withdrawn
    kept = decode(blobs(), min_peak_probability=0.99)
    assert kept.no_nodule is None and kept.nodule.sum() == 16 and kept.nodule[2:6, 2:6].all()  # the largest


def test_a_small_largest_component_or_an_empty_mask_is_no_nodule():
    assert decode(blobs(), min_area_px=16).no_nodule is None
    assert decode(blobs(), min_area_px=17).no_nodule == "largest component 16 px < 17"
    empty = decode(np.full((1, 16, 16, 1), -50, np.int8))
    assert empty.no_nodule == "no mask pixel" and empty.nodule is None
    assert "no_nodule" in empty.as_dict()


@pytest.mark.parametrize("value, task, message", [
    (1.0, "segment", r"abstention\.min_peak_probability: 1\.0: a segment tier's mask probability in 0\.\.1"),
    (-0.1, "segment", r"abstention\.min_peak_probability: -0\.1: a segment tier's mask probability"),
    ("high", "segment", r"abstention\.min_peak_probability: expected a finite number"),
    (0.9, "classify", r"abstention\.min_peak_probability: only segment tiers have a no-nodule peak probability"),
])
def test_a_bad_peak_probability_is_one_manifest_line(value, task, message):
    block = spec_block(min_peak_probability=value)
    if task == "segment":
        del block["min_confidence"]
    with pytest.raises(ModelError, match=message) as exc:
        parse_manifest(manifest_text(block, task=task), "models/manifest.yaml")
    assert "\n" not in str(exc.value)


def test_the_manifest_carries_the_rule():
    block = spec_block(min_peak_probability=0.9985, min_area_px=12)
    del block["min_confidence"]
    a = parse_manifest(manifest_text(block, task="segment")).tiers[0].abstention
    assert (a.min_peak_probability, a.min_area_px) == (0.9985, 12) and "min_peak_probability" not in a.extra


def test_the_daemon_reports_no_nodule_with_area_zero(tmp_path):
    """Through the signed set, the engine and the frame processor into a JSON-lines result."""
    from drivers.buffers import Frame
    from drivers.phantom import make_geometry
    from firmware_py.config import load_config
    from firmware_py.daemon.frames import FrameProcessor
    from firmware_py.daemon.pipeline import LatencyWindow
    from firmware_py.inference import Engine
    from firmware_py.inference.signing import sign_model_set
    from firmware_py.results.sinks import JsonLinesSink

    s = make_model_set(str(tmp_path / "models"), [{"name": "seg", "cpu": "seg_int8.tflite", "task": "segment"}])
    cfg = load_config(None)
    g = make_geometry("linear", 64, 128, 8)
    samples = np.random.default_rng(3).integers(0, 256, (g.n_lines, g.n_samples), dtype=np.uint8)

    def run(peak: float) -> dict:
        path = os.path.join(s["dir"], "manifest.yaml")
        doc = yaml.safe_load(open(path))
        doc["tiers"][0]["abstention"] = {"features": "v1", "min_peak_probability": peak}
        yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
        sign_model_set(s["dir"], s["private"], load_check=False)
        eng = Engine(s["dir"], public_key=s["public"], task="segment")
        out = str(tmp_path / f"results-{peak}.jsonl")
        try:
            fp = FrameProcessor(eng, [JsonLinesSink(out)], LatencyWindow(), cfg.preprocess)
            buf = bytearray(samples.tobytes())
            fp.process(Frame(1, 0, g, buf, 0, None))
            return {"record": json.loads(open(out).read()), "last": fp.last}
        finally:
            eng.close()

    # the fixture's outputs are 0..1 read as logits: every pixel is foreground, the peak at most sigmoid(1)
    permissive = run(0.0)
    assert permissive["record"]["area_mm2"] > 0 and "no_nodule" not in permissive["record"].get("extra", {})
    strict = run(0.75)
    assert strict["record"]["area_mm2"] == 0.0 and strict["last"] == "#1 no nodule"
    assert strict["record"]["extra"]["no_nodule"].startswith("peak probability ")


def test_the_watch_feed_says_no_nodule():
    from firmware_py.console.commands import _result_line
    from firmware_py.results import ResultRecord

    r = ResultRecord(seq=4, probe_time_us=0, tier="seg", backend="cpu", label=None, probabilities=None,
                     latency_ms={"total": 2.0}, wall_time=0.0, area_mm2=0.0,
                     extra={"no_nodule": "peak probability 0.9912 < 0.998562"})
    assert _result_line(r, as_json=False) == "#4 seg/cpu no nodule (peak probability 0.9912 < 0.998562) 2.0 ms"
    r.extra = {}
    assert _result_line(r, as_json=False) == "#4 seg/cpu area 0.0 mm2 2.0 ms"
