"""A resident tier: its CPU twin plus, when an accelerator is attached, its accelerator build."""
from __future__ import annotations

from typing import TYPE_CHECKING

from firmware_py.inference.manifest import Tier
from firmware_py.inference.runtime import TierRuntime

if TYPE_CHECKING:
    from firmware_py.inference.watchdog import DeadlineInvoker


class TierSlot:
    """A resident tier: its CPU twin, plus its accelerator build when one is attached."""

    def __init__(self, tier: Tier, cpu: TierRuntime):
        self.tier = tier
        self.cpu = cpu
        # Set by the engine's Accelerator (failover.py), which alone changes them afterwards.
        self.accel: TierRuntime | None = None
        self.accel_note: str | None = None  # why the accelerator build is not used (None when it is)
        self.invoker: DeadlineInvoker | None = None
        # Set by the engine when abstention is on: one per tier, so the frozen rule compares a frame with
        # the previous one whichever backend ran it.
        self.abstainer = None

    @property
    def memory_bytes(self) -> int:
        return self.cpu.memory_bytes + (self.accel.memory_bytes if self.accel else 0)

    def current(self) -> TierRuntime:
        return self.accel if self.accel is not None else self.cpu

    def close(self) -> None:
        if self.invoker is not None:
            self.invoker.close()
        for rt in (self.accel, self.cpu):
            if rt is not None:
                rt.close()
