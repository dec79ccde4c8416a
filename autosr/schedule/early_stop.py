"""IntelligentEarlyStopping: end the run when the validation metric has stopped improving.

Stop when the metric (PSNR by default) has not improved by `min_improvement` (0.01 dB) for
`patience` validations — the tier's early-stop patience in iterations ÷ val_freq, at least 2 —
and never before 20% of total_iter. The reason names the best checkpoint's iteration (the
trainer keeps the best model). Validation-driven: decided on rank 0, broadcast by the trainer.

One guard beyond the spec (docs/scheduler.md): a plateau at a constant learning rate often ends
when the LR drops (the configured step decay, or the LR automation), so the run stops only when
the LR is lower than it was at the best validation, or after twice the patience.

A second guard: no stop when fewer iterations are left than the patience (in iterations). Little
time would be saved, and the end of the schedule (its last LR decay) is where a flat stretch
often gains again: on an H100 nano run with a 3-minute budget a stop at 82% of the run kept
37.24 dB where the same plan without the scheduler went on to 37.38 dB (docs/scheduler.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import EarlyStopSettings, calibrate_early_stop, fmt, higher_is_better
from autosr.train.hooks import Controls, RunInfo, StepStats, ValStats

LR_DROP = 0.95  # "the LR has dropped": below 95% of its value at the best validation


class IntelligentEarlyStopping(ScheduledAutomation):
    name = "IntelligentEarlyStopping"
    options: ClassVar[dict[str, type]] = {"patience": int, "min_improvement": float, "monitor_metric": str}
    summary = "stops the run when the validation metric has stopped improving (never before 20% of the run)"
    settings: EarlyStopSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.best: float | None = None  # the last significant best
        self.best_iter = 0
        self.since = 0  # validations without a significant improvement
        self.stopped = False
        self.waiting_said = False  # "would stop, but before 20%" is journaled once
        self.missing_said = False
        self.lr = 0.0  # the last step's learning rate
        self.lr_at_best = 0.0

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> EarlyStopSettings:
        return calibrate_early_stop(section, run)

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        if run.val_freq <= 0:
            if not self.missing_said:
                controls.note(self.name, None, "no-op", "the run does not validate: nothing to stop on")
                self.missing_said = True
            return
        if not run.resumed:
            self.journal_settings(controls)

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        self.lr = stats.lr

    def after_validation(self, stats: ValStats, controls: Controls) -> None:
        s, run = self.settings, self.run
        if s is None or run is None or self.stopped:
            return
        metric = s.monitor_metric.value or stats.primary
        if metric is None or metric not in stats.metrics:
            if not self.missing_said:
                controls.note(self.name, None, "no-op", f"metric {metric!r} is not among the validation metrics {sorted(stats.metrics)}")
                self.missing_said = True
            return
        value, it = float(stats.metrics[metric]), stats.iteration
        sign = 1.0 if higher_is_better(metric, stats.higher_is_better) else -1.0
        if self.best is None or sign * (value - self.best) >= s.min_improvement.value:
            self.best, self.best_iter, self.since, self.waiting_said = value, it, 0, False
            self.lr_at_best = self.lr
            return
        self.since += 1
        if self.since < s.patience.value:
            return
        lr_dropped = self.lr < LR_DROP * self.lr_at_best
        if not lr_dropped and self.since < 2 * s.patience.value:
            return  # a lower LR may still help: wait for it, or for twice the patience
        best_value, best_iter = stats.best.get(metric, (self.best, self.best_iter))
        plateau = (f"{metric} has not improved by {fmt(s.min_improvement.value)} for {self.since} validations "
                   f"(since iteration {self.best_iter}, {fmt(self.best)}"
                   + (f"; the LR dropped {fmt(self.lr_at_best)} → {fmt(self.lr)})" if lr_dropped else
                      f"; twice the patience of {s.patience.value} at an unchanged LR)"))
        left = (stats.total_iter or run.total_iter) - it  # a time budget re-fits the length
        if left < s.patience_iters.value:
            if not self.waiting_said:
                controls.note(f"{self.name}.stop", None, None, f"{plateau}; only {left} iterations are left, fewer than the "
                                                              f"patience of {s.patience_iters.value}: the run goes to its end")
                self.waiting_said = True
            return
        earliest = s.min_progress.value * run.total_iter
        if it < earliest:
            if not self.waiting_said:
                controls.note(f"{self.name}.stop", None, None, f"{plateau}; not before 20% of the run (iteration {int(earliest)}): go on")
                self.waiting_said = True
            return
        self.stopped = True
        controls.stop(f"early stop: {plateau}; best checkpoint: iteration {best_iter} ({metric} {fmt(best_value)})")

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_iter": self.best_iter, "since": self.since, "stopped": self.stopped,
                "waiting_said": self.waiting_said, "missing_said": self.missing_said, "lr": self.lr, "lr_at_best": self.lr_at_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.best = state.get("best")
        self.best_iter = int(state.get("best_iter", 0))
        self.since = int(state.get("since", 0))
        self.stopped = bool(state.get("stopped", False))
        self.waiting_said = bool(state.get("waiting_said", False))
        self.missing_said = bool(state.get("missing_said", False))
        self.lr = float(state.get("lr", 0.0))
        self.lr_at_best = float(state.get("lr_at_best", 0.0))
