"""IntelligentLearningRateScheduler: lower the LR when training stops making progress.

- Training loss: the base-weighted sum of the unweighted losses (so DLS re-weighting cannot fake
  progress), smoothed on the device. No new best (by `improvement_threshold`, relative) for
  `plateau_patience` iterations → LR ×0.8.
  A new best of the validation metric also counts as progress: the training loss of random crops
  is noisy, and on an H100 nano run (3-minute budget) it showed no new best for 1,500 iterations
  while the held-out PSNR rose 0.08 dB; the cut it made left the run 0.1 dB behind at equal
  iterations (docs/scheduler.md).
- Validation metric: no new best (by the metric's own scale: 0.01 dB of PSNR, as early stopping)
  for half the patience (and at least 2 validations) → LR ×0.9.
- One change per cooldown of `plateau_patience` iterations, whichever source asks; after a change
  the plateau clock restarts, so a cut never compounds on consecutive steps. The total factor
  stays within [min_lr_factor, max_lr_factor] (at most [0.1, 2]) of the configured schedule,
  which it scales and never replaces. Nothing during the warm-up.

The device-side best is read on the host once every `check_every` iterations (≤ 100): no host
sync per step. Decisions depend only on the (rank-averaged) statistics: identical on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import LRSettings, calibrate_lr, fmt, higher_is_better, metric_scales
from autosr.train.hooks import Controls, RunInfo, StepStats, ValStats

if TYPE_CHECKING:
    import torch


class IntelligentLearningRateScheduler(ScheduledAutomation):
    name = "IntelligentLearningRateScheduler"
    options: ClassVar[dict[str, type]] = {
        "monitor_loss": bool, "monitor_validation": bool, "plateau_patience": int,
        "improvement_threshold": float, "min_lr_factor": float, "max_lr_factor": float,
    }
    summary = "on a plateau of the training loss (×0.8) or of the validation metric (×0.9), lowers the LR"
    settings: LRSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.last_change: int | None = None
        self.factor = 1.0  # the LR factor as last seen (StepStats.lr_scale) or set
        self.floor_said = False
        self.val_best: float | None = None
        self.val_best_iter = 0
        self.val_since = 0  # validations since the best
        self.val_new_best_iter = 0  # the last validation that set a new best (any margin): progress
        self._ema: torch.Tensor | None = None
        self._best: torch.Tensor | None = None
        self._best_iter: torch.Tensor | None = None
        self._pending: dict[str, float] | None = None
        self._base: torch.Tensor | None = None
        self._names: list[str] = []

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> LRSettings:
        return calibrate_lr(section, run)

    @property
    def patience(self) -> int:
        assert self.settings is not None
        return self.settings.plateau_patience.value

    @property
    def check_every(self) -> int:
        k = self.step_interval  # checks fall on iterations the trainer reports
        return max(k, min(100, self.patience // 10) // k * k)

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        if not run.resumed:
            self.journal_settings(controls)

    def _cooled(self, iteration: int) -> bool:
        return self.last_change is None or iteration - self.last_change >= self.patience

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        s, run = self.settings, self.run
        if s is None or run is None or not s.monitor_loss.value:
            return
        self.factor = stats.lr_scale
        it = stats.iteration
        if it <= run.warmup_iter:
            return
        import torch

        x = self._loss(stats)
        if self._ema is None and self._pending is None:
            self._first(x, it)  # the first observation sets the level
            return
        if self._ema is None:
            self._restore(x.device)
        assert self._ema is not None and self._best is not None and self._best_iter is not None
        # |x| < inf is isfinite in two kernels instead of four; the level is finite or +inf (_first)
        x = torch.where(x.abs() < math.inf, x, self._ema)
        tau = min(100.0, max(10.0, self.patience / 10))
        alpha = 1.0 - math.exp(-self.step_interval / tau)  # one observation per step_interval iterations
        self._ema = torch.where(self._ema < math.inf, self._ema.lerp(x, alpha), x)
        improved = self._ema < self._best * (1.0 - s.improvement_threshold.value)
        self._best = torch.where(improved, self._ema, self._best)
        self._best_iter = torch.where(improved, torch.full_like(self._best_iter, it), self._best_iter)
        if it % self.check_every != 0 or not self._cooled(it):
            return
        best_iter = int(self._best_iter.item())  # one host read per check_every iterations
        since = max(best_iter, self.last_change or 0, run.warmup_iter, self.val_new_best_iter)
        if it - since >= self.patience:
            best = float(self._best.item())
            val = (f", nor of the validation metric since iteration {self.val_new_best_iter}"
                   if s.monitor_validation.value and self.val_new_best_iter else "")
            self._cut(s.cut.value, it, controls,
                      f"training-loss plateau: no new best of the smoothed loss (best {fmt(best)} at iteration {best_iter}){val} "
                      f"for {it - since} ≥ {self.patience} iterations")

    def after_validation(self, stats: ValStats, controls: Controls) -> None:
        s, run = self.settings, self.run
        if s is None or run is None or not s.monitor_validation.value:
            return
        metric = stats.primary or run.val_metric
        if metric is None or metric not in stats.metrics:
            return
        value, it = float(stats.metrics[metric]), stats.iteration
        if metric in stats.improved:
            self.val_new_best_iter = it
        sign = 1.0 if higher_is_better(metric, stats.higher_is_better) else -1.0
        scales = metric_scales(metric)  # PSNR: 0.01 dB; the loss's relative 0.1% would ask 0.037 dB at 37 dB
        margin = scales[0] if scales else s.improvement_threshold.value * abs(self.val_best or 0.0)
        if self.val_best is None or sign * (value - self.val_best) >= margin:
            self.val_best, self.val_best_iter, self.val_since = value, it, 0
            return
        self.val_since += 1
        if it <= run.warmup_iter or not self._cooled(it):
            return
        since = max(self.val_best_iter, self.last_change or 0, run.warmup_iter)
        half = max(1, self.patience // 2)
        if it - since >= half and self.val_since >= 2:
            self._cut(s.val_cut.value, it, controls,
                      f"validation plateau: {metric} {fmt(value)} has not beaten {fmt(self.val_best)} (iteration {self.val_best_iter}) "
                      f"for {it - since} ≥ {half} iterations (half the patience)")

    def _cut(self, factor: float, iteration: int, controls: Controls, why: str) -> None:
        assert self.settings is not None
        lo = self.settings.min_lr_factor.value
        current = self.factor
        new = max(lo, current * factor)
        self.last_change = iteration  # the plateau clock restarts either way
        if new >= current * 0.999:
            if not self.floor_said:
                controls.note(f"{self.name}.lr_scale", current, current, f"{why}; the LR factor is at its floor {fmt(lo)}: no cut")
                self.floor_said = True
            return
        controls.scale_lr(new / current, f"{why}: LR ×{fmt(new / current)} (factor {fmt(current)} → {fmt(new)}); "
                                         f"cooldown {self.patience} iterations")
        self.factor = new

    def _loss(self, stats: StepStats) -> torch.Tensor:
        import torch

        assert self.run is not None
        device = stats.total.device
        if self._base is None or self._base.device != device:
            names = [loss.name for loss in self.run.losses if loss.base_weight > 0]
            self._names = names
            self._base = torch.tensor([loss.base_weight for loss in self.run.losses if loss.base_weight > 0],
                                      dtype=torch.float32, device=device)
        if not self._names or any(n not in stats.losses for n in self._names):
            return stats.total.detach().reshape(()).float()  # fall back to what was back-propagated
        parts = torch.stack([stats.losses[n].detach().reshape(()).float() for n in self._names])
        return torch.dot(parts.abs(), self._base)

    def _restore(self, device: torch.device) -> None:
        import torch

        p = self._pending
        assert p is not None
        self._pending = None
        self._ema = torch.tensor(p["ema"], dtype=torch.float32, device=device)
        self._best = torch.tensor(p["best"], dtype=torch.float32, device=device)
        self._best_iter = torch.tensor(int(p["best_iter"]), dtype=torch.long, device=device)

    def _first(self, x: torch.Tensor, iteration: int) -> None:
        import torch

        x = torch.where(torch.isfinite(x), x, torch.full_like(x, math.inf))
        self._ema = x.clone()
        self._best = x.clone()
        self._best_iter = torch.tensor(iteration, dtype=torch.long, device=x.device)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "last_change": self.last_change, "factor": self.factor, "floor_said": self.floor_said,
            "val_best": self.val_best, "val_best_iter": self.val_best_iter, "val_since": self.val_since,
            "val_new_best_iter": self.val_new_best_iter,
        }
        if self._ema is not None and self._best is not None and self._best_iter is not None:
            state.update(ema=float(self._ema.item()), best=float(self._best.item()), best_iter=int(self._best_iter.item()))
        elif self._pending is not None:
            state.update(self._pending)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.last_change = state.get("last_change")
        self.factor = float(state.get("factor", 1.0))
        self.floor_said = bool(state.get("floor_said", False))
        self.val_best = state.get("val_best")
        self.val_best_iter = int(state.get("val_best_iter", 0))
        self.val_since = int(state.get("val_since", 0))
        self.val_new_best_iter = int(state.get("val_new_best_iter", 0))
        self._ema = self._best = self._best_iter = None
        self._pending = {k: state[k] for k in ("ema", "best", "best_iter")} if "ema" in state else None
