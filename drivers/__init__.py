"""drivers of firmware-py (installed as firmware_py.drivers)."""
