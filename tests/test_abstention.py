"""Abstention (issue 16 point 7): each rule on crafted int8 inputs, the manifest and configuration
checks, the decoder's temperature, and a blank / frozen probe stream through the running daemon."""
from __future__ import annotations

import math
import os
import sqlite3
import threading
import tty

import numpy as np
import pytest
import yaml

from firmware_py.config import load_config
from firmware_py.errors import ConfigError, ModelError
from firmware_py.inference.abstain import FEATURES_V1, Abstainer, display_lut, features
from firmware_py.inference.manifest import parse_manifest
from tests.timing import TIME_SCALE

CFG = load_config(None).abstention
RNG = np.random.default_rng(7)
FILL = -128  # the code of display 0 with the shipped tiers' input quantization (1/255, -128)


def codes(display: np.ndarray) -> np.ndarray:
    """int8 input codes of display levels 0..255, as the shipped tiers' quantization writes them."""
    return (np.clip(np.round(display), 0, 255) - 128).astype(np.int8)


def tissue(n: int = 64, seed: int = 0) -> np.ndarray:
    """Layers, a dark lesion and speckle: the echo structure of a real image (every BUSI and DDTI
    image passes the device rules, see docs/abstention.md)."""
    rng = np.random.default_rng(seed)
    z, x = np.mgrid[0:n, 0:n] / n
    img = 150 - 90 * z + 40 * np.sin(9 * z + 2 * x)
    img[(x - 0.5) ** 2 + (z - 0.55) ** 2 < 0.04] = 25
    return codes(img * rng.rayleigh(0.8, (n, n)))


def abstainer(spec=None) -> Abstainer:
    return Abstainer(CFG, spec, scale=1 / 255, zero_point=-128)


def reason(q, spec=None, probabilities=None) -> str | None:
    return abstainer(spec).check(q, probabilities)[0]


def test_a_textured_frame_is_a_diagnosis_and_its_repeat_is_frozen():
    ab = abstainer()
    frame = tissue()
    assert ab.check(frame)[0] is None
    assert ab.check(frame.copy())[0] == "frozen"  # the probe froze: the same frame again
    one_lsb = np.clip(frame.astype(np.int16) + RNG.integers(-1, 2, frame.shape), -128, 127).astype(np.int8)
    assert ab.check(one_lsb)[0] == "frozen"  # a re-sent frame with rounding noise is still frozen
    assert ab.check(tissue(seed=1))[0] is None  # new speckle: live again


def test_blank_black_and_uniform_frames():
    assert reason(np.full((64, 64), -128, np.int8)) == "blank"
    assert reason(codes(RNG.normal(5, 2, (64, 64)))) == "blank"  # near-black with receiver noise
    assert reason(np.full((96, 96), 20, np.int8)) == "blank"  # uniform grey
    assert reason(codes(RNG.normal(120, 1.0, (64, 64)))) == "blank"


def test_saturated_frame():
    bright = codes(tissue().astype(np.float64) + 128 + 200)
    assert reason(bright) == "saturated"
    half = tissue().copy()
    half[:12] = 127  # a fifth of the frame clipped white: under the rule's share
    assert reason(half) != "saturated"


def test_noise_without_echo_structure_is_no_tissue_even_with_a_tgc_ramp_or_sector_corners():
    assert reason(codes(RNG.normal(110, 40, (64, 64)))) == "no_tissue"
    ramp = np.linspace(30, 160, 64)[:, None]
    assert reason(codes(RNG.normal(0, 25, (64, 64)) + ramp)) == "no_tissue"
    z, x = np.mgrid[0:64, 0:64]
    sector = codes(RNG.normal(100, 30, (64, 64)))
    sector[np.abs(x - 32) > z * 0.6 + 2] = FILL  # fill outside a sector: its edges are no echo structure
    assert reason(sector) == "no_tissue"


def test_device_rules_come_first_in_their_documented_order():
    black = np.full((64, 64), -128, np.int8)
    ab = abstainer()
    ab.check(black)
    assert ab.check(black)[0] == "blank"  # blank before frozen
    white = codes(np.full((64, 64), 255.0))
    assert reason(white) == "saturated"  # uniform white: saturated before blank
    ab.check(white)
    assert ab.check(white)[0] == "saturated"  # and before frozen


