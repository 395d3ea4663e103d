"""Signed model set: each tampering is refused, logged as a security event, and the last good set stays active."""
import logging
import os
import shutil
import sys

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
from model_sets import TWO_CLASSIFIERS, fixture, make_model_set  # noqa: E402

from firmware_py.errors import ModelError, SecurityError  # noqa: E402
from firmware_py.inference import Engine  # noqa: E402
from firmware_py.inference.cli import main as models_main  # noqa: E402
from firmware_py.inference.signing import sign_model_set, verify_model_set, write_keypair  # noqa: E402


@pytest.fixture
def signed(tmp_path):
    return make_model_set(str(tmp_path / "models"), TWO_CLASSIFIERS)


def flip_byte(path, offset=100):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def tamper_manifest(s):
    flip_byte(os.path.join(s["dir"], "manifest.yaml"), 40)


def tamper_model(s):
    flip_byte(os.path.join(s["dir"], "cls_int8.tflite"), 600)


def drop_signature(s):
    os.remove(os.path.join(s["dir"], "manifest.yaml.sig"))


def resign_with_other_key(s):
    other = os.path.dirname(s["dir"])
    write_keypair(os.path.join(other, "other.pem"), os.path.join(other, "other.pub"))
    assert models_main(["sign", "--key", os.path.join(other, "other.pem"), "--manifest", s["dir"]]) == 0


def add_extra_file(s):
    shutil.copyfile(fixture("cls_int8_48.tflite"), os.path.join(s["dir"], "smuggled.tflite"))


def remove_listed_file(s):
    os.remove(os.path.join(s["dir"], "cls_int8_b.tflite"))


def garble_signature(s):
    with open(os.path.join(s["dir"], "manifest.yaml.sig"), "w") as f:
        f.write("ed25519 0011 not-base64!!\n")


TAMPERING = [
    ("flipped byte in manifest", tamper_manifest, "bad-signature"),
    ("flipped byte in model", tamper_model, "digest-mismatch"),
    ("missing signature", drop_signature, "missing-signature"),
    ("wrong key", resign_with_other_key, "wrong-key"),
    ("extra file", add_extra_file, "extra-file"),
    ("missing file", remove_listed_file, "missing-file"),
    ("garbled signature", garble_signature, "unreadable-signature"),
]
IDS = [t[0] for t in TAMPERING]


@pytest.mark.parametrize("content", [None, b"not a key"], ids=["missing", "garbage"])
def test_unreadable_public_key_is_its_own_security_refusal(signed, tmp_path, content):
    key = tmp_path / "trusted.pub"
    if content is not None:
        key.write_bytes(content)
    events = []
    with pytest.raises(SecurityError, match="models.public_key") as e:
        Engine(signed["dir"], public_key=str(key), on_event=events.append)
    assert e.value.kind == "unreadable-public-key" and "\n" not in str(e.value)
    assert [ev["kind"] for ev in events] == ["unreadable-public-key"] and events[0]["security"]


def test_untouched_set_verifies(signed):
    manifest, _ = verify_model_set(signed["dir"], signed["public"])
    assert [t.name for t in manifest.tiers] == ["cls-small", "cls-large"]


