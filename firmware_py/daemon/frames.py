"""What happens to one frame: preprocess -> invoke -> decode -> area -> record. No lifecycle.

Runs on the processing thread only. The engine swaps tiers between two frames (inside
``input_view``), so the tier read right after it is the tier this frame runs on.
"""
from __future__ import annotations

import time

from firmware_py.kernels import Preprocessor, mask_area_mm2
from firmware_py.results import ResultRecord


def preprocessor_for_tier(tier, preprocess_cfg) -> Preprocessor:
    """The fused kernel that writes a frame into ``tier``'s input tensor."""
    spec, q = tier.preprocess, tier.input.quantization
    return Preprocessor(spec.grid[0], spec.grid[1], scale=q.scale, zero_point=q.zero_point,
                        dynamic_range_db=spec.dynamic_range_db, mean=spec.mean, std=spec.std,
                        fill=spec.fill, speckle_filter=preprocess_cfg.speckle_filter,
                        threads=preprocess_cfg.threads)


class FrameProcessor:
    """``process(frame)`` turns a frame into a ResultRecord and hands it to every sink.

    An exception from the kernels or the engine rejects the frame (ProcessingThread counts it);
    the frame's buffer is released by the caller.

    ``analysis_every`` (set by the tier controller on the control thread): analyse one frame in
    that many; the others are counted in ``skipped_by_rate``, nothing is written for them and the
    last result stays shown. ProcessingThread counts them as handled, so the frames processed are
    ``proc.processed - skipped_by_rate``.
    """

    def __init__(self, engine, sinks, latency, preprocess_cfg, *, run_id: str = "", energy=None):
        self.engine = engine
        self.energy = energy  # power.energy.EnergyMeter: each analysed frame's CPU and accelerator time
        self.run_id = run_id
        self.sinks = sinks
        self.latency = latency
        self._preprocess_cfg = preprocess_cfg
        self._preprocessors: dict[str, Preprocessor] = {}
        self._last_tier: str | None = None
        self.tiers_used: list[str] = []
        self.last = "-"  # the last result, for the status line
        self.analysis_every = 1
        self.skipped_by_rate = 0
        self._to_skip = 0  # frames still to skip before the next analysed one
        self.indeterminate: dict[str, int] = {}  # results that are no diagnosis, by reason (abstain.REASONS)

    def _preprocessor(self, tier) -> Preprocessor:
        pp = self._preprocessors.get(tier.name)
        if pp is None:
            pp = self._preprocessors[tier.name] = preprocessor_for_tier(tier, self._preprocess_cfg)
        return pp

    def process(self, frame) -> ResultRecord | None:
        self._to_skip = min(self._to_skip, self.analysis_every - 1)  # a higher rate applies at once
        if self._to_skip > 0:
            self._to_skip -= 1
            self.skipped_by_rate += 1
            return None
        self._to_skip = self.analysis_every - 1
        c0, t0 = time.thread_time(), time.perf_counter()
        engine = self.engine
        view = engine.input_view()  # a pending tier swap happens here, between two frames
        self._preprocessor(engine.active_tier).run(frame.samples, frame.geometry, view)
        del view  # TFLite refuses to invoke while a view into its input tensor is alive
        t1 = time.perf_counter()
        out = engine.invoke()
        t2, c2 = time.perf_counter(), time.thread_time()
        if self.energy is not None:  # CPU: this thread's (the interpreter runs on it); accelerator: its invoke
            self.energy.add_inference(out.tier, c2 - c0, (t2 - t1) if out.backend != "cpu" else 0.0)
        area = None
        if out.mask is not None and out.indeterminate is None:
            # the nodule: the decoder's largest connected component, as models evaluate measures it; a
            # frame the manifest's no-nodule rule rejects has area 0 and says why (extra.no_nodule)
            area = 0.0 if out.nodule is None else float(mask_area_mm2(out.nodule, frame.geometry))
        received_ns = getattr(frame, "received_ns", 0)
        total_ms = (time.monotonic_ns() - received_ns) / 1e6 if received_ns else (t2 - t0) * 1000.0
        if out.tier != self._last_tier:  # a new tier: latency history of the old one no longer applies
            self.latency.clear()
            self._last_tier = out.tier
            if out.tier not in self.tiers_used:
                self.tiers_used.append(out.tier)
        self.latency.add((t2 - t0) * 1000.0)
        record = ResultRecord(
            seq=frame.seq, probe_time_us=frame.timestamp_us, tier=out.tier, backend=out.backend,
            label=None if out.indeterminate else out.label, probabilities=out.probabilities or None,
            latency_ms={"preprocess": round((t1 - t0) * 1e3, 3), "inference": round((t2 - t1) * 1e3, 3),
                        "total": round(total_ms, 3)},
            wall_time=time.time(), area_mm2=area, run_id=self.run_id,
            extra={"fallback": out.fallback} if out.fallback else {}, indeterminate=out.indeterminate,
        )
        if out.no_nodule and out.indeterminate is None:
            record.extra["no_nodule"] = out.no_nodule
        if out.indeterminate:
            record.extra["abstention"] = out.abstention
            self.indeterminate[out.indeterminate] = self.indeterminate.get(out.indeterminate, 0) + 1
        for sink in self.sinks:
            sink.write(record)
        self.last = _describe(record)
        return record


def _describe(r: ResultRecord) -> str:
    if r.indeterminate:
        return f"#{r.seq} INDETERMINATE ({r.indeterminate})"
    if r.label is not None:
        return f"#{r.seq} {r.label} {r.probabilities.get(r.label, 0.0):.2f}"
    if r.extra.get("no_nodule"):
        return f"#{r.seq} no nodule"
    return f"#{r.seq} area {r.area_mm2:.0f}mm2" if r.area_mm2 is not None else f"#{r.seq}"
