"""Calibration: preset × complexity × run length × GAN × tier → frozen settings, each with its reason.

Pure (no torch, no I/O): the same inputs always give the same settings, so `autosr train
--explain` can print them before anything trains and tests can check every number. The numbers
are runtime-scheduler.md's defaults; a key the user sets in the YAML always wins and its reason
says "set in the YAML". Departures from the spec are listed in docs/scheduler.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, TypeVar

from autosr.errors import AutosrError
from autosr.train.hooks import RunInfo, TierInfo

T = TypeVar("T")

DLS_NAME = "dynamic_loss_scheduling"
YAML = "set in the YAML"


@dataclass(frozen=True)
class Calibrated(Generic[T]):
    """One setting: its value, why it has that value, and whether the user set it."""

    value: T
    reason: str
    explicit: bool = False

    def show(self) -> str:
        return f"{fmt(self.value)} ({self.reason})"


def fmt(value: Any) -> str:
    """A short, readable number: 0.0075, 1.5, 1e-06, 150."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows_of(settings: Any) -> list[tuple[str, Calibrated[Any]]]:
    """(name, Calibrated) for every Calibrated field of a settings dataclass, in field order."""
    out = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Calibrated):
            out.append((f.name, value))
    return out


class Chain:
    """A value built by successive factors and bounds; the reason shows each step."""

    def __init__(self, value: float, why: str) -> None:
        self.value = float(value)
        self.why = why
        self.parts = [f"{fmt(self.value)} ({why})"]

    def times(self, factor: float, why: str, always: bool = False) -> Chain:
        if factor != 1.0 or always:
            self.value *= factor
            self.parts.append(f"×{fmt(factor)} ({why})")
        return self

    def bound(self, lo: float | None = None, hi: float | None = None) -> Chain:
        before = self.value
        if lo is not None and self.value < lo:
            self.value = lo
        if hi is not None and self.value > hi:
            self.value = hi
        if self.value != before:
            which = "floor" if lo is not None and self.value == lo else "ceiling"
            self.parts.append(f"→ {which} {fmt(self.value)}")
        return self

    def reason(self) -> str:
        """'nano preset' for a value used as it is; '0.85 (nano preset) ×1.05 (complex data)' otherwise."""
        return self.why if len(self.parts) == 1 else " ".join(self.parts)

    def calibrated(self) -> Calibrated[float]:
        return Calibrated(self.value, self.reason())


def pick(section: Mapping[str, Any], key: str, auto: Calibrated[T], cast: Callable[[Any], T],
         check: Callable[[T], bool] | None = None, must: str = "") -> Calibrated[T]:
    """The YAML's value when the key is set (checked), else the calibrated one."""
    if key not in section or section[key] is None:
        return auto
    value = cast(section[key])
    if check is not None and not check(value):
        raise AutosrError(f"{key}: {section[key]!r} is out of range", f"it must be {must}" if must else "")
    return Calibrated(value, YAML, explicit=True)


def length_factor(total_iter: int) -> tuple[float, str]:
    """runtime-scheduler.md: patience ×0.7 for runs under 10k iterations, ×1.3 over 50k."""
    if total_iter < 10_000:
        return 0.7, f"short run, {total_iter} < 10k iterations"
    if total_iter > 50_000:
        return 1.3, f"long run, {total_iter} > 50k iterations"
    return 1.0, f"{total_iter} iterations"


# =============================================================================================
# Dynamic loss scheduling

SMOOTHING = 1.0 - math.exp(-1.0 / 10.0)  # a: the loss level follows with a time constant of 10 steps


@dataclass(frozen=True)
class DLSPreset:
    momentum: float
    adaptation_rate: float
    max_weight: float
    baseline_iterations: int
    adaptation_threshold: float


