"""`firmware-py probe-sim` as the daemon runs it: a subprocess on a pty master passed by fd."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest_drivers import Collector, pty_pair, wait_for
from timing import TIME_SCALE
from firmware_py.drivers.link import ProbeLink
from firmware_py.drivers.sim_cli import main

RUN = "import sys; from firmware_py.drivers.sim_cli import main; sys.exit(main(sys.argv[1:]))"


def test_help_and_usage_errors(capsys, tmp_path):
    assert main(["--help"]) == 0
    assert "--fault-log" in capsys.readouterr().out
    assert main(["--pty", "--bits", "12"]) == 2
    err = capsys.readouterr().err
    # one line, not the usage block; Python 3.13's argparse quotes the value ('12'), 3.11's does not
    assert err.count("\n") == 1 and re.search(r"invalid choice: '?12'?", err), err
    assert main([]) == 2  # one of --pty/--fd/--port is required
    assert main(["--pty", "--disconnect", "0.1"]) == 2
    assert "--disconnect needs --pty and --link" in capsys.readouterr().err
    assert main(["--pty", "--bit-flip", "2"]) == 2
    assert "must be a probability" in capsys.readouterr().err
    assert main(["--pty", "--images", str(tmp_path / "none")]) == 2
    assert main(["--fd", "987", "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--fd 987 is not an open file descriptor" in err and err.count("\n") == 2
    assert main(["--pty", "--replay", str(tmp_path / "none.rec")]) == 2
    assert main(["--pty", "--version-min", "1.1", "--version-max", "1.0"]) == 2
    assert main(["--pty", "--lines", "0"]) == 2
    assert "n_lines=0" in capsys.readouterr().err


def write_images(folder, n=3):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = {}
    for i in range(n):
        a = rng.integers(0, 256, (12 + i, 9), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"img{i:02d}.png")
        imgs[f"img{i:02d}.png"] = a
    return imgs


def test_subprocess_on_inherited_pty_fd_with_image_folder(tmp_path):
    imgs = write_images(tmp_path)
    frame_log = tmp_path / "frames.jsonl"
    with pty_pair() as (master, _slave, path):
        proc = subprocess.Popen([sys.executable, "-c", RUN, "--fd", str(master), "--images", str(tmp_path),
                                 "--fps", "100", "--frames", "7", "--frame-log", str(frame_log)],
                                pass_fds=[master], stderr=subprocess.PIPE, text=True)
        got = Collector(keep_samples=True)
        link = ProbeLink(path)
        link.start(got)
        try:
            assert link.wait_connected(20)
            assert wait_for(lambda: len(got.frames) >= 7, timeout=20 * TIME_SCALE)  # liveness; scaled under qemu
        finally:
            link.stop()
            _, err = proc.communicate(timeout=20 * TIME_SCALE)
    assert proc.returncode == 0, err
    assert "7 frames" in err
    log = [json.loads(line) for line in open(frame_log)]
    assert [e["source"] for e in log] == ["img00.png", "img01.png", "img02.png"] * 2 + ["img00.png"]
    by_seq = {e["seq"]: e["source"] for e in log}
    for seq, g, samples in got.frames:
        np.testing.assert_array_equal(samples.T, imgs[by_seq[seq]])  # the daemon can map results back


def test_pty_mode_prints_the_slave_path_and_logs_faults(tmp_path):
    fault_log = tmp_path / "faults.jsonl"
    link_path = tmp_path / "probe-link"
    proc = subprocess.Popen([sys.executable, "-c", RUN, "--pty", "--link", str(link_path), "--geometry", "convex",
                             "--lines", "16", "--samples", "32", "--bits", "16", "--fps", "200", "--duration", "20",
                             "--frames", "60", "--garbage", "0.3", "--bit-flip", "0.2", "--seed", "3",
                             "--fault-log", str(fault_log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        slave = proc.stdout.readline().strip()
        assert slave.startswith("/dev/pts/") and os.path.realpath(link_path) == slave
        got = Collector()
        link = ProbeLink(str(link_path))
        link.start(got)
        try:
            assert link.wait_connected(20)
            assert wait_for(lambda: proc.poll() is not None, timeout=30)
        finally:
            link.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()
    faults = [json.loads(line) for line in open(fault_log)]
    assert {f["fault"] for f in faults} == {"garbage", "bit_flip"}
    flipped = {f["seq"] for f in faults if f["fault"] == "bit_flip"}
    assert flipped and not (flipped & set(got.seqs))
    assert link.stats()["bytes_discarded"] > 0
    assert got.frames[0][1].kind.name == "CONVEX" and got.frames[0][1].bits == 16


def test_replay_cli_refuses_a_non_recording(tmp_path, capsys):
    p = tmp_path / "x.rec"
    p.write_bytes(b"garbage")
    assert main(["--pty", "--replay", str(p)]) == 2
    assert "not a firmware-py probe recording" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--geometry", "phased", "--bits", "8"], ["--geometry", "linear", "--depth", "60"]])
def test_in_process_fd_mode_runs_and_ends_by_frames(argv, tmp_path):
    log = tmp_path / "frames.jsonl"
    with pty_pair() as (master, _slave, path):
        import threading

        rc = {}
        t = threading.Thread(target=lambda: rc.setdefault("rc", main(
            ["--fd", str(master), "--fps", "0", "--frames", "5", "--lines", "8", "--samples", "16",
             "--frame-log", str(log), *argv])))
        t.start()
        got = Collector()
        link = ProbeLink(path)
        link.start(got)
        try:
            assert wait_for(lambda: len(got.frames) >= 5)
        finally:
            link.stop()
            t.join(10)
    assert rc["rc"] == 0
    entries = [json.loads(line) for line in open(log)]
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4]
    # phantom frames carry their ground truth: lesion positions, sizes, echogenicity
    assert len(entries[0]["truth"]["lesions"]) == 3 and entries[0]["truth"]["lesion_cells"] > 0


def test_replay_cli_plays_a_recording_back(tmp_path):
    import threading

    from conftest_drivers import SimThread
    from firmware_py.drivers.probe_sim import ProbeSimulator
    from firmware_py.drivers.sources import PhantomSource

    rec = str(tmp_path / "session.rec")
    with pty_pair() as (master, _slave, path):
        st = SimThread(ProbeSimulator(PhantomSource.from_options("convex", 8, 16, 16), fps=100,
                                      telemetry_hz=20), master, max_frames=10)
        first = Collector(keep_samples=True)
        link = ProbeLink(path, record_path=rec, record_max_bytes=1 << 20)
        link.start(first)
        try:
            assert wait_for(lambda: len(first.frames) >= 10)
        finally:
            link.stop()
            st.stop()
    with pty_pair() as (master, _slave, path):
        rc = {}
        t = threading.Thread(target=lambda: rc.setdefault("rc", main(["--fd", str(master), "--replay", rec])))
        t.start()
        second = Collector(keep_samples=True)
        link = ProbeLink(path)
        link.start(second)
        try:
            assert wait_for(lambda: len(second.frames) >= 10)
            t.join(10)
        finally:
            link.stop()
    assert rc["rc"] == 0
    assert second.seqs == first.seqs
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(first.frames, second.frames))
    assert link.stats()["battery_pct"] is not None  # the recorded telemetry is replayed too


def test_port_mode_speaks_on_a_serial_device_path():
    """--port opens a device with pyserial (here a pty slave; the test reads the master side)."""
    import select
    import threading

    from firmware_py.drivers import protocol as P
    from firmware_py.drivers.parser import FrameParser

    with pty_pair() as (master, _slave, path):
        rc = {}
        t = threading.Thread(target=lambda: rc.setdefault("rc", main(
            ["--port", path, "--frames", "3", "--fps", "50", "--lines", "4", "--samples", "8"])))
        t.start()
        parser, frames = FrameParser(), []
        for _ in range(40):  # opening the port flushes its input: repeat the hello, as ProbeLink does
            os.write(master, P.encode_hello())
            if select.select([master], [], [], 0.25)[0]:
                break
        while len(frames) < 3:
            assert select.select([master], [], [], 10)[0], "no data from probe-sim --port"
            for item in parser.feed(os.read(master, 65536)):
                if hasattr(item, "release"):
                    frames.append(item.seq)
                    item.release()
        t.join(10)
    assert rc["rc"] == 0 and frames == [0, 1, 2]
    assert main(["--port", "loop://"]) == 2


def test_pty_mode_disconnect_fault_recreates_the_line(tmp_path):
    link_path = tmp_path / "by-id-probe"
    proc = subprocess.Popen([sys.executable, "-c", RUN, "--pty", "--link", str(link_path), "--lines", "8",
                             "--samples", "16", "--fps", "100", "--disconnect", "0.1", "--seed", "2",
                             "--duration", "30", "--frames", "40", "--telemetry-hz", "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        got = Collector()
        link = ProbeLink(str(link_path), backoff_initial=0.05, backoff_max=0.2)
        link.start(got, got.on_event)
        try:
            assert wait_for(lambda: link.stats()["reconnects"] >= 1, timeout=30)
            assert wait_for(lambda: link.connected and len(got.frames) >= 5, timeout=30)
        finally:
            link.stop()
    finally:
        proc.kill()
        proc.wait(10)
    assert first.startswith("/dev/pts/")
    assert any(e["type"] == "disconnected" for e in got.events)


PARENT_THAT_DIES = """
import os, signal, subprocess, sys, time, tty
from firmware_py.drivers import protocol as P
m, s = os.openpty()
tty.setraw(s)
p = subprocess.Popen([sys.executable, "-c", sys.argv[1], "--fd", str(m), "--fps", "0", "--lines", "64",
                      "--samples", "512"], pass_fds=[m], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.write(s, P.encode_hello())
print(p.pid, flush=True)
time.sleep(1.0)  # the pty fills up and nobody reads it: the simulator blocks in a write
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_simulator_exits_when_the_daemon_that_started_it_is_killed():
    out = subprocess.run([sys.executable, "-c", PARENT_THAT_DIES, RUN], capture_output=True, text=True,
                         timeout=60)
    pid = int(out.stdout.split()[0])
    try:
        assert wait_for(lambda: not _alive(pid), timeout=15), "probe-sim outlived its parent"
    finally:
        if _alive(pid):
            os.kill(pid, 9)
