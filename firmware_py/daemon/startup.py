"""The daemon's start-up selftest: what must hold before it tells systemd READY=1.

Checks the kernels against their NumPy twins, the accelerator (configured but absent is an error
with ``accelerator.required``, otherwise a loud warning and the CPU twins run), the battery and
thermal sensors and the power monitor (unreadable: a warning; the policy falls back to its safe
rung after power.sensor_timeout_s), that the journal
takes a write, and that no other user may write the files the device trusts (the configuration,
which holds the PIN digest, and the public key model sets must be signed with): a warning naming
the file and ``chmod o-w FILE``. The engine has already verified, loaded and warmed the start tier. A failed
check that is fatal raises FirmwareError with its one line; the others are kept as warnings in
the status line, the console's counters and systemd's STATUS=.
"""
from __future__ import annotations

import logging
import os
import shlex
import stat

from firmware_py.errors import FirmwareError
from firmware_py.kernels.selfcheck import check_kernels

log = logging.getLogger(__name__)


def startup_selftest(daemon) -> list[str]:
    """The warnings of a passed selftest; raises FirmwareError when a fatal check fails."""
    c, warnings = daemon.cfg, []
    try:
        check_kernels(c.preprocess.threads)
    except AssertionError as exc:
        raise FirmwareError(f"selftest: {exc}; reinstall firmware-py so its kernels are rebuilt for this "
                            "machine") from None
    accelerator = daemon.engine.accelerator
    if c.accelerator.kind != "none" and (accelerator is None or accelerator.kind.handle() is None):
        why = accelerator.kind.error if accelerator is not None else "not configured"
        text = f"accelerator {c.accelerator.kind} not available ({why}); every tier runs its CPU twin"
        if c.accelerator.required:
            raise FirmwareError(f"selftest: {text}; plug it in, or set accelerator.required: false")
        warnings.append(text)
    for name, sensor in (("battery", daemon.battery), ("thermal", daemon.thermal),
                         ("power monitor", getattr(daemon, "monitor", None))):
        if sensor is None:  # power.monitor.kind: none
            continue
        try:
            sensor.read()
        except OSError as exc:
            warnings.append(f"{name} sensor {getattr(sensor, 'name', '?')} unreadable ({exc})")
    warnings += writable_by_others(daemon)
    journal = daemon.journal
    if journal is not None:
        journal.event("selftest", {"warnings": warnings})
        journal.flush()
        if journal.failure is not None:
            if c.output.journal_on_error == "stop":
                raise FirmwareError(f"selftest: {journal.failure}; free space or fix output.journal")
            warnings.append(journal.failure)
    for text in warnings:
        log.warning("selftest: %s", text)
    return warnings


def writable_by_others(daemon) -> list[str]:
    """One warning per trusted file that users other than its owner and group may write: anyone on
    the device could then set their own PIN digest, or a key that signs their own models."""
    from firmware_py.inference.engine import default_public_key

    c = daemon.cfg
    trusted = []
    if getattr(daemon, "config_path", None):
        trusted.append((daemon.config_path, "the configuration" + (", holding console.pin_hash" if c.console.pin_hash
                                                                   else "")))
    trusted.append((c.models.public_key or default_public_key(), "models.public_key, the key model sets are "
                                                                 "verified with"))
    out = []
    for path, what in trusted:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # a missing key or file is refused where it is read, with its own line
        if mode & stat.S_IWOTH:
            out.append(f"{path} ({what}) is writable by other users; fix: chmod o-w {shlex.quote(path)}")
    return out
