"""Dynamic loss scheduling: shift the balance between the losses while the model trains.

runtime-scheduler.md, per loss i and step, with L = |loss_i|:
  smoothing  S ← a·L + (1−a)·S, a = 1 − e^(−1/10)
  velocity   V ← m·V + (1−m)·ΔS;  relative change rel = (L − S)/S
  target     t = 1 ∓ r·min(2, |rel|) when |V| > thr·S (rising loss damped, falling loss encouraged),
             else 1 − r·rel when |rel| > thr, else 1
  multiplier M ← clamp(M·t, min_weight, max_weight)   — it ACCUMULATES from step to step
  weights    w = base·M·k with k such that Σ w·S = Σ base·S (the balance moves, the scale does not).

Everything runs on the device without a host sync per step (torch.where, no Python `if` on
tensor values); the only host read is the stability monitor's, once per 100 iterations after
iteration 500. The multiplier is stored renormalised (M·k) so that losses falling together do not
all drift to max_weight and freeze the balance (docs/scheduler.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import (
    DLS_NAME,
    MONITOR_CORRECTIONS,
    MONITOR_EVERY,
    MONITOR_START,
    PHASED,
    SMOOTHING,
    DLSSettings,
    calibrate_dls,
    fmt,
)
from autosr.schedule.phases import DLSPhaseParams, describe_phases, dls_phase_params, phase_spans
from autosr.train.hooks import Controls, RunInfo, StepStats, phase_of

if TYPE_CHECKING:
    import torch

HISTORY = 25  # the monitor compares the last 5 totals with the 5 before the last 20
WEIGHTS_REASON = "DLS: accumulated multipliers, renormalised so that Σ w·S = Σ base·S"
CORRECTION_BOUNDS = (0.05, 20.0)  # accumulated corrections stay finite and recoverable


class DynamicLossScheduling(ScheduledAutomation):
    name = DLS_NAME
    options: ClassVar[dict[str, type]] = {
        "auto_calibrate": bool, "momentum": float, "adaptation_rate": float, "min_weight": float,
        "max_weight": float, "adaptation_threshold": float, "baseline_iterations": int, "enable_monitoring": bool,
        "phases": dict,  # {phase: {momentum, adaptation_rate, max_weight}}
    }
    summary = "shifts the balance between the losses (never their overall scale) while training"
    settings: DLSSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.names: list[str] = []  # the active losses (base weight > 0), in RunInfo.losses order
        self.active: list[int] = []
        self.n_losses = 0
        self.noop = False
        self.noop_said = False
        self.seen = 0  # observations so far (the baseline counts these, not iterations)
        self.phase: str | None = None  # the phase whose parameters apply
        self.announced: str | None = None  # the last phase journaled
        self.corrections: dict[str, float] = {k: 1.0 for k in PHASED}
        self.last_correction: int | None = None
        self.params: DLSPhaseParams | None = None
        self._saved_settings: dict[str, Any] | None = None
        self._pending: dict[str, list[float]] | None = None
        self._pending_names: list[str] | None = None
        self._pending_note: str | None = None
        self._S: torch.Tensor | None = None
        self._V: torch.Tensor | None = None
        self._M: torch.Tensor | None = None
        self._hist: torch.Tensor | None = None
        self._base: torch.Tensor | None = None
        self._index: torch.Tensor | None = None
        self._missing: torch.Tensor | None = None
        self._observed: torch.Tensor | None = None  # bool per term: observed at least once
        # terms that may be absent at first (a scheduled start_iter): only then the first-observation check
        self._late_terms = run is not None and any(loss.starts_late for loss in run.losses)

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> DLSSettings:
        return calibrate_dls(section, run)

    # ---- hooks -----------------------------------------------------------------------------------

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        assert self.settings is not None
        if self._saved_settings:
            self.settings = self.settings.kept_from(self._saved_settings)
        self.active = [i for i, loss in enumerate(run.losses) if loss.base_weight > 0]
        self.names = [run.losses[i].name for i in self.active]
        self.n_losses = len(run.losses)
        if self._pending_names is not None and self._pending_names != self.names:
            self._drop_state(self._pending_names)
        if len(self.active) < 2:
            self.noop = True
            if not self.noop_said:
                only = f"'{self.names[0]}'" if self.names else "none"
                controls.note(self.name, None, "no-op", f"a single loss ({only}): nothing to balance, the weights stay as configured")
                self.noop_said = True
            return
        self.noop = False
        if not run.resumed:
            for warning in self.settings.warnings:
                controls.note(f"{self.name}.preset", None, self.settings.preset, warning)
            self.journal_settings(controls)
            for span in phase_spans(run.total_iter, run.warmup_iter):
                p = dls_phase_params(self.settings, span.name, self.corrections)
                controls.note(f"{self.name}.phase.{span.name}", None, _rounded(p.values()),
                              f"iterations [{span.start}, {span.end}): " + _reasons(p))
        if self.phase is None:
            self.phase = phase_of(run.start_iter, run.total_iter, run.warmup_iter)
        self.params = dls_phase_params(self.settings, self.phase, self.corrections)

    def on_phase(self, phase: str, iteration: int, controls: Controls) -> None:
        if self.noop or self.settings is None or phase == self.announced:
            return
        old = _rounded(self.params.values()) if self.params is not None and self.announced is not None else None
        self.phase = self.announced = phase
        self.params = dls_phase_params(self.settings, phase, self.corrections)
        reason = f"entering the {phase} phase at iteration {iteration}: " + _reasons(self.params)
        controls.note(f"{self.name}.params", old, _rounded(self.params.values()), reason)
        self._reclamp(controls, reason)

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        if self.noop or self.settings is None or self.params is None:
            return
        import torch

        if self._S is None:
            self._materialise(stats.weights.device)
        if self._pending_note:
            controls.note(self.name, None, "restarted", self._pending_note)
            self._pending_note = None
        assert self._S is not None and self._V is not None and self._M is not None
        assert self._hist is not None and self._base is not None and self._missing is not None
        values = []
        for name in self.names:
            v = stats.losses.get(name)
            values.append(v.detach().reshape(()).float() if v is not None else self._missing)
        loss = torch.stack(values).abs()
        finite = loss < math.inf  # one kernel (isfinite is four): |x| < inf is false for inf and NaN
        k = self.step_interval  # one observation stands for k iterations
        m = self.params.momentum.value ** k
        a = 1.0 - (1.0 - SMOOTHING) ** k
        if self.seen == 0:
            self._S = torch.where(finite, loss, torch.ones_like(loss))
            self._V = torch.zeros_like(loss)
            self._M = torch.ones_like(loss)
            self._observed = finite
            level = self._S
        else:
            assert self._observed is not None
            if self._late_terms:
                # a term seen for the first time (a GAN term switched on at its start_iter) starts at its
                # own value, not at the placeholder 1 it held while absent
                first = finite & ~self._observed
                self._S = torch.where(first, loss, self._S)
                self._observed = self._observed | finite
            level = torch.where(finite, loss, self._S)  # a non-finite loss is not observed
            smoothed = torch.lerp(self._S, level, a)  # a·L + (1−a)·S
            self._V = torch.lerp(self._V, smoothed - self._S, 1.0 - m)  # m·V + (1−m)·ΔS
            self._S = smoothed
        self.seen += 1
        self._hist[(self.seen - 1) % HISTORY] = torch.dot(self._base, level)

        if self.seen * k > self.settings.baseline_iterations.value:
            controls.set_loss_weights(self._adapt(level), WEIGHTS_REASON)
        if (self.settings.enable_monitoring.value and stats.iteration > MONITOR_START and stats.iteration % MONITOR_EVERY == 0
                and self.seen >= HISTORY
                and (self.last_correction is None or stats.iteration - self.last_correction >= MONITOR_EVERY)):
            self._monitor(stats.iteration, controls)

    # ---- the maths (device tensors only) ---------------------------------------------------------

    def _adapt(self, level: torch.Tensor) -> torch.Tensor:
        """One step of the multipliers; returns the new weights. ~25 small kernels, no sync (each
        kernel is a launch on the host: the forms below are the ones with the fewest)."""
        import torch

        assert self.params is not None and self._S is not None and self._V is not None and self._M is not None
        assert self._base is not None
        r = self.params.adaptation_rate.value
        thr = self.params.adaptation_threshold
        s = self._S.clamp_min(1e-12)
        bs = self._base * s
        ref = bs.sum()
        rel = ((level - s) / s).clamp(-2.0, 2.0)
        arel = rel.abs()
        # fast (|V| > thr·S): t = 1 ∓ r·min(2, |rel|) against the direction of V; slow: t = 1 − r·rel.
        # copysign(|rel|, V) is sign(V)·|rel| wherever the fast branch is taken (there V ≠ 0).
        push = torch.where(self._V.abs() > thr * s, torch.copysign(arel, self._V), rel * (arel > thr))
        grown = self._M * (1.0 - r * push) ** self.step_interval  # the per-iteration target, k times
        self._M = (grown * (ref / torch.dot(bs, grown).clamp_min(1e-30))).clamp(self.params.min_weight, self.params.max_weight.value)
        return self._weights(ref, bs)

    def _weights(self, ref: torch.Tensor | None = None, bs: torch.Tensor | None = None) -> torch.Tensor:
        """Σ w·S = Σ base·S exactly (up to rounding), in RunInfo.losses order (0 for inactive)."""
        import torch

        assert self._S is not None and self._M is not None and self._base is not None and self._index is not None
        if ref is None or bs is None:
            bs = self._base * self._S.clamp_min(1e-12)
            ref = bs.sum()
        w = self._base * self._M * (ref / torch.dot(bs, self._M).clamp_min(1e-30))
        if len(self.active) == self.n_losses:
            return w
        return torch.zeros(self.n_losses, dtype=w.dtype, device=w.device).index_copy(0, self._index, w)

    def _reclamp(self, controls: Controls, reason: str) -> None:
        """New bounds (a phase, a correction) apply to the multipliers at once."""
        if self._M is None or self.params is None or self.settings is None:
            return
        if self.seen * self.step_interval > self.settings.baseline_iterations.value:
            self._M = self._M.clamp(self.params.min_weight, self.params.max_weight.value)
            controls.set_loss_weights(self._weights(), reason)

    def _monitor(self, iteration: int, controls: Controls) -> None:
        """seed 02's stability monitor: one host read, at most once per 100 iterations."""
        import torch

        assert self._hist is not None
        chron = torch.roll(self._hist, -(self.seen % HISTORY))  # oldest first
        last20 = chron[-20:]
        cv = last20.std(correction=0) / last20.mean().clamp_min(1e-12)
        last5, early5, cv_value = torch.stack([chron[-5:].mean(), chron[:5].mean(), cv]).tolist()
        if last5 > 2.0 * early5:
            issue = "loss growth"
            detail = f"mean of the last 5 totals {fmt(last5)} > 2 × {fmt(early5)} (the 5 before the last 20)"
        elif cv_value > 0.5:
            issue = "high variance"
            detail = f"coefficient of variation of the last 20 totals {fmt(cv_value)} > 0.5"
        else:
            return
        self._correct(issue, detail, iteration, controls)

    def _correct(self, issue: str, detail: str, iteration: int, controls: Controls) -> None:
        assert self.settings is not None and self.phase is not None
        self.last_correction = iteration
        factors = MONITOR_CORRECTIONS[issue]
        changeable = [k for k in PHASED if not self.settings.explicit(k)]
        if not changeable:
            controls.note(f"{self.name}.stability", None, issue, f"{detail}; every parameter is set in the YAML, nothing corrected")
            return
        lo, hi = CORRECTION_BOUNDS
        for key in changeable:
            self.corrections[key] = min(hi, max(lo, self.corrections[key] * factors[key]))
        old = _rounded(self.params.values()) if self.params is not None else None
        self.params = dls_phase_params(self.settings, self.phase, self.corrections)
        what = ", ".join(f"{k} ×{fmt(factors[k])}" for k in changeable)
        reason = f"stability monitor, {issue}: {detail}: {what}"
        controls.note(f"{self.name}.params", old, _rounded(self.params.values()), reason)
        self._reclamp(controls, reason)

    def _materialise(self, device: torch.device) -> None:
        import torch

        assert self.run is not None
        base = [self.run.losses[i].base_weight for i in self.active]
        self._base = torch.tensor(base, dtype=torch.float32, device=device)
        self._index = torch.tensor(self.active, dtype=torch.long, device=device)
        self._missing = torch.full((), math.nan, dtype=torch.float32, device=device)
        self._hist = torch.zeros(HISTORY, dtype=torch.float32, device=device)
        n = len(self.active)
        pending = self._pending
        self._pending = None
        if pending is not None and self.seen > 0:
            self._S = torch.tensor(pending["S"], dtype=torch.float32, device=device)
            self._V = torch.tensor(pending["V"], dtype=torch.float32, device=device)
            self._M = torch.tensor(pending["M"], dtype=torch.float32, device=device)
            self._hist = torch.tensor(pending["hist"], dtype=torch.float32, device=device)
            observed = pending.get("observed", [1.0] * n)  # checkpoints before it: every term seen
            self._observed = torch.tensor(observed, dtype=torch.float32, device=device) > 0
        else:
            self._S = torch.ones(n, dtype=torch.float32, device=device)  # replaced by the first observation
            self._V = torch.zeros(n, dtype=torch.float32, device=device)
            self._M = torch.ones(n, dtype=torch.float32, device=device)

    # ---- inspection and state --------------------------------------------------------------------

    def smoothed(self) -> torch.Tensor | None:
        """The smoothed loss levels S (active losses), for tests and reports."""
        return None if self._S is None else self._S.detach().clone()

    def multipliers(self) -> torch.Tensor | None:
        return None if self._M is None else self._M.detach().clone()

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": 1, "names": list(self.names), "seen": self.seen, "phase": self.phase, "announced": self.announced,
            "corrections": dict(self.corrections), "last_correction": self.last_correction, "noop_said": self.noop_said,
            "settings": self.settings.values() if self.settings is not None else self._saved_settings,
        }
        if self._S is not None and self._V is not None and self._M is not None and self._hist is not None:
            state.update(S=self._S.tolist(), V=self._V.tolist(), M=self._M.tolist(), hist=self._hist.tolist())
            if self._observed is not None:
                state["observed"] = [float(x) for x in self._observed.tolist()]
        elif self._pending is not None:
            state.update(self._pending)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.phase, self.announced = state.get("phase"), state.get("announced")
        self.corrections = {k: float(state.get("corrections", {}).get(k, 1.0)) for k in PHASED}
        self.last_correction = state.get("last_correction")
        self.noop_said = bool(state.get("noop_said", False))
        self._saved_settings = dict(state["settings"]) if state.get("settings") else None
        if self.settings is not None and self._saved_settings:
            self.settings = self.settings.kept_from(self._saved_settings)
        names = list(state.get("names", []))
        self._S = self._V = self._M = self._hist = None
        self.seen, self._pending, self._pending_names = 0, None, None
        if "S" in state:
            self.seen = int(state.get("seen", 0))
            self._pending = {k: [float(x) for x in state[k]] for k in ("S", "V", "M", "hist", "observed") if k in state}
            self._pending_names = names
            if self.names and names != self.names:
                self._drop_state(names)
        if self.settings is not None and self.phase is not None:
            self.params = dls_phase_params(self.settings, self.phase, self.corrections)

    def _drop_state(self, saved_names: list[str]) -> None:
        """The checkpoint's losses differ from this run's: its DLS state does not apply."""
        self.seen, self._pending, self._pending_names = 0, None, None
        self._pending_note = f"the losses changed since the checkpoint ({saved_names} → {self.names}): a new baseline"

    def describe(self) -> list[tuple[str, str, str]]:
        if self.run is not None and sum(loss.base_weight > 0 for loss in self.run.losses) < 2:
            return [(self.name, "no-op", "a single loss: nothing to balance, the weights stay as configured")]
        rows = super().describe()
        if self.settings is not None and self.run is not None:
            rows += describe_phases(self.settings, self.run.total_iter, self.run.warmup_iter)
        return rows


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: float(f"{v:.6g}") for k, v in values.items()}


def _reasons(p: DLSPhaseParams) -> str:
    return "; ".join(f"{key} {getattr(p, key).reason}" for key in PHASED)
