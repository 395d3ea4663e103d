"""Child-process model check: a file that crashes, hangs or raises is named and refuses the set at
start and at reload (the last good set keeps serving); `models sign` and `models verify` refuse
what cannot run, and a refused sign leaves no signature; a seeded fuzz run is survived."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from fuzz_models import fuzz, install  # noqa: E402
from model_sets import (TWO_CLASSIFIERS, build_fake_npu_or_skip, fake_npu_invocations, fixture,  # noqa: E402
                        make_model_set)

from firmware_py.errors import ModelError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.accelerators.external import ExternalDelegate  # noqa: E402
from firmware_py.inference.cli import main as models_main  # noqa: E402
from firmware_py.inference.flatbuffer import _Reader  # noqa: E402
from firmware_py.inference.isolation import check_model_set  # noqa: E402
from firmware_py.inference.manifest import load_manifest  # noqa: E402

THREE = TWO_CLASSIFIERS + [{"name": "seg", "cpu": "seg_int8.tflite", "task": "segment", "rank": 0}]
# Single bit flips found by seeded search (tests/fuzz_models.py). The first kills a tflite-runtime
# 2.14 loader with SIGSEGV in the Interpreter constructor (ai-edge-litert's verifier refuses it);
# with the second, both packages' get_input_details() raise UnicodeDecodeError (a tensor name),
# which the engine's load path now refuses in one line (tests/test_fuzz_findings.py).
SEGFAULT = ("cls_int8.tflite", 3609, 2)
RAISES = ("seg_int8.tflite", 1042, 7)


def flipped(name: str, byte: int, bit: int) -> bytes:
    data = bytearray(open(fixture(name), "rb").read())
    data[byte] ^= 1 << bit
    return bytes(data)


@pytest.fixture(scope="module")
def npu(tmp_path_factory):
    """The test delegate, and a delegate of it whose invoke SIGSEGVs (crash_file exists)."""
    folder = tmp_path_factory.mktemp("npu")
    lib = build_fake_npu_or_skip(str(folder))
    (folder / "crash").write_text("")
    return lib, {"crash_file": str(folder / "crash")}


def with_npu_build(folder: str, tiers: list[dict]) -> dict:
    """A signed set; tier cls-small also has an `external` build (cls_int8_b.tflite) for the test delegate."""
    tiers = [dict(t, accel={"external": "cls_int8_b.tflite"}) if t["name"] == "cls-small" else t for t in tiers]
    return make_model_set(folder, tiers)


def test_each_file_is_named_with_its_reason_and_the_files_after_a_crash_are_checked(tmp_path, npu):
    s = with_npu_build(str(tmp_path / "models"), THREE)
    install(s["dir"], "seg_int8.tflite", flipped(*RAISES), s["private"])
    lib, crash = npu
    results = check_model_set(load_manifest(os.path.join(s["dir"], "manifest.yaml")),
                              accelerator=ExternalDelegate(library=lib, options=crash))
    assert [(r.tier, r.backend, r.status) for r in results] == [
        ("cls-small", "cpu", "ok"), ("cls-small", "external", "crashed"),
        ("cls-large", "cpu", "ok"), ("seg", "cpu", "refused")]  # after the crash: checked in a second child
    crashed, raised = results[1], results[3]
    assert crashed.reason == f"{s['dir']}/cls_int8_b.tflite: killed the check process (signal 11, SIGSEGV) while " \
                            "invoking it; the file cannot run here, rebuild it"
    assert raised.reason == f"{s['dir']}/seg_int8.tflite: a tensor name in the file is not UTF-8 (byte 6); " \
                           "the file is corrupt, rebuild it"
    assert "\n" not in raised.reason


def test_a_crashing_build_refuses_the_set_at_start_in_one_line(tmp_path, npu):
    s = with_npu_build(str(tmp_path / "models"), TWO_CLASSIFIERS)
    lib, crash = npu
    events = []
    with pytest.raises(ModelError) as e:
        Engine(s["dir"], public_key=s["public"], accelerator=ExternalDelegate(library=lib, options=crash),
               on_event=events.append)
    assert "cls_int8_b.tflite: killed the check process (signal 11, SIGSEGV)" in str(e.value)
    assert "\n" not in str(e.value)
    assert [(ev["kind"], ev["security"]) for ev in events] == [("model-crashed", True)]


def test_a_crashing_update_is_refused_at_reload_and_the_last_good_set_keeps_serving(tmp_path, npu):
    s = make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS)  # no build the delegate runs
    lib, crash = npu
    events = []
    eng = Engine(s["dir"], public_key=s["public"], accelerator=ExternalDelegate(library=lib, options=crash),
                 on_event=events.append)
    try:
        good = eng.models.digest
        with_npu_build(s["dir"], TWO_CLASSIFIERS)  # the update, signed with the set's key, adds one
        assert eng.reload() is False
        assert eng.models.digest == good and events[-1]["kind"] == "model-crashed" and events[-1]["security"]
        assert "cls_int8_b.tflite: killed the check process" in events[-1]["message"]
        assert "keeping the last known good model set" in events[-1]["message"]
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "cls-small"
        assert eng.request_tier("cls-large", wait=True).result() == "cls-large"  # the good set's other tier
    finally:
        eng.close()


def test_a_file_that_kills_a_bare_engine_is_refused_by_the_checked_one(tmp_path):
    s = make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS)
    install(s["dir"], "cls_int8_b.tflite", flipped(*SEGFAULT), s["private"])
    code = ("import sys; from firmware_py.inference import Engine; "
            "e = Engine(sys.argv[1], public_key=sys.argv[2], isolation_timeout_s=None); "
            "e.request_tier('cls-large', wait=True)")
    bare = subprocess.run([sys.executable, "-c", code, s["dir"], s["public"]], capture_output=True)
    if bare.returncode >= 0:
        pytest.skip("this interpreter package refuses the damaged fixture instead of crashing on it")
    with pytest.raises(ModelError, match=rf"cls_int8_b.tflite: killed the check process \(signal {-bare.returncode}, "):
        Engine(s["dir"], public_key=s["public"])


def test_a_hanging_build_is_killed_and_refuses_the_set(tmp_path, npu):
    """The accelerator build runs in the child too, with its delegate: there it hangs past the timeout."""
    lib, _ = npu
    s = with_npu_build(str(tmp_path / "models"), TWO_CLASSIFIERS)
    manifest = load_manifest(os.path.join(s["dir"], "manifest.yaml"))
    results = check_model_set(manifest, accelerator=ExternalDelegate(library=lib))
    assert [(r.backend, r.status, r.ran) for r in results] == [("cpu", "ok", True), ("external", "ok", True),
                                                               ("cpu", "ok", True)]
    assert fake_npu_invocations(lib) == 0  # it ran in the child, not here
    hang = tmp_path / "hang"
    hang.write_text("")
    loader = ExternalDelegate(library=lib, options={"hang_file": str(hang), "hang_ms": "600000"})
    with pytest.raises(ModelError, match=r"cls_int8_b.tflite: still invoking it after the 1 s check timeout"):
        Engine(s["dir"], public_key=s["public"], accelerator=loader, isolation_timeout_s=1.0)


def uint8_input(data: bytes) -> bytes:
    """cls_int8.tflite with its input tensor's type set to UINT8 (what a uint8-quantized build declares)."""
    r = _Reader(data)
    sg = next(r.tables(r.table(r.indirect(0)), 2))
    start, _ = r.vector(sg, 1, 4)
    tensor = list(r.tables(sg, 0))[int.from_bytes(data[start:start + 4], "little")]
    b = bytearray(data)
    b[r.field(tensor, 1)] = 3  # TensorType UINT8
    return bytes(b)


