"""ProbeLink over real pseudo-terminals (os.openpty + pyserial) against the probe simulator."""
import os
import select
import socket
import threading

import pytest
from serial.tools.list_ports_common import ListPortInfo

from conftest_drivers import Collector, SimThread, pty_pair, wait_for
from firmware_py.drivers.link import CommandRejected, ProbeLink, find_port
from firmware_py.drivers.probe_sim import ProbeSimulator
from firmware_py.drivers.sources import PhantomSource
from firmware_py.errors import LinkError
from timing import TIME_SCALE


def phantom(kind="linear", lines=32, samples=64, bits=8, tgc=None):
    from firmware_py.drivers.phantom import make_geometry

    return PhantomSource(make_geometry(kind, lines, samples, bits, tgc_db=tgc), distinct=2)


def test_frames_commands_and_telemetry_over_a_pty():
    with pty_pair() as (master, _slave, path):
        sim = ProbeSimulator(phantom("convex", bits=16), fps=200, telemetry_hz=20)
        st = SimThread(sim, master)
        got = Collector(keep_samples=True)
        link = ProbeLink(path)
        link.start(got, got.on_event)
        try:
            assert link.wait_connected(5)
            assert wait_for(lambda: len(got.frames) >= 5)
            ack = link.send_command("depth", 120.0)
            assert ack.ok and ack.value == 120.0
            assert wait_for(lambda: got.frames[-1][1].end_depth_mm == 120.0)
            with pytest.raises(CommandRejected, match="refused depth=900.0: depth 900.0 mm outside"):
                link.send_command("depth", 900.0)
            with pytest.raises(ValueError, match="unknown probe command 'zoom'"):
                link.send_command("zoom", 1)
            assert link.send_command("freeze", 1).value == 1.0
            sim.press_button()
            assert wait_for(lambda: link.stats()["last_button"] is not None)
            assert link.send_command("freeze", 0).value == 0.0
        finally:
            link.stop()
            st.stop()
        s = link.stats()
        assert s["version"] == "1.1" and s["probe"]["model"] == "SIM-1"
        assert s["battery_pct"] is not None and s["temperature_c"] is not None
        assert s["last_button"]["event"] == "pressed"
        assert any(e["type"] == "button" for e in got.events)
        seqs = got.seqs
        assert seqs == sorted(seqs) and s["frames_lost_gap"] == 0
        # every frame the simulator put on the wire is delivered, rejected as cut by stop(), or in flight
        assert s["frames_delivered"] == len(seqs)
        assert s["frames_received"] == s["frames_delivered"] + s["frames_rejected"] + s["frames_in_progress"]
        sent = dict(sim.sent)
        assert all(sent[q].startswith("phantom:") for q in seqs)
        g = got.frames[0][1]
        assert g.kind.name == "CONVEX" and g.bits == 16 and got.frames[0][2].dtype.name == "uint16"


def test_reconnects_after_the_pty_is_closed_and_reopened(tmp_path):
    """Unplug = the pty master closes (reader gets EIO); replug = a new pty behind the same
    by-id style symlink, as udev does for a USB probe."""
    by_id = str(tmp_path / "usb-probe-if00")
    got = Collector()
    link = ProbeLink(by_id, backoff_initial=0.05, backoff_max=0.2)
    try:
        with pty_pair() as (master, _slave, path):
            os.symlink(path, by_id)
            sim = ProbeSimulator(phantom(), fps=100, telemetry_hz=0)
            st = SimThread(sim, master)
            link.start(got, got.on_event)
            assert link.wait_connected(5)
            assert wait_for(lambda: len(got.frames) >= 3)
            st.stop()
        # the pty is gone: the link notices, counts a reconnect and keeps trying
        assert wait_for(lambda: not link.connected)
        assert any(e["type"] == "disconnected" for e in got.events)
        n_before = len(got.frames)
        with pty_pair() as (master, _slave, path):
            os.remove(by_id)
            os.symlink(path, by_id)
            sim2 = ProbeSimulator(phantom(), fps=100, telemetry_hz=0)
            st2 = SimThread(sim2, master)
            assert wait_for(lambda: link.connected)
            assert wait_for(lambda: len(got.frames) >= n_before + 3)
            s = link.stats()
            st2.stop()
    finally:
        link.stop()
    assert s["reconnects"] == 1 and s["connects"] == 2
    assert sim2.summary.handshakes == 1  # a new handshake on the new line
    # the second probe restarted its sequence numbers at 0: a restart, not 4 billion lost frames
    assert s["seq_restarts"] == 1 and s["frames_lost_gap"] == 0


