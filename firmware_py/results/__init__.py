"""Where results go: JSON lines (stdout or a file) and a durable SQLite journal."""
from firmware_py.results.journal import ResultJournal
from firmware_py.results.sinks import JsonLinesSink, ResultRecord

__all__ = ["JsonLinesSink", "ResultJournal", "ResultRecord"]
