"""Property tests: FrameParser on streams with random corruption (hypothesis)."""
import dataclasses
import math
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_drivers import frame_bytes, random_samples, read_in_chunks, small_geometry
from firmware_py.drivers import protocol as P
from firmware_py.drivers.buffers import BufferPool, Frame
from firmware_py.drivers.parser import FrameParser
from firmware_py.geometry import ProbeKind

V = P.SUPPORTED_MAX
ACTIONS = ["ok", "ok", "ok", "bit_flip", "truncate", "drop", "garbage_before", "telemetry_before"]


@st.composite
def corrupted_streams(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 10))
    pieces, originals, intact, actions = [], {}, set(), []
    for seq in range(n):
        g = small_geometry(draw(st.integers(1, 6)), draw(st.integers(2, 24)), draw(st.sampled_from([8, 16])),
                           draw(st.sampled_from(list(ProbeKind))))
        samples = random_samples(rng, g)
        originals[seq] = (g, samples)
        msg = bytearray(frame_bytes(seq, g, samples))
        action = draw(st.sampled_from(ACTIONS))
        actions.append(action)
        if action == "bit_flip":
            bit = draw(st.integers(0, len(msg) * 8 - 1))
            msg[bit // 8] ^= 1 << (bit % 8)
        elif action == "truncate":
            msg = msg[:draw(st.integers(1, len(msg) - 1))]
        elif action == "drop":
            a = draw(st.integers(0, len(msg) - 1))
            del msg[a:a + draw(st.integers(1, 8))]
        elif action == "garbage_before":
            # random bytes, sometimes starting with the sync word to exercise header rejection
            garbage = draw(st.one_of(st.binary(min_size=1, max_size=64),
                                     st.binary(max_size=40).map(lambda b: P.SYNC + b)))
            pieces.append(garbage)
        elif action == "telemetry_before":
            pieces.append(P.encode_telemetry(P.Telemetry(seq, 50, 30.0)))
        if action in ("ok", "garbage_before", "telemetry_before"):
            intact.add(seq)
        pieces.append(bytes(msg))
    chunks = draw(st.lists(st.integers(1, 400), min_size=1, max_size=8))
    return b"".join(pieces), originals, intact, chunks, actions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted_streams(), st.booleans())
def test_corrupted_stream_recovers_every_intact_frame_and_accounts_for_every_byte(case, via_readinto):
    stream, originals, intact, chunks, _actions = case
    # a 400-byte read can complete 6 frames before the caller can release any
    pool = BufferPool(count=2, size=256, max_buffers=16)
    p = FrameParser(pool, version=V)
    out = []
    for _pos, got in read_in_chunks(p, stream, chunks, via_readinto):
        for item in got:
            if isinstance(item, Frame):
                g, s = originals[item.seq]
                assert item.geometry == g
                np.testing.assert_array_equal(item.samples, s)
                out.append(item.seq)
                item.release()  # keep the pool from running dry
        # invariants hold after every chunk, not just at the end
        assert p.bytes_in == p.bytes_accepted + p.bytes_discarded + p.pending_bytes
    # the line goes quiet: a frame cut short is given up (as ProbeLink does after stall_timeout)
    while p.frames_in_progress:
        for item in p.abandon():
            if isinstance(item, Frame):
                out.append(item.seq)
                item.release()

    assert intact <= set(out), f"lost intact frames {sorted(intact - set(out))}"
    assert out == sorted(out) and len(out) == len(set(out))
    assert p.bytes_in == len(stream)
    assert p.bytes_in == p.bytes_accepted + p.bytes_discarded + p.pending_bytes
    assert p.pending_bytes < P.HEADER_SIZE + P.MAX_CONTROL_PAYLOAD + P.TRAILER_SIZE
    assert p.frames_received == (p.frames_delivered + sum(p.frames_rejected.values())
                                 + p.frames_no_buffer + p.frames_in_progress)
    assert p.frames_delivered == len(out) and p.frames_no_buffer == 0
    if out:
        missing = (out[-1] - out[0] + 1) - len(out)
        assert p.frames_lost_gap <= missing <= p.frames_lost_gap + sum(p.frames_rejected.values())
    if intact == set(originals) and len(stream) == sum(
            len(frame_bytes(s, *originals[s])) for s in originals):
        assert p.bytes_discarded == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 500))
def test_pure_noise_never_crashes_and_is_all_discarded(noise, chunk):
    p = FrameParser(version=V)
    for i in range(0, len(noise), chunk):
        assert p.feed(noise[i:i + chunk]) == []
    assert p.frames_delivered == 0
    assert p.bytes_in == p.bytes_discarded + p.pending_bytes


