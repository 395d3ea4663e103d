"""Write the fuzz seed corpora: tests/fuzz/corpus/parser/ and tests/fuzz/corpus/console/.

    .venv/bin/python tests/fuzz/make_corpus.py        # rewrites both folders

The same frames and faults on every run (seeded); only the probe timestamps in the frames differ.

parser: what the probe simulator really puts on a pseudo-terminal (small phantom frames so a seed
stays a few kB: linear 8-bit, convex 16-bit with a TGC curve, phased), clean and through the
simulator's own fault injector (bit flips, dropped bytes, garbage, truncation, lying lengths),
read back from the pty's other end. Each seed starts with the two bytes the harness reads as its
chunking (see harnesses.parser).
console: sessions as a technician's terminal sends them (picocom, minicom and screen send Enter
as CR, Backspace as DEL; arrows as CSI or SS3; terminals answer queries with reports), from
logging in and reading counters to typos corrected and lines cancelled.
"""
from __future__ import annotations

import os
import select
import shutil
import sys
import threading
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harnesses  # noqa: E402,F401  (puts the repository on sys.path)

from firmware_py.drivers.faults import FaultConfig  # noqa: E402
from firmware_py.drivers.phantom import make_geometry  # noqa: E402
from firmware_py.drivers.probe_sim import ProbeSimulator  # noqa: E402
from firmware_py.drivers.sources import PhantomSource  # noqa: E402

PARSER_RUNS = {
    # name: (geometry, frames, faults, seed, chunking bytes)
    "linear8-clean": (("linear", 8, 32, 8, None), 4, None, 1, b"\x01\x00"),
    "convex16-tgc-clean": (("convex", 6, 24, 16, (0.0, 3.0, 6.0)), 3, None, 2, b"\x3f\x01"),
    "phased8-clean": (("phased", 8, 16, 8, None), 3, None, 3, b"\x07\x00"),
    "bitflips": (("linear", 8, 32, 8, None), 5, FaultConfig(bit_flip=0.6), 4, b"\x10\x01"),
    "dropped-bytes": (("linear", 8, 32, 8, None), 5, FaultConfig(drop_bytes=0.6), 5, b"\x25\x00"),
    "garbage": (("convex", 6, 24, 16, None), 5, FaultConfig(garbage=0.7, max_garbage=64), 6, b"\x21\x00"),
    "truncated": (("linear", 8, 32, 8, None), 5, FaultConfig(truncate=0.5), 7, b"\x03\x01"),
    "lying-huge": (("linear", 8, 32, 8, None), 4, FaultConfig(lying_length=0.5, lying_length_bytes=8 << 20), 8,
                   b"\x00\x01"),
    "lying-plausible": (("linear", 8, 32, 8, None), 4, FaultConfig(lying_length=0.5, lying_length_bytes=3000), 9,
                        b"\x40\x00"),
}

CONSOLE_SESSIONS = {
    "read-only": b"help\rstatus\rcounters\rtiers\rbattery\rversion\r",
    "help-each": b"help tier\rhelp probe\rhelp log\rhelp nosuch\r",
    "json": b"json on\rstatus\rcounters --json\rjson off\rtiers --json\r",
    "typos-corrected": b"stauts\x7f\x7f\x7f\x7ftus\rcoun\x08\x08\x08\x08counters\r",
    "history-arrows": b"tiers\rstatus\r\x1b[A\x1b[A\r\x1bOA\x1bOB\r",
    "cancel-and-kill": b"reload now\x03tier auto\x15status\r",
    "login-wrong-pin": b"login 0000\rlogin 1111\rtier auto\rlogout\r",
    "terminal-replies": b"\x1b[?1;2c\x1b[24;80R\x1b[>0;95;0cstatus\r",
    "crlf-lf-mixed": b"status\r\ntiers\nversion\r\r\n",
    "delete-and-function-keys": b"sta\x1b[3~\x1b[Dtus\x1b[15~\x1bOP\r",
    "probe-and-log": b"probe info\rlog 5\rlog\rprobe freeze 1\rconfig show\r",
    "controls-and-high-bytes": b"status\x00\x07\x9b\xffx\rtiers\r",
    "long-line": b"x" * 300 + b"\rstatus\r",
    "ctrl-d-ends": b"status\r\x04",
}


def simulator_stream(geometry, frames: int, faults, seed: int) -> bytes:
    """Everything the simulator writes for ``frames`` frames, read from the pty's other end."""
    kind, lines, samples, bits, tgc = geometry
    sim = ProbeSimulator(PhantomSource(make_geometry(kind, lines, samples, bits, tgc_db=tgc), seed=seed,
                                       distinct=2), fps=0, telemetry_hz=0, faults=faults, seed=seed,
                         wait_for_hello=False)
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    t = threading.Thread(target=sim.serve_fd, args=(master,), kwargs={"max_frames": frames}, daemon=True)
    t.start()
    data = bytearray()
    try:
        while t.is_alive() or select.select([slave], [], [], 0.2)[0]:
            if select.select([slave], [], [], 0.2)[0]:
                data += os.read(slave, 65536)
    finally:
        sim.stop()
        t.join(5)
        os.close(slave)
        os.close(master)
    return bytes(data)


def write(folder: str, name: str, data: bytes) -> None:
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main() -> int:
    for harness in ("parser", "console"):
        folder = os.path.join(HERE, "corpus", harness)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    parser_dir = os.path.join(HERE, "corpus", "parser")
    for name, (geometry, frames, faults, seed, head) in PARSER_RUNS.items():
        write(parser_dir, name, head + simulator_stream(geometry, frames, faults, seed))
    for name, data in CONSOLE_SESSIONS.items():
        write(os.path.join(HERE, "corpus", "console"), name, data)
    for harness in ("parser", "console"):
        folder = os.path.join(HERE, "corpus", harness)
        sizes = [os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder)]
        print(f"{folder}: {len(sizes)} seeds, {sum(sizes)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