# seed 02's table, with the per-preset thresholds of runtime-scheduler.md
DLS_PRESETS: dict[str, DLSPreset] = {
    "nano": DLSPreset(0.85, 0.015, 5.0, 50, 0.04),
    "micro": DLSPreset(0.87, 0.012, 7.5, 75, 0.05),
    "tiny": DLSPreset(0.89, 0.010, 10.0, 100, 0.06),
    "xs": DLSPreset(0.90, 0.009, 15.0, 125, 0.07),
    "s": DLSPreset(0.91, 0.008, 20.0, 150, 0.08),
    "m": DLSPreset(0.92, 0.007, 30.0, 200, 0.10),
    "l": DLSPreset(0.93, 0.006, 50.0, 250, 0.12),
    "xl": DLSPreset(0.94, 0.005, 75.0, 300, 0.15),
}
FALLBACK_VARIANT = "s"

# manual mode (auto_calibrate: false): the fork's documented defaults
DLS_MANUAL: dict[str, Any] = {
    "momentum": 0.9, "adaptation_rate": 0.01, "min_weight": 1e-6, "max_weight": 100.0,
    "adaptation_threshold": 0.1, "baseline_iterations": 100, "enable_monitoring": True,
}
MOMENTUM_MAX = 0.99
RATE_BOUNDS = (0.001, 0.1)
MAX_WEIGHT_MIN = 1.0

# stability monitor (seed 02): after iteration 500, at most one correction per 100 iterations
MONITOR_START = 500
MONITOR_EVERY = 100
MONITOR_CORRECTIONS: dict[str, dict[str, float]] = {
    "loss growth": {"momentum": 1.05, "adaptation_rate": 0.8, "max_weight": 0.7},
    "high variance": {"momentum": 1.03, "adaptation_rate": 0.9, "max_weight": 0.8},
}
PHASED = ("momentum", "adaptation_rate", "max_weight")  # what phases and corrections scale


def is_gan(loss_type: str) -> bool:
    return "gan" in loss_type.lower()


@dataclass(frozen=True)
class DLSSettings:
    """DLS's base settings (before phase factors and stability corrections)."""

    auto_calibrate: Calibrated[bool]
    momentum: Calibrated[float]
    adaptation_rate: Calibrated[float]
    min_weight: Calibrated[float]
    max_weight: Calibrated[float]
    adaptation_threshold: Calibrated[float]
    baseline_iterations: Calibrated[int]
    enable_monitoring: Calibrated[bool]
    preset: str  # the row of DLS_PRESETS used ("" in manual mode)
    warnings: tuple[str, ...] = ()
    phase_overrides: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # YAML `phases:`

    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in rows_of(self) if name != "auto_calibrate"}

    def explicit(self, key: str) -> bool:
        value = getattr(self, key)
        return isinstance(value, Calibrated) and value.explicit

    def kept_from(self, saved: Mapping[str, Any]) -> DLSSettings:
        """After a resume: values the YAML does not set come from the run's start (the dataset
        complexity measured on the first batch after a resume may differ, the run must not)."""
        changes: dict[str, Any] = {}
        for name, cal in rows_of(self):
            if name in saved and not cal.explicit and saved[name] != cal.value:
                changes[name] = Calibrated(type(cal.value)(saved[name]), "kept from the run's start (resumed)")
        return replace(self, **changes) if changes else self


def dls_enabled(section: Mapping[str, Any] | None) -> bool:
    """A present, non-empty section is on unless it says `enabled: false`."""
    if not section:
        return False
    return bool(section.get("enabled", True))


