"""Where results go: JSON lines (stdout or a file) and a durable SQLite journal.

Each sink registers itself with ``SINKS`` in its own module; importing a module here is its
one registration line.
"""
from firmware_py.results.sinks import SINKS, JsonLinesSink, ResultRecord
from firmware_py.results.journal import ResultJournal

__all__ = ["SINKS", "JsonLinesSink", "ResultJournal", "ResultRecord"]
