"""Where results go: JSON lines (stdout, a file, the host channel) and a durable SQLite journal.

Each sink registers itself with ``SINKS`` in its own module; importing a module here is its
one registration line.
"""
from firmware_py.results.sinks import SINKS, JsonLinesSink, ResultRecord
from firmware_py.results.journal import ResultJournal
from firmware_py.results.host import HostChannel

__all__ = ["SINKS", "HostChannel", "JsonLinesSink", "ResultJournal", "ResultRecord"]
