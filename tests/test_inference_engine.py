"""Engine frame path: zero-copy input, decoding against the plain interpreter, hitless swap, memory budget."""
import os
import queue
import sys
import threading

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import LABELS, TWO_CLASSIFIERS, make_model_set, reference_output  # noqa: E402

from firmware_py.errors import ModelError, SecurityError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402

RNG = np.random.default_rng(5)


def frame(shape=(1, 32, 32, 1)):
    return RNG.integers(-128, 128, shape, dtype=np.int8)


@pytest.fixture
def models(tmp_path):
    return make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS + [
        {"name": "seg", "cpu": "seg_int8.tflite", "task": "segment", "rank": 0}])


@pytest.fixture
def engine(models):
    eng = Engine(models["dir"], public_key=models["public"])
    yield eng
    eng.close()


def test_input_view_is_the_interpreter_tensor(engine):
    x = frame()
    view = engine.input_view()
    assert view.dtype == np.int8 and view.shape == (1, 32, 32, 1)
    view[...] = x
    del view
    rt = engine._active.cpu
    # same memory as the interpreter's input tensor: what was written is what it will read
    assert np.array_equal(rt.model.interpreter.get_tensor(rt.input_index), x)
    a, b = engine.input_view(), engine.input_view()
    assert np.shares_memory(a, b)


def test_classify_output_matches_the_plain_interpreter(engine):
    for _ in range(5):
        x = frame()
        engine.input_view()[...] = x
        out = engine.invoke()
        q = reference_output("cls_int8.tflite", x).reshape(-1)
        scale, zp = engine.active_tier.output.quantization.scale, engine.active_tier.output.quantization.zero_point
        expected = (q.astype(np.int64) - zp) * scale
        assert list(out.probabilities) == LABELS
        assert np.allclose(list(out.probabilities.values()), expected, rtol=1e-6, atol=1e-9)
        assert out.label == LABELS[int(np.argmax(q))]
        assert out.positive == (expected[2] >= 0.5)
        assert out.tier == "cls-small" and out.backend == "cpu" and out.fallback is None
        assert out.latency_ms > 0


