"""Wire protocol encode/decode and FrameParser behaviour, byte and frame accounting."""
import numpy as np
import pytest

from conftest_drivers import frame_bytes, random_samples, small_geometry
from firmware_py.drivers import protocol as P
from firmware_py.drivers.buffers import BufferPool, Frame
from firmware_py.drivers.parser import FrameParser, Message
from firmware_py.geometry import ProbeKind

V = P.SUPPORTED_MAX


def check_accounting(p: FrameParser):
    assert p.bytes_in == p.bytes_accepted + p.bytes_discarded + p.pending_bytes
    assert p.frames_received == (p.frames_delivered + sum(p.frames_rejected.values())
                                 + p.frames_no_buffer + p.frames_in_progress)


def frames_of(items):
    return [i for i in items if isinstance(i, Frame)]


@pytest.mark.parametrize("kind", list(ProbeKind))
@pytest.mark.parametrize("bits", [8, 16])
def test_frame_roundtrip_every_geometry(kind, bits):
    rng = np.random.default_rng(1)
    g = small_geometry(5, 9, bits, kind, tgc=(0.0, 3.5, 7.25))
    s = random_samples(rng, g)
    p = FrameParser(version=V)
    (f,) = p.feed(frame_bytes(7, g, s))
    assert (f.seq, f.timestamp_us, f.geometry) == (7, 7000, g)
    assert f.samples.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert f.samples.flags.c_contiguous and f.samples.ctypes.data % 8 == 0
    np.testing.assert_array_equal(f.samples, s)
    f.release()
    check_accounting(p)
    assert p.bytes_discarded == 0


def test_tgc_needs_version_1_1():
    g = small_geometry(tgc=(1.0, 2.0))
    with pytest.raises(ValueError, match="needs protocol 1.1"):
        P.encode_frame(0, 0, g, np.zeros((4, 8), np.uint8), (1, 0))
    # a 1.0 link refuses a frame that claims 1.1 in its header
    p = FrameParser(version=(1, 0))
    assert p.feed(P.encode_frame(0, 0, g, np.zeros((4, 8), np.uint8), (1, 1))) == []
    assert p.frames_rejected["invalid"] == 1 and "1.1" in p.last_reject


def test_readinto_api_writes_frame_bytes_into_the_pooled_buffer():
    rng = np.random.default_rng(2)
    g = small_geometry(64, 256)
    data = frame_bytes(1, g, random_samples(rng, g)) * 3
    pool = BufferPool(count=4, size=len(data))
    p = FrameParser(pool, version=V, scan_size=0)
    got, pos, targets = [], 0, set()
    while pos < len(data):
        buf = p.get_buffer()
        assert len(buf) > 0
        if p.frames_in_progress:
            targets.add(id(buf.obj))
        n = min(len(buf), 1000, len(data) - pos)
        buf[:n] = data[pos:pos + n]
        pos += n
        got += p.buffer_updated(n)
    assert [f.seq for f in got] == [1, 1, 1]
    # the body was read straight into pool buffers, which the frames hold
    assert {id(f._buf) for f in got} <= targets
    assert pool.stats()["allocations"] == 4  # nothing allocated beyond the preallocated buffers
    check_accounting(p)


def test_corrupt_length_is_rejected_at_once_not_waited_for():
    g = small_geometry()
    good = frame_bytes(0, g, np.zeros((4, 8), np.uint8))
    bad = bytearray(good)
    bad[8:12] = (50_000_000).to_bytes(4, "little")  # length corrupted, header CRC now wrong
    p = FrameParser(version=V)
    out = p.feed(bytes(bad) + good)
    assert [f.seq for f in out] == [0]
    assert p.header_errors == 1 and p.frames_in_progress == 0
    assert p.bytes_discarded == len(bad)
    check_accounting(p)


def test_frame_over_the_maximum_is_rejected_and_followers_recovered():
    g = small_geometry(32, 64)
    big = frame_bytes(0, g, np.zeros((32, 64), np.uint8))
    small = frame_bytes(1, small_geometry(), np.ones((4, 8), np.uint8))
    p = FrameParser(version=V, max_payload=1024)
    out = p.feed(big + small)
    assert [f.seq for f in out] == [1]
    assert p.frames_rejected["too_large"] == 1
    assert p.bytes_discarded == len(big)
    check_accounting(p)


