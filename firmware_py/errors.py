"""Errors a user, technician or the world can cause, each with a one-line message.

The CLI prints ``str(error)`` on one line (no traceback) and exits with ``exit_code``:
2 for usage and configuration errors, 1 for runtime failures.
"""
from __future__ import annotations

import reprlib


class FirmwareError(Exception):
    """Base class: the message names the problem and the fix, on one line."""

    exit_code = 1


class ConfigError(FirmwareError):
    """Bad configuration file or value (exit 2)."""

    exit_code = 2


class UsageError(FirmwareError):
    """Bad command-line usage (exit 2)."""

    exit_code = 2


class LinkError(FirmwareError):
    """The probe link cannot be opened or has failed for good."""


class ModelError(FirmwareError):
    """A model file or the manifest is missing, damaged or unsupported."""


class SecurityError(ModelError):
    """A signature or digest check failed: the model set is refused."""


# Values quoted inside a one-line message: bounded (a 1 MB string, a YAML alias bomb whose
# full repr would never finish) and without raw newlines.
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong, _REPR.maxlevel = 60, 60, 30, 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4


def shown(value) -> str:
    """``repr(value)``, shortened for an error line."""
    return _REPR.repr(value)


def one_line(text, limit: int = 60) -> str:
    """``str(text)`` with non-printable characters escaped, cut to ``limit`` characters."""
    text = str(text)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit - 3] + "..."
