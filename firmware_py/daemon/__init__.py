"""Daemon lifecycle, the processing pipeline and the status line."""
