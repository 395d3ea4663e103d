"""The host channel: results as JSON lines on a serial port, and a pulled cable costs nothing else."""
from __future__ import annotations

import json
import os
import select
import tty

from firmware_py.config import load_config
from firmware_py.results import SINKS, HostChannel, ResultRecord


def record(seq: int) -> ResultRecord:
    return ResultRecord(seq=seq, probe_time_us=seq, tier="t0", backend="cpu", label="benign",
                        probabilities={"benign": 1.0}, latency_ms={"total": 1.0}, wall_time=1.0, run_id="r1")


def pty():
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave


def read_lines(fd, n: int, timeout: float = 5.0) -> list[dict]:
    buf = b""
    while buf.count(b"\n") < n and select.select([fd], [], [], timeout)[0]:
        buf += os.read(fd, 65536)
    return [json.loads(line) for line in buf.splitlines()]


def test_results_reach_the_host_as_json_lines_and_survive_a_replug(tmp_path):
    link = tmp_path / "host-port"  # a stable name, like a udev symlink, re-pointed at each "plug in"
    master, slave = pty()
    os.symlink(os.ttyname(slave), link)
    host = HostChannel(str(link), write_timeout_s=0.2, backoff_initial_s=0.0)
    second = None
    try:
        for i in range(3):
            host.write(record(i))
        assert [r["seq"] for r in read_lines(master, 3)] == [0, 1, 2]
        assert read_lines(master, 0, 0.0) == [] and host.delivered == 3

        os.close(master)  # the host end goes away: writes fail, nothing raises
        os.close(slave)
        host.write(record(3))
        assert host.undelivered == 1 and "write failed" in host.last_error

        second = pty()  # plugged in again (a new pty; the old number is never reopened)
        os.remove(link)
        os.symlink(os.ttyname(second[1]), link)
        host.write(record(4))
        assert [r["seq"] for r in read_lines(second[0], 1)] == [4]
        assert host.opens == 2 and host.last_error == ""
    finally:
        host.close()
        if second:
            for fd in second:
                os.close(fd)


def test_the_host_sink_is_configured_under_output_host(tmp_path):
    master, slave = pty()
    try:
        out = load_config(None).replace(output={"results": None, "host": {"port": os.ttyname(slave)}}).output
        sinks = SINKS.open(out)
        assert [type(s).__name__ for s in sinks] == ["HostChannel"]
        sinks[0].write(record(7))
        assert read_lines(master, 1)[0]["run_id"] == "r1"
        for s in sinks:
            s.close()
    finally:
        os.close(master)
        os.close(slave)