def calibrate_dls(section: Mapping[str, Any], run: RunInfo) -> DLSSettings:
    """runtime-scheduler.md's auto-calibration; explicit keys win; manual defaults without auto."""
    auto = pick(section, "auto_calibrate", Calibrated(True, "default: settings from preset, data and run length"), bool)
    warnings: list[str] = []
    if auto.value:
        variant = run.variant.lower()
        if variant not in DLS_PRESETS:
            warnings.append(
                f"{DLS_NAME}: no calibration preset for architecture '{run.arch}' (variant '{run.variant}'); "
                f"using the '{FALLBACK_VARIANT}' preset"
            )
            variant = FALLBACK_VARIANT
        p = DLS_PRESETS[variant]
        src = f"{variant} preset" if not warnings else f"'{FALLBACK_VARIANT}' preset: unknown variant '{run.variant}'"
        c = run.complexity
        band = "simple" if c < 0.3 else "complex" if c > 0.7 else ""
        cf = {"simple": (0.95, 1.2, 0.8), "complex": (1.05, 0.8, 1.3)}.get(band, (1.0, 1.0, 1.0))
        cwhy = f"{band} data, complexity {c:.2f}"
        n = run.total_iter
        rate_len = 1.5 if n < 10_000 else 0.7 if n > 50_000 else 1.0
        lwhy = f"{'short' if n < 10_000 else 'long'} run, {n} iterations"
        gan = run.has_gan
        momentum = Chain(p.momentum, src).times(cf[0], cwhy).bound(hi=MOMENTUM_MAX).calibrated()
        rate = Chain(p.adaptation_rate, src).times(cf[1], cwhy).bound(*RATE_BOUNDS).times(rate_len, lwhy).bound(*RATE_BOUNDS)
        max_w = Chain(p.max_weight, src).times(cf[2], cwhy).bound(lo=MAX_WEIGHT_MIN)
        max_w.times(0.8 if gan else 1.0, "a GAN loss is present").bound(lo=MAX_WEIGHT_MIN)
        thr = Chain(p.adaptation_threshold, src).times(1.5 if gan else 1.0, "a GAN loss is present")
        base = Chain(p.baseline_iterations, src)
        if n < 10_000:
            base.times(0.5, lwhy).bound(lo=25)
        elif n > 50_000:
            base.times(1.5, lwhy).bound(hi=400)
        auto_vals: dict[str, Calibrated[Any]] = {
            "momentum": momentum, "adaptation_rate": rate.calibrated(), "max_weight": max_w.calibrated(),
            "adaptation_threshold": thr.calibrated(),
            "baseline_iterations": Calibrated(int(round(base.value)), base.reason()),
            "min_weight": Calibrated(DLS_MANUAL["min_weight"], "default: no floor beyond the numerical one"),
            "enable_monitoring": Calibrated(True, "default: stability monitor on"),
        }
        preset = variant
    else:
        auto_vals = {k: Calibrated(v, "manual default (auto_calibrate: false)") for k, v in DLS_MANUAL.items()}
        preset = ""

    momentum_c = pick(section, "momentum", auto_vals["momentum"], float, lambda v: 0.0 <= v < 1.0, "in [0, 1)")
    rate_c = pick(section, "adaptation_rate", auto_vals["adaptation_rate"], float, lambda v: 0.0 < v < 0.5, "in (0, 0.5)")
    min_c = pick(section, "min_weight", auto_vals["min_weight"], float, lambda v: 0.0 < v <= 1.0, "in (0, 1]")
    max_c = pick(section, "max_weight", auto_vals["max_weight"], float, lambda v: v >= 1.0, "at least 1")
    thr_c = pick(section, "adaptation_threshold", auto_vals["adaptation_threshold"], float, lambda v: v >= 0.0, "at least 0")
    base_c = pick(section, "baseline_iterations", auto_vals["baseline_iterations"], int, lambda v: v >= 1, "at least 1")
    mon_c = pick(section, "enable_monitoring", auto_vals["enable_monitoring"], bool)
    return DLSSettings(
        auto_calibrate=auto, momentum=momentum_c, adaptation_rate=rate_c, min_weight=min_c, max_weight=max_c,
        adaptation_threshold=thr_c, baseline_iterations=base_c, enable_monitoring=mon_c,
        preset=preset, warnings=tuple(warnings),
        phase_overrides={phase: {k: float(v) for k, v in (values or {}).items()}
                         for phase, values in (section.get("phases") or {}).items()},
    )


