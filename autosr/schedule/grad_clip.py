"""AdaptiveGradientClipping: a clip threshold measured on this run's gradients.

The first `calibration_steps` (100) grad norms (before clipping) are kept on the device; then
threshold = clamp(p95 × 1.5, 0.1, 10). Afterwards a running p95 over the last 500 steps may re-set
it, at most once per 500 steps (and only when it moved by more than 5%). The share of clipped
steps is reported with each setting and at the end of the run. Non-finite norms are not counted.
Host reads: one per setting decision (every ≥ 500 steps), none per step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import CLIP_BOUNDS, ClipSettings, calibrate_clip, fmt
from autosr.train.hooks import Controls, RunInfo, StepStats

if TYPE_CHECKING:
    import torch

MIN_CHANGE = 0.05  # a re-measured threshold within 5% of the current one is not worth a change


class AdaptiveGradientClipping(ScheduledAutomation):
    name = "AdaptiveGradientClipping"
    options: ClassVar[dict[str, type]] = {"initial_threshold": float, "calibration_steps": int, "percentile": float}
    summary = "sets the clip threshold from the measured gradient norms (p95 × 1.5), re-measured every 500 steps"
    settings: ClipSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.steps = 0  # finite-or-not grad norms observed
        self.threshold: float | None = None  # the last threshold this automation set
        self.last_set: int | None = None  # iteration of the last decision (set or kept)
        self.clipped_steps = 0  # host totals, updated at each decision and at the end
        self.counted_steps = 0
        self._buf: torch.Tensor | None = None  # calibration norms, then a ring of the last reset_interval
        self._clipped: torch.Tensor | None = None  # clipped steps since the last host read (device)
        self._counted = 0  # steps since the last host read with clipping on
        self._pending: dict[str, Any] | None = None

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> ClipSettings:
        return calibrate_clip(section, run)

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        assert self.settings is not None
        if run.resumed:
            return
        self.journal_settings(controls)
        if self.settings.initial_threshold.explicit:
            self.threshold = self.settings.initial_threshold.value
            controls.set_clip_threshold(self.threshold, f"initial threshold set in the YAML; measured after "
                                                        f"{self.settings.calibration_steps.value} steps")

    sample_every = 1  # after the calibration, one observation per this many iterations

    @property  # a property over the base class's plain attribute
    def step_interval(self) -> int:
        """Every step while calibrating (the spec's first N steps), then every `sample_every`."""
        calibrating = self.settings is not None and self.steps < self.settings.calibration_steps.value
        return 1 if calibrating else self.sample_every

    @step_interval.setter
    def step_interval(self, k: int) -> None:
        self.sample_every = k

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        s = self.settings
        if s is None:
            return
        import torch

        n_cal, window = s.calibration_steps.value, s.reset_interval.value
        if self._buf is None:
            self._materialise(stats.grad_norm.device, max(n_cal, window))
        assert self._buf is not None and self._clipped is not None
        g = stats.grad_norm.detach().reshape(()).float()
        g = torch.nan_to_num(g, nan=math.nan, posinf=math.nan)  # a norm is ≥ 0: one kernel makes inf unobserved too
        if stats.clip_threshold is not None:
            self._clipped += stats.clipped.detach().reshape(())  # bool into the long count, no cast kernel
            self._counted += 1
        self.steps += 1
        it = stats.iteration
        if self.steps <= n_cal:
            self._buf[self.steps - 1] = g
            if self.steps == n_cal:
                self._decide(self._buf[:n_cal], it, stats, controls, first=True)
            return
        after = self.steps - n_cal  # observations since the calibration
        span = max(20, window // self.sample_every)  # observations covering `window` iterations
        self._buf[(after - 1) % span] = g
        if self.last_set is not None and it - self.last_set >= window and after >= span:
            self._decide(self._buf[:span], it, stats, controls, first=False)

    def _decide(self, norms: torch.Tensor, iteration: int, stats: StepStats, controls: Controls, first: bool) -> None:
        import torch

        s = self.settings
        assert s is not None and self._clipped is not None
        q = float(torch.nanquantile(norms, s.percentile.value / 100.0).item())
        clipped = int(self._clipped.item())
        self.clipped_steps += clipped
        self.counted_steps += self._counted
        share = f"{clipped}/{self._counted} steps clipped since the last setting" if self._counted else "clipping was off"
        self._clipped.zero_()
        self._counted = 0
        self.last_set = iteration
        current = stats.clip_threshold if stats.clip_threshold is not None else self.threshold
        p = f"p{fmt(s.percentile.value)}"
        if math.isnan(q):
            controls.note(f"{self.name}.threshold", current, current, f"no finite gradient norm in the last {norms.numel()} steps: kept")
            return
        lo, hi = CLIP_BOUNDS
        new = min(hi, max(lo, q * s.multiplier.value))
        what = "the first" if first else "the last"
        why = f"{p} of {what} {norms.numel()} grad norms {fmt(q)} × {fmt(s.multiplier.value)} = {fmt(q * s.multiplier.value)}"
        if new != q * s.multiplier.value:
            why += f", within [{lo}, {hi}]"
        if not first and current is not None and abs(new - current) <= MIN_CHANGE * current:
            return  # within 5%: the threshold stays; the next re-measure is 500 steps away
        controls.set_clip_threshold(new, f"{why}; {share}")
        self.threshold = new

    def on_end(self, iteration: int, controls: Controls) -> None:
        if self._clipped is not None:
            self.clipped_steps += int(self._clipped.item())
            self.counted_steps += self._counted
            self._clipped.zero_()
            self._counted = 0
        if self.counted_steps:
            share = self.clipped_steps / self.counted_steps
            controls.note(f"{self.name}.clipped_share", None, round(share, 6),
                          f"{self.clipped_steps} of {self.counted_steps} steps with clipping on were clipped "
                          f"(last threshold {fmt(self.threshold)})")

    def _materialise(self, device: torch.device, size: int) -> None:
        import torch

        self._buf = torch.full((size,), math.nan, dtype=torch.float32, device=device)
        self._clipped = torch.zeros((), dtype=torch.long, device=device)
        p = self._pending
        self._pending = None
        if p is not None:
            saved = torch.tensor(p["buf"], dtype=torch.float32, device=device)
            self._buf[: min(size, saved.numel())] = saved[:size]
            self._clipped += int(p["clipped_pending"])

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "steps": self.steps, "threshold": self.threshold, "last_set": self.last_set,
            "clipped_steps": self.clipped_steps, "counted_steps": self.counted_steps, "counted_pending": self._counted,
        }
        if self._buf is not None and self._clipped is not None:
            state.update(buf=self._buf.tolist(), clipped_pending=int(self._clipped.item()))
        elif self._pending is not None:
            state.update(self._pending)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.steps = int(state.get("steps", 0))
        self.threshold = state.get("threshold")
        self.last_set = state.get("last_set")
        self.clipped_steps = int(state.get("clipped_steps", 0))
        self.counted_steps = int(state.get("counted_steps", 0))
        self._counted = int(state.get("counted_pending", 0))
        self._buf = self._clipped = None
        self._pending = {"buf": state["buf"], "clipped_pending": state.get("clipped_pending", 0)} if "buf" in state else None
