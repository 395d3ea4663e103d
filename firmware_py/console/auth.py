"""The technician PIN: a salted scrypt digest in the configuration, and the login guard.

A 4- to 8-digit PIN has at most 10^8 values, so the digest must be slow to search: scrypt
(hashlib, no extra package) with a random salt per device and a cost tuned on the device when
the digest is made (``firmware-py config pin``), stored as ``scrypt$N$r$p$SALT$HASH`` (salt and
hash in base64). At the console, wrong PINs back off exponentially and lock logins out after a
configured number, so the line cannot be used to search either.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time

FORMAT = re.compile(r"scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")
PATTERN = FORMAT.pattern
MIN_N, MAX_N = 2 ** 10, 2 ** 20
TUNE_TARGET_S = 0.1  # one verification on the device: slow for a search, quick for a login
TUNE_START_N, TUNE_MAX_N = 2 ** 14, 2 ** 17
R, P = 8, 1


def _scrypt(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32,
                          maxmem=256 * r * n + 2 ** 20)


def hash_pin(pin: str, n: int = TUNE_START_N, *, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = _scrypt(pin, salt, n, R, P)
    b64 = base64.b64encode
    return f"scrypt${n}${R}${P}${b64(salt).decode()}${b64(digest).decode()}"


def tuned_cost(clock=time.perf_counter) -> int:
    """The scrypt N for which one verification takes about TUNE_TARGET_S on this machine."""
    n = TUNE_START_N
    while n < TUNE_MAX_N:
        t0 = clock()
        _scrypt("0000", b"tune", n, R, P)
        if clock() - t0 >= TUNE_TARGET_S / 2:
            break
        n *= 2
    return n


def check_pin_hash(text: str) -> str | None:
    """Why ``text`` is not a usable console.pin_hash, or None."""
    m = FORMAT.fullmatch(text)
    if m is None:
        return "is not a scrypt$N$r$p$SALT$HASH digest; make one with firmware-py config pin"
    n, r, p = (int(g) for g in m.groups()[:3])
    if not (MIN_N <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return f"has a cost (N={n}, r={r}, p={p}) out of range; make a new one with firmware-py config pin"
    return None


def verify_pin(pin: str, stored: str) -> bool:
    m = FORMAT.fullmatch(stored)
    n, r, p = (int(g) for g in m.groups()[:3])
    salt, digest = base64.b64decode(m.group(4)), base64.b64decode(m.group(5))
    return hmac.compare_digest(_scrypt(pin, salt, n, r, p), digest)


class LoginGuard:
    """Wrong PINs in a row: the k-th makes the next try wait ``backoff_s * 2**(k-1)``; the
    ``max_failures``-th locks logins for ``lockout_s``. A right PIN clears the count."""

    def __init__(self, *, max_failures: int, backoff_s: float, lockout_s: float, clock=time.monotonic):
        self.max_failures, self.backoff_s, self.lockout_s = max_failures, backoff_s, lockout_s
        self._clock = clock
        self.failures = 0
        self._next_try = 0.0
        self._locked = False

    def refusal(self) -> str | None:
        """Why a login may not be tried now, or None."""
        wait = self._next_try - self._clock()
        if wait <= 0:
            if self._locked:
                self._locked, self.failures = False, 0
            return None
        if self._locked:
            return f"logins locked after {self.max_failures} wrong PINs; try again in {wait:.0f} s"
        return f"wait {wait:.1f} s before the next try (wrong PINs back off)"

    def failed(self) -> str:
        self.failures += 1
        now = self._clock()
        if self.failures >= self.max_failures:
            self._locked, self._next_try = True, now + self.lockout_s
            return f"wrong PIN; logins locked for {self.lockout_s:.0f} s"
        self._next_try = now + self.backoff_s * 2 ** (self.failures - 1)
        return f"wrong PIN ({self.max_failures - self.failures} tries left)"

    def succeeded(self) -> None:
        self.failures, self._next_try = 0, 0.0