def test_truncated_frame_then_intact_frames_recovered():
    rng = np.random.default_rng(3)
    g = small_geometry(16, 32)
    msgs = [frame_bytes(i, g, random_samples(rng, g)) for i in range(4)]
    stream = msgs[0] + msgs[1][:100] + msgs[2] + msgs[3]
    p = FrameParser(version=V)
    out = []
    for i in range(0, len(stream), 37):
        out += p.feed(stream[i:i + 37])
    assert [f.seq for f in out] == [0, 2, 3]
    assert p.frames_rejected["crc"] == 1
    assert p.bytes_discarded == 100
    # seq 1 arrived (rejected), so the gap 0 -> 2 is not counted as lost
    assert p.frames_lost_gap == 0
    check_accounting(p)


def test_a_frame_cut_short_ends_at_the_next_header_without_waiting_for_its_length():
    g = small_geometry(16, 32)
    a = frame_bytes(0, g, np.zeros((16, 32), np.uint8))
    b = frame_bytes(1, small_geometry(), np.ones((4, 8), np.uint8))
    p = FrameParser(version=V)
    out = p.feed(a[:40] + b)  # b sits inside what a's header promised: delivered at once
    assert [f.seq for f in out] == [1] and p.frames_in_progress == 0
    assert p.frames_rejected["crc"] == 1 and p.bytes_discarded == 40
    check_accounting(p)


def test_abandon_gives_up_a_stalled_body_and_rescans_its_tail():
    g = small_geometry(16, 32)
    a = frame_bytes(0, g, np.zeros((16, 32), np.uint8))
    b = frame_bytes(1, small_geometry(), np.ones((4, 8), np.uint8))
    p = FrameParser(version=V)
    assert p.feed(a[:40] + b[:10]) == []  # b's header is not complete: a may still be genuine
    assert p.frames_in_progress == 1
    assert p.abandon() == [] and p.frames_in_progress == 0
    assert p.frames_rejected["truncated"] == 1 and p.bytes_discarded == 40
    assert [f.seq for f in p.feed(b[10:])] == [1]  # the tail was kept: b's start is not lost
    check_accounting(p)


def test_sequence_gaps_restarts_and_wraparound():
    g = small_geometry()
    z = np.zeros((4, 8), np.uint8)
    p = FrameParser(version=V)
    for seq in (10, 11, 14, 2**32 - 1, 0, 1, 1):
        for f in p.feed(frame_bytes(seq, g, z)):
            f.release()
    # 12 and 13 lost; 14 -> 2**32-1 is more than 2**31 ahead (a restart, not 4e9 losses);
    # 2**32-1 -> 0 wraps normally; 1 -> 1 repeats (restart)
    assert p.frames_lost_gap == 2
    assert p.seq_restarts == 2  # the big jump and the duplicate 1
    check_accounting(p)


def test_pool_exhaustion_counts_frames_no_buffer_and_keeps_framing():
    g = small_geometry()
    z = np.zeros((4, 8), np.uint8)
    pool = BufferPool(count=0, max_buffers=2)
    p = FrameParser(pool, version=V)
    held = frames_of(p.feed(frame_bytes(0, g, z)) + p.feed(frame_bytes(1, g, z)))
    # the consumer holds every buffer: what arrives now cannot be kept
    assert frames_of(p.feed(b"".join(frame_bytes(i, g, z) for i in range(2, 5)))) == []
    assert [f.seq for f in held] == [0, 1]
    assert p.frames_no_buffer == 3 and pool.stats()["exhausted"] == 3
    for f in held:
        f.release()
    assert [f.seq for f in frames_of(p.feed(frame_bytes(5, g, z)))] == [5]
    assert p.frames_lost_gap == 0
    check_accounting(p)


def test_a_burst_completed_by_one_read_is_delivered_whole_even_past_the_pool():
    """Frames one call completes hold buffers the caller has not seen yet, so the pool running
    dry on them is no reason to drop the rest: those get one-off buffers, left to the GC."""
    g = small_geometry()
    pool = BufferPool(count=0, max_buffers=2)
    p = FrameParser(pool, version=V)
    frames = frames_of(p.feed(b"".join(frame_bytes(i, g, np.full((4, 8), i, np.uint8)) for i in range(6))))
    assert [f.seq for f in frames] == list(range(6)) and p.frames_no_buffer == 0
    assert [int(f.samples[0, 0]) for f in frames] == list(range(6))
    for f in frames:
        f.release()
    assert pool.stats() == {"buffers": 2, "free": 2, "allocations": 2, "exhausted": 4}
    check_accounting(p)


def test_frames_before_handshake_are_counted_not_delivered():
    g = small_geometry()
    p = FrameParser()
    assert p.feed(frame_bytes(0, g, np.zeros((4, 8), np.uint8))) == []
    assert p.frames_rejected["no_handshake"] == 1
    check_accounting(p)