def test_port_is_opened_exclusively():
    with pty_pair() as (master, _slave, path):
        st = SimThread(ProbeSimulator(phantom(), fps=20, telemetry_hz=0), master)
        a, b = ProbeLink(path), ProbeLink(path, backoff_max=0.1)
        a.start(Collector())
        try:
            assert a.wait_connected(5)
            b.start(Collector())
            assert wait_for(lambda: "exclusively lock" in b.stats()["last_error"])
            assert not b.connected
        finally:
            b.stop()
            a.stop()
            st.stop()


@pytest.mark.parametrize("probe_range,expect", [
    (((1, 0), (1, 0)), "1.0"),  # older probe firmware
    (((1, 0), (2, 3)), "1.1"),  # newer probe that still speaks 1.x
])
def test_version_negotiation_with_older_and_newer_probe(probe_range, expect):
    with pty_pair() as (master, _slave, path):
        sim = ProbeSimulator(phantom(tgc=(0.0, 6.0, 12.0)), fps=100, telemetry_hz=10,
                             version_min=probe_range[0], version_max=probe_range[1])
        st = SimThread(sim, master)
        got = Collector()
        link = ProbeLink(path)
        link.start(got)
        try:
            assert link.wait_connected(5)
            assert wait_for(lambda: len(got.frames) >= 2 and link.stats()["battery_pct"] is not None)
            assert link.stats()["version"] == expect
            if expect == "1.0":
                with pytest.raises(LinkError, match="frame_rate needs protocol 1.1; the probe speaks 1.0"):
                    link.send_command("frame_rate", 10)
                assert got.frames[0][1].tgc_db is None  # TGC curves are a 1.1 feature
            else:
                assert link.send_command("frame_rate", 50).ok
                assert got.frames[0][1].tgc_db == (0.0, 6.0, 12.0)
        finally:
            link.stop()
            st.stop()
        assert link.stats()["frames_rejected_by_reason"]["invalid"] == 0


def test_probe_with_no_common_version_is_refused_with_one_line_error():
    with pty_pair() as (master, _slave, path):
        sim = ProbeSimulator(phantom(), fps=50, version_min=(2, 0), version_max=(2, 1))
        st = SimThread(sim, master)
        got = Collector()
        link = ProbeLink(path, backoff_max=0.2)
        link.start(got, got.on_event)
        try:
            assert wait_for(lambda: link.stats()["handshake_failures"] >= 1)
            assert not link.connected and got.frames == []
            err = link.stats()["last_error"]
            assert err == ("the probe refused the handshake: no common protocol version: device speaks "
                           "1.0..1.1, probe speaks 2.0..2.1; update the probe firmware or firmware-py")
            assert "\n" not in err and any(e["type"] == "error" for e in got.events)
        finally:
            link.stop()
            st.stop()
        assert sim.summary.refused >= 1 and sim.summary.frames_sent == 0


def test_handshake_timeout_when_nothing_answers():
    with pty_pair() as (_master, _slave, path):
        link = ProbeLink(path, handshake_timeout=0.3, backoff_max=0.1)
        link.start(Collector())
        try:
            assert wait_for(lambda: link.stats()["handshake_failures"] >= 1)
            assert "did not answer the hello within 0.3 s" in link.stats()["last_error"]
        finally:
            link.stop()


