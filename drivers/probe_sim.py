"""ProbeSimulator: a software probe that speaks the wire protocol on a file descriptor.

It behaves like the firmware: waits for the device's hello, negotiates a version inside its own
supported range (so it can pretend to be an older or newer probe), streams frames at a set rate,
sends telemetry, answers commands with an ack or an error, and injects faults at set rates,
logging each one. Runs in a thread (tests) or as `firmware-py probe-sim` (drivers/sim_cli.py).
"""
from __future__ import annotations

import collections
import errno
import json
import os
import select
import threading
import time
from dataclasses import dataclass, field, replace

from firmware_py.drivers import protocol as P
from firmware_py.drivers.faults import FaultConfig, FaultInjector
from firmware_py.drivers.parser import FrameParser, Message
from firmware_py.geometry import registered_kinds


@dataclass
class SimProbeState:
    battery_pct: float = 100.0
    temperature_c: float = 30.0
    gain_db: float = 0.0
    frozen: bool = False
    pending_button: P.ButtonEvent = P.ButtonEvent.NONE


@dataclass
class SimSummary:
    frames_sent: int = 0
    bytes_sent: int = 0
    handshakes: int = 0
    refused: int = 0
    commands: int = 0
    ended_by: str = ""
    faults: dict = field(default_factory=dict)


class PeerGone(Exception):
    """The other end of the line closed (EIO on a pty master, EPIPE)."""


class Expired(Exception):
    """stop() or the duration ended while a write was waiting for room on the line."""


class Hangup(Exception):
    """Injected disconnect: serve_fd returns so the caller can close and re-create the line."""


