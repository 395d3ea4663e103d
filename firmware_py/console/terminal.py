"""The console's line editor: bytes typed in, bytes to echo and finished inputs out. No I/O.

It behaves like the line discipline a technician expects from picocom, minicom or screen on a
serial console: printable characters are echoed, Backspace/DEL and Ctrl-H erase one, Ctrl-U
erases the line, Ctrl-C cancels it, Ctrl-D on an empty line ends the session, CR, LF and CRLF
each end a line, up/down recall earlier lines. Escape sequences (arrows, function keys, a
terminal's replies) are consumed whole and never echoed, so they cannot move the remote cursor.
The PIN of ``login PIN`` is echoed as stars and kept out of the history.
Anything else non-printable is dropped and reported when the line ends; a line over the limit
is not run and the error names the limit. Memory stays bounded whatever arrives.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

BS, DEL, CTRL_C, CTRL_D, CTRL_U, ESC, CR, LF = 0x08, 0x7F, 0x03, 0x04, 0x15, 0x1B, 0x0D, 0x0A  # BS is Ctrl-H
ERASE = b"\b \b"
SECRET_AFTER = b"login "
MAX_ESCAPE = 32  # longest escape sequence kept track of; a longer one is garbage


@dataclass(frozen=True)
class Input:
    """A finished input: ``line`` (text), ``error`` (text: why the line is not run), ``cancel``, ``eof``."""

    kind: str
    text: str = ""


class LineEditor:
    def __init__(self, max_line: int = 256, history: int = 50):
        self.max_line = max_line
        self.line = bytearray()
        self.history: deque[str] = deque(maxlen=history)
        self._recall = 0  # 0: the line being typed; k: the k-th most recent history entry
        self._escape: bytearray | None = None  # an escape sequence being consumed
        self._after_cr = False
        self._overflow = 0  # printable characters past the limit
        self._dropped = 0  # non-printable bytes left out of the line

    def feed(self, data: bytes) -> list[bytes | Input]:
        """Process typed bytes: the echo (bytes) and the finished inputs, in the order they came."""
        out: list[bytes | Input] = []
        echo = bytearray()

        def done(item: Input) -> None:
            out.extend((bytes(echo), item))
            echo.clear()

        for b in data:
            after_cr, self._after_cr = self._after_cr, False
            if self._escape is not None:
                self._consume_escape(b, echo)
            elif b == ESC:
                self._escape = bytearray()
            elif b in (CR, LF):
                if b == LF and after_cr:
                    continue  # the LF of a CRLF
                self._after_cr = b == CR
                echo += b"\r\n"
                done(self._finish())
            elif b in (BS, DEL):
                if self.line:
                    del self.line[-1]
                    echo += ERASE
            elif b == CTRL_U:
                echo += ERASE * len(self.line)
                self.line.clear()
            elif b == CTRL_C:
                echo += b"^C\r\n"
                self._reset()
                done(Input("cancel"))
            elif b == CTRL_D:
                if not self.line and not self._overflow and not self._dropped:
                    done(Input("eof"))
            elif 0x20 <= b < 0x7F:
                if len(self.line) < self.max_line:
                    echo.append(0x2A if self._secret() else b)
                    self.line.append(b)
                else:
                    self._overflow += 1
            else:
                self._dropped += 1
        if echo:
            out.append(bytes(echo))
        return [x for x in out if x != b""]

    def _consume_escape(self, b: int, echo: bytearray) -> None:
        seq = self._escape
        seq.append(b)
        if len(seq) == 1:
            if b in (0x5B, 0x4F):  # CSI "ESC [" or SS3 "ESC O": a final byte follows
                return
            self._escape = None  # a two-byte sequence (ESC x): consumed
            return
        if len(seq) > MAX_ESCAPE:
            self._escape = None
            self._dropped += len(seq) + 1
            return
        if 0x40 <= b <= 0x7E:  # the final byte
            self._escape = None
            if seq[0] == 0x5B and len(seq) == 2 and b in (0x41, 0x42):  # up, down
                self._recall_history(1 if b == 0x41 else -1, echo)

    def _secret(self) -> bool:
        """The PIN of ``login PIN`` is echoed as stars and never kept in the history."""
        return self.line[:len(SECRET_AFTER)].lower() == SECRET_AFTER

    def _recall_history(self, step: int, echo: bytearray) -> None:
        k = min(max(self._recall + step, 0), len(self.history))
        if k == self._recall:
            return
        self._recall = k
        text = self.history[-k].encode() if k else b""
        echo += ERASE * len(self.line) + text
        self.line[:] = text

    def _finish(self) -> Input:
        text = self.line.decode("ascii")
        overflow, dropped = self._overflow, self._dropped
        self._reset()
        if overflow:
            return Input("error", f"line longer than the console's limit of {self.max_line} characters "
                                  f"({self.max_line + overflow} typed); nothing was run")
        if dropped:
            return Input("error", f"{dropped} non-printable byte(s) in the line; nothing was run; type plain "
                                  "text")
        if text.strip() and not text.lower().startswith(SECRET_AFTER.decode()) and (not self.history or self.history[-1] != text):
            self.history.append(text)
        return Input("line", text)

    def _reset(self) -> None:
        self.line.clear()
        self._recall = self._overflow = self._dropped = 0
        self._escape = None