def spec_block(**over) -> dict:
    n = len(FEATURES_V1)
    block = {"features": "v1", "min_confidence": 0.5,
             "typical": {"mean": [0.0] * n, "std": [1.0] * n, "max_score": 1e9},
             "anatomy": {"weights": [0.0] * 2 * n, "bias": -1.0, "max_score": 0.0}}
    block.update(over)
    return block


def manifest_text(block: dict | None = None, calibration: dict | None = None, task: str = "classify",
                  applied: bool = False) -> str:
    tier = {"name": "t", "task": task, "rank": 0,
            "files": {"cpu": {"path": "m.tflite", "sha256": "0" * 64, "bytes": 1}},
            "input": {"shape": [1, 64, 64, 1], "dtype": "int8", "quantization": {"scale": 1 / 255, "zero_point": -128}},
            "preprocess": {"grid": [64, 64], "dynamic_range_db": 60},
            "output": {"dtype": "int8", "quantization": {"scale": 0.1, "zero_point": 0},
                       "decode": "softmax" if task == "classify" else "sigmoid", "applied_in_model": applied,
                       "labels": ["normal", "benign", "malignant"] if task == "classify" else ["nodule"]}}
    if block is not None:
        tier["abstention"] = block
    if calibration is not None:
        tier["calibration"] = calibration
    return yaml.safe_dump({"schema_version": 1, "tiers": [tier]})


def spec(**over):
    return parse_manifest(manifest_text(spec_block(**over))).tiers[0].abstention


def test_low_confidence_uses_the_manifests_threshold():
    frame = tissue()
    s = spec(min_confidence=0.6)
    assert reason(frame, s, {"normal": 0.5, "benign": 0.3, "malignant": 0.2}) == "low_confidence"
    assert reason(frame, s, {"normal": 0.7, "benign": 0.2, "malignant": 0.1}) is None


def test_atypical_and_other_anatomy_gates_on_the_image_features():
    frame = tissue()
    f = features(frame, display_lut(1 / 255, -128))
    typical = {"mean": f.tolist(), "std": (np.abs(f) * 0.05 + 1e-3).tolist(), "max_score": 4.0}
    assert reason(frame, spec(typical=typical), {"a": 0.9, "b": 0.1}) is None
    assert reason(tissue(seed=3)[::-1].copy(), spec(typical=typical), {"a": 0.9, "b": 0.1}) == "atypical"
    weights = [0.0] * 2 * len(FEATURES_V1)  # features, then their squares
    weights[FEATURES_V1.index("mean")] = 1.0
    anatomy = {"weights": weights, "bias": -float(f[0]) - 1.0, "max_score": 0.0}  # brighter than this frame
    assert reason(frame, spec(anatomy=anatomy), {"a": 0.9, "b": 0.1}) is None
    assert reason(codes(frame.astype(np.float64) + 128 + 30), spec(anatomy=anatomy), {"a": 0.9, "b": 0.1}) \
        == "other_anatomy"


@pytest.mark.parametrize("block, message", [
    (spec_block(min_confidence=1.5), r"abstention\.min_confidence: 1\.5: a classify tier's probability"),
    (spec_block(features="v9"), r"abstention\.features: 'v9' is not a feature set this firmware computes"),
    (spec_block(typical={"mean": [0.0] * 3, "std": [1.0] * 3, "max_score": 2.0}),
     r"abstention\.typical\.mean: expected 45 finite numbers, got 3 entries"),
    (spec_block(anatomy={"weights": [0.0] * 45, "bias": 0, "max_score": 0}),
     r"abstention\.anatomy\.weights: expected 90 finite numbers, got 45 entries"),
    (spec_block(typical={"mean": [0.0] * 45, "std": [0.0] * 45, "max_score": 2.0}),
     r"abstention\.typical\.std: every entry must be > 0"),
    (spec_block(typical={"mean": [0.0] * 45, "std": [1.0] * 45, "max_score": -1}),
     r"abstention\.typical\.max_score: must be > 0"),
    (spec_block(anatomy={"weights": [0.0] * 90, "bias": "x", "max_score": 0}),
     r"abstention\.anatomy\.bias: expected a finite number"),
    (spec_block(min_area_px=-3), r"abstention\.min_area_px: must be >= 0"),
    (spec_block(model_sha256="1" * 64), r"abstention\.model_sha256: fitted for another model file than files\.cpu"),
])
def test_a_bad_abstention_block_is_refused_in_one_line(block, message):
    with pytest.raises(ModelError, match=message) as exc:
        parse_manifest(manifest_text(block), "models/manifest.yaml")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("models/manifest.yaml: tiers[t].")


