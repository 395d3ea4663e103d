"""A frame header with a valid header CRC that lies about its length, over a real pseudo-terminal.

Issue 18: one such header announcing 8 MiB made the link wait for the whole announced body, then
rescan it; the frames recovered held pool buffers until the end of the rescan, the pool stopped
at 8 and the rest were counted `no_buffer` (63 of 105 lost). Now a length over the negotiated
maximum is refused at the header, and a plausible one ends at the next valid header.
The writer thread is bench/lying_header.py's, which measures the stall (before/after figures).
"""
import pytest

from firmware_py.bench.lying_header import MiB, run
from firmware_py.drivers.phantom import make_geometry


@pytest.mark.parametrize("probe_max", [8 * MiB, 4 * MiB], ids=["both-plausible", "8MiB-over-the-probe-max"])
def test_every_intact_frame_after_a_lying_header_arrives_and_is_counted(probe_max):
    # 128 KiB frames: 70 after each header are more than the 8 MiB it announced, so a parser that
    # waits for the announced body and rescans it has 64 recovered frames at once for 8 buffers.
    res = run([8 * MiB, 4 * MiB], lead=5, after=70, fps=200, probe_max=probe_max,
              geometry=make_geometry("convex", 128, 512, 16), settle=0.3)
    s = res["stats"]
    assert res["arrived"] == res["sent"], f"lost {sorted(set(res['sent']) - set(res['arrived']))}"
    assert [r["lost"] for r in res["rows"]] == [0, 0]
    assert s["frames_no_buffer"] == 0 and s["frames_lost_gap"] == 0
    by = s["frames_rejected_by_reason"]
    if probe_max == 8 * MiB:  # both lengths plausible: each ends at the next intact frame's header
        assert by == {"crc": 2, "too_large": 0, "invalid": 0, "no_handshake": 0, "truncated": 0}
    else:  # 8 MiB is over what the probe announced: refused at the header itself
        assert by == {"crc": 1, "too_large": 1, "invalid": 0, "no_handshake": 0, "truncated": 0}
    # sent = delivered + rejected (each lying header is one rejected frame), nothing in between
    assert s["frames_received"] == len(res["sent"]) + 2
    assert s["frames_received"] == s["frames_delivered"] + s["frames_rejected"] + s["frames_no_buffer"] \
        + s["frames_in_progress"]
    assert s["frames_delivered"] == len(res["sent"])
    # bytes: the two 16-byte lying headers are all that was thrown away
    assert s["bytes_in"] == s["bytes_accepted"] + s["bytes_discarded"] + s["bytes_pending"]
    assert s["bytes_discarded"] == 32
    assert s["pool"]["buffers"] <= 8 and s["pool"]["exhausted"] == 0  # memory stayed bounded