def test_a_probe_that_answers_after_the_handshake_timeout_loses_no_frame():
    """The probe starts after the link has given up one handshake (it boots later; a simulator
    process starting slowly under emulation): it answers a hello still waiting in the line and
    streams at once. The link holds the port open while it asks again, so nothing the probe sent is
    flushed unseen: the first frame delivered is the probe's first, seq 0. (The link used to close
    the port and reopen it after its back-off; pyserial's open flushed whatever had arrived, and the
    lost frames had no predecessor to show them as a sequence gap: the soak's one unattributed frame.)"""
    with pty_pair() as (master, _slave, path):
        got = Collector()
        link = ProbeLink(path, handshake_timeout=0.2, hello_interval=0.05, backoff_initial=1.0, backoff_max=1.0)
        link.start(got, got.on_event)
        st = None
        try:
            assert wait_for(lambda: link.stats()["handshake_failures"] >= 1)
            sim = ProbeSimulator(phantom(), fps=200)
            st = SimThread(sim, master)
            assert wait_for(lambda: len(got.frames) >= 20)
        finally:
            link.stop()
            if st:
                st.stop()
        s = link.stats()
        assert got.seqs[0] == 0, f"the first {got.seqs[0]} frames the probe sent were lost unseen"
        assert s["frames_lost_gap"] == 0 and s["frames_rejected"] == 0 and s["reconnects"] == 0


def test_stop_during_the_handshake_ends_the_thread_without_an_error():
    """stop() while the probe has not answered the hello yet: the thread ends quietly (it used to
    go on into the read loop and fail there with an AttributeError, reported as a link error)."""
    with pty_pair() as (master, _slave, path):
        got = Collector()
        link = ProbeLink(path, handshake_timeout=60 * TIME_SCALE)
        link.start(got, got.on_event)
        try:
            ready, _, _ = select.select([master], [], [], 5 * TIME_SCALE)
            assert ready and os.read(master, 4096), "the link sent no hello"
        finally:
            link.stop(timeout=5 * TIME_SCALE)
        assert not link.alive
        s = link.stats()
        assert s["last_error"] == "" and s["handshake_failures"] == 0 and s["connects"] == 0
        assert got.events == []


def test_vid_pid_discovery_picks_the_matching_port():
    with pty_pair() as (master, _slave, path):
        other = ListPortInfo("/dev/ttyUSB7")
        other.vid, other.pid = 0x0403, 0x6001
        probe = ListPortInfo(path)
        probe.vid, probe.pid = 0x1FC9, 0x0083
        ports = lambda: [other, probe]  # noqa: E731 - stands in for USB enumeration (no USB here)
        assert find_port("1fc9:0083", ports) == path
        with pytest.raises(LinkError, match="no USB serial device with VID:PID 1234:5678"):
            find_port("1234:5678", ports)
        with pytest.raises(LinkError, match="not two hex numbers"):
            ProbeLink(vid_pid="probe")
        st = SimThread(ProbeSimulator(phantom(), fps=50, telemetry_hz=0), master)
        got = Collector()
        link = ProbeLink(vid_pid="1FC9:0083", list_ports=ports)
        link.start(got)
        try:
            assert link.wait_connected(5) and link.stats()["port"] == path
            assert wait_for(lambda: len(got.frames) >= 1)
        finally:
            link.stop()
            st.stop()


