"""Engine: the active model tier, its accelerator or CPU twin, and hitless tier swaps.

Threads (docs/architecture.md): the processing thread calls input_view() then invoke() once per
frame; the power policy calls request_tier() from its own thread; tier loads and accelerator
re-attachment run on short-lived background threads. A swap is a reference assignment done at
the end of invoke() (or at once by request_tier(wait=True) / reload() when no frame is open), so
a frame never spans two tiers and `active_tier` read before input_view() names the frame's tier.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from importlib import resources
from typing import Callable

import numpy as np

from firmware_py.errors import ModelError
from firmware_py.inference import isolation
from firmware_py.inference.accelerators import AcceleratorKind, make_accelerator
from firmware_py.inference.abstain import Abstainer
from firmware_py.inference.backend import interpreter_backend
from firmware_py.inference.decode import InferenceOutput
from firmware_py.inference.events import EventLog
from firmware_py.inference.failover import Accelerator
from firmware_py.inference.manifest import Manifest, Tier
from firmware_py.inference.modelset import ModelSet
from firmware_py.inference.priority import LOADER_PREFIX, background_priority
from firmware_py.inference.runtime import TierRuntime
from firmware_py.inference.slot import TierSlot
from firmware_py.inference.tflite import CpuTwin

log = logging.getLogger(__name__)


def default_manifest() -> str:
    """The manifest shipped in the package (firmware_py.models)."""
    return str(resources.files("firmware_py.models").joinpath("manifest.yaml"))


def default_public_key() -> str:
    """The development public key shipped in the package (models/keys/dev-ed25519.pub)."""
    return str(resources.files("firmware_py.models").joinpath("keys", "dev-ed25519.pub"))


class Engine:
    """Runs the active tier of a verified model set.

    models: the manifest file, or the folder holding manifest.yaml (+ .sig and the model files).
    public_key: path of the Ed25519 public key (PEM or raw) that must have signed the manifest;
        None skips the signature check (development only; logged as a security event).
    accelerator: an accelerator kind (firmware_py.inference.accelerators, e.g. EdgeTpu(...)), or
        None for CPU only; the engine wraps it in the Accelerator that owns the invoke deadline,
        fall-over and re-attach (`engine.accelerator`).
    isolation_timeout_s: every file of a candidate set (at start and at each reload) is first loaded
        and invoked in a child process (isolation.py) with this timeout per file; None skips that
        (measurements of its cost only: a damaged file can then kill this process).
    """

    def __init__(
        self,
        models: str,
        *,
        public_key: str | None = None,
        task: str | None = None,
        start_tier: str | None = None,
        threads: int = 1,
        accelerator: AcceleratorKind | None = None,
        memory_budget_mb: float = 64.0,
        warmup_runs: int = 2,
        invoke_deadline_ms: float | None = 1000.0,
        reattach_backoff_s: tuple[float, float] = (2.0, 120.0),
        isolation_timeout_s: float | None = isolation.DEFAULT_TIMEOUT_S,
        on_event: Callable[[dict], None] | None = None,
        abstention=None,
    ):
        self.events = EventLog(on_event)
        self.abstention = abstention  # the `abstention` config section (abstain.py), or None: every result a diagnosis
        self.threads = threads
        self.memory_budget_bytes = int(memory_budget_mb * 1024 * 1024)
        self.warmup_runs = warmup_runs
        self._cpu = CpuTwin(interpreter_backend())
        self.accelerator = None if accelerator is None else Accelerator(
            accelerator, events=self.events, manifest=lambda: self.manifest, active=lambda: self._active,
            slots=self._all_slots, threads=threads, warmup_runs=warmup_runs, invoke_deadline_ms=invoke_deadline_ms,
            reattach_backoff_s=reattach_backoff_s)
        self.isolation_timeout_s = isolation_timeout_s
        self.models = ModelSet(models, public_key, self.events,
                               check=None if isolation_timeout_s is None else self._check_in_child)
        self.models.load()  # raises SecurityError/ModelError when there is no good set at all
        if task is None and start_tier not in (None, "auto"):
            task = self.manifest.tier(start_tier).task
        self.task = task or (self.manifest.tiers[0].task if not self.manifest.ladder("classify") else "classify")
        self._lock = threading.Lock()
        self._resident: OrderedDict[str, TierSlot] = OrderedDict()
        self._pending: TierSlot | None = None
        self._wanted: str | None = None
        # tier name -> (Future, the manifest it loads from): a load finishing after reload() replaced
        # that manifest is discarded
        self._loading: dict[str, tuple[Future, Manifest]] = {}
        self._bad: dict[str, str] = {}  # tier name -> why it was refused (until the next reload)
        self._reload_lock = threading.Lock()  # one reload at a time: SIGHUP and the console may race
        self._frame_slot: TierSlot | None = None
        self._frame_rt: TierRuntime | None = None
        self._frame_open = False
        self._closed = False
        self._frames = 0
        self._fallback_frames = 0
        self._active: TierSlot = self._load_start(None if start_tier in (None, "auto") else start_tier, self.manifest)
        self._resident[self._active.tier.name] = self._active
        if accelerator is not None and self._active.accel is None and not accelerator.loaded:
            # Not plugged in at start: keep trying with back-off, a USB stick may arrive later.
            self.accelerator.start_reattach()

    # -- construction helpers ---------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, *, on_event=None) -> "Engine":
        """From the configuration's `models` and `accelerator` sections.

        cfg: a loaded Config (firmware_py.config.load_config), or a mapping of sections laid out
        like the configuration file, validated and completed with the defaults like one.
        """
        if isinstance(cfg, dict):
            from firmware_py.config import load_config

            cfg = load_config(None).replace(**cfg)
        models, acc = cfg.models, cfg.accelerator
        abstention = getattr(cfg, "abstention", None)  # a partial config object (tools, tests) has none
        public_key = models.public_key or default_public_key()
        engine = cls(
            models.manifest or default_manifest(),
            public_key=public_key,
            task=models.task,
            start_tier=models.start_tier,
            threads=acc.cpu_threads,
            accelerator=make_accelerator(acc),
            memory_budget_mb=models.memory_budget_mb,
            invoke_deadline_ms=acc.invoke_deadline_ms,
            reattach_backoff_s=(acc.reattach_initial_s, acc.reattach_max_s),
            isolation_timeout_s=models.isolation_timeout_s,
            on_event=on_event,
            abstention=abstention if abstention is not None and abstention.enabled else None,
        )
        if not models.public_key:
            # Verified, but by a key whose private half is in the repository: fine for development,
            # worthless on a device. Said at every start so a shipped configuration cannot hide it.
            engine.events.emit("development-key", f"models.public_key is not set: trusting the development key "
                               f"{public_key}, which anyone can sign with; set models.public_key to the "
                               "production key on a device")
        return engine

    def _check_in_child(self, manifest: Manifest) -> dict:
        """Run every file of a candidate set in a child process before this one's interpreter touches
        it; a file that crashes, hangs or raises there refuses the set (ModelSetRefused)."""
        t0 = time.perf_counter()
        results = isolation.check_model_set(manifest, timeout_s=self.isolation_timeout_s, threads=self.threads,
                                            accelerator=None if self.accelerator is None else self.accelerator.kind)
        isolation.refuse(results)
        return {"files": len(results), "ran": sum(r.ran for r in results),
                "refused": sum(r.status == isolation.REFUSED for r in results),
                "ms": round((time.perf_counter() - t0) * 1e3, 1)}

    @property
    def active_tier(self) -> Tier:
        """The tier the next frame runs on (fixed from input_view() to invoke())."""
        return self._active.tier

    @property
    def backend_name(self) -> str:
        return self._active.current().backend

    @property
    def ladder(self) -> list[str]:
        """Tier names of the engine's task, cheapest first."""
        return [t.name for t in self.manifest.ladder(self.task)]

    @property
    def manifest(self) -> Manifest:
        return self.models.manifest

    def _task_tier(self, name: str, manifest: Manifest) -> Tier:
        """The tier `name` of `manifest`, refused when it is not on this engine's ladder.

        The task is fixed for the engine's life: the daemon's preprocessing, policy ladder and
        result format follow it, so neither a request nor a model-set update may change it.
        """
        tier = manifest.tier(name)
        if tier.task != self.task:
            raise ModelError(f"{manifest.path}: tier {name!r} is a {tier.task} tier but this engine runs "
                             f"the {self.task} ladder {self.ladder}; request one of those or set models.task")
        return tier

    def _load_start(self, name: str | None, manifest: Manifest) -> TierSlot:
        candidates = manifest.ladder(self.task)
        if not candidates:  # a bad task setting, or a signed update that dropped this task's ladder
            raise ModelError(f"{manifest.path}: no tier for task {self.task!r}; set models.task to one of "
                             f"{sorted({t.task for t in manifest.tiers})}")
        if name is not None:
            wanted = self._task_tier(name, manifest)
            # the requested tier first, then its neighbours by distance on the ladder
            candidates = sorted(candidates, key=lambda t: (abs(t.rank - wanted.rank), t.rank))
        errors = []
        for tier in candidates:
            try:
                return self._build_slot(tier)
            except ModelError as e:
                errors.append(str(e))
                with self._lock:
                    self._bad[tier.name] = str(e)
        raise ModelError(f"no tier of {manifest.path} could be loaded; first problem: {errors[0]}")

    def _build_slot(self, tier: Tier) -> TierSlot:
        """Load + validate + warm a tier; a bad tier raises ModelError (the caller records it)."""
        try:
            manifest = self.manifest
            cpu = TierRuntime(manifest, tier, "cpu", self._cpu, threads=self.threads)
            cpu.warm_up(self.warmup_runs)
            slot = TierSlot(tier, cpu)
            if self.abstention is not None:
                q = tier.input.quantization
                slot.abstainer = Abstainer(self.abstention, tier.abstention, scale=q.scale, zero_point=q.zero_point,
                                           mean=tier.preprocess.mean, std=tier.preprocess.std, fill=tier.preprocess.fill)
            if self.accelerator is not None:
                self.accelerator.attach(manifest, slot)
        except ModelError as e:
            self.events.emit("tier_refused", str(e), tier=tier.name)
            raise
        return slot

    # -- the frame path -----------------------------------------------------------------------
    def input_view(self) -> np.ndarray:
        """int8 (1, H, W, C) view of the active interpreter's input tensor; write the frame into it.

        Do not keep the view across invoke(): the TFLite API refuses to run while it is referenced.
        """
        with self._lock:  # no swap while a frame is open (from here to the end of invoke())
            self._frame_open = True
            self._frame_slot = slot = self._active
            self._frame_rt = rt = slot.current()
        return rt.input_view()

    def invoke(self) -> InferenceOutput:
        """Run the frame written through input_view(); returns the decoded output.

        A tier that finished loading is swapped in after this frame, so `active_tier` read before
        the next input_view() names the tier that frame will run on.
        """
        try:
            return self._run_frame()
        finally:
            with self._lock:
                self._frame_open = False
                self._frame_slot = self._frame_rt = None
            if self._pending is not None:
                self._swap_in_pending()

    def _run_frame(self) -> InferenceOutput:
        slot = self._frame_slot or self._active
        rt = self._frame_rt or slot.current()
        t0 = time.perf_counter()
        if rt is slot.accel:
            fallback = self.accelerator.run(slot, rt)
            if fallback is not None:  # the device failed: the frame was rerun on the CPU twin
                rt = slot.cpu
        else:
            rt.run()
            fallback = slot.accel_note
            if fallback is None and slot.accel is not None:  # re-attached after input_view() chose the CPU
                fallback = f"{slot.accel.backend} re-attached during this frame; the next frame runs on it"
        out = InferenceOutput(slot.tier.name, slot.tier.task, rt.backend, 0.0, fallback=fallback)
        rt.decode(out)
        if slot.abstainer is not None:  # on the input the model just ran on (still in its tensor)
            x = rt.input_view()
            try:
                out.indeterminate, out.abstention = slot.abstainer.check(x, out.probabilities or None)
            finally:
                del x
        out.latency_ms = (time.perf_counter() - t0) * 1e3
        self._frames += 1
        if fallback is not None and self.accelerator is not None:
            self._fallback_frames += 1
        return out

    def _all_slots(self) -> list[TierSlot]:
        with self._lock:
            return list({*self._resident.values(), self._active, *([self._pending] if self._pending else [])})

    # -- tier swap ----------------------------------------------------------------------------
    def request_tier(self, name: str, *, wait: bool = False, timeout: float | None = 60.0) -> Future:
        """Load, validate and warm `name` off the frame path; it becomes active at a frame boundary.

        Safe from any thread while the processing thread runs frames. Returns a Future resolving
        to the tier name once the tier is loaded, validated and warm: it then runs from the frame
        after the one in flight (if it is still the latest request; otherwise it stays resident
        within the memory budget). The Future raises the one-line ModelError that refused it (the
        current tier stays active); a refused tier is not loaded again until reload() brings a new
        model set, and a load still running when reload() replaces the set is discarded with a
        ModelError. A name that is not on this engine's ladder raises ModelError at once.
        wait=True blocks until then, raises that ModelError, and swaps at once when no frame is
        open (selftests, tools); the daemon's policy thread should not wait.
        """
        fut = self._request(name)
        if wait:
            fut.result(timeout)
            self._swap_in_pending(only_if_idle=True)
        return fut

    def _request(self, name: str) -> Future:
        fut: Future = Future()
        with self._lock:
            # The manifest is read under the lock: reload() swaps the set's tiers under it too, so
            # the tier, its refusal record and the resident slots all belong to the same set.
            manifest = self.manifest
            tier = self._task_tier(name, manifest)
            self._wanted = name  # the latest request wins over loads still running for older ones
            if self._active.tier.name == name:
                self._pending = None
                fut.set_result(name)
                return fut
            if name in self._bad:
                # Refused already: its files cannot change without a reload (which clears this),
                # and the policy re-requests every period; rebuilding would re-hash the file and
                # log the same refusal each time.
                fut.set_exception(ModelError(self._bad[name]))
                return fut
            if name in self._resident and not self._wants_accel(self._resident[name]):
                self._pending = self._resident[name]
                fut.set_result(name)
                return fut
            running = self._loading.get(name)
            if running is not None and running[1] is manifest:
                return running[0]
            self._loading[name] = (fut, manifest)
        threading.Thread(target=self._load_for_swap, args=(tier, fut, manifest), name=f"{LOADER_PREFIX}{name}",
                         daemon=True).start()
        return fut

    def _wants_accel(self, slot: TierSlot) -> bool:
        """A resident tier built while the accelerator was away, which it could now use."""
        return self.accelerator is not None and self.accelerator.could_attach(slot)

    def _load_for_swap(self, tier: Tier, fut: Future, manifest: Manifest) -> None:
        try:
            with background_priority():  # the frame path keeps the cores while the next tier loads and warms
                slot = self._build_slot(tier)
        except ModelError as e:
            with self._lock:
                self._forget_load(tier.name, fut)
                if manifest is self.manifest:  # a refusal of a replaced set says nothing of the current one
                    self._bad[tier.name] = str(e)
            fut.set_exception(e)
            return
        with self._lock:
            self._forget_load(tier.name, fut)
            dropped = ("the engine was closed" if self._closed else
                       "the model set was reloaded" if manifest is not self.manifest else None)
            release = []
            if not dropped:
                stale = self._resident.get(tier.name)
                self._resident[tier.name] = slot
                if self._wanted == tier.name or (stale is not None and self._pending is stale):
                    self._pending = slot
                else:  # superseded while loading: stays resident (warm) if the budget allows
                    release = self._evict_over_budget()
                if stale is not None and stale is not self._active:
                    release.append(stale)
        if dropped:  # never swap in a tier of a replaced set, nor keep one after close()
            slot.close()
            fut.set_exception(ModelError(f"tier {tier.name}: {dropped} while it loaded; request it again"))
            return
        for s in release:
            s.close()
        fut.set_result(tier.name)

    def _forget_load(self, name: str, fut: Future) -> None:
        running = self._loading.get(name)
        if running is not None and running[0] is fut:
            del self._loading[name]

    def _swap_in_pending(self, only_if_idle: bool = False) -> None:
        with self._lock:
            if only_if_idle and self._frame_open:
                return  # the frame in flight swaps it at its end
            slot, self._pending = self._pending, None
            if slot is None or slot is self._active:
                return
            previous = self._active
            self._active = slot
            self._resident[slot.tier.name] = slot  # already there: every path that sets _pending adds it
            self._resident.move_to_end(slot.tier.name)
            evicted = self._evict_over_budget()
            if previous not in evicted and all(s is not previous for s in self._resident.values()):
                evicted.append(previous)  # replaced by a reload: nothing refers to it any more
        self.events.emit("tier_swapped", f"tier {previous.tier.name} -> {slot.tier.name}",
                         tier=slot.tier.name, previous=previous.tier.name)
        for s in evicted:
            s.close()

    def _evict_over_budget(self) -> list[TierSlot]:
        """Drop least recently used non-active tiers until the resident set fits the budget."""
        evicted = []
        total = sum(s.memory_bytes for s in self._resident.values())
        for name in list(self._resident):
            if total <= self.memory_budget_bytes:
                break
            s = self._resident[name]
            if s is self._active or s is self._pending:
                continue
            del self._resident[name]
            total -= s.memory_bytes
            evicted.append(s)
        return evicted

    # -- reload and status --------------------------------------------------------------------
    def reload(self) -> bool:
        """Re-verify the model set on disk; on success reload the active tier from it.

        Safe from any thread while frames run; concurrent calls (a signal and the console) run one
        after the other, each a complete reload. On any failure the last known good set and the
        active tier stay in use (returns False). The new tier loads and warms on the calling
        thread (not the frame thread); it is swapped in between two frames and the tiers of the
        replaced set are released.
        """
        with self._reload_lock:
            if self._closed or not self.models.load():
                return False
            with self._lock:
                manifest = self.manifest
                name = self._active.tier.name
                bad, self._bad = self._bad, {}  # the new set gets a fresh chance
            try:
                self._task_tier(name, manifest)
            except ModelError:
                name = None  # gone from the new set (or moved to another task): start from its ladder
            try:
                slot = self._load_start(name, manifest)
            except ModelError as e:
                with self._lock:
                    self.models.revert()  # a set whose tiers cannot load is not a good set
                    self._bad = bad
                self.events.emit("reload_failed", f"{e} (keeping the last known good model set)")
                return False
            with self._lock:
                closed = self._closed
                if not closed:
                    # One step under the lock: the frame path sees the old set or the new one, and
                    # _pending always names a resident slot. Loads of the old set still running
                    # see a new manifest when they finish and discard what they built.
                    replaced = [s for s in (*self._resident.values(), self._pending)
                                if s is not None and s is not self._active]
                    self._resident = OrderedDict({slot.tier.name: slot})
                    self._pending = slot
                    self._wanted = slot.tier.name
            if closed:
                slot.close()
                return False
            for s in set(replaced):  # the active one is released when the swap replaces it
                s.close()
            self._swap_in_pending(only_if_idle=True)
            return True

    def status(self) -> dict:
        with self._lock:  # a consistent snapshot: other threads swap, load and reload meanwhile
            slot = self._active
            resident = list(self._resident.values())
            refused = dict(self._bad)
        rt = slot.current()
        return {
            "tier": slot.tier.name,
            "task": slot.tier.task,
            "backend": rt.backend,
            "accelerator": self.accelerator.status() if self.accelerator is not None else None,
            "accelerator_note": slot.accel_note,
            "resident": [s.tier.name for s in resident],
            "resident_mb": round(sum(s.memory_bytes for s in resident) / 2**20, 3),
            "refused": refused,
            "frames": self._frames,
            "fallback_frames": self._fallback_frames,
            "model_set": self.models.status(),
        }

    def close(self) -> None:
        if self.accelerator is not None:
            self.accelerator.close()
        with self._lock:
            self._closed = True
            slots = {*self._resident.values(), self._active} | ({self._pending} if self._pending else set())
            self._resident.clear()
            self._pending = None
        for s in slots:
            s.close()
