"""ProbeLink: the probe's serial line, framed, with handshake, reconnection and counters.

One acquisition thread: open (URL, or discovery by USB VID:PID) -> hello/capabilities -> read
straight into the parser's buffers -> sink(frame). On SerialException / OSError / termios.error
(an unplug) it closes, waits with exponential back-off and starts again with a new handshake;
counters survive reconnects. The sink and on_event run on this thread: they must only hand
over (e.g. put the frame in the latest-frame slot), never process.
"""
from __future__ import annotations

import itertools
import os
import select
import termios
import threading
import time

import serial
import serial.tools.list_ports

from firmware_py.drivers import protocol as P
from firmware_py.drivers.buffers import BufferPool, Frame
from firmware_py.drivers.parser import FrameParser, Message
from firmware_py.errors import LinkError

LINE_ERRORS = (serial.SerialException, OSError, termios.error)
COMMAND_NAMES = {c.name.lower(): c for c in P.Command}


class CommandRejected(LinkError):
    """The probe answered a command with an error (its message is in the text)."""


class HandshakeRefused(LinkError):
    """The probe and this driver have no protocol version in common (or the probe chose badly)."""


def parse_vid_pid(vid_pid: str) -> tuple[int, int]:
    try:
        v, p = vid_pid.split(":")
        return int(v, 16), int(p, 16)
    except ValueError:
        raise LinkError(f"probe VID:PID {vid_pid!r} is not two hex numbers like '1fc9:0083'") from None


def find_port(vid_pid: str, list_ports=serial.tools.list_ports.comports) -> str:
    """Device path of the first serial port (sorted by path) with this USB VID:PID."""
    vid, pid = parse_vid_pid(vid_pid)
    found = sorted(p.device for p in list_ports() if p.vid == vid and p.pid == pid)
    if not found:
        raise LinkError(f"no USB serial device with VID:PID {vid_pid} is connected; plug the probe in "
                        "or give its port URL")
    return found[0]


class _FdReader:
    """True readinto on a POSIX port: poll + os.readv into the caller's buffer (pyserial's own
    readinto reads into a new bytes object and copies)."""

    def __init__(self, port, timeout: float):
        self.fd = port.fileno()
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        self.timeout_ms = int(timeout * 1000)

    def readinto(self, mv: memoryview) -> int:
        # pyserial leaves VMIN=0, so an empty read means "nothing yet" unless poll said readable.
        try:
            n = os.readv(self.fd, (mv,))
        except BlockingIOError:
            n = 0
        if n:
            return n
        if not self.poll.poll(self.timeout_ms):
            return 0
        try:
            n = os.readv(self.fd, (mv,))
        except BlockingIOError:
            return 0
        if n == 0:
            raise serial.SerialException("the port is readable but returned no data (probe unplugged)")
        return n


class _SelectableReader:
    """A backend with a descriptor to wait on but no byte count (socket://): its in_waiting says
    only 1 when anything has arrived, so reading what it reports took one byte per call, and the
    link fell behind a 100 fps stream under emulation (a command's ack queued behind seconds of
    frames). Wait on the descriptor, then take all that has arrived in one non-blocking read."""

    def __init__(self, port, timeout: float):
        self.port = port
        port.timeout = 0  # read() returns what is there; the wait is the select below
        self.fd = port.fileno()
        self.timeout = timeout

    def readinto(self, mv: memoryview) -> int:
        if not select.select([self.fd], [], [], self.timeout)[0]:
            return 0
        data = self.port.read(len(mv))  # b"" at end of stream raises SerialException (a line error)
        mv[:len(data)] = data
        return len(data)


class _PortReader:
    """Any other pyserial backend (loop://, rfc2217://): read what is waiting (their in_waiting
    is a byte count), copy."""

    def __init__(self, port, timeout: float):
        self.port = port
        port.timeout = timeout

    def readinto(self, mv: memoryview) -> int:
        want = max(1, min(len(mv), self.port.in_waiting))
        data = self.port.read(want)
        mv[:len(data)] = data
        return len(data)


