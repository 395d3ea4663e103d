"""Frame parser over any byte stream (issue 18, hypothesis; every CI run, a few seconds).

Intact frames mixed with what a broken or hostile line carries: random bytes, lone sync words,
CRC-valid headers that lie about their length (frame and control types, plausible or huge),
truncated and bit-flipped frames, read in chunks of any size. After every chunk the byte counters
balance and memory is bounded; at the end (the line going quiet, as ProbeLink gives a stalled
body up) every intact frame has arrived, unchanged and in order, and every frame header counted
is delivered, rejected or dropped for want of a buffer, none of them intact.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest_drivers import frame_bytes, random_samples, read_in_chunks, small_geometry
from firmware_py.drivers import protocol as P
from firmware_py.drivers.buffers import BufferPool, Frame
from firmware_py.drivers.parser import FrameParser
from firmware_py.geometry import ProbeKind

V = P.SUPPORTED_MAX
MAX_PAYLOAD = 1 << 16
SCAN = 8192  # a small scan buffer, so streams cross its edges
CONTROL_TYPES = [int(t) for t in P.MsgType if t != P.MsgType.FRAME] + [0x55]  # 0x55: a type nobody knows


def hostile_pieces():
    """One thing a line can carry between intact frames (bytes)."""
    sync_prefix = st.binary(max_size=20).map(lambda b: P.SYNC + b)
    lying_frame = st.integers(0, 4 * MAX_PAYLOAD).map(lambda n: P.encode_header(P.MsgType.FRAME, n, V))
    lying_control = st.tuples(st.sampled_from(CONTROL_TYPES), st.integers(0, 2 * P.MAX_CONTROL_PAYLOAD)).map(
        lambda t: P.encode_header(t[0], t[1], V))
    telemetry = st.integers(0, 2**32).map(lambda ts: P.encode_telemetry(P.Telemetry(ts, 50, 30.0), V))
    return st.one_of(st.binary(min_size=1, max_size=300), sync_prefix, lying_frame, lying_control, telemetry)


@st.composite
def hostile_streams(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pieces, originals, intact = [], {}, []
    for seq in range(draw(st.integers(1, 8))):
        for _ in range(draw(st.integers(0, 3))):
            pieces.append(draw(hostile_pieces()))
        g = small_geometry(draw(st.integers(1, 8)), draw(st.integers(2, 64)), draw(st.sampled_from([8, 16])),
                           draw(st.sampled_from(list(ProbeKind))))
        samples = random_samples(rng, g)
        msg = bytearray(frame_bytes(seq, g, samples))
        damage = draw(st.sampled_from(["none", "none", "none", "truncate", "flip"]))
        if damage == "truncate":
            msg = msg[:draw(st.integers(1, len(msg) - 1))]
        elif damage == "flip":
            bit = draw(st.integers(0, len(msg) * 8 - 1))
            msg[bit // 8] ^= 1 << (bit % 8)
        else:
            originals[seq] = (g, samples)
            intact.append(seq)
        pieces.append(bytes(msg))
    pieces += draw(st.lists(hostile_pieces(), max_size=2))  # the stream may end on anything
    chunks = draw(st.lists(st.integers(1, 3000), min_size=1, max_size=6))
    return b"".join(pieces), originals, intact, chunks


def _take(items, originals, out):
    for item in items:
        if isinstance(item, Frame):
            if item.seq in originals:  # (a damaged frame can pass its CRC only with chance 2^-32)
                g, s = originals[item.seq]
                assert item.geometry == g
                np.testing.assert_array_equal(item.samples, s)
            out.append(item.seq)
            item.release()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_streams(), st.booleans())
def test_any_stream_keeps_every_intact_frame_balances_its_counters_and_stays_bounded(case, via_readinto):
    stream, originals, intact, chunks = case
    pool = BufferPool(count=0, max_buffers=2)  # fewer buffers than one read can complete frames
    p = FrameParser(pool, version=V, max_payload=MAX_PAYLOAD, scan_size=SCAN)
    scan_len = len(p._scan)
    out = []
    for pos, got in read_in_chunks(p, stream, chunks, via_readinto):
        _take(got, originals, out)
        assert p.bytes_in == pos == p.bytes_accepted + p.bytes_discarded + p.pending_bytes
        # bounded: the scan buffer never grows, a body is at most one frame, the pool stays at its size
        assert len(p._scan) == scan_len and len(p._replay) <= 2
        assert p.pending_bytes <= MAX_PAYLOAD + P.OVERHEAD + scan_len
        assert pool.stats()["buffers"] <= 2
    while p.frames_in_progress:  # the line goes quiet
        _take(p.abandon(), originals, out)

    assert [s for s in out if s in originals] == intact, f"intact frames lost: {sorted(set(intact) - set(out))}"
    assert p.frames_no_buffer == 0  # every frame was released before the next read
    assert p.bytes_in == p.bytes_accepted + p.bytes_discarded + p.pending_bytes
    assert p.pending_bytes < P.HEADER_SIZE + P.MAX_CONTROL_PAYLOAD + P.TRAILER_SIZE
    assert p.frames_received == (p.frames_delivered + sum(p.frames_rejected.values())
                                 + p.frames_no_buffer + p.frames_in_progress)
    assert p.frames_delivered == len(out)
    # each damaged frame and each lying frame header is one rejected frame, never an intact one
    assert sum(p.frames_rejected.values()) == p.frames_received - len(out)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=6000), st.lists(st.integers(1, 2000), min_size=1, max_size=4))
def test_noise_never_raises_and_every_byte_is_accounted(noise, chunks):
    p = FrameParser(BufferPool(count=0, max_buffers=2), version=V, max_payload=MAX_PAYLOAD, scan_size=SCAN)
    for _, got in read_in_chunks(p, noise, chunks, via_readinto=False):
        assert got == []
        assert p.bytes_in == p.bytes_accepted + p.bytes_discarded + p.pending_bytes
    p.abandon()
    assert p.frames_delivered == 0 and p.bytes_in == len(noise)