# Subnormals (the two round-trip tests below). tflite-runtime's aarch64 wheel is built with
# -ffast-math, so loading it sets flush-to-zero (FPCR.FZ) for the process: from then on every
# arithmetic operation and comparison reads a subnormal as 0, and hypothesis refuses to draw one.
# The wire carries float64 bits (struct "d", no arithmetic), so they must come back bit for bit in
# either mode; these tests therefore draw subnormals by their bit patterns when the FPU flushes, and
# compare bits. The tolerance: a value computed from a subnormal (the expected temperature in
# centi-degrees) is what this process's FPU makes of it, 0 under flush-to-zero.
def _bits_as_float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _fpu_flushes_subnormals() -> bool:
    return _bits_as_float(1) == 0.0  # at run time: FZ reads the smallest subnormal as 0


def _floats(min_value=None, max_value=None, **kw):
    """st.floats(min_value, max_value, **kw), with subnormals drawn even under flush-to-zero."""
    def build():
        if not _fpu_flushes_subnormals():
            return st.floats(min_value, max_value, **kw)
        lo, hi = (-math.inf if min_value is None else min_value), (math.inf if max_value is None else max_value)
        tiny = st.integers(1, 2**52 - 1).map(_bits_as_float)  # positive subnormals, by their bits
        signs = [s for s, ok in ((1, hi > 0 and lo <= 0), (-1, lo < 0 and hi >= 0)) if ok]
        normal = st.floats(min_value, max_value, allow_subnormal=False, **kw)
        if not signs:
            return normal
        return normal | st.tuples(st.sampled_from(signs), tiny).map(lambda t: math.copysign(t[1], t[0]))
    return st.deferred(build)  # built when the test draws, in the FPU mode it then runs in


def _float_bits(obj) -> tuple:
    """Every float of a dataclass (tuples of floats too) as its IEEE bits."""
    def bits(v):
        if isinstance(v, float):
            return struct.pack("<d", v)
        return tuple(bits(x) for x in v) if isinstance(v, tuple) else v
    return tuple(bits(getattr(obj, f.name)) for f in dataclasses.fields(obj))


finite = _floats(-100.0, 100.0, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(list(ProbeKind)), lines=st.integers(1, 40), samples=st.integers(2, 40),
       bits=st.sampled_from([8, 16]), start=_floats(0, 50), span=st.floats(0.5, 200),
       width=st.floats(1, 170), radius=st.floats(1, 80), tgc=st.none() | st.lists(finite, min_size=1, max_size=8),
       seq=st.integers(0, 2**32 - 1), ts=st.integers(0, 2**64 - 1), seed=st.integers(0, 2**32 - 1))
def test_every_valid_geometry_roundtrips_exactly(kind, lines, samples, bits, start, span, width, radius, tgc,
                                                 seq, ts, seed):
    from firmware_py.geometry import Geometry

    g = Geometry(kind, lines, samples, bits, start, start + span, width,
                 radius if kind == ProbeKind.CONVEX else 0.0, tuple(tgc) if tgc else None)
    s = random_samples(np.random.default_rng(seed), g)
    p = FrameParser(version=V)
    (f,) = p.feed(P.encode_frame(seq, ts, g, s, V))
    assert (f.seq, f.timestamp_us, f.geometry) == (seq, ts, g)
    assert _float_bits(f.geometry) == _float_bits(g)  # == cannot tell a subnormal from 0 under FZ
    np.testing.assert_array_equal(f.samples, s)


@settings(max_examples=100, deadline=None)
@given(rid=st.integers(0, 2**32 - 1), cmd=st.sampled_from(list(P.Command)), ok=st.booleans(),
       value=_floats(allow_nan=False), text=st.text(max_size=60), battery=st.none() | st.integers(0, 100),
       temp=st.none() | _floats(-40, 120), button=st.sampled_from(list(P.ButtonEvent)), bid=st.integers(0, 255))
def test_control_messages_roundtrip(rid, cmd, ok, value, text, battery, temp, button, bid):
    ack = P.Ack(rid, cmd, ok, value, text)
    tel = P.Telemetry(rid, battery, temp, button, bid)
    out = FrameParser().feed(P.encode_ack(ack, V) + P.encode_telemetry(tel, V) + P.encode_error(text))
    assert out[0].value == ack and _float_bits(out[0].value) == _float_bits(ack)
    got = out[1].value
    assert (got.battery_pct, got.button, got.button_id) == (battery, button, bid)
    assert got.temperature_c == (None if temp is None else round(temp * 100) / 100)
    assert out[2].value == text