def test_control_messages_roundtrip():
    info = P.ProbeInfo((1, 1), (1, 0), (1, 3), "L12", "SN42", "fw 2.3", (ProbeKind.LINEAR,), 1 << 20)
    tel = P.Telemetry(123, 57, 38.25, P.ButtonEvent.PRESSED, 2)
    ack = P.Ack(9, P.Command.DEPTH, False, 500.0, "depth 500 mm outside 10..300 mm")
    stream = (P.encode_hello((1, 0), (1, 1)) + P.encode_capabilities(info) + P.encode_telemetry(tel)
              + P.encode_command(9, P.Command.DEPTH, 500.0, V) + P.encode_ack(ack, V)
              + P.encode_error("no common protocol version"))
    p = FrameParser()
    out = p.feed(stream)
    assert all(isinstance(m, Message) for m in out)
    assert [m.value for m in out] == [((1, 0), (1, 1)), info, tel, (9, P.Command.DEPTH, 500.0), ack,
                                      "no common protocol version"]
    assert p.bytes_discarded == 0 and p.bytes_accepted == len(stream)


def test_unknown_message_type_is_skipped_with_framing_intact():
    g = small_geometry()
    p = FrameParser(version=V)
    out = p.feed(P.encode_message(0x55, b"future") + frame_bytes(3, g, np.zeros((4, 8), np.uint8)))
    assert [f.seq for f in frames_of(out)] == [3]
    assert p.control_unknown == 1 and p.bytes_discarded == 0


def test_invalid_geometry_in_a_crc_valid_frame_is_rejected_with_reason():
    g = small_geometry()
    msg = bytearray(frame_bytes(0, g, np.zeros((4, 8), np.uint8)))
    payload = bytearray(msg[P.HEADER_SIZE:-4])
    payload[13] = 12  # bits = 12
    bad = P.encode_message(P.MsgType.FRAME, bytes(payload), V)
    p = FrameParser(version=V)
    assert p.feed(bad) == []
    assert p.frames_rejected["invalid"] == 1 and "bits=12" in p.last_reject
    check_accounting(p)


def test_negotiate():
    assert P.negotiate((1, 0), (1, 1), (1, 0), (1, 0)) == (1, 0)
    assert P.negotiate((1, 0), (1, 1), (1, 0), (2, 4)) == (1, 1)
    with pytest.raises(P.ProtocolError, match="no common protocol version: device speaks 1.0..1.1, "
                                              "probe speaks 2.0..2.1"):
        P.negotiate((1, 0), (1, 1), (2, 0), (2, 1))


def test_parser_rejects_bad_limits():
    with pytest.raises(ValueError, match="max_payload"):
        FrameParser(max_payload=0)


def test_frame_release_is_idempotent_and_thread_safe():
    import threading

    g = small_geometry()
    pool = BufferPool(count=0, max_buffers=64)
    p = FrameParser(pool, version=V)
    frames = frames_of(p.feed(b"".join(frame_bytes(i, g, np.zeros((4, 8), np.uint8)) for i in range(64))))
    assert len(frames) == 64 and pool.stats()["free"] == 0
    threads = [threading.Thread(target=lambda: [f.release() for f in frames]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pool.stats()["free"] == 64  # each buffer back exactly once
    assert all(f.released and f.samples is None for f in frames)


@pytest.mark.parametrize("chunk", [4096, 65536, 300_000])
def test_big_frames_truncated_inside_big_frames_are_recovered(chunk):
    """Frames larger than the scan buffer: the rescanned body of a truncated frame (replayed in
    pieces) holds the start of the next big frame, whose end arrives later from the line."""
    rng = np.random.default_rng(9)
    g = small_geometry(200, 1024)  # 200 KiB
    msgs = [frame_bytes(i, g, random_samples(rng, g)) for i in range(5)]
    stream = msgs[0] + msgs[1][:150_000] + msgs[2] + msgs[3][:10] + msgs[4]
    p = FrameParser(BufferPool(count=2, size=len(msgs[0]), max_buffers=4), version=V)
    out = []
    for i in range(0, len(stream), chunk):
        for f in frames_of(p.feed(stream[i:i + chunk])):
            out.append(f.seq)
            np.testing.assert_array_equal(f.samples, np.frombuffer(msgs[f.seq][72:-4], np.uint8).reshape(200, 1024))
            f.release()
        check_accounting(p)
    assert out == [0, 2, 4]
    # seq 1 arrived with its header (rejected); seq 3 was cut inside its header: never received,
    # so it is a sequence gap
    assert p.frames_rejected["crc"] == 1 and p.header_errors == 1 and p.frames_lost_gap == 1
    assert p.bytes_discarded == 150_000 + 10
