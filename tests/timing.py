"""How much slower than native this test run is: tools/arm64-test.sh sets FIRMWARE_PY_TEST_TIME_SCALE=10
under qemu emulation. Tests whose subject has a real-time budget (an acknowledgement within 1 s, a
3 s demo) scale that budget by it, so emulation does not turn them into timing failures."""
import os

TIME_SCALE = float(os.environ.get("FIRMWARE_PY_TEST_TIME_SCALE", "1"))
