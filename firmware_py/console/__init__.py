"""Service console: a command prompt on a second serial port, for field technicians.

The technician plugs a USB-serial cable into the handheld and connects with picocom, minicom or
screen. Roles, one module each: ``terminal`` (the line editor: echo, erase, history, escape
sequences; pure bytes in, bytes out), ``session`` (who is connected, since when, logged in or
not), ``auth`` (the salted PIN digest and the login back-off), ``commands`` (the command table),
``logbuffer`` (recent log lines). This module serves the port on its own thread: it opens the
port, reopens it with back-off when the cable is unplugged and plugged back, feeds the editor,
runs commands and writes replies. It never touches the frame path: state changes go through the
daemon's command queue and results reach ``watch`` through a sink fed after the journal's commit.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time

import serial

from firmware_py.console.auth import LoginGuard, verify_pin
from firmware_py.console.commands import COMMANDS
from firmware_py.console.logbuffer import RecentLog
from firmware_py.console.session import Session, carrier
from firmware_py.console.terminal import Input, LineEditor
from firmware_py.errors import ConfigError, FirmwareError

log = logging.getLogger(__name__)

BANNER = "firmware-py service console; type help"
PROMPT = "> "
REOPEN_INITIAL_S, REOPEN_MAX_S = 0.2, 5.0
WRITE_TIMEOUT_S = 5.0  # nobody reads the port for this long: treated like an unplugged cable


class ServiceConsole:
    """Serves one port on its own thread; ``daemon`` is the running Daemon."""

    def __init__(self, url: str, daemon, *, pin_hash: str | None, baudrate: int = 115200, max_failures: int = 5,
                 backoff_s: float = 1.0, lockout_s: float = 60.0, idle_timeout_s: float = 300.0,
                 max_line: int = 256, clock=time.monotonic):
        self.url, self.daemon, self.pin_hash = url, daemon, pin_hash
        self.baudrate, self.idle_timeout_s, self.max_line, self._clock = baudrate, idle_timeout_s, max_line, clock
        self.guard = LoginGuard(max_failures=max_failures, backoff_s=backoff_s, lockout_s=lockout_s, clock=clock)
        self.recent_log = RecentLog()
        self.session = Session(clock)
        self.editor = LineEditor(max_line)
        self.sessions = 0
        self.as_json = False
        self.reopens = 0
        self._port = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            serial.serial_for_url(url, do_not_open=True)
        except ValueError as exc:
            raise ConfigError(f"console.port {url!r} is not a device path or pyserial URL ({exc}); use e.g. "
                              "/dev/ttyUSB0") from None

    @classmethod
    def from_config(cls, c, daemon) -> "ServiceConsole":
        return cls(c.port, daemon, pin_hash=c.pin_hash, baudrate=c.baudrate, max_failures=c.max_failures,
                   backoff_s=c.backoff_s, lockout_s=c.lockout_s, idle_timeout_s=c.idle_timeout_s,
                   max_line=c.max_line)

    @property
    def lockout_s(self) -> float:
        return self.guard.lockout_s

    @lockout_s.setter
    def lockout_s(self, value: float) -> None:  # a configuration reload changes it live
        self.guard.lockout_s = value

    @property
    def logged_in(self) -> bool:
        return self.session.logged_in

    def start(self) -> None:
        logging.getLogger().addHandler(self.recent_log)
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        logging.getLogger().removeHandler(self.recent_log)
        self._close_port()

    # -- the port ----------------------------------------------------------------------------
    def _serve(self) -> None:
        delay = REOPEN_INITIAL_S
        while not self._stop.is_set():
            try:
                self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=0.1,
                                                   write_timeout=WRITE_TIMEOUT_S)
            except (serial.SerialException, OSError) as exc:
                say = log.warning if delay == REOPEN_INITIAL_S else log.debug  # once per absence
                say("console port %s cannot be opened (%s); the console waits for it (check console.port or "
                    "the cable)", self.url, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, REOPEN_MAX_S)
                continue
            delay = REOPEN_INITIAL_S
            try:
                self._serve_port()
            except (serial.SerialException, OSError) as exc:
                log.warning("console port %s went away (%s); reopening it when it comes back", self.url, exc)
                self.reopens += 1
            finally:
                self._end_session("disconnected")
                self._close_port()

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    def _serve_port(self) -> None:
        port = self._port
        has_carrier = carrier(port)
        if has_carrier is not False:  # no modem lines: whoever is there sees the banner now
            self._begin_session()
        while not self._stop.is_set():
            data = port.read(max(1, port.in_waiting))
            up = carrier(port) if has_carrier is not None else None
            if up is False and self.session.ended is None:
                self._end_session("carrier lost")
            elif up and self.session.ended is not None:
                self._begin_session()
            if not data:
                if self.session.ended is None and self.session.idle_for() >= self.idle_timeout_s:
                    self._write_text(f"\nsession ended after {self.idle_timeout_s:.0f} s idle; press a key\n")
                    self._end_session("idle timeout")
                continue
            if self.session.ended is not None:
                self._begin_session()  # the first byte after a session ended starts the next one
                continue
            self.session.touch()
            self._handle(data)

    def _handle(self, data: bytes) -> None:
        for item in self.editor.feed(data):
            if self.session.ended is not None:
                return  # `exit` or Ctrl-D: the rest of the chunk was typed into a closed session
            if isinstance(item, bytes):
                if not self.session.json:
                    self._port.write(item)
                continue
            self._answer(item)

    def _answer(self, item: Input) -> None:
        if item.kind == "eof":
            self._write_text("\nbye\n")
            self._end_session("ctrl-d")
            return
        if item.kind == "line":
            reply = self.execute(item.text)
        elif item.kind == "error":
            reply = self._render("", f"error: {item.text}", self.session.json, False)
        else:
            reply = ""
        if reply:
            self._write_text(reply + "\n")
        if self.session.ended is None and not self.session.json:
            self._write_text(PROMPT)

    def _write_text(self, text: str) -> None:
        port = self._port
        if port is not None:
            port.write(text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace"))

    # -- sessions ----------------------------------------------------------------------------
    def _begin_session(self) -> None:
        self.session = Session(self._clock)
        self.editor = LineEditor(self.max_line)
        self.sessions += 1
        self.audit("session start", "ok")
        self._write_text(f"\n{BANNER}\n{PROMPT}")

    def _end_session(self, why: str) -> None:
        if self.session.ended is None:
            self.session.ended = why
            self.session.logged_in = False
            self.audit("session end", why)

    def end_session(self, why: str) -> None:
        """``exit``: the reply is written, then no prompt; the next key starts a new session."""
        self._end_session(why)

    def audit(self, action: str, outcome: str) -> None:
        """Sessions and every state-changing command, in the journal's audit table (never a PIN)."""
        log.info("console session %d: %s: %s", self.session.number, action, outcome)
        journal = getattr(self.daemon, "journal", None)
        if journal is not None:
            journal.audit(source="console", session=self.session.number, action=action, outcome=outcome)

    # -- commands (the table is in console/commands.py) ----------------------------------------
    def execute(self, text: str) -> str:
        """Run one command line; the reply as written to the technician (without the prompt)."""
        words = text.split()
        suffix = bool(words) and words[-1].lower() == "--json"
        if suffix:
            words = words[:-1]
        if not words:
            return ""
        name, args = words[0].lower(), words[1:]
        cmd = COMMANDS.get(name)
        if cmd is None:
            return self._render(name, f"error: unknown command '{name}'; type help", suffix or self.session.json,
                                False)
        self.as_json = suffix or self.session.json  # for what the command writes itself (watch)
        changing = cmd.changes(args)
        reply = self._require_login() if changing else None
        if reply is None:
            try:
                reply = cmd.run(self, args)
            except (FirmwareError, ValueError) as exc:
                reply = f"error: {exc}"
            except Exception as exc:  # a bug: one line here, the traceback in the log, the console lives on
                log.exception("console command %r failed", text)
                reply = f"error: {name} failed ({type(exc).__name__}: {exc}); see the daemon log (log 20)"
        if changing:
            outcome = _outcome(reply)
            if outcome.startswith("error"):
                # A refused command's words are not kept: a PIN typed in the wrong place ("tier 1234...")
                # must not land in the log or the journal. What was tried, and that it was refused, is.
                for arg in sorted(set(args), key=len, reverse=True):
                    outcome = outcome.replace(arg, "<arg>")
                self.audit(f"{name} ({len(args)} argument(s), not recorded)", outcome)
            else:
                self.audit(" ".join([name] + args), outcome)
        return self._render(name, reply, suffix or self.session.json, cmd.text_as_json)  # `json on` answers in JSON

    @staticmethod
    def _render(name: str, reply, as_json: bool, text_as_json: bool) -> str:
        if isinstance(reply, dict):
            if text_as_json and not as_json:
                return json.dumps(reply, sort_keys=True, default=str)
            if as_json:
                return json.dumps({"command": name, "ok": True, "data": reply}, sort_keys=True, default=str)
            return "\n".join(f"{k}: {v}" for k, v in _flat(reply))
        if not as_json:
            return reply
        if reply.startswith("error: "):
            return json.dumps({"command": name, "ok": False, "error": reply[7:]})
        return json.dumps({"command": name, "ok": True, "reply": reply.removeprefix("ok: ")})

    def post(self, name: str, /, **args) -> str:
        """A state change, through the daemon's command queue: the reply is the real outcome."""
        return self.daemon.commands.call(name, source="console", **args)

    def _require_login(self) -> str | None:
        if self.pin_hash is None:
            return "error: no technician PIN is configured (console.pin_hash); this command is disabled"
        if not self.session.logged_in:
            return "error: log in first: login PIN"
        return None

    def login(self, pin: str) -> str:
        refusal = self.guard.refusal()
        if refusal is None and self.pin_hash is None:
            refusal = "no technician PIN is configured (console.pin_hash); make one with firmware-py config pin"
        if refusal is not None:
            self.audit("login", f"refused ({refusal})")
            return f"error: {refusal}"
        if verify_pin(pin, self.pin_hash):
            self.guard.succeeded()
            self.session.logged_in = True
            self.audit("login", "ok")
            return "ok: logged in"
        said = self.guard.failed()
        self.audit("login", said)
        log.warning("console session %d: %s", self.session.number, said)
        return f"error: {said}"

    def stream(self, feed: "queue.Queue", render, limit: int) -> int:
        """``watch``: write render(item) for each item from feed until a key is pressed or ``limit``
        items (0: no limit) have been written; how many were."""
        shown = 0
        port = self._port
        while not self._stop.is_set() and (not limit or shown < limit):
            if port is not None and port.in_waiting:
                port.read(port.in_waiting)  # the key that ends the watch is not a command
                break
            try:
                item = feed.get(timeout=0.1)
            except queue.Empty:
                continue
            self._write_text(render(item, self.as_json) + "\n")
            shown += 1
        return shown


def _outcome(reply) -> str:
    text = reply if isinstance(reply, str) else "ok"
    return text.splitlines()[0][:200] if text else "ok"


def _flat(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