class ProbeSimulator:
    def __init__(self, source, *, fps: float = 30.0, version_min: P.Version = P.SUPPORTED_MIN,
                 version_max: P.Version = P.SUPPORTED_MAX, model: str = "SIM-1",
                 serial_number: str = "SIM0001", firmware_version: str = "sim-1.0",
                 max_frame_bytes: int = P.DEFAULT_MAX_PAYLOAD, telemetry_hz: float = 1.0,
                 faults: FaultConfig | None = None, seed: int = 0, on_frame=None,
                 frame_log_path: str | None = None, fault_log_path: str | None = None,
                 wait_for_hello: bool = True, replay=None, replay_loop: bool = False,
                 blocking_writes: bool = False):
        if fps < 0:
            raise ValueError(f"fps={fps} must be >= 0 (0 = as fast as the line takes)")
        if (source is None) == (replay is None):
            raise ValueError("give the simulator exactly one of a frame source or a recording to replay")
        self.source = source
        # Blocking writes move data ~1.5x faster through a pty (measured in bench/link.py's
        # setting) but cannot be interrupted by stop(): only for a process of its own, where a
        # signal handler that raises ends a blocked write (sim_cli does that).
        self.blocking_writes = blocking_writes
        # Replay: the recorded bytes are written as they were received, at their original times
        # (relative to the end of the handshake); the recording already holds telemetry.
        self.replay, self.replay_loop = replay, replay_loop
        self._replay_i = 0
        self._replay_first = replay.chunks[0][0] if replay is not None and replay.chunks else 0
        self.replay_log: list[tuple[float, float]] = []  # (sent at, recorded at) seconds
        if replay is not None:
            telemetry_hz = 0.0
            if not replay.chunks:
                raise ValueError(f"recording {replay.path!r} holds no data")
        self.fps = fps
        self.power_on_fps = fps  # what it runs at after a restart: a frame_rate command is not kept
        self.vmin, self.vmax = version_min, version_max
        self.info_base = dict(model=model, serial_number=serial_number, firmware_version=firmware_version,
                              geometries=registered_kinds(), max_frame_bytes=max_frame_bytes)
        self.telemetry_hz = telemetry_hz
        self.faults = FaultInjector(faults or FaultConfig(), seed=seed, log_path=fault_log_path)
        self.state = SimProbeState()
        self.summary = SimSummary()
        self.version: P.Version | None = None if wait_for_hello else version_max
        self.wait_for_hello = wait_for_hello
        self.on_frame = on_frame  # callable(seq, source_name, truth) after each frame is written
        # (seq, source name) of the frames put on the wire, newest 100000 (a day at 30 fps would
        # otherwise hold millions); --frame-log keeps all of them on disk
        self.sent: collections.deque[tuple[int, str]] = collections.deque(maxlen=100_000)
        # line-buffered: a consumer may read it while the simulator runs
        self._frame_log = open(frame_log_path, "a", encoding="utf-8", buffering=1) if frame_log_path else None
        self.seq = 0
        self._stop = threading.Event()
        self._deadline: float | None = None
        self._batch: list = []
        self._writing = False  # a message is part-way out: replies go to the outbox
        self._outbox: list[bytes] = []
        self._batch_bytes = 0
        self._t0 = time.monotonic()
        self.streaming = threading.Event()  # set once a handshake succeeded (tests wait on it)

    # ------------------------------------------------------------------ public

    def stop(self) -> None:
        self._stop.set()

    def rearm(self, *, reboot: bool = False) -> None:
        """Ready to serve again after stop(). reboot=True also forgets the session, like a probe
        whose firmware restarted: it streams nothing until the next hello."""
        self._stop.clear()
        if reboot:
            self.version = None if self.wait_for_hello else self.vmax
            self.fps = self.power_on_fps
            self.streaming.clear()

    def press_button(self, event: P.ButtonEvent = P.ButtonEvent.PRESSED) -> None:
        self.state.pending_button = event

    def serve_fd(self, fd: int, *, duration: float | None = None, max_frames: int | None = None) -> SimSummary:
        """Speak the protocol on ``fd`` until stop(), ``duration`` seconds, ``max_frames`` frames or
        the peer hangs up. Returns the summary (``ended_by`` says why it returned)."""
        os.set_blocking(fd, self.blocking_writes)  # reads are always guarded by select
        parser = FrameParser(max_payload=P.MAX_CONTROL_PAYLOAD)
        deadline = None if duration is None else time.monotonic() + duration
        self._deadline = deadline
        next_frame = time.monotonic()
        next_telemetry = time.monotonic() + (1.0 / self.telemetry_hz if self.telemetry_hz > 0 else 1e18)
        self._fd, self._parser = fd, parser
        self._replay_t0 = None
        try:
            while True:
                now = time.monotonic()
                ended = self._end_reason(now, deadline, max_frames)
                if ended:
                    self.summary.ended_by = ended
                    break
                live = self.version is not None and not self.state.frozen
                if self.replay is not None:
                    next_frame = self._replay_due(now, live)
                    if next_frame is None:
                        self.summary.ended_by = "replay_end"
                        break
                wake = min(next_telemetry, next_frame if live else now + 0.05)
                if deadline is not None:
                    wake = min(wake, deadline)
                self._poll_input(max(0.0, wake - now))
                now = time.monotonic()
                if self.version is not None and now >= next_telemetry:
                    self._send_telemetry()
                    next_telemetry += 1.0 / self.telemetry_hz
                if live and now >= next_frame:
                    if self.replay is not None:
                        self._send_replay_chunk(now)
                        continue
                    self._send_frame()
                    period = 1.0 / self.fps if self.fps > 0 else 0.0
                    next_frame += period
                    if next_frame < now - period:  # fell behind (stall, freeze): no burst to catch up
                        next_frame = now
            self._flush()
        except PeerGone:
            self.summary.ended_by = "peer_gone"
        except Expired:  # stop() or the duration ended while the line was full
            self.summary.ended_by = "stopped" if self._stop.is_set() else "duration"
        except Hangup:
            self.summary.ended_by = "disconnect"  # injected: the caller closes the line
            self.version = None if self.wait_for_hello else self.version
            self.streaming.clear()
        self.summary.faults = self.faults.counts()
        if self._frame_log:
            self._frame_log.flush()
        return self.summary

    def _end_reason(self, now: float, deadline: float | None, max_frames: int | None) -> str:
        if self._stop.is_set():
            return "stopped"
        if deadline is not None and now >= deadline:
            return "duration"
        if max_frames is not None and self.summary.frames_sent >= max_frames:
            return "max_frames"
        return ""

    def _replay_due(self, now: float, live: bool) -> float | None:
        """When the next recorded chunk is due (its recorded offset after the handshake), or None
        at the end of the recording."""
        if not live:
            self._replay_t0 = None
            return now + 0.05
        if self._replay_t0 is None:
            self._replay_t0 = now
        if self._replay_i >= len(self.replay.chunks):
            if not self.replay_loop:
                return None
            self._replay_i, self._replay_t0 = 0, now
        return self._replay_t0 + (self.replay.chunks[self._replay_i][0] - self._replay_first) / 1e6

    def _send_replay_chunk(self, now: float) -> None:
        t_chunk, data = self.replay.chunks[self._replay_i]
        self._write(data)
        self.replay_log.append((now - self._replay_t0, (t_chunk - self._replay_first) / 1e6))
        self._replay_i += 1

    def close(self) -> None:
        self.faults.close()
        if self._frame_log:
            self._frame_log.close()
            self._frame_log = None

    # ------------------------------------------------------------------ I/O

    def _poll_input(self, timeout: float) -> None:
        try:
            r, _, _ = select.select([self._fd], [], [], timeout)
        except InterruptedError:
            return
        if r:
            self._read_input()

    def _read_input(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF, errno.EPIPE):
                raise PeerGone() from None
            raise
        if not data:
            raise PeerGone()
        for msg in self._parser.feed(data):
            if isinstance(msg, Message):
                self._handle(msg)

    def _flush(self) -> None:
        if self._batch:
            parts, self._batch, self._batch_bytes = self._batch, [], 0
            self._writev(parts)

    def _writev(self, parts) -> None:
        total = sum(len(p) for p in parts)
        try:
            n = os.writev(self._fd, parts)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF, errno.EPIPE):
                raise PeerGone() from None
            raise
        self.summary.bytes_sent += n
        if n < total:  # interrupted part-way: send the rest the plain way
            self._write(b"".join(bytes(p) for p in parts)[n:])

    def _write(self, data: bytes) -> None:
        """Write everything, servicing commands while the line is full (as firmware would)."""
        self._flush()  # keep stream order behind batched frames
        mv = memoryview(data)
        if self.blocking_writes:
            while mv:  # the kernel sleeps until the reader makes room: no wake-up per 4 KiB
                try:
                    n = os.write(self._fd, mv)
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EBADF, errno.EPIPE):
                        raise PeerGone() from None
                    raise
                mv = mv[n:]
                self.summary.bytes_sent += n
            return
        self._writing = True
        try:
            while mv:
                try:
                    n = os.write(self._fd, mv)
                    mv = mv[n:]
                    self.summary.bytes_sent += n
                    continue
                except BlockingIOError:
                    pass
                except OSError as exc:
                    if exc.errno in (errno.EIO, errno.EBADF, errno.EPIPE):
                        raise PeerGone() from None
                    raise
                if self._stop.is_set() or (self._deadline is not None and time.monotonic() >= self._deadline):
                    raise Expired()
                r, _, _ = select.select([self._fd], [self._fd], [], 0.1)
                if r:
                    self._read_input()  # replies wait in the outbox: never inside this message
        finally:
            self._writing = False
        while self._outbox:
            self._write(self._outbox.pop(0))

    def _reply(self, data: bytes) -> None:
        if self._writing:
            self._outbox.append(data)
        else:
            self._write(data)

    # ------------------------------------------------------------------ protocol

    def _handle(self, msg: Message) -> None:
        if msg.type == P.MsgType.HELLO:
            dev_min, dev_max = msg.value
            try:
                v = P.negotiate(dev_min, dev_max, self.vmin, self.vmax)
            except P.ProtocolError as exc:
                self.summary.refused += 1
                self._reply(P.encode_error(str(exc), self.vmin))
                return
            self.version = v
            info = P.ProbeInfo(v, self.vmin, self.vmax, **self.info_base)
            self._reply(P.encode_capabilities(info))
            self.summary.handshakes += 1
            self.streaming.set()
        elif msg.type == P.MsgType.COMMAND and self.version is not None:
            self.summary.commands += 1
            self._reply(P.encode_ack(self._command(*msg.value), self.version))

    def _command(self, rid: int, code: int, value: float) -> P.Ack:
        try:
            cmd = P.Command(code)
        except ValueError:
            return P.Ack(rid, P.Command.FREEZE, False, value, f"unknown command code {code}")
        need = P.COMMAND_MIN_VERSION[cmd]
        if self.version < need:
            return P.Ack(rid, cmd, False, value,
                         f"{cmd.name.lower()} needs protocol {P.fmt_version(need)}; "
                         f"this link speaks {P.fmt_version(self.version)}")
        if cmd == P.Command.FREEZE:
            self.state.frozen = bool(value)
            return P.Ack(rid, cmd, True, 1.0 if self.state.frozen else 0.0)
        if cmd == P.Command.GAIN:
            if not -30.0 <= value <= 30.0:
                return P.Ack(rid, cmd, False, value, f"gain {value} dB outside -30..30 dB")
            self.state.gain_db = value
            return P.Ack(rid, cmd, True, value)
        if cmd == P.Command.FRAME_RATE:
            if not 1.0 <= value <= 200.0:
                return P.Ack(rid, cmd, False, value, f"frame rate {value} outside 1..200 fps")
            self.fps = value
            return P.Ack(rid, cmd, True, value)
        # DEPTH
        if not hasattr(self.source, "set_depth"):
            return P.Ack(rid, cmd, False, value, "depth is fixed by this source (images or replay)")
        g = self.source.geometry
        if not g.start_depth_mm + 10.0 <= value <= 300.0:
            return P.Ack(rid, cmd, False, value,
                         f"depth {value} mm outside {g.start_depth_mm + 10.0:g}..300 mm")
        self.source.set_depth(value)
        return P.Ack(rid, cmd, True, value)

    def _timestamp_us(self) -> int:
        return int((time.monotonic() - self._t0) * 1e6)

    def _send_telemetry(self) -> None:
        st = self.state
        elapsed = time.monotonic() - self._t0
        st.battery_pct = max(0.0, 100.0 - elapsed / 36.0)  # 1 % per 36 s: a 1 h battery
        st.temperature_c = min(45.0, 30.0 + elapsed / 60.0)
        button, st.pending_button = st.pending_button, P.ButtonEvent.NONE
        t = P.Telemetry(self._timestamp_us(), int(st.battery_pct), st.temperature_c, button, 0)
        self._write(P.encode_telemetry(t, self.version))

    def _send_frame(self) -> None:
        sf = self.source.next()
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFFFFFF
        g = sf.geometry
        if g.tgc_db and self.version < (1, 1):
            g = replace(g, tgc_db=None)
        parts = P.encode_frame_parts(seq, self._timestamp_us(), g, sf.samples, self.version)
        if self.blocking_writes and not self.faults.config.any:
            # samples go from the source array to the line with no copy; flat out (fps 0), a few
            # frames per system call so the writer is not back in Python at every frame
            self._batch.extend(parts)
            self._batch_bytes += len(parts[0]) + len(parts[1]) + 4
            if self.fps > 0 or self._batch_bytes >= 256 * 1024:
                self._flush()
        else:
            for chunk, stall in self.faults.apply(seq, b"".join(parts)):
                if stall:
                    self._sleep(stall)
                if chunk:
                    self._write(chunk)
        self.summary.frames_sent += 1
        self.sent.append((seq, sf.name))
        if self._frame_log:
            entry = {"seq": seq, "source": sf.name, "t": round(time.monotonic() - self._t0, 6)}
            if sf.truth is not None:  # phantom: what the frame shows, for scoring results
                entry["truth"] = sf.truth.as_dict()
            self._frame_log.write(json.dumps(entry) + "\n")
        if self.on_frame:
            self.on_frame(seq, sf.name, sf.truth)
        if self.faults.disconnect_pending:
            self.faults.disconnect_pending = False
            raise Hangup()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            self._poll_input(min(left, 0.05))