# =============================================================================================
# Training automations: the tier table (runtime-scheduler.md), run length, bounds

PATIENCE_BOUNDS = (500, 3000)
VRAM_TARGET_BOUNDS = (0.70, 0.95)
CLIP_BOUNDS = (0.1, 10.0)
LR_FACTOR_BOUNDS = (0.1, 2.0)


def tier_patience(value: int, what: str, tier: TierInfo, total_iter: int) -> Calibrated[int]:
    f, why = length_factor(total_iter)
    chain = Chain(value, f"{tier.name} tier {what}").times(f, why).bound(*PATIENCE_BOUNDS)
    return Calibrated(int(round(chain.value)), chain.reason())


def _positive(v: float) -> bool:
    return v > 0


@dataclass(frozen=True)
class LRSettings:
    monitor_loss: Calibrated[bool]
    monitor_validation: Calibrated[bool]
    plateau_patience: Calibrated[int]  # iterations without a new best of the smoothed loss
    improvement_threshold: Calibrated[float]  # relative: a new best must beat the old by this share
    min_lr_factor: Calibrated[float]
    max_lr_factor: Calibrated[float]
    cut: Calibrated[float]  # training-loss plateau
    val_cut: Calibrated[float]  # validation plateau (half the patience)


def calibrate_lr(section: Mapping[str, Any], run: RunInfo) -> LRSettings:
    patience = pick(section, "plateau_patience", tier_patience(run.tier.lr_patience, "LR plateau patience", run.tier, run.total_iter),
                    int, lambda v: v >= 1, "at least 1")
    lo = pick(section, "min_lr_factor", Calibrated(LR_FACTOR_BOUNDS[0], "the trainer's floor"), float,
              lambda v: LR_FACTOR_BOUNDS[0] <= v <= 1.0, f"in [{LR_FACTOR_BOUNDS[0]}, 1]")
    hi = pick(section, "max_lr_factor", Calibrated(LR_FACTOR_BOUNDS[1], "the trainer's ceiling"), float,
              lambda v: 1.0 <= v <= LR_FACTOR_BOUNDS[1], f"in [1, {LR_FACTOR_BOUNDS[1]}]")
    return LRSettings(
        monitor_loss=pick(section, "monitor_loss", Calibrated(True, "default"), bool),
        monitor_validation=pick(section, "monitor_validation", Calibrated(run.val_freq > 0, "default: on when the run validates"), bool),
        plateau_patience=patience,
        improvement_threshold=pick(section, "improvement_threshold", Calibrated(1e-3, "default: 0.1% better counts as progress"),
                                   float, lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        min_lr_factor=lo, max_lr_factor=hi,
        cut=Calibrated(0.8, "runtime-scheduler.md: ×0.8 on a training-loss plateau"),
        val_cut=Calibrated(0.9, "runtime-scheduler.md: ×0.9 at half patience (validation plateau)"),
    )


@dataclass(frozen=True)
class BatchSettings:
    target_vram_usage: Calibrated[float]
    safety_margin: Calibrated[float]
    min_batch_size: Calibrated[int]
    max_batch_size: Calibrated[int]
    stable_iters: Calibrated[int]
    growth_interval: Calibrated[int]


def calibrate_batch(section: Mapping[str, Any], run: RunInfo) -> BatchSettings:
    t = run.tier
    target = Chain(t.vram_target, f"{t.name} tier").bound(*VRAM_TARGET_BOUNDS).calibrated()
    return BatchSettings(
        target_vram_usage=pick(section, "target_vram_usage", target, float, lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
        safety_margin=pick(section, "safety_margin", Calibrated(t.safety_margin, f"{t.name} tier"), float,
                           lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
        min_batch_size=pick(section, "min_batch_size", Calibrated(1, "default"), int, lambda v: v >= 1, "at least 1"),
        max_batch_size=pick(section, "max_batch_size",
                            Calibrated(run.batch_size, "the planned batch (the LR was chosen for it): growth only recovers "
                                                       "from an out-of-memory back-off; set max_batch_size to allow more"),
                            int, lambda v: v >= 1, "at least 1"),
        stable_iters=Calibrated(200, "runtime-scheduler.md: peak memory under target − margin for 200 iterations"),
        growth_interval=Calibrated(1000, "runtime-scheduler.md: at most one growth per 1000 iterations"),
    )


@dataclass(frozen=True)
class ClipSettings:
    initial_threshold: Calibrated[float]
    calibration_steps: Calibrated[int]
    percentile: Calibrated[float]  # 0..100
    multiplier: Calibrated[float]
    reset_interval: Calibrated[int]


def calibrate_clip(section: Mapping[str, Any], run: RunInfo) -> ClipSettings:
    t = run.tier
    start = Chain(t.clip_start, f"{t.name} tier clip start").bound(*CLIP_BOUNDS).calibrated()

    def percent(raw: Any) -> float:
        v = float(raw)
        return v * 100.0 if 0.0 < v <= 1.0 else v  # 0.95 and 95 both mean the 95th percentile

    return ClipSettings(
        initial_threshold=pick(section, "initial_threshold", start, float,
                               lambda v: CLIP_BOUNDS[0] <= v <= CLIP_BOUNDS[1], f"in [{CLIP_BOUNDS[0]}, {CLIP_BOUNDS[1]}]"),
        calibration_steps=pick(section, "calibration_steps", Calibrated(100, "runtime-scheduler.md: measure the first 100 steps"),
                               int, lambda v: v >= 1, "at least 1"),
        percentile=pick(section, "percentile", Calibrated(95.0, "runtime-scheduler.md: p95"), percent,
                        lambda v: 0.0 < v <= 100.0, "in (0, 100]"),
        multiplier=Calibrated(1.5, "runtime-scheduler.md: threshold = p95 × 1.5"),
        reset_interval=Calibrated(500, "runtime-scheduler.md: re-set at most once per 500 steps"),
    )


# per-metric scales: (min improvement, "moves fast" per validation, "flat" per validation)
_METRIC_SCALES: dict[str, tuple[float, float, float]] = {
    "psnr": (0.01, 0.1, 0.01),  # dB
    "ssim": (1e-4, 2e-3, 2e-4),
}
LOWER_IS_BETTER = ("lpips", "dists", "loss", "niqe")


def metric_scales(metric: str | None) -> tuple[float, float, float] | None:
    """Absolute scales for a known metric; None for others (then relative to the value)."""
    return _METRIC_SCALES.get((metric or "").lower())


def higher_is_better(metric: str, told: Mapping[str, bool]) -> bool:
    if metric in told:
        return bool(told[metric])
    return not any(k in metric.lower() for k in LOWER_IS_BETTER)


@dataclass(frozen=True)
class EarlyStopSettings:
    monitor_metric: Calibrated[str | None]
    min_improvement: Calibrated[float]
    patience_iters: Calibrated[int]
    patience: Calibrated[int]  # in validations
    min_progress: Calibrated[float]


def calibrate_early_stop(section: Mapping[str, Any], run: RunInfo) -> EarlyStopSettings:
    default_metric: Calibrated[str | None] = Calibrated(run.val_metric, "the metric that picks the best model")
    metric = pick(section, "monitor_metric", default_metric, str)
    scales = metric_scales(metric.value)
    min_imp = pick(section, "min_improvement",
                   Calibrated(scales[0], f"runtime-scheduler.md: {fmt(scales[0])} for {metric.value}") if scales
                   else Calibrated(0.0, f"no scale known for {metric.value}: any improvement counts"),
                   float, lambda v: v >= 0.0, "at least 0")
    iters = pick(section, "patience", tier_patience(run.tier.early_stop_patience, "early-stop patience", run.tier, run.total_iter),
                 int, lambda v: v >= 1, "at least 1 (iterations)")
    if run.val_freq > 0:
        n = max(2, math.ceil(iters.value / run.val_freq))
        vals = Calibrated(n, f"{iters.value} iterations ÷ val_freq {run.val_freq}, at least 2")
    else:
        vals = Calibrated(2, "no validation in this run")
    return EarlyStopSettings(
        monitor_metric=metric, min_improvement=min_imp, patience_iters=iters, patience=vals,
        min_progress=Calibrated(0.2, "runtime-scheduler.md: never before 20% of total_iter"),
    )


@dataclass(frozen=True)
class ValFreqSettings:
    min_freq: Calibrated[int]  # the shortest interval between validations (iterations)
    max_freq: Calibrated[int]  # the longest
    start_freq: Calibrated[int]
    faster: Calibrated[float]  # interval factor while the metric moves fast
    slower: Calibrated[float]  # interval factor while it is flat


def readable_interval(n: float) -> int:
    """Intervals people can read: multiples of 10 from 100 up, of 100 from 2000 up."""
    n = max(1.0, n)
    step = 100 if n >= 2000 else 10 if n >= 100 else 1
    return max(1, int(round(n / step)) * step)


def val_freq_bounds(total_iter: int) -> tuple[int, int]:
    """runtime-scheduler.md: always within [total_iter/100, total_iter/10]."""
    return max(1, math.ceil(total_iter / 100)), max(1, total_iter // 10)


def calibrate_val_freq(section: Mapping[str, Any], run: RunInfo) -> ValFreqSettings:
    n = run.total_iter
    hard_lo, hard_hi = val_freq_bounds(n)

    def into_hard(c: Calibrated[int]) -> Calibrated[int]:
        v = min(hard_hi, max(hard_lo, c.value))
        if v == c.value:
            return c
        return Calibrated(v, f"{c.reason}: {c.value} → {v}, within [total_iter/100, total_iter/10] = [{hard_lo}, {hard_hi}]", c.explicit)

    if run.time_budget_s and run.val_freq > 0:
        # A time budget planned the number of validations for their cost (~one per 30 s): adapt
        # around it, ×2 either way; the trainer keeps their time within its share of the budget.
        count = max(1, n // run.val_freq)
        lo_default = Calibrated(readable_interval(run.val_freq / 2),
                                f"time budget: at most ~{2 * count} validations (the plan's {count} ×2)")
        hi_default = Calibrated(readable_interval(run.val_freq * 2),
                                f"time budget: at least ~{max(1, count // 2)} validations (the plan's {count} ÷2)")
    else:
        lo_default = Calibrated(readable_interval(n / 50), f"at most ~50 validations in {n} iterations")
        hi_default = Calibrated(readable_interval(n / 20), f"at least ~20 validations in {n} iterations")
    lo = into_hard(pick(section, "min_freq", lo_default, int, lambda v: v >= 1, "at least 1"))
    hi = into_hard(pick(section, "max_freq", hi_default, int, lambda v: v >= 1, "at least 1"))
    hi = hi if hi.value >= lo.value else Calibrated(lo.value, f"{hi.reason}; raised to min_freq", hi.explicit)
    start = min(hi.value, max(lo.value, run.val_freq)) if run.val_freq > 0 else 0
    start_c = Calibrated(start, "the configured val_freq" if start == run.val_freq else
                         f"the configured val_freq {run.val_freq}, brought within [{lo.value}, {hi.value}]")
    return ValFreqSettings(
        min_freq=lo, max_freq=hi, start_freq=start_c,
        faster=Calibrated(0.7, "the metric moves fast: validate more often"),
        slower=Calibrated(1.5, "the metric is flat: validate less often"),
    )


def iter_rows(prefix: str, settings: Any) -> Iterator[tuple[str, str, str]]:
    for name, cal in rows_of(settings):
        yield prefix, name, cal.show()
