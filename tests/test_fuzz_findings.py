"""Regression tests for what the fuzzers found (issue 18), one per finding, so each stays fixed."""
import os

import pytest

from firmware_py.inference.backend import CANDIDATES, find_backend
from firmware_py.inference.tflite import TFLiteModel
from firmware_py.inference.validate import ModelCheckError

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def test_a_model_whose_tensor_name_is_not_utf8_is_refused_in_one_line():
    """`make fuzz-models N=300`: 5 mutations (an edge word over a string offset) left a tensor
    name that is not UTF-8; the interpreter's get_input_details() let UnicodeDecodeError out."""
    with open(os.path.join(DATA, "cls_int8.tflite"), "rb") as f:
        data = f.read()
    name = b"serving_default_input_1:0"
    assert data.count(name) == 1
    bad = data.replace(name, b"\xff" + name[1:])
    with pytest.raises(ModelCheckError, match=r"x\.tflite: a tensor name in the file is not UTF-8 \(byte 0\); "
                                              r"the file is corrupt, rebuild it$") as e:
        TFLiteModel(find_backend(CANDIDATES), bad, "x.tflite")
    assert e.value.kind == "load" and "\n" not in str(e.value)


def test_a_control_header_lying_about_its_length_does_not_hold_the_frame_behind_it():
    """tests/test_fuzz_parser.py: a CRC-valid HELLO header announcing 75 bytes, then an intact
    frame: the parser waited for the 75 bytes, so the frame sat in its scan buffer until more
    came (at a frozen probe's telemetry rate, seconds; at the end of a stream, forever)."""
    import numpy as np

    from conftest_drivers import frame_bytes, small_geometry
    from firmware_py.drivers import protocol as P
    from firmware_py.drivers.parser import FrameParser

    g = small_geometry(1, 2)
    frame = frame_bytes(0, g, np.array([[217, 163]], np.uint8))
    p = FrameParser(version=P.SUPPORTED_MAX)
    out = p.feed(P.encode_header(P.MsgType.HELLO, 75, P.SUPPORTED_MAX) + frame)
    assert [f.seq for f in out] == [0]
    assert p.control_rejected == 1 and p.bytes_discarded == 16 and p.pending_bytes == 0


def test_a_tier_name_or_digest_with_a_trailing_newline_is_refused():
    """tests/test_fuzz_manifest.py: `$` in the name and sha256 patterns matches before a final
    newline, so "cls\\n" passed as a tier name and its error lines broke in two."""
    import yaml

    from firmware_py.errors import ModelError
    from firmware_py.inference.manifest import parse_manifest

    with open(os.path.join(os.path.dirname(os.path.dirname(DATA)), "models", "manifest.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["tiers"][0]["name"] += "\n"
    with pytest.raises(ModelError, match=r"tiers\[0\]\.name: .*use 1-64 letters") as e:
        parse_manifest(yaml.safe_dump(doc), "m.yaml")
    assert "\n" not in str(e.value)


# `make fuzz-models` with tflite-runtime (tests/fuzz_models.py -n 300 --interpreter
# tflite_runtime.interpreter): mutations that passed the flatbuffer check. Loaded by tflite-runtime
# in a fresh process, #19 crashes every time (SIGSEGV); the others read outside the file, so
# whether they crash depends on what lies there: #132 passed the child-process check and then
# killed the process playing the daemon (exit 139), #130 crashed only the child, #131 passed both.
# The check now walks the rest of the schema the interpreter dereferences (tensor names,
# quantization, operator codes and tensor indices, options tables, signatures, metadata).
STRUCTURAL = {
    "019": ("cls_int8_b.tflite", {727: 120, 2178: 4, 4222: 2, 4692: 69}, "lie outside the 5056-byte file"),
    "112": ("cls_int8.tflite", {2028: 240, 2456: 213, 3577: 1}, "operator tensor index 917504 out of range"),
    "130": ("seg_int8.tflite", {980: 255, 981: 255}, "lie outside the 2064-byte file"),
    "131": ("seg_int8.tflite", {608: 255, 609: 255, 610: 255, 611: 255}, "lie outside the 2064-byte file"),
    "132": ("cls_int8.tflite", {4792: 128}, "vtable at 4864 has size 25971"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURAL))
def test_a_flatbuffer_pointing_outside_itself_is_refused_before_any_interpreter_sees_it(case):
    from firmware_py.errors import ModelError
    from firmware_py.inference.flatbuffer import check_flatbuffer

    name, patch, reason = STRUCTURAL[case]
    with open(os.path.join(DATA, name), "rb") as f:
        data = bytearray(f.read())
    for pos, value in patch.items():
        data[pos] = value
    with pytest.raises(ModelError, match=f"m.tflite: corrupt or truncated TFLite flatbuffer \\(.*{reason}"):
        check_flatbuffer(bytes(data), "m.tflite")


def test_every_shipped_and_fixture_model_passes_the_flatbuffer_check():
    import glob

    from firmware_py.inference.flatbuffer import check_flatbuffer

    repo = os.path.dirname(os.path.dirname(DATA))
    files = glob.glob(os.path.join(DATA, "*.tflite")) + glob.glob(os.path.join(repo, "models", "*.tflite"))
    assert len(files) >= 8
    for path in files:
        with open(path, "rb") as f:
            check_flatbuffer(f.read(), path)
