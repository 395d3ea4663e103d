"""Adding a probe geometry is one class plus one kind-table entry.

``SteeredLinearGeometry`` is defined here and registered for the test only (what an entry in
``firmware_py.geometry.PROTOCOL_KINDS`` does for good). Nothing else in the project knows it, yet
its frames are encoded, parsed back by the real FrameParser, simulated by the phantom and scan
converted by the NumPy reference and the Cython Preprocessor. It has a field of its own and a
sub-header of another size than the built-in kinds', so nothing may assume either.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import pytest

from firmware_py.drivers import protocol as P
from firmware_py.drivers.parser import FrameParser
from firmware_py.drivers.phantom import SpecklePhantom, make_geometry
from firmware_py.geometry import Geometry, ProbeKind, base, register_kind, registered_kinds
from firmware_py.kernels import Preprocessor, reference

STEERED = 5
V = P.SUPPORTED_MAX


@dataclass(frozen=True, slots=True)
class SteeredLinearGeometry(Geometry):
    """A linear array whose lines are all steered ``steer_deg`` from vertical (spatial
    compounding): line ``i`` leaves the face at the linear lateral ``x_i``; depth is the range
    along the line, so the sample at range ``d`` lies at ``x_i + d sin(a)``, ``d cos(a)``."""

    steer_deg: float = 0.0

    kind_name = "steered"
    typical = {"end_depth_mm": 40.0, "width": 38.4, "radius_mm": 0.0}
    SUBHEADER = struct.Struct("<ff")  # width, steer_deg: 8 bytes where the built-in kinds have 16

    def _shape_problems(self) -> list[str]:
        out = []
        if not (math.isfinite(self.width) and self.width > 0):
            out.append(f"aperture width {self.width} mm must be > 0")
        if not -45.0 < self.steer_deg < 45.0:
            out.append(f"steering angle {self.steer_deg} deg must be within +-45")
        return out

    def bounding_box_mm(self):
        a = math.radians(self.steer_deg)
        s, e = self.start_depth_mm, self.end_depth_mm
        shifts = (s * math.sin(a), e * math.sin(a))
        return (-self.width / 2 + min(shifts), self.width / 2 + max(shifts), s * math.cos(a), e * math.cos(a))

    def forward_mm(self, lateral, depth):
        a = math.radians(self.steer_deg)
        return tuple(np.broadcast_arrays(lateral + depth * math.sin(a), depth * math.cos(a)))

    def inverse_mm(self, x, z):
        a = math.radians(self.steer_deg)
        return x - z * math.tan(a), z / math.cos(a)

    def encode_subheader(self) -> bytes:
        return self.SUBHEADER.pack(self.width, self.steer_deg)

    @classmethod
    def decode_subheader(cls, buf, offset):
        width, steer = cls.SUBHEADER.unpack_from(buf, offset)
        return {"width": width, "steer_deg": steer}


@pytest.fixture
def steered(monkeypatch):
    """Register the toy kind for one test; the registry is restored afterwards."""
    monkeypatch.setattr(base, "_KINDS", dict(base._KINDS))
    register_kind(STEERED, SteeredLinearGeometry)
    # values exact in float32, so the 8-byte sub-header round-trips them exactly
    return Geometry(STEERED, 24, 96, 8, 2.0, 50.0, 30.0, tgc_db=(0.0, 3.0), steer_deg=20.0)


def test_toy_kind_is_built_validated_and_named_by_the_registry(steered):
    assert type(steered) is SteeredLinearGeometry and steered.kind == STEERED
    assert STEERED in registered_kinds()
    assert make_geometry("steered", 8, 16).kind == STEERED  # typical defaults from the class
    with pytest.raises(ValueError, match="steering angle 60.0 deg"):
        Geometry(STEERED, 8, 16, 8, 0.0, 10.0, 30.0, steer_deg=60.0)


def test_toy_frames_go_through_the_real_parser(steered):
    linear = Geometry(ProbeKind.LINEAR, 24, 96, 8, 2.0, 50.0, 30.0)
    rng = np.random.default_rng(3)
    frames = [(g, rng.integers(0, 256, (24, 96)).astype(np.uint8)) for g in (steered, linear, steered)]
    assert len(P.encode_frame_subheader(0, 0, steered)) == 40 + 8 + 2 * 8
    p = FrameParser(version=V)
    got = p.feed(b"".join(P.encode_frame(i, 10 * i, g, s) for i, (g, s) in enumerate(frames)))
    assert len(got) == 3 and p.frames_rejected == dict.fromkeys(p.frames_rejected, 0)
    for f, (g, s) in zip(got, frames):
        assert type(f.geometry) is type(g) and f.geometry == g
        assert f.samples.ctypes.data % 8 == 0
        np.testing.assert_array_equal(f.samples, s)
        f.release()
    info = P.ProbeInfo(V, V, V, "S1", "SN", "fw", registered_kinds(), 1 << 20)
    caps = FrameParser().feed(P.encode_capabilities(info))[0].value
    assert caps.geometries == registered_kinds() and "steered" in caps.as_dict()["geometries"]


def test_a_frame_of_an_unregistered_kind_is_rejected_as_invalid(steered, monkeypatch):
    data = P.encode_frame(0, 0, steered, np.zeros((24, 96), np.uint8))
    monkeypatch.setattr(base, "_KINDS", {k: v for k, v in base._KINDS.items() if k != STEERED})
    p = FrameParser(version=V)
    assert p.feed(data) == []
    assert p.frames_rejected["invalid"] == 1 and "kind 5 is not one of 0 linear" in p.last_reject


def test_toy_frames_preprocess_in_the_reference_and_the_kernels(steered):
    samples, _ = SpecklePhantom(steered).frame(np.random.default_rng(0))
    kw = dict(scale=1 / 255, zero_point=-128)
    ref = reference.preprocess(samples, steered, 80, 96, **kw)
    ours = Preprocessor(80, 96, **kw)(samples, steered)
    assert np.abs(ours.astype(int) - ref).max() <= 1
    inside = reference.source_coordinates(steered, 80, 96)[2]
    assert 0.5 < inside.mean() < 0.95  # a parallelogram inside its bounding box
    assert np.all(ours[~inside] == -128)


def test_a_point_lands_where_the_steered_line_puts_it(steered):
    """The kernels follow the toy's inverse map, not the linear one: the bright cell shows up
    ``d sin(a)`` to the side of the line's start."""
    line, sample, h, w = 5, 70, 240, 240
    samples = np.zeros((24, 96), np.uint8)
    samples[line, sample] = 255
    a = math.radians(steered.steer_deg)
    d = 2.0 + (sample + 0.5) * 48.0 / 96
    x, z = -15.0 + (line + 0.5) * 30.0 / 24 + d * math.sin(a), d * math.cos(a)
    x0, x1, z0, z1 = steered.bounding_box_mm()
    r, c = int((z - z0) / (z1 - z0) * h), int((x - x0) / (x1 - x0) * w)
    img = Preprocessor(h, w, scale=1 / 255, zero_point=-128)(samples, steered).astype(int) + 128
    rr, cc = np.unravel_index(np.argmax(img), img.shape)
    assert abs(rr - r) <= 1 and abs(cc - c) <= 1 and img[r, c] > 100


@pytest.mark.parametrize("kind", list(ProbeKind) + [STEERED])
def test_inverse_map_undoes_the_forward_map(steered, kind):
    g = steered if kind == STEERED else make_geometry(kind.name.lower(), 16, 32)
    x, z = g.forward_mm(g.line_laterals()[:, None], g.sample_depths_mm()[None, :])
    lateral, depth = g.inverse_mm(x, z)
    np.testing.assert_allclose(lateral, np.broadcast_to(g.line_laterals()[:, None], x.shape), atol=1e-9)
    np.testing.assert_allclose(depth, np.broadcast_to(g.sample_depths_mm()[None, :], z.shape), atol=1e-9)


def test_registry_refuses_a_taken_or_out_of_range_code(steered):
    with pytest.raises(ValueError, match="already LinearGeometry"):
        register_kind(0, SteeredLinearGeometry)
    with pytest.raises(ValueError, match="outside 0..7"):
        register_kind(8, SteeredLinearGeometry)