def ethos_u(data: bytes) -> bytes:
    """cls_edgetpu.tflite with its custom op renamed `ethos-u` (what Vela leaves in an Ethos-U build)."""
    at = data.index(b"edgetpu-custom-op")
    b = bytearray(data)
    b[at - 4:at] = (7).to_bytes(4, "little")
    b[at:at + 17] = b"ethos-u".ljust(17, b"\0")
    return bytes(b)


UNRUNNABLE = [
    ("uint8 model", lambda: uint8_input(open(fixture("cls_int8.tflite"), "rb").read()),
     "the interpreter cannot load it"),
    ("Edge TPU build as CPU twin", lambda: open(fixture("cls_edgetpu.tflite"), "rb").read(),
     "compiled for the Edge TPU"),
    ("Ethos-U build as CPU twin", lambda: ethos_u(open(fixture("cls_edgetpu.tflite"), "rb").read()),
     "uses custom op 'ethos-u' that no loaded delegate provides"),
]


@pytest.mark.parametrize("make, says", [u[1:] for u in UNRUNNABLE], ids=[u[0] for u in UNRUNNABLE])
def test_sign_and_verify_refuse_what_cannot_run_and_a_refused_sign_leaves_no_signature(tmp_path, capsys, make,
                                                                                        says):
    s = make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS)
    sig = os.path.join(s["dir"], "manifest.yaml.sig")
    assert models_main(["verify", "--public-key", s["public"], s["dir"]]) == 0
    assert "2 build(s) loaded and ran in a child process" in capsys.readouterr().out
    install(s["dir"], "cls_int8_b.tflite", make(), s["private"])  # signed by a signer without the check
    assert models_main(["verify", "--public-key", s["public"], s["dir"]]) == 1
    err = capsys.readouterr().err
    assert f"{s['dir']}/cls_int8_b.tflite: " in err and says in err and err.count("\n") == 1
    assert os.path.exists(sig)
    assert models_main(["sign", "--key", s["private"], s["dir"]]) == 1
    err = capsys.readouterr().err
    assert says in err and f"(not signed; removed the old signature {sig})" in err and err.count("\n") == 1
    assert not os.path.exists(sig)  # nothing vouches for the refused set any more
    assert models_main(["verify", "--public-key", s["public"], s["dir"]]) == 1
    assert "signature missing" in capsys.readouterr().err


def test_fuzzed_signed_files_at_start_and_reload_are_survived(tmp_path, capsys):
    """Each mutation: an Engine starts on it (serves or refuses in one line) and a running engine reloads
    it (refused: the digest in use is unchanged); frames run on every tier after each. A crash that
    escaped the child-process check would kill this test process."""
    n = 24
    tally = fuzz(n, seed=1, workdir=str(tmp_path))
    for path in ("start", "reload"):
        assert sum(tally[path].values()) == n
    with capsys.disabled():
        print(f"\nmodel fuzz, {n} mutations: " + "; ".join(
            f"{path}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for path, c in tally.items()))
