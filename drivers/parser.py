"""FrameParser: pure byte-stream -> messages state machine. No I/O, no threads.

Two ways to give it bytes:
* ``feed(data)`` copies ``data`` in (tests, replay, simulator);
* ``get_buffer()`` / ``buffer_updated(n)`` (the asyncio BufferedProtocol pattern): the caller reads
  straight into the returned memoryview. While a frame body is being received that memoryview is
  the rest of the frame's pooled buffer, so frame bytes are written once, by the kernel.

Byte accounting: ``bytes_in == bytes_accepted + bytes_discarded + pending_bytes`` at all times.
Frame accounting: ``frames_received == frames_delivered + sum(frames_rejected.values())
+ frames_no_buffer + frames_in_progress``. See docs/protocol.md for the definitions.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from firmware_py.drivers import protocol as P
from firmware_py.drivers.buffers import BufferPool, Frame

_HUNT, _BODY = 0, 1
# Room for the largest control message plus a header; the scan buffer never has to grow.
_SCAN_MIN = P.HEADER_SIZE + P.MAX_CONTROL_PAYLOAD + P.TRAILER_SIZE


@dataclass(frozen=True)
class Message:
    """A control message (everything but FRAME), decoded. ``value`` depends on ``type``:
    HELLO -> (min, max) versions, CAPABILITIES -> ProbeInfo, TELEMETRY -> Telemetry,
    COMMAND -> (request_id, command, value), ACK -> Ack, ERROR -> str. Unknown types are skipped
    (counted in ``control_unknown``), never returned."""

    type: int
    version: P.Version
    value: Any


_DECODERS = {
    P.MsgType.HELLO: P.decode_hello,
    P.MsgType.CAPABILITIES: P.decode_capabilities,
    P.MsgType.TELEMETRY: P.decode_telemetry,
    P.MsgType.COMMAND: P.decode_command,
    P.MsgType.ACK: P.decode_ack,
    P.MsgType.ERROR: P.decode_error,
}


class FrameParser:
    def __init__(self, pool: BufferPool | None = None, *, max_payload: int = P.DEFAULT_MAX_PAYLOAD,
                 version: P.Version | None = None, scan_size: int = 65536, clock=time.monotonic_ns,
                 versions: tuple[P.Version, P.Version] = (P.SUPPORTED_MIN, P.SUPPORTED_MAX)):
        if not 0 < max_payload <= P.MAX_PAYLOAD_LIMIT:
            raise ValueError(f"max_payload={max_payload} must be in 1..{P.MAX_PAYLOAD_LIMIT}")
        self.pool = pool if pool is not None else BufferPool(count=0, max_buffers=4)
        self.max_payload = max_payload
        # Negotiated version; frames are only decoded once it is known (after the handshake).
        self.version = version
        self.versions = versions  # range a CAPABILITIES choice may adopt
        self._scan = bytearray(max(scan_size, 2 * _SCAN_MIN))
        self._start = self._end = 0
        self._state = _HUNT
        self._target: bytearray | None = None
        self._filled = self._total = 0
        # Body offsets below _checked hold no CRC-valid header; _body_syncs counts the sync words
        # with a bad header CRC seen there (header errors only if the frame turns out corrupt).
        self._checked = 1
        self._body_syncs = 0
        self._oneoff = False  # the target is a one-off buffer, not the pool's
        # Length of the last frame whose CRC passed: a steady stream repeats it, and a body of that
        # length is not scanned while it arrives (see _next_header_in_body).
        self._steady_total = 0
        self._scan_body = True
        self._frames_out = 0  # frames this call has completed (they hold buffers the caller has not seen)
        self._hdr_version: P.Version = (0, 0)
        self._scratch = bytearray(0)
        self._replay: deque[memoryview] = deque()
        self._out: list = []
        self._clock = clock
        self._geom_key: bytes | None = None
        self._geom = None
        self.last_seq: int | None = None
        self._rejected_since_good = 0
        # counters
        self.bytes_in = self.bytes_accepted = self.bytes_discarded = 0
        self.header_errors = 0  # sync word found but header CRC wrong (noise or a corrupted header)
        self.frames_received = self.frames_delivered = self.frames_no_buffer = 0
        self.frames_rejected = {"crc": 0, "too_large": 0, "invalid": 0, "no_handshake": 0, "truncated": 0}
        self.frames_lost_gap = self.seq_restarts = 0
        self.control_received = self.control_rejected = self.control_unknown = 0
        self.last_reject: str = ""

    # ------------------------------------------------------------------ input

    def feed(self, data) -> list:
        """Copy ``data`` in; return the Frames and Messages completed by it, in stream order."""
        mv = memoryview(data).cast("B")
        out: list = []
        pos = 0
        self._frames_out = 0  # the frames of the whole call reach the caller together
        while pos < len(mv):
            buf = self.get_buffer()
            n = min(len(buf), len(mv) - pos)
            buf[:n] = mv[pos:pos + n]
            pos += n
            out.extend(self._updated(n))
        return out

    def get_buffer(self) -> memoryview:
        """Writable memoryview where the next bytes from the wire should land (never empty)."""
        if self._state == _BODY:
            return memoryview(self._target)[self._filled:self._total]
        if self._end == len(self._scan):
            self._compact()
        return memoryview(self._scan)[self._end:]

    def buffer_updated(self, n: int) -> list:
        """``n`` bytes were written at the start of the last get_buffer(); return completed messages."""
        self._frames_out = 0
        return self._updated(n)

    def _updated(self, n: int) -> list:
        self.bytes_in += n
        self._advance(n)
        self._drain_replay()
        out, self._out = self._out, []
        return out

    def abandon(self) -> list:
        """Give up on a frame whose body stopped arriving (the line went idle mid-frame).

        Its header promised more bytes than came: it was truncated, and frames that followed it
        may sit inside what was taken as its body. Count it as rejected ("truncated") and scan
        its bytes again, returning whatever that recovers."""
        if self._state != _BODY:
            return []
        self._frames_out = 0
        self._next_header_in_body()  # (a body of the steady length was not scanned as it came)
        self._cut("truncated", f"frame body stopped {self._total - self._filled} bytes short")
        self._drain_replay()
        out, self._out = self._out, []
        return out

    def reset(self) -> None:
        """Forget a partial message (the link was lost). Its bytes count as discarded."""
        if self._state == _BODY:
            self.bytes_discarded += self._filled
            self._reject("truncated", f"link lost {self._total - self._filled} bytes before the end of a frame")
            self._release_target()
            self._state = _HUNT
        for mv in self._replay:
            self.bytes_discarded += len(mv)
        self._replay.clear()
        self.bytes_discarded += self._end - self._start
        self._start = self._end = 0

    # ------------------------------------------------------------------ accounting

    @property
    def pending_bytes(self) -> int:
        body = self._filled if self._state == _BODY else 0
        return body + (self._end - self._start) + sum(map(len, list(self._replay)))  # list(): atomic copy

    @property
    def frames_in_progress(self) -> int:
        return 1 if self._state == _BODY else 0

    def stats(self) -> dict:
        return {
            "bytes_in": self.bytes_in, "bytes_accepted": self.bytes_accepted,
            "bytes_discarded": self.bytes_discarded, "bytes_pending": self.pending_bytes,
            "header_errors": self.header_errors,
            "frames_received": self.frames_received, "frames_delivered": self.frames_delivered,
            "frames_rejected": sum(self.frames_rejected.values()),
            "frames_rejected_by_reason": dict(self.frames_rejected),
            "frames_no_buffer": self.frames_no_buffer, "frames_in_progress": self.frames_in_progress,
            "frames_lost_gap": self.frames_lost_gap, "seq_restarts": self.seq_restarts,
            "control_received": self.control_received, "control_rejected": self.control_rejected,
            "control_unknown": self.control_unknown, "last_reject": self.last_reject,
        }

    # ------------------------------------------------------------------ state machine

    def _discard(self, n: int) -> None:
        self.bytes_discarded += n
        self._start += n

    def _compact(self) -> None:
        s, e = self._start, self._end
        if s:
            self._scan[:e - s] = self._scan[s:e]
            self._start, self._end = 0, e - s

    def _reject(self, reason: str, text: str) -> None:
        self.frames_rejected[reason] += 1
        self._rejected_since_good += 1
        self.last_reject = text

    def _hunt(self) -> None:
        scan = self._scan
        while self._state == _HUNT:
            start, end = self._start, self._end
            i = scan.find(P.SYNC, start, end)
            if i < 0:
                # keep a possible partial sync word at the end
                keep = min(len(P.SYNC) - 1, end - start)
                self._discard(end - keep - start)
                break
            if i > start:
                self._discard(i - start)
            if end - i < P.HEADER_SIZE:
                break
            hdr = P.check_header(scan, i)
            if hdr is None:
                self.header_errors += 1
                self._discard(1)
                continue
            major, minor, mtype, _flags, length = hdr
            total = P.HEADER_SIZE + length + P.TRAILER_SIZE
            if mtype == P.MsgType.FRAME:
                self.frames_received += 1
                if length > self.max_payload:
                    self._reject("too_large", f"frame of {length} bytes exceeds the maximum {self.max_payload}")
                    self._discard(1)
                    continue
                target, self._oneoff = self.pool.acquire(total), False
                if target is None and self._frames_out:
                    # The pool is held by frames this very call completed, which the caller has not
                    # had a chance to release (a burst recovered from one read): a one-off buffer,
                    # not a dropped frame. Bounded: only bytes already given to this call.
                    target, self._oneoff = bytearray(total), True
                elif target is None:
                    if len(self._scratch) < total:
                        self._scratch = bytearray(total)
                    target = self._scratch
                n = min(total, end - i)
                target[:n] = scan[i:i + n]
                self._start = i + n
                self._target, self._filled, self._total = target, n, total
                self._checked, self._body_syncs = 1, 0
                self._scan_body = total != self._steady_total
                self._hdr_version = (major, minor)
                self._state = _BODY
                if n == total:
                    self._finish_frame()
                elif self._scan_body and self._next_header_in_body():
                    self._cut("crc", f"frame cut short: a message header at byte {self._checked} "
                                     f"of its announced {total}")
                continue
            if length > P.MAX_CONTROL_PAYLOAD:
                self.control_rejected += 1
                self._discard(1)
                continue
            if end - i < total:
                if self._header_within(i + 1, end):
                    # A control header that lied about its length: the next message is already
                    # here, inside what it announced. Reject it now rather than hold what follows.
                    self.control_rejected += 1
                    self._discard(1)
                    continue
                break
            mv = memoryview(scan)
            if P.crc32c(mv[i:i + total - 4]) != int.from_bytes(scan[i + total - 4:i + total], "little"):
                self.control_rejected += 1
                self._discard(1)
                continue
            self._control(mtype, (major, minor), bytes(mv[i + P.HEADER_SIZE:i + total - 4]))
            self.bytes_accepted += total
            self._start = i + total
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._scan) - self._end < _SCAN_MIN:
            self._compact()

    def _header_within(self, start: int, end: int) -> bool:
        """Whether a CRC-valid header starts in scan[start:end] (a control body is <= 4 KiB)."""
        scan = self._scan
        p = scan.find(P.SYNC, start, end)
        while 0 <= p <= end - P.HEADER_SIZE:
            if P.check_header(scan, p) is not None:
                return True
            p = scan.find(P.SYNC, p + 1, end)
        return False

    def _control(self, mtype: int, version: P.Version, payload: bytes) -> None:
        decoder = _DECODERS.get(mtype)
        if decoder is None:
            self.control_unknown += 1  # a newer minor version's message: skipped, framing intact
            return
        try:
            value = decoder(payload)
        except (P.ProtocolError, UnicodeDecodeError) as exc:
            self.control_rejected += 1
            self.last_reject = f"bad {P.MsgType(mtype).name.lower()} message: {exc}"
            return
        self.control_received += 1
        if mtype == P.MsgType.CAPABILITIES and self.version is None:
            # The probe speaks the chosen version from the next byte on: frames later in this
            # same read must already be decoded with it. (The link re-checks the choice.)
            lo, hi = self.versions
            if lo <= value.version <= hi and value.max_frame_bytes > 0:
                self.version = value.version
                self.max_payload = min(self.max_payload, value.max_frame_bytes)
        self._out.append(Message(mtype, version, value))

    def _release_target(self) -> None:
        if self._target is not None and self._target is not self._scratch and not self._oneoff:
            self.pool.release(self._target)
        self._target = None

    def _next_header_in_body(self) -> bool:
        """Look for a CRC-valid header in the body received so far (from ``_checked`` on).

        A header that lied about its length (or a frame cut short) is followed by the next
        message, which then sits inside what was taken for this body. Waiting for the whole
        announced length would stall the stream and pile up the frames behind it; instead the
        body is scanned as it arrives (``bytes.find``, C speed) and the frame ends at the first
        valid header. Inside a genuine frame a sync word followed by a matching header CRC has
        a chance of 2^-64 per byte. True (``_checked`` = its offset) when one is found.

        A body as long as the last good frame is not scanned while it arrives (the steady stream
        costs no extra pass): if that length lied, the frame's CRC fails one frame's worth of
        bytes later and the body is scanned then."""
        t, filled = self._target, self._filled
        last = self._total - P.HEADER_SIZE  # a header starting later would overrun the frame's end
        pos = self._checked
        while pos <= last:
            p = t.find(P.SYNC, pos, filled)
            if p < 0 or p > last:
                pos = last + 1 if p > last else max(pos, min(filled - len(P.SYNC) + 1, last + 1))
                break
            if p + P.HEADER_SIZE > filled:
                pos = p  # its header is not complete yet
                break
            if P.check_header(t, p) is not None:
                self._checked = p
                return True
            self._body_syncs += 1
            pos = p + 1
        self._checked = pos
        return False

    def _cut(self, reason: str, text: str) -> None:
        """Reject the frame in progress and scan again what may hold the next messages: the body
        from ``_checked`` on (nothing before it can start a valid header), then the scan buffer."""
        self._reject(reason, text)
        self.header_errors += self._body_syncs
        keep = self._checked
        self.bytes_discarded += keep
        rest = bytes(memoryview(self._target)[keep:self._filled]) + bytes(self._scan[self._start:self._end])
        self._start = self._end = 0
        if rest:
            self._replay.appendleft(memoryview(rest))
        self._release_target()
        self._state = _HUNT

    def _finish_frame(self) -> None:
        target, total = self._target, self._total
        mv = memoryview(target)
        if P.crc32c(mv[:total - 4]) != int.from_bytes(mv[total - 4:total], "little"):
            # Corrupt or truncated (the next frame may start inside what we took as this body):
            # drop the bytes that cannot start a message and scan the rest again, so no intact
            # frame after it is lost. (Replayed bytes precede the scan buffer and any earlier replay.)
            mv.release()
            cut = self._next_header_in_body()
            self._cut("crc", f"frame cut short: a message header at byte {self._checked} of its announced "
                             f"{total}" if cut else f"frame CRC mismatch ({total} bytes)")
            return
        self._state = _HUNT
        self._steady_total = total
        self.bytes_accepted += total
        payload = mv[P.HEADER_SIZE:total - 4]
        if self.version is None:
            self._reject("no_handshake", "frame before the version handshake")
            self._release_target()
            return
        try:
            seq, ts, geom, off = self._decode_sub(payload)
        except P.ProtocolError as exc:
            self._reject("invalid", f"invalid frame: {exc}")
            self._release_target()
            return
        self._track_seq(seq)
        if target is self._scratch:
            self.frames_no_buffer += 1
            self._target = None
            return
        self.frames_delivered += 1
        self._frames_out += 1
        self._out.append(Frame(seq, ts, geom, target, P.HEADER_SIZE + off,
                               None if self._oneoff else self.pool, self._clock()))
        self._target = None

    def _decode_sub(self, payload):
        hv = self._hdr_version
        if hv[0] != self.version[0] or hv > self.version:
            raise P.ProtocolError(f"frame in protocol {P.fmt_version(hv)} on a link negotiated at "
                                  f"{P.fmt_version(self.version)}")
        if len(payload) < P.FRAME_FIXED:
            raise P.ProtocolError(f"frame payload of {len(payload)} bytes is shorter than its sub-header")
        # Equal geometry bytes (everything after the stamp) give the same Geometry: reuse it.
        off = P.frame_samples_offset(payload)
        key = bytes(payload[P.FRAME_STAMP.size:min(off, len(payload))])
        if key == self._geom_key and len(payload) - off == self._geom.payload_bytes:
            seq, ts = P.FRAME_STAMP.unpack_from(payload)
            return seq, ts, self._geom, off
        seq, ts, geom, off = P.decode_frame_subheader(payload, self.version)
        self._geom_key, self._geom = key, geom
        return seq, ts, geom, off

    def _track_seq(self, seq: int) -> None:
        last = self.last_seq
        if last is not None:
            d = (seq - last) & 0xFFFFFFFF
            if d == 0 or d >= 1 << 31:
                self.seq_restarts += 1  # the probe restarted or replayed: not a loss
            else:
                # missing numbers that did not even arrive as a rejected frame
                self.frames_lost_gap += max(0, d - 1 - self._rejected_since_good)
        self.last_seq = seq
        self._rejected_since_good = 0

    def _drain_replay(self) -> None:
        while self._replay:
            mv = self._replay[0]
            buf = self.get_buffer()
            n = min(len(buf), len(mv))
            buf[:n] = mv[:n]
            if n == len(mv):
                self._replay.popleft()
            else:
                self._replay[0] = mv[n:]
            self._advance(n)  # replayed bytes were already counted in bytes_in

    def _advance(self, n: int) -> None:
        """``n`` bytes landed where get_buffer() pointed: fill the frame body or scan for headers."""
        if self._state == _BODY:
            self._filled += n
            if self._filled == self._total:
                self._finish_frame()
            elif self._scan_body and self._next_header_in_body():
                self._cut("crc", f"frame cut short: a message header at byte {self._checked} "
                                 f"of its announced {self._total}")
        else:
            self._end += n
            self._hunt()
