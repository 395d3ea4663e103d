"""kernels of firmware-py (installed as firmware_py.kernels)."""
