"""GANBalance: keep the discriminator from overpowering the generator, and undo a generator that degenerates.

autosr's own automation for GAN runs (the fork has none; upstream's `adaptive_d` only pauses D):

- **D overpowering** (sampled steps, D trained): D's loss, smoothed, below `d_loss_floor` × its level
  over the first observations of the GAN phase (the level of a D that cannot yet tell real from fake),
  while its mean logits on real and fake are more than `logit_gap` apart → D's learning rate × ½ (the
  objective's `d_lr_scale`, down to 0.05), and at that floor one D update every k-th step instead
  (`d_every`, up to 8). When D's loss is back above half its level, the same steps are undone one by one.
  At most one change per `cooldown` iterations.
- **G degenerating** (validations in the GAN phase): PSNR more than `psnr_drop_db` under the phase's best,
  or the high-frequency energy ratio (hf_ratio, when validated) above `hf_ratio_max` (artefacts: more
  detail energy than the truth) → back to the checkpoint of the best validation with the adversarial
  and feature-matching weights halved (the objective's `adv_scale`), at most `max_rollbacks` times.

Every change is journaled with the numbers that triggered it, and the knobs are in the metrics (plots).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.calibration import Calibrated, pick
from autosr.train.hooks import Controls, RunInfo, StepStats, ValStats

BASELINE_OBSERVATIONS = 10  # sampled D losses that set the GAN phase's starting level
SMOOTHING = 0.2  # weight of a new observation in D's smoothed loss
RECOVERED = 0.5  # D's loss above this share of its starting level: D no longer overpowers


@dataclass(frozen=True)
class BalanceSettings:
    d_loss_floor: Calibrated[float]
    logit_gap: Calibrated[float]
    cooldown: Calibrated[int]
    psnr_drop_db: Calibrated[float]
    hf_ratio_max: Calibrated[float]
    max_rollbacks: Calibrated[int]


class GANBalance(ScheduledAutomation):
    name = "GANBalance"
    options: ClassVar[dict[str, type]] = {"d_loss_floor": float, "logit_gap": float, "cooldown": int,
                                          "psnr_drop_db": float, "hf_ratio_max": float, "max_rollbacks": int}
    summary = "keeps D from overpowering G (lower D learning rate, fewer D updates) and rolls G back when it degenerates"
    settings: BalanceSettings | None

    def __init__(self, section: Mapping[str, Any] | None = None, run: RunInfo | None = None) -> None:
        super().__init__(section, run)
        self.d_baseline: list[float] = []
        self.d_smoothed: float | None = None
        self.steps_taken: list[str] = []  # the D-side reductions in force, newest last
        self.d_lr_scale = 1.0
        self.d_every = 1
        self.adv_scale = 1.0
        self.last_change = -(10**9)
        self.best_psnr: float | None = None
        self.rollbacks = 0
        self.noop_said = False

    @classmethod
    def calibrate(cls, section: Mapping[str, Any], run: RunInfo) -> BalanceSettings:
        cooldown = max(100, run.total_iter // 50)
        return BalanceSettings(
            d_loss_floor=pick(section, "d_loss_floor", Calibrated(0.2, "D's loss at a fifth of its starting level"), float,
                              lambda v: 0 < v < 1, "in (0, 1)"),
            logit_gap=pick(section, "logit_gap", Calibrated(2.0, "mean logits on real and fake 2 apart: D tells them apart "
                                                                  "with confidence"), float, lambda v: v > 0, "> 0"),
            cooldown=pick(section, "cooldown", Calibrated(cooldown, f"2% of the run ({run.total_iter} iterations), at least "
                                                                    "100: a change must show before the next"), int,
                          lambda v: v >= 1, "≥ 1"),
            psnr_drop_db=pick(section, "psnr_drop_db", Calibrated(1.0, "a realistic model trades some PSNR; a 1 dB fall "
                                                                       "below the phase's best is collapse, not texture"),
                              float, lambda v: v > 0, "> 0"),
            hf_ratio_max=pick(section, "hf_ratio_max", Calibrated(1.5, "50% more high-frequency energy than the truth: "
                                                                       "artefacts, not detail"), float, lambda v: v > 1, "> 1"),
            max_rollbacks=pick(section, "max_rollbacks", Calibrated(2, "each halves the adversarial weight; more would "
                                                                       "leave a fidelity model"), int, lambda v: v >= 0, "≥ 0"),
        )

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        self.configure(run)
        if not run.has_gan:
            if not self.noop_said:
                controls.note(self.name, None, "no-op", "the run has no ganloss: nothing to balance")
                self.noop_said = True
            return
        if not run.resumed:
            self.journal_settings(controls)

    # ---- D overpowering ---------------------------------------------------------------------------

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        s = self.settings
        extras = stats.extras
        if s is None or not self.run or not self.run.has_gan or "l_d_real" not in extras:
            return
        d_loss = float(extras["l_d_real"]) + float(extras["l_d_fake"])  # a host read on sampled steps only
        gap = float(extras["out_d_real"]) - float(extras["out_d_fake"])
        if len(self.d_baseline) < BASELINE_OBSERVATIONS:
            self.d_baseline.append(d_loss)
            self.d_smoothed = d_loss if self.d_smoothed is None else self.d_smoothed + SMOOTHING * (d_loss - self.d_smoothed)
            return
        assert self.d_smoothed is not None
        self.d_smoothed += SMOOTHING * (d_loss - self.d_smoothed)
        level = sum(self.d_baseline) / len(self.d_baseline)
        if stats.iteration - self.last_change < s.cooldown.value:
            return
        share = self.d_smoothed / max(level, 1e-12)
        numbers = f"D loss {self.d_smoothed:.4g} = {share:.0%} of its GAN-phase start {level:.4g}, logit gap {gap:.3g}"
        if share < s.d_loss_floor.value and gap > s.logit_gap.value:
            self._weaken_d(controls, stats.iteration, f"D overpowers G: {numbers}")
        elif share > RECOVERED and self.steps_taken:
            self._relax_d(controls, stats.iteration, f"D no longer overpowers G: {numbers}")

    def _weaken_d(self, controls: Controls, iteration: int, why: str) -> None:
        if self.d_lr_scale > 0.05 + 1e-9:
            self.d_lr_scale = max(0.05, self.d_lr_scale * 0.5)
            controls.set_knob("d_lr_scale", self.d_lr_scale, f"{why}: D's learning rate halved")
            self.steps_taken.append("lr")
        elif self.d_every < 8:
            self.d_every += 1
            controls.set_knob("d_every", self.d_every, f"{why}: D's learning rate at its floor; D steps every {self.d_every} iterations")
            self.steps_taken.append("every")
        else:
            return
        self.last_change = iteration

    def _relax_d(self, controls: Controls, iteration: int, why: str) -> None:
        undo = self.steps_taken.pop()
        if undo == "every":
            self.d_every -= 1
            controls.set_knob("d_every", self.d_every, f"{why}: D steps every {self.d_every} iteration(s) again")
        else:
            self.d_lr_scale = min(1.0, self.d_lr_scale * 2.0)
            controls.set_knob("d_lr_scale", self.d_lr_scale, f"{why}: D's learning rate doubled back")
        self.last_change = iteration

    # ---- G degenerating ---------------------------------------------------------------------------

    def after_validation(self, stats: ValStats, controls: Controls) -> None:
        s = self.settings
        if s is None or not self.run or not self.run.has_gan or not self.d_baseline:
            return  # not in the GAN phase yet (D has not trained)
        psnr = stats.metrics.get("psnr")
        hf = stats.metrics.get("hf_ratio")
        if psnr is not None and (self.best_psnr is None or psnr > self.best_psnr):
            self.best_psnr = float(psnr)
        problems = []
        if psnr is not None and self.best_psnr is not None and psnr < self.best_psnr - s.psnr_drop_db.value:
            problems.append(f"PSNR {psnr:.2f} dB is {self.best_psnr - psnr:.2f} dB under the GAN phase's best {self.best_psnr:.2f}")
        if hf is not None and hf > s.hf_ratio_max.value:
            problems.append(f"high-frequency energy {hf:.2f}× the truth's (above {s.hf_ratio_max.value:g}×: artefacts)")
        if not problems:
            return
        why = "G degenerates: " + "; ".join(problems)
        if self.rollbacks >= s.max_rollbacks.value:
            controls.note(self.name, None, "no rollback", f"{why}, but {self.rollbacks} rollback(s) already (max_rollbacks)")
            return
        self.rollbacks += 1
        self.adv_scale *= 0.5
        controls.set_knob("adv_scale", self.adv_scale, f"{why}: adversarial and feature-matching weights halved")
        controls.roll_back(self.name, f"{why} (rollback {self.rollbacks} of at most {s.max_rollbacks.value})")
        self.best_psnr = None  # the restored model's validations set it anew

    # ---- state ------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"d_baseline": list(self.d_baseline), "d_smoothed": self.d_smoothed, "steps_taken": list(self.steps_taken),
                "d_lr_scale": self.d_lr_scale, "d_every": self.d_every, "adv_scale": self.adv_scale,
                "last_change": self.last_change, "best_psnr": self.best_psnr, "rollbacks": self.rollbacks,
                "noop_said": self.noop_said}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.d_baseline = [float(v) for v in state.get("d_baseline", [])]
        self.d_smoothed = state.get("d_smoothed")
        self.steps_taken = list(state.get("steps_taken", []))
        self.d_lr_scale, self.d_every = float(state.get("d_lr_scale", 1.0)), int(state.get("d_every", 1))
        self.adv_scale = float(state.get("adv_scale", 1.0))
        self.last_change = int(state.get("last_change", -(10**9)))
        self.best_psnr = state.get("best_psnr")
        self.rollbacks = int(state.get("rollbacks", 0))
        self.noop_said = bool(state.get("noop_said", False))
