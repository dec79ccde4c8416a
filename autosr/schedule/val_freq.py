"""AdaptiveValidationFrequency: validate more often while the metric moves, less when it is flat.

About 20–50 validations per run: the interval stays within [min_freq, max_freq] (by default
total_iter/50 … total_iter/20), and always within [total_iter/100, total_iter/10]. With a time
budget, init planned the number of validations for their cost (~one per 30 s of budget): the
bounds are that interval ÷2 … ×2, and the trainer turns a new interval into a number of
validations over the rest of the (re-fitted) run, at most 15% of the time left. After each
validation the metric's change since the previous one, scaled to the current interval, decides:
a fast move (PSNR ≥ 0.1 dB) shortens the interval ×0.7, a flat one (< 0.01 dB) lengthens it ×1.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import ValFreqSettings, calibrate_val_freq, fmt, metric_scales, readable_interval
from autosr.train.hooks import Controls, RunInfo, ValStats

RELATIVE_SCALES = (3e-3, 3e-4)  # unknown metrics: fast / flat as a share of the value


class AdaptiveValidationFrequency(ScheduledAutomation):
    name = "AdaptiveValidationFrequency"
    options: ClassVar[dict[str, type]] = {"min_freq": int, "max_freq": int}
    summary = "validates more often while the metric moves fast and less when it is flat (20–50 validations per run)"
    settings: ValFreqSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.freq = 0  # the interval in force
        self.prev: tuple[float, int] | None = None  # the previous validation's (value, iteration)
        self.noop_said = False

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> ValFreqSettings:
        return calibrate_val_freq(section, run)

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        s = self.settings
        assert s is not None
        if run.val_freq <= 0:
            if not self.noop_said:
                controls.note(self.name, None, "no-op", "the run does not validate (val_freq 0): nothing to adapt")
                self.noop_said = True
            return
        if run.resumed:  # the checkpoint holds the interval in force (the trainer's knob and this state)
            self.freq = self.freq or min(s.max_freq.value, max(s.min_freq.value, run.val_freq))
            return
        self.journal_settings(controls)
        self.freq = s.start_freq.value
        if self.freq != run.val_freq:
            controls.set_val_freq(self.freq, f"val_freq {run.val_freq} is outside [{s.min_freq.value}, {s.max_freq.value}] "
                                             f"({s.min_freq.reason}; {s.max_freq.reason})")

    def after_validation(self, stats: ValStats, controls: Controls) -> None:
        s, run = self.settings, self.run
        if s is None or run is None or run.val_freq <= 0 or not self.freq:
            return
        metric = stats.primary or run.val_metric
        if metric is None or metric not in stats.metrics:
            return
        value, it = float(stats.metrics[metric]), stats.iteration
        prev, self.prev = self.prev, (value, it)
        if prev is None or it <= prev[1]:
            return
        # The interval in force is the trainer's (a time budget re-spaces validations as the run's
        # length is re-fitted); so are the bounds, scaled from the planned length to the current one.
        current = stats.val_freq or self.freq
        scale = stats.total_iter / run.total_iter if run.time_budget_s and stats.total_iter else 1.0
        lo, hi = max(1, round(s.min_freq.value * scale)), max(1, round(s.max_freq.value * scale))
        per_interval = abs(value - prev[0]) * current / (it - prev[1])
        scales = metric_scales(metric)
        fast, flat = (scales[1], scales[2]) if scales else (RELATIVE_SCALES[0] * abs(value), RELATIVE_SCALES[1] * abs(value))
        if per_interval >= fast:
            factor, why = s.faster.value, f"{metric} moved {fmt(per_interval)} per interval (≥ {fmt(fast)}): validate more often"
        elif per_interval < flat:
            factor, why = s.slower.value, f"{metric} moved {fmt(per_interval)} per interval (< {fmt(flat)}): validate less often"
        else:
            return
        new = min(hi, max(lo, readable_interval(current * factor)))
        if new == current:
            return
        controls.set_val_freq(new, f"{why}; every {current} → {new} iterations, within [{lo}, {hi}]")
        self.freq = new

    def state_dict(self) -> dict[str, Any]:
        return {"freq": self.freq, "prev": list(self.prev) if self.prev else None, "noop_said": self.noop_said}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.freq = int(state.get("freq", 0))
        prev = state.get("prev")
        self.prev = (float(prev[0]), int(prev[1])) if prev else None
        self.noop_said = bool(state.get("noop_said", False))