def test_logit_output_gets_softmax_applied(models, tmp_path):
    import yaml

    from firmware_py.inference.signing import sign_model_set

    path = os.path.join(models["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(path))
    doc["tiers"][0]["output"]["applied_in_model"] = False
    yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
    sign_model_set(models["dir"], models["private"])
    eng = Engine(models["dir"], public_key=models["public"])
    try:
        x = frame()
        eng.input_view()[...] = x
        out = eng.invoke()
        q = reference_output("cls_int8.tflite", x).reshape(-1)
        qp = eng.active_tier.output.quantization
        logits = (q.astype(np.int64) - qp.zero_point) * qp.scale
        p = np.exp(logits - logits.max())
        p /= p.sum()
        assert np.allclose(list(out.probabilities.values()), p, rtol=1e-9)
        assert abs(sum(out.probabilities.values()) - 1.0) < 1e-9
    finally:
        eng.close()


@pytest.mark.parametrize("applied,threshold", [(True, 0.5), (False, 0.62)], ids=["probabilities", "logits"])
def test_segmentation_mask_matches_the_threshold(models, applied, threshold):
    import yaml

    from firmware_py.inference.signing import sign_model_set

    path = os.path.join(models["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(path))
    doc["tiers"][2]["output"].update(applied_in_model=applied, threshold={"value": threshold})
    yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
    sign_model_set(models["dir"], models["private"])
    eng = Engine(models["dir"], public_key=models["public"], task="segment")
    try:
        x = frame()
        eng.input_view()[...] = x
        out = eng.invoke()
        q = reference_output("seg_int8.tflite", x)[0, :, :, 0]
        qp = eng.active_tier.output.quantization
        value = (q.astype(np.int64) - qp.zero_point) * qp.scale
        prob = value if applied else 1.0 / (1.0 + np.exp(-value))
        assert out.mask.shape == (32, 32) and out.mask.dtype == np.uint8
        assert np.array_equal(out.mask, (prob >= threshold).astype(np.uint8))
        assert out.label is None and out.task == "segment"
    finally:
        eng.close()


def test_holding_the_input_view_across_invoke_is_a_clear_error(engine):
    view = engine.input_view()
    view[...] = 1
    with pytest.raises(ModelError, match="still referenced at invoke"):
        engine.invoke()
    del view
    engine.input_view()[...] = 1
    assert engine.invoke().tier == "cls-small"


def test_unknown_tier_and_task(models, engine):
    with pytest.raises(ModelError, match="no tier named 'nope'; known tiers: cls-small, cls-large, seg"):
        engine.request_tier("nope")
    with pytest.raises(ModelError, match="no tier for task 'detect'"):
        Engine(models["dir"], public_key=models["public"], task="detect")
    # the task is fixed for the engine's life: the daemon's preprocessing and ladder follow it
    with pytest.raises(ModelError, match=r"tier 'seg' is a segment tier but this engine runs the classify ladder"):
        engine.request_tier("seg")
    seg = Engine(models["dir"], public_key=models["public"], start_tier="seg")
    try:
        assert seg.task == "segment" and seg.ladder == ["seg"]
    finally:
        seg.close()


def test_ladder_and_status(engine):
    assert engine.ladder == ["cls-small", "cls-large"]
    st = engine.status()
    assert st["tier"] == "cls-small" and st["backend"] == "cpu" and st["accelerator"] is None
    assert st["model_set"]["verified"] is True


def test_swap_under_a_steady_frame_stream_loses_no_frame(engine):
    """A producer sends numbered frames at a fixed period; the swap lands between two frames."""
    n, period = 120, 0.004
    frames = {i: frame() for i in range(n)}
    q: queue.Queue = queue.Queue()

    def produce():
        ev = threading.Event()
        for i in range(n):
            q.put(i)
            ev.wait(period)
        q.put(None)

    ref_small = {i: reference_output("cls_int8.tflite", frames[i]) for i in range(n)}
    ref_large = {i: reference_output("cls_int8_b.tflite", frames[i]) for i in range(n)}
    results = []
    producer = threading.Thread(target=produce)
    producer.start()
    fut, back_requested = None, None
    while True:
        i = q.get()
        if i is None:
            break
        if i == 20:
            fut = engine.request_tier("cls-large")  # the power policy's thread in the daemon
        if i == 80:
            fut.result(30)  # on a starved machine the load may still run; frames keep queueing meanwhile
        if i > 80 and back_requested is None and results[-1][1].tier == "cls-large":
            engine.request_tier("cls-small")  # resident already: swapped without a reload
            back_requested = i
        engine.input_view()[...] = frames[i]
        results.append((i, engine.invoke()))
    producer.join()
    assert fut.result(1) == "cls-large" and back_requested is not None
    assert [i for i, _ in results] == list(range(n))  # nothing lost, nothing reordered
    tiers = [out.tier for _, out in results]
    first_large = tiers.index("cls-large")
    back = tiers.index("cls-small", first_large)
    # a swap lands at the end of a frame: the frame running at the request still finishes on its tier
    assert 20 < first_large <= 81 and back == back_requested + 1
    assert set(tiers[first_large:back]) == {"cls-large"} and set(tiers[back:]) == {"cls-small"}
    for i, out in results:  # every frame decoded by the tier it was written for
        ref = ref_large[i] if out.tier == "cls-large" else ref_small[i]
        assert out.label == LABELS[int(np.argmax(ref))]
    assert engine.status()["resident"] == ["cls-large", "cls-small"]


def hold_background_loads(engine, monkeypatch) -> threading.Event:
    """Tier loads on any thread but the test's wait until the returned Event is set.

    A load done on the frame path (the caller's thread) is not held, so a test that sees frames
    run while a load is held proves the load happens off the frame path.
    """
    release, test_thread = threading.Event(), threading.get_ident()
    real = engine._build_slot

    def held(tier):
        if threading.get_ident() != test_thread and not release.wait(60):
            raise ModelError("test: held load never released")
        return real(tier)

    monkeypatch.setattr(engine, "_build_slot", held)
    return release


def test_frames_keep_running_on_the_current_tier_while_the_next_one_loads(engine, monkeypatch):
    release = hold_background_loads(engine, monkeypatch)
    fut = engine.request_tier("cls-large")
    for _ in range(25):  # however long the load and warm-up take, no frame waits for them
        x = frame()
        engine.input_view()[...] = x
        out = engine.invoke()
        assert out.tier == "cls-small"
        assert out.label == LABELS[int(np.argmax(reference_output("cls_int8.tflite", x)))]
    assert not fut.done()
    release.set()
    assert fut.result(30) == "cls-large"
    tiers = []
    for _ in range(2):
        engine.input_view()[...] = 0
        tiers.append(engine.invoke().tier)
    assert tiers == ["cls-small", "cls-large"]  # the frame running when it became ready finishes on its tier


def test_a_load_still_running_when_the_set_is_reloaded_is_discarded(engine, models, monkeypatch):
    from firmware_py.inference.signing import sign_model_set

    release = hold_background_loads(engine, monkeypatch)
    fut = engine.request_tier("cls-large")
    sign_model_set(models["dir"], models["private"])
    assert engine.reload() is True
    reloaded = engine._active
    release.set()  # the load built from the replaced set finishes only now
    with pytest.raises(ModelError, match="model set was reloaded while it loaded; request it again"):
        fut.result(30)
    for _ in range(2):
        engine.input_view()[...] = 0
        assert engine.invoke().tier == "cls-small"
    assert engine._active is reloaded and engine.status()["resident"] == ["cls-small"]


def test_a_load_still_running_survives_a_refused_reload(engine, models, monkeypatch):
    import yaml

    from firmware_py.inference.signing import sign_model_set

    release = hold_background_loads(engine, monkeypatch)
    fut = engine.request_tier("cls-large")
    path = os.path.join(models["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(path))
    doc["tiers"] = [t for t in doc["tiers"] if t["task"] == "segment"]  # signed, but no classify ladder
    yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
    for name in ("cls_int8.tflite", "cls_int8_b.tflite"):  # moved aside, as an update would, so the set verifies
        os.rename(os.path.join(models["dir"], name), os.path.join(models["dir"], "..", name))
    sign_model_set(models["dir"], models["private"])
    assert engine.reload() is False  # verified, then refused at tier load: the old set is current again
    assert engine.events.recent[-1]["kind"] == "reload_failed"
    for name in ("cls_int8.tflite", "cls_int8_b.tflite"):
        os.rename(os.path.join(models["dir"], "..", name), os.path.join(models["dir"], name))
    release.set()
    assert fut.result(30) == "cls-large"
    for expected in ("cls-small", "cls-large"):
        engine.input_view()[...] = 0
        assert engine.invoke().tier == expected


def test_latest_request_wins_over_a_load_still_running(engine):
    fut = engine.request_tier("cls-large")
    engine.request_tier("cls-small")  # the policy changed its mind before the load finished
    assert fut.result(10) == "cls-large"
    engine.input_view()[...] = 0
    assert engine.invoke().tier == "cls-small"
    assert "cls-large" in engine.status()["resident"]  # kept warm: a later request swaps at once
    f2 = engine.request_tier("cls-large")
    assert f2.done()  # resident: nothing to load
    engine.input_view()[...] = 0
    assert engine.invoke().tier == "cls-small"  # the frame in flight finishes on its tier...
    engine.input_view()[...] = 0
    assert engine.invoke().tier == "cls-large"  # ...and the next one runs on the new tier


def test_active_tier_read_before_input_view_names_the_tier_that_runs(engine):
    """The daemon picks its preprocessor from active_tier, then asks for the view."""
    fut = engine.request_tier("cls-large")
    fut.result(10)
    seen = []
    for _ in range(3):
        tier = engine.active_tier
        engine.input_view()[...] = 0
        seen.append((tier.name, engine.invoke().tier))
    assert all(a == b for a, b in seen) and seen[-1][0] == "cls-large"


def test_memory_budget_decides_how_many_tiers_stay_resident(models):
    tiny = Engine(models["dir"], public_key=models["public"], memory_budget_mb=0.001)
    roomy = Engine(models["dir"], public_key=models["public"], memory_budget_mb=64)
    try:
        for eng in (tiny, roomy):
            eng.request_tier("cls-large", wait=True)
            eng.input_view()[...] = 0
            assert eng.invoke().tier == "cls-large"
        assert tiny.status()["resident"] == ["cls-large"]  # the old tier was evicted
        assert roomy.status()["resident"] == ["cls-small", "cls-large"]
    finally:
        tiny.close()
        roomy.close()


def test_from_config_accepts_the_daemon_config_object(models):
    from types import SimpleNamespace

    cfg = SimpleNamespace(
        models=SimpleNamespace(manifest=os.path.join(models["dir"], "manifest.yaml"), public_key=models["public"],
                               task="classify", start_tier="cls-large", memory_budget_mb=32.0,
                               isolation_timeout_s=10.0),
        accelerator=SimpleNamespace(kind="none", cpu_threads=1, invoke_deadline_ms=500.0, reattach_initial_s=1.0,
                                    reattach_max_s=10.0),
    )
    eng = Engine.from_config(cfg)
    try:
        assert eng.active_tier.name == "cls-large" and eng.backend_name == "cpu" and eng.accelerator is None
    finally:
        eng.close()


def test_from_config_without_a_public_key_trusts_the_dev_key_and_says_so(models):
    from firmware_py.inference.engine import default_public_key
    from firmware_py.inference.signing import sign_model_set

    dev_private = os.path.join(os.path.dirname(default_public_key()), "dev-ed25519.pem")
    if not os.path.exists(dev_private):
        pytest.skip("models/keys/dev-ed25519.pem not present (installed package)")
    sign_model_set(models["dir"], dev_private)
    events = []
    eng = Engine.from_config({"models": {"manifest": models["dir"]}}, on_event=events.append)
    try:
        assert eng.status()["model_set"]["verified"] is True
        warning = [e for e in events if e["kind"] == "development-key"]
        assert len(warning) == 1 and "set models.public_key" in warning[0]["message"]
    finally:
        eng.close()
    with pytest.raises(SecurityError, match="this device trusts key"):  # a configured key is enforced
        Engine.from_config({"models": {"manifest": models["dir"], "public_key": models["public"]}})


def test_reload_swaps_to_the_reloaded_tier_between_frames(engine, models):
    from firmware_py.inference.signing import sign_model_set

    engine.request_tier("cls-large", wait=True)
    engine.request_tier("cls-small", wait=True)
    old_slots = dict(engine._resident)
    assert sorted(old_slots) == ["cls-large", "cls-small"]
    sign_model_set(models["dir"], models["private"])  # same set, re-signed: a reload still rebuilds
    assert engine.reload() is True
    engine.input_view()[...] = 3
    out = engine.invoke()
    assert out.tier == "cls-small" and engine._active is not old_slots["cls-small"]
    # every runtime of the replaced set was released, the active one and the warm spare alike
    assert all(s.cpu.model is None for s in old_slots.values())
    assert engine.status()["resident"] == ["cls-small"]