def test_calibration_is_checked_and_only_for_logit_classifiers():
    assert parse_manifest(manifest_text(calibration={"temperature": 1.7, "method": "nll"})).tiers[0] \
        .calibration.temperature == 1.7
    for cal, task, applied, message in (
            ({"temperature": 0}, "classify", False, r"calibration\.temperature: 0\.0 is outside 0\.05\.\.20"),
            ({"temperature": 2}, "segment", False, "temperature scaling applies to classify tiers only"),
            ({"temperature": 2}, "classify", True, "the model applies its own softmax")):
        with pytest.raises(ModelError, match=message):
            parse_manifest(manifest_text(calibration=cal, task=task, applied=applied))
    with pytest.raises(ModelError, match="only classify tiers have a confidence threshold"):
        parse_manifest(manifest_text(spec_block(min_confidence=0.4), task="segment"))


def test_decoder_applies_the_temperature_to_the_logits():
    from firmware_py.inference.decode import Decoder, InferenceOutput

    tier = parse_manifest(manifest_text(calibration={"temperature": 2.0})).tiers[0]
    q = np.array([[10, -5, 3]], np.int8)
    out = InferenceOutput("t", "classify", "cpu", 0.0)
    Decoder("classify", tier.output, 0.1, 0, (1, 3), temperature=2.0).classify(q, out)
    logits = np.array([1.0, -0.5, 0.3]) / 2.0
    want = np.exp(logits) / np.exp(logits).sum()
    assert list(out.probabilities.values()) == pytest.approx(want.tolist(), abs=1e-12)


@pytest.mark.parametrize("key, value, message", [
    ("saturated_min_share", 2.0, "abstention.saturated_min_share"),
    ("frozen_tolerance", -1, "abstention.frozen_tolerance"),
    ("no_tissue_max_structure", "high", "abstention.no_tissue_max_structure"),
])
def test_bad_abstention_configuration_is_one_config_error_line(tmp_path, key, value, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"abstention": {key: value}}))
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(str(path))
    assert "\n" not in str(exc.value)


# -- through the running daemon -----------------------------------------------------------------------
class ScriptedSource:
    """Probe frames: live textured frames, then the same frame again and again (the probe froze),
    then black frames. Like PhantomSource, for the simulator."""

    def __init__(self, geometry, live: int = 6, frozen: int = 6):
        self.geometry = geometry
        self.live, self.frozen = live, frozen
        self.i = 0

    def next(self):
        from firmware_py.drivers.sources import SourceFrame

        i, self.i = self.i, self.i + 1
        g = self.geometry
        if i < self.live + self.frozen:
            seed = min(i, self.live)  # after `live` frames the last one repeats
            img = tissue(64, seed=seed).astype(np.int16) + 128  # display levels
            samples = np.ascontiguousarray(img.T[:g.n_lines, :g.n_samples].astype(np.uint8))
            return SourceFrame(samples, g, f"scripted:{seed}")
        return SourceFrame(np.zeros((g.n_lines, g.n_samples), np.uint8), g, "scripted:black")


class ScriptedProbe:
    def __init__(self, source):
        from firmware_py.drivers.probe_sim import ProbeSimulator

        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        # slower under emulation, so frames are not dropped: the test reads the frozen run in order
        self.sim = ProbeSimulator(source, fps=40.0 / TIME_SCALE)
        self.thread = None

    def start(self) -> str:
        from tests.conftest_drivers import SimThread

        self.thread = SimThread(self.sim, self.master)
        return os.ttyname(self.slave)

    def failure(self):
        return None

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
        os.close(self.master)
        os.close(self.slave)


