"""Phases as data: where each phase starts and ends, and the DLS parameters that apply in it.

Computed at start (pure, no torch), so `autosr train --explain` prints them and the journal
carries them when a phase is entered. The boundaries are exactly `hooks.phase_of`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from autosr.schedule.calibration import (
    MAX_WEIGHT_MIN,
    MOMENTUM_MAX,
    PHASED,
    RATE_BOUNDS,
    Calibrated,
    Chain,
    DLSSettings,
    fmt,
)
from autosr.train.hooks import PHASES, phase_of

# seed 02: conservative early, standard in the middle, a little bolder late. The warm-up (the LR
# still ramps) is treated like the early phase.
PHASE_FACTORS: dict[str, dict[str, float]] = {
    "warmup": {"momentum": 0.9, "adaptation_rate": 0.7, "max_weight": 0.5},
    "early": {"momentum": 0.9, "adaptation_rate": 0.7, "max_weight": 0.5},
    "middle": {"momentum": 1.0, "adaptation_rate": 1.0, "max_weight": 1.0},
    "late": {"momentum": 1.02, "adaptation_rate": 1.1, "max_weight": 1.2},
}


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    start: int  # first iteration of the phase
    end: int  # first iteration after it (total_iter for the last)


def _first(progress: float, total_iter: int, not_before: int) -> int:
    """The smallest i ≥ not_before with i / total_iter ≥ progress, computed as phase_of does."""
    t = max(1, total_iter)
    i = max(0, int(progress * t))
    while i > 0 and (i - 1) / t >= progress:
        i -= 1
    while i / t < progress:
        i += 1
    return max(i, not_before)


def phase_spans(total_iter: int, warmup_iter: int) -> tuple[PhaseSpan, ...]:
    """The non-empty phases of a run, in order; consistent with `phase_of`."""
    w = max(0, min(warmup_iter, total_iter))
    m = _first(0.10, total_iter, w)
    late = _first(0.80, total_iter, w)
    bounds = {"warmup": (0, w), "early": (w, m), "middle": (m, late), "late": (late, total_iter)}
    spans = tuple(PhaseSpan(name, *bounds[name]) for name in PHASES if bounds[name][1] > bounds[name][0])
    for span in spans:  # the table and phase_of agree at every boundary
        assert phase_of(span.start, total_iter, warmup_iter) == span.name
    return spans


@dataclass(frozen=True)
class DLSPhaseParams:
    """The DLS parameters in force during one phase."""

    phase: str
    momentum: Calibrated[float]
    adaptation_rate: Calibrated[float]
    max_weight: Calibrated[float]
    min_weight: float
    adaptation_threshold: float

    def values(self) -> dict[str, float]:
        return {
            "momentum": self.momentum.value, "adaptation_rate": self.adaptation_rate.value,
            "max_weight": self.max_weight.value, "min_weight": self.min_weight,
            "adaptation_threshold": self.adaptation_threshold,
        }


def dls_phase_params(settings: DLSSettings, phase: str, corrections: Mapping[str, float] | None = None) -> DLSPhaseParams:
    """Base settings × the phase's factors (auto mode) × the stability monitor's corrections,
    bounded after every adjustment. Keys set in the YAML are used as they are."""
    corrections = corrections or {}
    auto = settings.auto_calibrate.value
    factors = PHASE_FACTORS.get(phase, PHASE_FACTORS["middle"])
    out: dict[str, Calibrated[float]] = {}
    bounds = {
        "momentum": (None, MOMENTUM_MAX),
        "adaptation_rate": RATE_BOUNDS,
        "max_weight": (max(MAX_WEIGHT_MIN, settings.min_weight.value), None),
    }
    overrides = settings.phase_overrides.get(phase, {})
    for key in PHASED:
        base: Calibrated[float] = getattr(settings, key)
        if key in overrides:
            out[key] = Calibrated(overrides[key], f"set in the YAML for the {phase} phase", explicit=True)
            continue
        if base.explicit:
            out[key] = Calibrated(base.value, base.reason, explicit=True)
            continue
        lo, hi = bounds[key]
        chain = Chain(base.value, "base")
        if auto:
            chain.times(factors[key], f"{phase} phase", always=True).bound(lo, hi)
        chain.times(corrections.get(key, 1.0), "stability corrections").bound(lo, hi)
        out[key] = chain.calibrated()
    return DLSPhaseParams(
        phase=phase, momentum=out["momentum"], adaptation_rate=out["adaptation_rate"], max_weight=out["max_weight"],
        min_weight=settings.min_weight.value, adaptation_threshold=settings.adaptation_threshold.value,
    )


def describe_phases(settings: DLSSettings, total_iter: int, warmup_iter: int) -> list[tuple[str, str, str]]:
    """(automation, setting, value with reason) per phase, for `autosr train --explain`."""
    rows = []
    for span in phase_spans(total_iter, warmup_iter):
        p = dls_phase_params(settings, span.name)
        where = f"{span.name} [{span.start}, {span.end})"
        for key in PHASED:
            cal: Calibrated[float] = getattr(p, key)
            rows.append(("dynamic_loss_scheduling", f"{where} {key}", f"{fmt(cal.value)} ({cal.reason})"))
    return rows
