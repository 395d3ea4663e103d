"""The engine's accelerator: per-tier builds with an invoke deadline, fall-over to the CPU twin, re-attach.

The Engine holds one Accelerator (or None for CPU only) and talks to it through attach(),
run(), fail_over(), could_attach(), status() and close(); the Accelerator reaches the engine's
tiers only through the two callables it is given (the active tier, every resident tier). It owns
the kind (device, delegate), the back-off, and the re-attach thread.
"""
from __future__ import annotations

import threading
from typing import Callable

from firmware_py.errors import ModelError
from firmware_py.inference.accelerators.kind import AcceleratorKind
from firmware_py.inference.events import EventLog
from firmware_py.inference.manifest import Manifest
from firmware_py.inference.runtime import TierRuntime
from firmware_py.inference.slot import TierSlot
from firmware_py.inference.watchdog import AcceleratorFailure, DeadlineInvoker

# What an accelerator runtime raises when the device fails (AcceleratorFailure from the deadline
# guard, RuntimeError/ValueError from the interpreter or an NPU driver).
DEVICE_ERRORS = (AcceleratorFailure, RuntimeError, ValueError)


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class Accelerator:
    def __init__(self, kind: AcceleratorKind, *, events: EventLog, manifest: Callable[[], Manifest],
                 active: Callable[[], TierSlot], slots: Callable[[], list[TierSlot]], threads: int = 1,
                 warmup_runs: int = 2, invoke_deadline_ms: float | None = 1000.0,
                 reattach_backoff_s: tuple[float, float] = (2.0, 120.0)):
        self.kind = kind
        self.events = events
        self._manifest, self._active, self._slots = manifest, active, slots
        self.threads = threads
        self.warmup_runs = warmup_runs
        self.invoke_deadline_ms = invoke_deadline_ms
        self.reattach_backoff_s = reattach_backoff_s
        self._lock = threading.Lock()
        self._reattach_running = False  # a re-attach thread is running and will look at _reattach_again
        self._reattach_again = False  # the accelerator failed (again) since the running round began
        self._closing = threading.Event()

    @property
    def key(self) -> str:
        return self.kind.key

    @property
    def loaded(self) -> bool:
        return self.kind.loaded

    # -- builds -------------------------------------------------------------------------------
    def attach(self, manifest: Manifest, slot: TierSlot) -> None:
        """Give `slot` its accelerator build, or the note saying why it runs on its CPU twin."""
        accel, note, invoker = self._build(manifest, slot)
        slot.invoker, slot.accel_note, slot.accel = invoker, note, accel  # accel last: frames pick it up

    def _build(self, manifest: Manifest, slot: TierSlot):
        tier, kind = slot.tier, self.kind
        if kind.handle() is None:
            return None, f"{kind.error}; using CPU twin {tier.files['cpu'].path}", None
        if kind.key not in tier.files:
            return None, f"tier {tier.name} has no {kind.key} build; using CPU twin {tier.files['cpu'].path}", None
        try:
            rt = TierRuntime(manifest, tier, kind.key, kind, threads=self.threads)
        except ModelError as e:
            self.events.emit("accelerator_build_refused", str(e), tier=tier.name)
            return None, str(e), None
        invoker = DeadlineInvoker(f"accel-{tier.name}") if self.invoke_deadline_ms else None
        try:
            # Warm up through the same deadline guard as frames: a wedged device must not block a load.
            rt.fill_input()
            for _ in range(max(1, self.warmup_runs)):
                self._invoke(invoker, rt)
        except DEVICE_ERRORS as e:
            if invoker is not None:
                invoker.close()
            reason = _first_line(e)
            kind.mark_failed(reason)
            return None, f"{kind.key} failed warming up tier {tier.name} ({reason}); using CPU twin " \
                         f"{tier.files['cpu'].path}", None
        return rt, None, invoker

    def could_attach(self, slot: TierSlot) -> bool:
        """A tier built while the accelerator was away, which it could now use."""
        return self.kind.loaded and slot.accel is None and self.kind.key in slot.tier.files

    # -- frames -------------------------------------------------------------------------------
    def _invoke(self, invoker: DeadlineInvoker | None, rt: TierRuntime) -> None:
        if invoker is not None:
            invoker.run(rt.run, self.invoke_deadline_ms / 1e3)
        else:
            rt.run()

    def run(self, slot: TierSlot, rt: TierRuntime) -> str | None:
        """Run the frame on the accelerator build `rt`; on a device failure fall over to the CPU
        twin (the frame is rerun there) and return the note saying so, else None."""
        try:
            self._invoke(slot.invoker, rt)
            return None
        except DEVICE_ERRORS as e:
            note = self.fail_over(slot, e)
        slot.cpu.copy_input_from(rt)
        slot.cpu.run()
        return note

    def fail_over(self, slot: TierSlot, err: BaseException) -> str:
        """The device failed: every tier drops its accelerator build, re-attach starts."""
        reason = _first_line(err)
        note = f"{self.key} failed during operation ({reason}); continuing on CPU twin"
        self.events.emit("accelerator_failed", note, tier=slot.tier.name)
        # Abandon the accelerator runtimes: a hung invoke may still be inside one on its invoker thread.
        with self._lock:
            for s in {slot, *self._slots()}:
                if s.accel is not None:
                    s.accel = None
                    if s.invoker is not None:
                        s.invoker.close()  # a hung worker exits when (if) its invoke returns
                    s.invoker = None
                    s.accel_note = note
        self.kind.mark_failed(reason)
        self.start_reattach()
        return note

    # -- re-attach ----------------------------------------------------------------------------
    def start_reattach(self) -> None:
        # A flag under a lock, not Thread.is_alive(): a failure just as the re-attach thread
        # decides to exit would otherwise find it "alive", start nothing, and stay on the CPU.
        with self._lock:
            self._reattach_again = True
            if self._reattach_running:
                return
            self._reattach_running = True
        threading.Thread(target=self._reattach_loop, name="accel-reattach", daemon=True).start()

    def _reattach_loop(self) -> None:
        initial, max_delay = self.reattach_backoff_s
        delay, kind = initial, self.kind
        while not self._closing.wait(delay):
            with self._lock:
                self._reattach_again = False  # a failure from now on asks for another round
            next_delay = min(delay * 2, max_delay)
            # Reopen only when the device is gone: after a swap during re-attach it is open
            # already, and a second delegate would open the same device twice.
            if not kind.loaded and not kind.reopen():
                self.events.emit("accelerator_reattach_failed", f"{kind.error}; next try in {next_delay:g} s")
                delay = next_delay
                continue
            slot = self._active()
            if kind.key not in slot.tier.files:
                self.events.emit("accelerator_reattached", f"{kind.key} loaded; tier {slot.tier.name} has no "
                                 f"{kind.key} build, other tiers pick it up when swapped in", tier=slot.tier.name)
            else:
                accel, note, invoker = self._build(self._manifest(), slot)
                if accel is None:
                    self.events.emit("accelerator_reattach_failed", f"{note}; next try in {next_delay:g} s",
                                     tier=slot.tier.name)
                    delay = next_delay
                    continue
                with self._lock:  # attach by reference assignment (accel last): the next frame uses it
                    slot.invoker, slot.accel_note, slot.accel = invoker, None, accel
                self.events.emit("accelerator_reattached", f"{kind.key} re-attached for tier {slot.tier.name}",
                                 tier=slot.tier.name)
                if slot is not self._active():
                    delay = 0.0  # a swap happened meanwhile: attach the new active tier right away
                    continue
            with self._lock:
                if not self._reattach_again:
                    self._reattach_running = False
                    return
            delay = initial  # the accelerator failed again while this round attached it
        with self._lock:
            self._reattach_running = False

    def status(self) -> dict:
        return self.kind.status()

    def close(self) -> None:
        self._closing.set()  # the re-attach thread exits at its next wake-up