def test_a_frozen_then_blank_stream_is_journalled_and_shown_indeterminate(tmp_path):
    from firmware_py.daemon.runner import Daemon
    from firmware_py.geometry import Geometry, ProbeKind
    from firmware_py.inference import Engine
    from tests.conftest_drivers import wait_for
    from tests.data.model_sets import make_model_set

    s = make_model_set(str(tmp_path / "models"), [{"name": "small", "cpu": "cls_int8.tflite", "rank": 0}])
    journal = tmp_path / "journal.sqlite"
    cfg = load_config(None).replace(output={"results": str(tmp_path / "r.jsonl"), "journal": str(journal),
                                            "status_interval_s": 0.0}, run={"duration_s": 120.0})
    engine = Engine(s["dir"], public_key=s["public"], abstention=cfg.abstention)
    geometry = Geometry(ProbeKind.LINEAR, 64, 64, 8, 1.0, 30.0, 20.0, 0.0, None)
    from tests.test_daemon_control import Cell, Gauge

    daemon = Daemon(cfg, engine=engine, battery=Cell(80.0), thermal=Gauge(40.0),
                    probe=ScriptedProbe(ScriptedSource(geometry)), policy_period_s=3600.0)
    runner = threading.Thread(target=daemon.run, daemon=True)
    runner.start()
    seen = set()
    try:
        def status_shows():
            text = daemon.status_text() if daemon.proc is not None else ""
            for why in ("frozen", "blank"):
                if f"INDETERMINATE ({why})" in text:
                    seen.add(why)
            return seen == {"frozen", "blank"}
        assert wait_for(status_shows, 60 * TIME_SCALE), daemon.status_text()
        counters = daemon.counters()
        assert counters["results_indeterminate_by_reason"].keys() >= {"frozen", "blank"}
        assert counters["results_indeterminate"] == sum(counters["results_indeterminate_by_reason"].values())
        assert "indeterminate" in daemon.status_text()
    finally:
        daemon.stop_event.set()
        runner.join(20)
    assert not runner.is_alive() and daemon.proc.fatal is None
    db = sqlite3.connect(journal)
    rows = db.execute("SELECT seq, label, area_mm2, indeterminate, record FROM results ORDER BY seq").fetchall()
    reasons = [r[3] for r in rows]
    assert None in reasons[:6], "live textured frames are diagnoses"
    assert "frozen" in reasons and "blank" in reasons
    for seq, label, area, why, record in rows:
        if why is not None:
            assert label is None and area is None  # never a diagnosis
            assert f'"indeterminate":"{why}"' in record and '"abstention":' in record
    first_frozen = reasons.index("frozen")
    assert all(r == "frozen" for r in reasons[first_frozen:first_frozen + 3])


def test_logistic_fit_separates_two_clouds_and_reports_raw_feature_weights():
    from firmware_py.models.build.abstention import _logistic

    rng = np.random.default_rng(0)
    a = rng.normal([0, 50], [1, 10], (200, 2))
    b = rng.normal([3, 50], [1, 10], (200, 2))
    w, bias = _logistic(np.r_[a, b], np.r_[np.zeros(200), np.ones(200)])
    score = lambda x: x @ w + bias  # noqa: E731
    assert np.mean(score(a) < 0) > 0.9 and np.mean(score(b) > 0) > 0.9
    assert abs(w[1]) < abs(w[0]) / 5  # the uninformative feature gets little weight
    assert math.isfinite(bias)


def test_the_watch_feed_shows_an_indeterminate_result_without_a_diagnosis():
    from firmware_py.console.commands import _result_line
    from firmware_py.results import ResultRecord

    r = ResultRecord(seq=9, probe_time_us=0, tier="t", backend="cpu", label=None,
                     probabilities={"benign": 0.8, "malignant": 0.2}, latency_ms={"total": 3.25}, wall_time=0.0,
                     indeterminate="low_confidence")
    line = _result_line(r, as_json=False)
    assert line == "#9 t/cpu INDETERMINATE (low_confidence) 3.2 ms"
    assert '"indeterminate":"low_confidence"' in _result_line(r, as_json=True)
