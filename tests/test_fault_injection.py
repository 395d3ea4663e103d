"""Fault injection end to end (issue 18, point 2): the running daemon, the probe simulator on a real
pseudo-terminal, and one part broken at a time while frames flow.

After every case, three promises are checked (``DaemonRig.finish`` and ``check_outputs``):
* liveness: the daemon keeps serving, or serves again within the case's stated bound;
* the ledger balances exactly: frames the probe sent = processed + dropped + corrupt, where
  dropped = dropped stale + skipped by the analysis rate + lost in sequence gaps and corrupt =
  rejected + no buffer; and the frames counted corrupt or lost are exactly the frames the
  simulator damaged (its fault log says which), so an intact frame is never counted corrupt;
* the journal passes ``PRAGMA integrity_check`` and holds every result a sink was given (only
  results marked ``"durable": false`` while the disk was full may be missing).

Bounds are liveness deadlines derived from the configuration, never speed claims. Each case prints
a ``FAULT-REPORT`` line (``pytest -s``) with its measured figures for docs/reliability.md.

Where the promise is already tested elsewhere, this file does not repeat it:

| fault | test |
|---|---|
| SIGKILL during journal writes, then reopen | tests/test_results_durability.py::test_every_result_emitted_before_a_sigkill_is_in_the_journal (20 kills) |
| power cut: the files as they are on disk mid-run | tests/test_results_durability.py::test_a_copy_of_the_files_taken_mid_run_opens_and_holds_only_what_was_emitted_by_then |
| a signed set whose model crashes the interpreter, at reload | tests/test_inference_isolation.py::test_a_crashing_update_is_refused_at_reload_and_the_last_good_set_keeps_serving |
| a model swapped on disk after verification, at a tier load | tests/test_signing_model_set.py::test_model_swapped_after_verification_is_refused_at_tier_load |
| SIGHUP and console reloads racing | tests/test_daemon_control.py::test_sighup_and_console_reloads_issued_together_apply_one_after_the_other |
| processing stuck: the systemd watchdog stops | tests/test_daemon_control.py::test_systemd_gets_ready_status_and_watchdog_pings_that_stop_while_processing_is_stuck |
| every fault kind at the link alone (no daemon) | tests/test_probe_sim_faults.py |
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time

import pytest

from firmware_py.drivers.faults import FaultConfig
from firmware_py.errors import FirmwareError
from firmware_py.inference import Engine
from firmware_py.power.battery_mock import MockBattery
from tests.conftest_drivers import small_geometry, wait_for
from tests.data.model_sets import build_fake_npu_or_skip, make_model_set
from tests.fault_rig import DaemonRig, FaultProbe, gaps_after, longest_gap, report

FPS = 60.0
# Serving while the line is noisy: a damaged frame costs its own slot and, for a truncated one,
# the wait for the bytes behind it (at most probe.stall_timeout_s, 0.25 s); 1 s is four of those
# on a loaded 2-core machine. A deadline, not a speed claim.
NOISY_LINE_MAX_GAP_S = 1.0
FRAMES_PER_CASE = 150
CLEAN_TAIL = 10  # intact frames after the faults, so a damaged last frame is revealed by the gap


def intact_tail(rig: DaemonRig) -> None:
    rig.probe.set_faults(FaultConfig())
    rig.wait_processed(CLEAN_TAIL)


def assert_only_damaged_frames_counted_bad(rig: DaemonRig, ledger: dict, out: list[dict], extra: int = 0) -> None:
    damaged = rig.probe.damaged()
    assert ledger["no_buffer"] == 0, f"intact frames counted no_buffer (shown as corrupt): {ledger}"
    assert ledger["corrupt"] + ledger["lost_gap"] == len(damaged) + extra, (ledger, len(damaged), extra)
    assert not damaged & {r["seq"] for r in out}, "a damaged frame produced a result"


NOISE = {"bit_flips": FaultConfig(bit_flip=0.15, max_bits=3),
         "garbage_bursts": FaultConfig(garbage=0.3, max_garbage=4096),
         "truncated_frames": FaultConfig(truncate=0.15),
         "dropped_bytes": FaultConfig(drop_bytes=0.15)}


@pytest.mark.parametrize("name", NOISE)
def test_a_noisy_line_rejects_exactly_the_damaged_frames_and_serving_never_pauses(tmp_path, name):
    fault = NOISE[name]
    rig = DaemonRig(tmp_path, FaultProbe(tmp_path, fps=FPS, seed=5)).start()
    t0 = time.time()
    rig.probe.set_faults(fault)
    start = rig.probe.sent
    assert wait_for(lambda: rig.probe.sent - start >= FRAMES_PER_CASE, 30)
    t1 = time.time()
    intact_tail(rig)
    ledger = rig.finish()
    out = rig.check_outputs(ledger)
    assert_only_damaged_frames_counted_bad(rig, ledger, out)
    gap = longest_gap(out, t0, t1)
    report(f"noisy line: {name}", longest_gap_s=round(gap, 3), damaged=len(rig.probe.damaged()), **ledger)
    assert gap <= NOISY_LINE_MAX_GAP_S, f"no result for {gap:.2f} s while the line was noisy"
