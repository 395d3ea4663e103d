"""Errors a user, technician or the world can cause, each with a one-line message.

The CLI prints ``str(error)`` on one line (no traceback) and exits with ``exit_code``:
2 for usage and configuration errors, 1 for runtime failures.
"""
from __future__ import annotations


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
