"""bench of firmware-py (installed as firmware_py.bench)."""