@pytest.mark.parametrize("name,tamper,kind", TAMPERING, ids=IDS)
def test_tampered_set_is_refused_at_load(signed, name, tamper, kind, caplog):
    tamper(signed)
    with pytest.raises(SecurityError) as e:
        verify_model_set(signed["dir"], signed["public"])
    assert e.value.kind == kind and "\n" not in str(e.value)
    events = []
    with caplog.at_level(logging.ERROR, logger="firmware_py.security"):
        with pytest.raises(SecurityError):
            Engine(signed["dir"], public_key=signed["public"], on_event=events.append)
    assert [ev["kind"] for ev in events] == [kind] and events[0]["security"]
    assert any(r.name == "firmware_py.security" and kind in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name,tamper,kind", TAMPERING, ids=IDS)
def test_tampered_update_keeps_last_known_good_set_running(signed, name, tamper, kind):
    events = []
    eng = Engine(signed["dir"], public_key=signed["public"], on_event=events.append)
    try:
        good_digest = eng.models.digest
        eng.input_view()[...] = 7
        before = eng.invoke()
        tamper(signed)
        assert eng.reload() is False
        assert eng.models.digest == good_digest and eng.active_tier.name == "cls-small"
        assert events[-1]["kind"] == kind and events[-1]["security"]
        assert "keeping the last known good model set" in events[-1]["message"]
        eng.input_view()[...] = 7  # frames keep flowing on the verified tier already in memory
        after = eng.invoke()
        assert after.probabilities == before.probabilities and after.tier == "cls-small"
    finally:
        eng.close()


def signed_update(s, edit, *, exit_code=0) -> None:
    """Edit the manifest (edit(doc) changes it in place) and sign it with the set's key: a valid update."""
    path = os.path.join(s["dir"], "manifest.yaml")
    doc = yaml.safe_load(open(path))
    edit(doc)
    yaml.safe_dump(doc, open(path, "w"), sort_keys=False)
    assert models_main(["sign", "--key", s["private"], "--manifest", s["dir"]]) == exit_code


def test_good_update_is_taken_at_reload(signed):
    eng = Engine(signed["dir"], public_key=signed["public"])
    try:
        old = eng.models.digest
        signed_update(signed, lambda doc: doc["tiers"][0].update(metrics={"accuracy": 0.5}))
        assert eng.reload() is True and eng.models.digest != old
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "cls-small"
        assert eng.manifest.tier("cls-small").metrics == {"accuracy": 0.5}
    finally:
        eng.close()


def test_model_swapped_after_verification_is_refused_at_tier_load(signed):
    """The digest is checked again on the bytes handed to the interpreter (no check-then-use gap)."""
    eng = Engine(signed["dir"], public_key=signed["public"])
    try:
        tamper_model_b = os.path.join(signed["dir"], "cls_int8_b.tflite")
        flip_byte(tamper_model_b, 700)
        fut = eng.request_tier("cls-large")
        with pytest.raises(ModelError, match="sha256 .* does not match the manifest"):
            fut.result(10)
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "cls-small"
        assert "cls-large" in eng.status()["refused"]
    finally:
        eng.close()


def test_cli_sign_verify_keygen_exit_codes(tmp_path, signed, capsys):
    assert models_main(["verify", "--public-key", signed["public"], "--manifest", signed["dir"]]) == 0
    assert "OK" in capsys.readouterr().out
    priv, pub = str(tmp_path / "k.pem"), str(tmp_path / "k.pub")
    assert models_main(["keygen", "--private", priv, "--public", pub]) == 0
    assert oct(os.stat(priv).st_mode & 0o777) == "0o600"
    assert models_main(["keygen", "--private", priv, "--public", pub]) == 2  # refuses to overwrite
    assert models_main(["verify", "--public-key", pub, "--manifest", signed["dir"]]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "this device trusts key" in err[-1]
    assert models_main(["sign", "--manifest", signed["dir"]]) == 2  # --key missing
    # the positional form the build pipeline uses
    assert models_main(["sign", "--key", signed["private"], os.path.join(signed["dir"], "manifest.yaml")]) == 0
    assert models_main(["verify", "--public-key", signed["public"], signed["dir"]]) == 0
    assert models_main([]) == 2
    assert models_main(["list", "--manifest", signed["dir"], "--public-key", signed["public"], "--json"]) == 0
    assert '"signature": "verified"' in capsys.readouterr().out


def test_sign_refuses_a_set_whose_files_do_not_match(signed):
    tamper_model(signed)
    assert models_main(["sign", "--key", signed["private"], "--manifest", signed["dir"]]) == 1


def test_unsigned_loading_is_a_logged_security_event(signed):
    events = []
    eng = Engine(signed["dir"], public_key=None, on_event=events.append)
    try:
        assert events[0]["kind"] == "signature-not-checked" and events[0]["security"]
        assert eng.status()["model_set"]["verified"] is False
    finally:
        eng.close()


def test_dev_key_verifies_the_committed_model_set_when_present():
    root = os.path.join(os.path.dirname(__file__), "..", "models")
    if not os.path.exists(os.path.join(root, "manifest.yaml.sig")):
        pytest.skip("models/manifest.yaml.sig not present")
    # Fails when the trainer rebuilt models without re-signing: `firmware-py models sign --key
    # models/keys/dev-ed25519.pem` fixes it.
    manifest, _ = verify_model_set(root, os.path.join(root, "keys", "dev-ed25519.pub"))
    assert manifest.tiers


def test_signed_update_without_the_running_task_keeps_the_last_good_set(signed):
    """A valid, signed set that has no tier for the engine's task: refused in one line, not a crash."""
    eng = Engine(signed["dir"], public_key=signed["public"])
    try:
        good = eng.models.digest

        def to_segmenters(doc):
            for t in doc["tiers"]:
                t.update(task="segment", output={**t["output"], "decode": "argmax"})
                t["output"].pop("threshold")

        signed_update(signed, to_segmenters)
        assert eng.reload() is False
        assert eng.models.digest == good and eng.manifest.ladder("classify")
        assert eng.events.recent[-1]["kind"] == "reload_failed"
        assert "no tier for task 'classify'" in eng.events.recent[-1]["message"]
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "cls-small"
    finally:
        eng.close()


def test_signed_update_whose_tiers_cannot_load_keeps_the_last_good_set(signed):
    """Correctly signed, but the new build is a float model: refused at load, old set kept."""
    eng = Engine(signed["dir"], public_key=signed["public"])
    try:
        good = eng.models.digest
        shutil.copyfile(fixture("cls_float.tflite"), os.path.join(signed["dir"], "cls_int8.tflite"))
        shutil.copyfile(fixture("cls_float.tflite"), os.path.join(signed["dir"], "cls_int8_b.tflite"))
        import hashlib

        data = open(os.path.join(signed["dir"], "cls_int8.tflite"), "rb").read()

        def point_at_float_builds(doc):
            for t in doc["tiers"]:
                t["files"]["cpu"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))

        signed_update(signed, point_at_float_builds, exit_code=1)  # `models sign` refuses float builds...
        assert not os.path.exists(os.path.join(signed["dir"], "manifest.yaml.sig"))
        sign_model_set(signed["dir"], signed["private"], load_check=False)  # ...an older signer did not
        assert eng.reload() is False
        assert eng.models.digest == good
        assert eng.events.recent[-1]["kind"] == "reload_failed"
        eng.input_view()[...] = 0
        assert eng.invoke().tier == "cls-small"
    finally:
        eng.close()