class ProbeLink:
    def __init__(self, url: str | None = None, vid_pid: str | None = None, *, baudrate: int = 115200,
                 read_timeout: float = 0.1, handshake_timeout: float = 2.0, hello_interval: float = 0.5,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0, pool_buffers: int = 4,
                 pool_max_buffers: int = 8, max_payload: int = P.DEFAULT_MAX_PAYLOAD,
                 version_min: P.Version = P.SUPPORTED_MIN, version_max: P.Version = P.SUPPORTED_MAX,
                 record_path: str | None = None, record_max_bytes: int = 256 * 1024 * 1024,
                 list_ports=serial.tools.list_ports.comports, exclusive: bool = True,
                 stall_timeout: float = 0.25, silence_timeout: float | None = 3.0):
        if not url and not vid_pid:
            raise LinkError("no probe port: give a serial URL (e.g. /dev/serial/by-id/...) or a USB VID:PID")
        if vid_pid:
            parse_vid_pid(vid_pid)
        if not (P.SUPPORTED_MIN <= version_min <= version_max <= P.SUPPORTED_MAX):
            raise ValueError(f"version range {version_min}..{version_max} outside what this driver speaks "
                             f"({P.fmt_version(P.SUPPORTED_MIN)}..{P.fmt_version(P.SUPPORTED_MAX)})")
        self.url, self.vid_pid = url, vid_pid
        self.baudrate, self.read_timeout, self.exclusive = baudrate, read_timeout, exclusive
        self.handshake_timeout, self.hello_interval = handshake_timeout, hello_interval
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.version_min, self.version_max = version_min, version_max
        self.max_payload = max_payload
        self.stall_timeout = stall_timeout
        self.silence_timeout = silence_timeout
        self.silences = 0
        self.pool = BufferPool(count=pool_buffers, size=0, max_buffers=pool_max_buffers)
        self.parser = FrameParser(self.pool, max_payload=max_payload, versions=(version_min, version_max))
        self._list_ports = list_ports
        self.record_path, self.record_max_bytes = record_path, record_max_bytes
        self.recorder = None
        self._sink = self._on_event = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._port = None
        self._write_lock = threading.Lock()
        self._parse_lock = threading.Lock()  # parser state vs stats() from other threads
        self._rid = itertools.count(1)
        self._pending: dict[int, list] = {}
        self._pending_lock = threading.Lock()
        self.info: P.ProbeInfo | None = None
        self.version: P.Version | None = None
        self.port_path: str | None = None
        self.connects = self.reconnects = self.handshake_failures = 0
        self.sink_errors = 0
        self.last_error = ""
        self.telemetry: P.Telemetry | None = None
        self.last_button: dict | None = None
        self._telemetry_ns = 0

    # ------------------------------------------------------------------ public API

    def start(self, sink, on_event=None) -> None:
        """Start the acquisition thread. ``sink(frame)`` owns the frame and must release() it."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("ProbeLink already started; call stop() first")
        if self.record_path:
            from firmware_py.drivers.recorder import Recorder

            self.recorder = Recorder(self.record_path, self.record_max_bytes)
        self._sink, self._on_event = sink, on_event
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="probe-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)
        self._thread = None
        if self.recorder is not None:
            self.recorder.close()

    def wait_connected(self, timeout: float) -> bool:
        """True once a handshake has succeeded (and the line is still up)."""
        return self._connected.wait(timeout)

    @property
    def alive(self) -> bool:
        """The acquisition thread runs: connected, or reconnecting with back-off."""
        t = self._thread
        return t is not None and t.is_alive()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def send_command(self, name: str, value: float = 0.0, timeout: float = 1.0) -> P.Ack:
        """Send freeze/depth/gain/frame_rate; return the probe's ack or raise CommandRejected /
        LinkError (not connected, not supported by the negotiated version, no answer in time)."""
        cmd = COMMAND_NAMES.get(name)
        if cmd is None:
            raise ValueError(f"unknown probe command {name!r}; use one of {', '.join(COMMAND_NAMES)}")
        port, version = self._port, self.version
        if port is None or version is None or not self.connected:
            raise LinkError(f"cannot send {name}: the probe is not connected")
        need = P.COMMAND_MIN_VERSION[cmd]
        if version < need:
            raise LinkError(f"{name} needs protocol {P.fmt_version(need)}; the probe speaks "
                            f"{P.fmt_version(version)} (update the probe firmware)")
        rid = next(self._rid) & 0xFFFFFFFF
        slot = [threading.Event(), None]
        with self._pending_lock:
            self._pending[rid] = slot
        try:
            self._write(port, P.encode_command(rid, cmd, value, version))
            if not slot[0].wait(timeout):
                raise LinkError(f"the probe did not acknowledge {name}={value} within {timeout} s")
        except LINE_ERRORS as exc:
            raise LinkError(f"cannot send {name}: {exc}") from None
        finally:
            with self._pending_lock:
                self._pending.pop(rid, None)
        ack: P.Ack = slot[1]
        if not ack.ok:
            raise CommandRejected(f"the probe refused {name}={value}: {ack.message}")
        return ack

    def stats(self) -> dict:
        with self._parse_lock:  # a consistent snapshot: the accounting identities hold exactly
            s = self.parser.stats()
        t = self.telemetry
        s.update({
            "connected": self.connected,
            "port": self.port_path,
            "version": P.fmt_version(self.version) if self.version else None,
            "probe": self.info.as_dict() if self.info else None,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "handshake_failures": self.handshake_failures,
            "silences": self.silences,
            "sink_errors": self.sink_errors,
            "last_error": self.last_error,
            "battery_pct": t.battery_pct if t else None,
            "temperature_c": t.temperature_c if t else None,
            "telemetry_age_s": round((time.monotonic_ns() - self._telemetry_ns) / 1e9, 3) if t else None,
            "last_button": self.last_button,
            "pool": self.pool.stats(),
        })
        if self.recorder is not None:
            s["recorder"] = self.recorder.stats()
        return s

    # ------------------------------------------------------------------ acquisition thread

    def _emit(self, event: dict) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a faulty observer must not take the link down
                self.sink_errors += 1

    def _run(self) -> None:
        backoff = self.backoff_initial
        while not self._stop.is_set():
            port = None
            try:
                port = self._open()
                reader = self._handshake(port)
                if reader is None:  # stop() during the handshake
                    break
                backoff = self.backoff_initial
                self._read_loop(reader)
            except LINE_ERRORS as exc:
                self._fail("disconnected", f"probe line lost ({self.port_path}): {exc}")
            except LinkError as exc:
                if self._connected.is_set():  # lost after the handshake (silence)
                    self._fail("disconnected", str(exc))
                else:
                    self.handshake_failures += 1
                    self._fail("error", str(exc))
                if isinstance(exc, HandshakeRefused):
                    backoff = self.backoff_max  # incompatible probe: do not hammer it
            except Exception as exc:  # never let the acquisition thread die silently
                self._fail("error", f"probe link error: {exc!r}")
                backoff = self.backoff_max
            finally:
                was_connected = self._connected.is_set()
                self._connected.clear()
                self._port = None
                if port is not None:
                    try:
                        port.close()
                    except LINE_ERRORS:
                        pass
                if not self._stop.is_set():
                    # A lost line truncates the frame in flight. On a clean stop it is left
                    # counted as in progress: it was cut by us, not corrupted by the line.
                    with self._parse_lock:
                        self.parser.reset()
                self.parser.version = None
                if was_connected and not self._stop.is_set():
                    self.reconnects += 1
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max)

    def _fail(self, kind: str, text: str) -> None:
        repeated = text == self.last_error
        self.last_error = text
        if not repeated:  # an unplugged probe fails the same way every back-off: say it once
            self._emit({"type": kind, "message": text})

    def _open(self):
        path = self.url or find_port(self.vid_pid, self._list_ports)
        self.port_path = path
        kwargs = {"baudrate": self.baudrate, "timeout": self.read_timeout, "do_not_open": True}
        try:
            port = serial.serial_for_url(path, **kwargs)
        except ValueError as exc:  # unknown URL scheme or bad option: a configuration mistake
            raise LinkError(f"cannot open probe port {path!r}: {exc}; use a device path or a pyserial URL") from None
        if self.exclusive and isinstance(port, serial.Serial):
            port.exclusive = True  # flock on POSIX: a second reader would steal bytes from frames
        port.open()
        self._port = port
        return port

    def _reader(self, port):
        if isinstance(port, serial.Serial) and hasattr(port, "fd") and port.fd is not None:
            return _FdReader(port, self.read_timeout)
        if hasattr(port, "fileno"):
            return _SelectableReader(port, self.read_timeout)
        return _PortReader(port, self.read_timeout)

    def _write(self, port, data: bytes) -> None:
        with self._write_lock:
            port.write(data)
            port.flush()

    def _handshake(self, port):
        """The reader for the session once the probe's capabilities are accepted; None if
        stop() came first.

        A probe that does not answer yet (booting, or its driver starting after ours) is waited for
        on the port as opened, a hello every hello_interval; each handshake_timeout without an
        answer counts a failure (said once). Closing and reopening the port would lose what the
        probe sends in between: pyserial flushes a port's input when it opens it, so a probe
        answering just after the timeout had its capabilities and first frames discarded unseen,
        by no counter of ours (the soak under emulation lost a frame so). A refusal, a bad answer
        or a line error goes to the caller, which closes the port and backs off."""
        reader = self._reader(port)
        parser = self.parser
        parser.version, parser.max_payload = None, self.max_payload
        deadline = time.monotonic() + self.handshake_timeout
        next_hello = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                self.handshake_failures += 1
                self._fail("error", f"the probe on {self.port_path} did not answer the hello within "
                                    f"{self.handshake_timeout} s; check it is a firmware-py probe and powered")
                deadline = now + self.handshake_timeout
            if now >= next_hello:
                self._write(port, P.encode_hello(self.version_min, self.version_max))
                next_hello = now + self.hello_interval
            buf = parser.get_buffer()
            n = reader.readinto(buf)
            if not n:
                continue
            if self.recorder is not None:
                self.recorder.write(buf[:n])
            with self._parse_lock:
                items = parser.buffer_updated(n)
            for k, item in enumerate(items):
                if isinstance(item, Frame):
                    item.release()  # cannot happen before capabilities (parser has no version)
                elif item.type == P.MsgType.ERROR:
                    raise HandshakeRefused(f"the probe refused the handshake: {item.value}")
                elif item.type == P.MsgType.CAPABILITIES:
                    self._accept(item.value)
                    self._deliver(items[k + 1:], self._sink)  # what followed in the same read
                    return reader
                else:
                    self._dispatch(item)
        return None

    def _accept(self, info: P.ProbeInfo) -> None:
        v = info.version
        if not (self.version_min <= v <= self.version_max and info.probe_min <= v <= info.probe_max):
            raise HandshakeRefused(f"the probe refused the handshake: it chose protocol {P.fmt_version(v)}, outside "
                            f"{P.fmt_version(self.version_min)}..{P.fmt_version(self.version_max)}")
        if info.max_frame_bytes <= 0:
            raise LinkError(f"the probe announced a maximum frame size of {info.max_frame_bytes} bytes")
        self.info, self.version = info, v
        self.parser.version = v  # (the parser adopted it already; set it for clarity)
        self.parser.max_payload = min(self.max_payload, info.max_frame_bytes)
        self.connects += 1
        self.last_error = ""
        self._connected.set()
        if self.recorder is not None:
            self.recorder.set_header(info)
        self._emit({"type": "connected", "port": self.port_path, **info.as_dict()})

    def _read_loop(self, reader) -> None:
        parser, sink = self.parser, self._sink
        rec = self.recorder
        stop = self._stop
        idle_since = time.monotonic()
        while not stop.is_set():
            buf = parser.get_buffer()
            n = reader.readinto(buf)
            if not n:
                # A frame cut short and then silence: reject it now and recover what followed it,
                # instead of waiting for bytes that will never come.
                quiet = time.monotonic() - idle_since
                if parser.frames_in_progress and quiet >= self.stall_timeout:
                    with self._parse_lock:
                        items = parser.abandon()
                    self._deliver(items, sink)
                if self.silence_timeout and quiet >= self.silence_timeout:
                    # The probe sends telemetry at least every second, even frozen: silence means
                    # it reset (and waits for a hello) or hung. Start a new session.
                    self.silences += 1
                    raise LinkError(f"no data from the probe for {quiet:.1f} s; reconnecting")
                continue
            idle_since = time.monotonic()
            if rec is not None:
                rec.write(buf[:n])
            with self._parse_lock:
                items = parser.buffer_updated(n)
            self._deliver(items, sink)

    def _deliver(self, items: list, sink) -> None:
        for item in items:
            if isinstance(item, Frame):
                try:
                    sink(item)
                except Exception as exc:  # keep acquiring; the frame is lost, so say so
                    self.sink_errors += 1
                    item.release()
                    self.last_error = f"frame sink failed: {exc!r}"
            else:
                self._dispatch(item)

    def _dispatch(self, msg: Message) -> None:
        if msg.type == P.MsgType.TELEMETRY:
            t: P.Telemetry = msg.value
            self.telemetry, self._telemetry_ns = t, time.monotonic_ns()
            if t.button != P.ButtonEvent.NONE:
                self.last_button = {"event": t.button.name.lower(), "button": t.button_id,
                                    "timestamp_us": t.timestamp_us}
                self._emit({"type": "button", **self.last_button})
        elif msg.type == P.MsgType.ACK:
            ack: P.Ack = msg.value
            with self._pending_lock:
                slot = self._pending.get(ack.request_id)
            if slot is not None:
                slot[1] = ack
                slot[0].set()
        elif msg.type == P.MsgType.ERROR:
            self._fail("probe_error", f"probe reported: {msg.value}")
