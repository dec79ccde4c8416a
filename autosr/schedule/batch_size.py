"""DynamicBatchSizeOptimizer: grow the batch back (or beyond the plan, if allowed) when memory allows.

The trainer does the out-of-memory back-off (shrink to ⌊0.9·b⌋ and repeat the step) and tells
this automation through `on_batch_size`; every size that failed is remembered and never tried
again. When the peak memory of every step stayed under (target − margin) of the GPU's memory for
200 iterations, the batch may grow — at most once per 1000 iterations (counted from any change),
by at most 25%, to a size whose memory (estimated linearly from the peak, an over-estimate)
stays under the limit, never to or past a size that failed, never past `max_batch_size` (by
default the planned batch: the LR was chosen for it). On the CPU it does nothing and says so.

Under DDP the trainer must report the largest peak over the ranks, so that every rank decides alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import BatchSettings, calibrate_batch, fmt
from autosr.train.hooks import Controls, RunInfo, StepStats

GROWTH_MAX = 1.25  # at most +25% per growth


class DynamicBatchSizeOptimizer(ScheduledAutomation):
    name = "DynamicBatchSizeOptimizer"
    options: ClassVar[dict[str, type]] = {
        "target_vram_usage": float, "safety_margin": float, "min_batch_size": int, "max_batch_size": int,
    }
    summary = "remembers out-of-memory sizes and grows the batch when memory stays low (never to a size that failed)"
    settings: BatchSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.failed: set[int] = set()
        self.batch = 0
        self.iteration = 0  # the last step seen
        self.last_change: int | None = None  # iteration of the last batch change (growth or back-off)
        self.window_start: int | None = None  # first iteration of the current run of low-memory steps
        self.window_peak = 0  # the largest peak in that run
        self.noop = False
        self.noop_said = False

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> BatchSettings:
        return calibrate_batch(section, run)

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        self.batch = self.batch or run.batch_size
        self.iteration = max(self.iteration, run.start_iter)
        if run.tier.name == "cpu" or not run.tier.vram_total_bytes:
            self.noop = True
            if not self.noop_said:
                controls.note(self.name, None, "no-op", "no GPU memory to fill (CPU run): the batch stays as planned")
                self.noop_said = True
            return
        if not run.resumed:
            self.journal_settings(controls)

    @property
    def limit_bytes(self) -> float:
        s, run = self.settings, self.run
        assert s is not None and run is not None and run.tier.vram_total_bytes
        return (s.target_vram_usage.value - s.safety_margin.value) * run.tier.vram_total_bytes

    @property
    def ceiling(self) -> int:
        """The largest size allowed now: max_batch_size, and below every size that failed."""
        assert self.settings is not None
        cap = self.settings.max_batch_size.value
        if self.failed:
            cap = min(cap, min(self.failed) - 1)
        return cap

    def on_batch_size(self, old: int, new: int, reason: str, controls: Controls) -> None:
        if new < old:  # this automation only grows: a smaller size is the trainer's back-off
            self.failed.add(old)
        self.batch = new
        self.last_change = self.iteration
        self.window_start, self.window_peak = None, 0

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        self.iteration = stats.iteration
        self.batch = stats.batch_size  # the trainer's size is the truth
        if self.noop or self.settings is None or self.run is None or stats.peak_memory_bytes is None:
            return
        s, it, peak = self.settings, stats.iteration, stats.peak_memory_bytes
        limit = self.limit_bytes
        if peak >= limit:
            self.window_start, self.window_peak = None, 0
            return
        if self.window_start is None:
            self.window_start, self.window_peak = it, 0
        self.window_peak = max(self.window_peak, peak)
        if it - self.window_start + 1 < s.stable_iters.value:
            return
        if self.last_change is not None and it - self.last_change < s.growth_interval.value:
            return
        b, cap = self.batch, self.ceiling
        if b >= cap:
            return
        by_memory = int(b * limit / max(1, self.window_peak))  # memory ∝ batch over-estimates: safe
        new = min(cap, by_memory, max(b + 1, int(b * GROWTH_MAX)))
        if new <= b:
            self.window_start, self.window_peak = None, 0  # no room for even one more sample: look again later
            return
        failed = f"; sizes that failed: {sorted(self.failed)}" if self.failed else ""
        reason = (f"peak memory ≤ {fmt(self.window_peak / 2**30)} GiB for {it - self.window_start + 1} iterations, under "
                  f"(target {fmt(s.target_vram_usage.value)} − margin {fmt(s.safety_margin.value)}) × "
                  f"{fmt((self.run.tier.vram_total_bytes or 0) / 2**30)} GiB; "
                  f"grow {b} → {new} (at most {cap}){failed}")
        self.last_change = it
        self.window_start, self.window_peak = None, 0
        self.batch = new
        controls.set_batch_size(new, reason)

    def state_dict(self) -> dict[str, Any]:
        return {"failed": sorted(self.failed), "batch": self.batch, "iteration": self.iteration, "last_change": self.last_change,
                "window_start": self.window_start, "window_peak": self.window_peak, "noop_said": self.noop_said}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.failed = {int(x) for x in state.get("failed", [])}
        self.batch = int(state.get("batch", 0))
        self.iteration = int(state.get("iteration", 0))
        self.last_change = state.get("last_change")
        self.window_start = state.get("window_start")
        self.window_peak = int(state.get("window_peak", 0))
        self.noop_said = bool(state.get("noop_said", False))