def test_generic_pyserial_backend_socket_url():
    """Backends without a file descriptor path (socket://, rfc2217://, loop://) use read+copy."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    sim = ProbeSimulator(phantom(), fps=100, telemetry_hz=0)
    result = {}

    def serve():
        conn, _ = srv.accept()
        result["summary"] = sim.serve_fd(conn.fileno())
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    got = Collector()
    link = ProbeLink(f"socket://127.0.0.1:{port}")
    link.start(got)
    try:
        assert link.wait_connected(5)
        assert wait_for(lambda: len(got.frames) >= 3)
        # A liveness deadline, not a speed claim: on a loaded 2-core machine the ack took > 1 s.
        assert link.send_command("gain", -3.0, timeout=3.0 * TIME_SCALE).ok
    finally:
        link.stop()
        sim.stop()
        t.join(5)
        srv.close()
    assert got.seqs[:3] == [0, 1, 2]


def test_a_socket_url_reads_what_has_arrived_in_one_call_not_a_byte_at_a_time():
    """pyserial's socket:// in_waiting is 1 whenever anything is there: read by it, the link took
    one byte per call and fell behind a 100 fps stream under emulation (a gain ack waited > 30 s
    behind the frames in the socket)."""
    import serial

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = serial.serial_for_url(f"socket://127.0.0.1:{srv.getsockname()[1]}")
    conn, _ = srv.accept()
    try:
        burst = bytes(range(256)) * 40
        conn.sendall(burst)
        reader = ProbeLink(port.port)._reader(port)
        buf = bytearray(65536)
        got = bytearray()
        calls = 0
        while len(got) < len(burst) and calls < 100:
            n = reader.readinto(memoryview(buf))
            got += buf[:n]
            calls += 1
        assert bytes(got) == burst
        assert calls <= 3  # one in practice; loopback may split the burst
        conn.close()  # the probe's end going away is a line error, not an endless empty read
        with pytest.raises(serial.SerialException):
            for _ in range(100):
                reader.readinto(memoryview(buf))
    finally:
        port.close()
        srv.close()


def test_no_url_and_no_vid_pid_is_a_clear_error():
    with pytest.raises(LinkError, match="give a serial URL"):
        ProbeLink()


def test_send_command_when_not_connected():
    link = ProbeLink("/dev/does-not-exist-probe")
    with pytest.raises(LinkError, match="not connected"):
        link.send_command("freeze", 1)


def test_bad_url_and_missing_port_give_one_line_errors_and_keep_retrying():
    bad = ProbeLink("foo://probe", backoff_initial=0.01, backoff_max=0.05)
    missing = ProbeLink("/dev/serial/by-id/usb-no-such-probe", backoff_initial=0.01, backoff_max=0.05)
    bad.start(Collector())
    missing.start(Collector())
    try:
        assert wait_for(lambda: "cannot open probe port 'foo://probe'" in bad.stats()["last_error"])
        assert wait_for(lambda: "usb-no-such-probe" in missing.stats()["last_error"])
        assert bad._thread.is_alive() and missing._thread.is_alive()  # still trying, not crashed
        assert "\n" not in missing.stats()["last_error"]
    finally:
        bad.stop()
        missing.stop()


def test_a_probe_that_goes_silent_gets_a_new_session():
    """A probe that resets without a USB re-enumeration waits for a hello: the link notices
    the missing heartbeat and starts a new session on the same port."""
    with pty_pair() as (master, _slave, path):
        sim = ProbeSimulator(phantom(), fps=50, telemetry_hz=5)
        st = SimThread(sim, master)
        got = Collector()
        link = ProbeLink(path, silence_timeout=0.5, backoff_initial=0.05)
        link.start(got, got.on_event)
        try:
            assert link.wait_connected(5) and wait_for(lambda: len(got.frames) >= 2)
            st.stop()
            sim.rearm(reboot=True)  # silent until it hears a hello
            st = SimThread(sim, master)
            assert wait_for(lambda: link.stats()["silences"] >= 1)
            assert wait_for(lambda: sim.streaming.is_set() and link.connected)
            n = len(got.frames)
            assert wait_for(lambda: len(got.frames) > n)
        finally:
            link.stop()
            st.stop()
        assert sim.summary.handshakes == 2 and link.stats()["reconnects"] >= 1
        assert any("no data from the probe" in e.get("message", "") for e in got.events)


def test_commands_answered_mid_stream_never_split_a_frame():
    """Acks are written between messages, never inside a frame that is part-way out."""
    with pty_pair() as (master, _slave, path):
        sim = ProbeSimulator(phantom(lines=64, samples=512), fps=0, telemetry_hz=0)
        st = SimThread(sim, master)
        got = Collector()
        link = ProbeLink(path)
        link.start(got)
        try:
            assert link.wait_connected(5)
            for i in range(40):
                assert link.send_command("gain", float(i % 20)).value == float(i % 20)
        finally:
            link.stop()
            st.stop()
    s = link.stats()
    assert len(got.frames) >= 20  # frames kept flowing while the commands were answered
    assert s["frames_rejected_by_reason"]["crc"] == 0 and s["header_errors"] == 0


def test_a_path_that_is_not_a_tty_is_a_line_error_not_a_crash(tmp_path):
    not_a_tty = tmp_path / "probe"
    not_a_tty.write_bytes(b"")
    link = ProbeLink(str(not_a_tty), backoff_initial=0.01, backoff_max=0.05)
    link.start(Collector())
    try:
        # pyserial cannot configure a regular file (SerialException 'Could not configure port'):
        # reported on one line and retried like an unplugged probe
        assert wait_for(lambda: str(not_a_tty) in link.stats()["last_error"])
        assert link._thread.is_alive() and not link.connected
    finally:
        link.stop()
