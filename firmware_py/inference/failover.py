"""Accelerator failover for the Engine: build accelerator runtimes, fall back, re-attach.

Kept apart from the frame path in engine.py; the Engine inherits these methods and owns the state
they use (accelerator, events, invoke deadline, back-off, resident slots).
"""
from __future__ import annotations

import threading

from firmware_py.errors import ModelError
from firmware_py.inference.manifest import Manifest, Tier
from firmware_py.inference.runtime import TierRuntime
from firmware_py.inference.slot import TierSlot
from firmware_py.inference.watchdog import AcceleratorFailure, DeadlineInvoker


class AcceleratorFailover:
    def _build_accel(self, manifest: Manifest, tier: Tier) -> tuple[TierRuntime | None, str | None, object]:
        """(accelerator runtime or None, why not, its DeadlineInvoker or None)."""
        acc = self.accelerator
        if acc is None:
            return None, None, None
        delegate = acc.delegate()
        if delegate is None:
            return None, f"{acc.error}; using CPU twin {tier.files['cpu'].path}", None
        if acc.key not in tier.files:
            return None, f"tier {tier.name} has no {acc.key} build; using CPU twin {tier.files['cpu'].path}", None
        try:
            rt = TierRuntime(manifest, tier, acc.key, self._interp, delegate=delegate, threads=self.threads)
        except ModelError as e:
            self.events.emit("accelerator_build_refused", str(e), tier=tier.name)
            return None, str(e), None
        invoker = DeadlineInvoker(f"accel-{tier.name}") if self.invoke_deadline_ms else None
        try:
            # Warm up through the same deadline guard as frames: a wedged device must not block a load.
            rt.fill_input()
            for _ in range(max(1, self.warmup_runs)):
                if invoker is not None:
                    invoker.run(rt.run, self.invoke_deadline_ms / 1e3)
                else:
                    rt.run()
        except (AcceleratorFailure, RuntimeError, ValueError) as e:
            if invoker is not None:
                invoker.close()
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            acc.mark_failed(reason)
            return None, f"{acc.key} failed warming up tier {tier.name} ({reason}); using CPU twin " \
                         f"{tier.files['cpu'].path}", None
        return rt, None, invoker

    def _accelerator_failed(self, slot: TierSlot, err: Exception) -> str:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        note = f"{slot.accel.backend} failed during operation ({reason}); continuing on CPU twin"
        self.events.emit("accelerator_failed", note, tier=slot.tier.name)
        # Abandon the accelerator runtime: a hung invoke may still be inside it on the invoker thread.
        for s in self._all_slots():
            if s.accel is not None:
                s.accel = None
                if s.invoker is not None:
                    s.invoker.close()  # a hung worker exits when (if) its invoke returns
                s.invoker = None
                s.accel_note = note
        if self.accelerator is not None:
            self.accelerator.mark_failed(reason)
        self._start_reattach()
        return note

    def _all_slots(self) -> list[TierSlot]:
        with self._lock:
            slots = list(self._resident.values())
            if self._pending is not None:
                slots.append(self._pending)
        if self._active not in slots:
            slots.append(self._active)
        return slots

    def _start_reattach(self) -> None:
        # A flag under a lock, not Thread.is_alive(): a failure just as the re-attach thread
        # decides to exit would otherwise find it "alive", start nothing, and stay on the CPU.
        with self._reattach_lock:
            self._reattach_again = True
            if self._reattach_running:
                return
            self._reattach_running = True
        self._reattach = threading.Thread(target=self._reattach_loop, name="accel-reattach", daemon=True)
        self._reattach.start()

    def _reattach_loop(self) -> None:
        initial, max_delay = self.reattach_backoff_s
        delay, acc = initial, self.accelerator
        while not self._closing.wait(delay):
            with self._reattach_lock:
                self._reattach_again = False  # a failure from now on asks for another round
            next_delay = min(delay * 2, max_delay)
            # Reload only when the delegate is gone: after a swap during re-attach it is loaded
            # already, and a second delegate would open the same device twice.
            if not acc.loaded and not acc.reload():
                self.events.emit("accelerator_reattach_failed", f"{acc.error}; next try in {next_delay:g} s")
                delay = next_delay
                continue
            slot = self._active
            if acc.key not in slot.tier.files:
                self.events.emit("accelerator_reattached", f"{acc.key} loaded; tier {slot.tier.name} has no "
                                 f"{acc.key} build, other tiers pick it up when swapped in", tier=slot.tier.name)
            else:
                accel, note, invoker = self._build_accel(self.manifest, slot.tier)
                if accel is None:
                    self.events.emit("accelerator_reattach_failed", f"{note}; next try in {next_delay:g} s",
                                     tier=slot.tier.name)
                    delay = next_delay
                    continue
                # Attach by reference assignment (accel last): the next frame's input_view() picks it up.
                slot.invoker, slot.accel_note, slot.accel = invoker, None, accel
                self.events.emit("accelerator_reattached", f"{acc.key} re-attached for tier {slot.tier.name}",
                                 tier=slot.tier.name)
                if slot is not self._active:
                    delay = 0.0  # a swap happened meanwhile: attach the new active tier right away
                    continue
            with self._reattach_lock:
                if not self._reattach_again:
                    self._reattach_running = False
                    return
            delay = initial  # the accelerator failed again while this round attached it
        with self._reattach_lock:
            self._reattach_running = False
