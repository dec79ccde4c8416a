"""Calibration, phases and the registry (runtime-scheduler.md's numbers, pure, torch-free)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autosr.errors import AutosrError
from autosr.schedule import registry
from autosr.schedule.calibration import (
    DLS_PRESETS,
    calibrate_batch,
    calibrate_clip,
    calibrate_dls,
    calibrate_early_stop,
    calibrate_lr,
    calibrate_val_freq,
    val_freq_bounds,
)
from autosr.schedule.phases import PHASE_FACTORS, dls_phase_params, phase_spans
from autosr.schedule.testing import TIERS, make_run
from autosr.train.hooks import LossInfo, phase_of

MID = dict(complexity=0.5, total_iter=20_000)  # no complexity or length adjustment


def dls(section: dict | None = None, **run_changes: object):  # noqa: ANN201 - DLSSettings
    return calibrate_dls(section or {}, make_run(**{**MID, **run_changes}))


# ---- DLS ------------------------------------------------------------------------------------


def test_every_preset_row_is_used_and_nano_differs_from_xl() -> None:
    for variant, row in DLS_PRESETS.items():
        s = dls(variant=variant, arch=f"paragonsr2_{variant}")
        assert (s.momentum.value, s.adaptation_rate.value, s.max_weight.value) == (row.momentum, row.adaptation_rate, row.max_weight)
        assert (s.baseline_iterations.value, s.adaptation_threshold.value) == (row.baseline_iterations, row.adaptation_threshold)
        assert f"{variant} preset" in s.momentum.reason and not s.warnings
    nano, xl = dls(variant="nano").values(), dls(variant="xl", arch="paragonsr2_xl").values()
    assert all(nano[k] != xl[k] for k in ("momentum", "adaptation_rate", "max_weight", "baseline_iterations", "adaptation_threshold"))


def test_complexity_bands_change_the_values_as_specified() -> None:
    base = dls(complexity=0.5)
    simple, complex_ = dls(complexity=0.2), dls(complexity=0.8)
    assert simple.momentum.value == pytest.approx(base.momentum.value * 0.95)
    assert simple.adaptation_rate.value == pytest.approx(base.adaptation_rate.value * 1.2)
    assert simple.max_weight.value == pytest.approx(base.max_weight.value * 0.8)
    assert complex_.momentum.value == pytest.approx(base.momentum.value * 1.05)
    assert complex_.adaptation_rate.value == pytest.approx(base.adaptation_rate.value * 0.8)
    assert complex_.max_weight.value == pytest.approx(base.max_weight.value * 1.3)
    assert "complexity 0.20" in simple.momentum.reason and "complexity 0.80" in complex_.max_weight.reason
    # the bands' edges are exclusive: 0.3 and 0.7 are moderate
    assert dls(complexity=0.3).values() == base.values() == dls(complexity=0.7).values()


def test_run_length_and_gan_adjustments_and_bounds() -> None:
    base = dls()
    short, long_ = dls(total_iter=5_000), dls(total_iter=80_000)
    assert short.adaptation_rate.value == pytest.approx(base.adaptation_rate.value * 1.5)
    assert short.baseline_iterations.value == 25  # nano 50 ÷ 2 = 25 (the floor)
    assert long_.adaptation_rate.value == pytest.approx(base.adaptation_rate.value * 0.7)
    assert long_.baseline_iterations.value == 75
    assert dls(variant="xl", total_iter=80_000).baseline_iterations.value == 400  # 300 × 1.5 = 450 → ceiling 400
    gan = dls(has_gan=True, losses=(LossInfo("l1", "l1loss", 1.0), LossInfo("gan", "ganloss", 0.1)))
    assert gan.adaptation_threshold.value == pytest.approx(base.adaptation_threshold.value * 1.5)
    assert gan.max_weight.value == pytest.approx(base.max_weight.value * 0.8)
    # bounds after every adjustment: momentum ≤ 0.99 (xl, complex data, late phase), rate within [0.001, 0.1]
    xl = dls(variant="xl", complexity=0.9)
    assert dls_phase_params(xl, "late").momentum.value == 0.99
    assert 0.001 <= dls(variant="xl", complexity=0.9, total_iter=80_000).adaptation_rate.value <= 0.1


def test_unknown_architecture_falls_back_to_s_with_a_warning() -> None:
    s = dls(variant="huge", arch="paragonsr3_huge")
    assert s.preset == "s" and s.momentum.value == DLS_PRESETS["s"].momentum
    assert len(s.warnings) == 1 and "'s' preset" in s.warnings[0] and "paragonsr3_huge" in s.warnings[0]


def test_explicit_keys_win_and_manual_mode_uses_the_documented_defaults() -> None:
    s = dls({"momentum": 0.5, "max_weight": 3.0})
    assert s.momentum.value == 0.5 and s.momentum.reason == "set in the YAML" and s.momentum.explicit
    assert s.max_weight.value == 3.0 and s.adaptation_rate.value == DLS_PRESETS["nano"].adaptation_rate
    # explicit keys ignore phase factors
    assert dls_phase_params(s, "early").momentum.value == 0.5
    manual = dls({"auto_calibrate": False})
    assert manual.values() == {"momentum": 0.9, "adaptation_rate": 0.01, "min_weight": 1e-6, "max_weight": 100.0,
                               "adaptation_threshold": 0.1, "baseline_iterations": 100, "enable_monitoring": True}
    assert "manual default" in manual.momentum.reason
    assert dls_phase_params(manual, "early").values()["momentum"] == 0.9  # no phase factors in manual mode
    with pytest.raises(AutosrError, match="momentum"):
        dls({"momentum": 1.5})
    with pytest.raises(AutosrError, match="min_weight"):
        dls({"min_weight": 2.0})


def test_phase_factors_and_spans_agree_with_phase_of() -> None:
    s = dls()
    for phase in ("early", "middle", "late"):
        p = dls_phase_params(s, phase)
        f = PHASE_FACTORS[phase]
        assert p.momentum.value == pytest.approx(min(0.99, s.momentum.value * f["momentum"]))
        assert p.adaptation_rate.value == pytest.approx(s.adaptation_rate.value * f["adaptation_rate"])
        assert p.max_weight.value == pytest.approx(max(1.0, s.max_weight.value * f["max_weight"]))
    for total, warmup in ((1000, 0), (1000, 50), (997, 300), (37, 2), (10, 0), (1000, 1000)):
        spans = phase_spans(total, warmup)
        assert spans[0].start == 0 and spans[-1].end == total
        for span in spans:
            assert all(phase_of(i, total, warmup) == span.name for i in range(span.start, span.end))


# ---- automations: tier table, run length, bounds ------------------------------------------------


def test_tier_patience_scales_with_run_length_within_bounds() -> None:
    for tier in ("budget", "mid_range", "high_end", "workstation"):
        t = TIERS[tier]
        assert calibrate_lr({}, make_run(tier=tier, total_iter=20_000)).plateau_patience.value == t.lr_patience
        short = calibrate_lr({}, make_run(tier=tier, total_iter=5_000)).plateau_patience.value
        long_ = calibrate_lr({}, make_run(tier=tier, total_iter=90_000)).plateau_patience.value
        assert short == max(500, round(t.lr_patience * 0.7)) and long_ == min(3000, round(t.lr_patience * 1.3))
        es = calibrate_early_stop({}, make_run(tier=tier, total_iter=90_000)).patience_iters.value
        assert es == min(3000, round(t.early_stop_patience * 1.3))
    assert calibrate_lr({"plateau_patience": 50}, make_run()).plateau_patience.reason == "set in the YAML"


def test_batch_clip_early_stop_and_val_freq_settings() -> None:
    b = calibrate_batch({}, make_run(tier="workstation"))
    assert b.target_vram_usage.value == 0.93 and b.safety_margin.value == 0.02 and b.max_batch_size.value == 16
    assert calibrate_batch({"target_vram_usage": 0.99}, make_run()).target_vram_usage.value == 0.99  # the YAML wins
    c = calibrate_clip({}, make_run(tier="budget"))
    assert (c.initial_threshold.value, c.calibration_steps.value, c.percentile.value, c.multiplier.value) == (0.8, 100, 95.0, 1.5)
    assert calibrate_clip({"percentile": 0.9}, make_run()).percentile.value == pytest.approx(90.0)
    e = calibrate_early_stop({}, make_run(val_freq=2000, total_iter=20_000))
    assert e.patience.value == 2 and e.min_improvement.value == 0.01 and e.monitor_metric.value == "psnr"
    assert calibrate_early_stop({"patience": 10_000}, make_run(val_freq=1000)).patience.value == 10
    v = calibrate_val_freq({}, make_run(total_iter=40_000, val_freq=100))
    lo, hi = val_freq_bounds(40_000)
    assert (lo, hi) == (400, 4000) and lo <= v.min_freq.value <= v.start_freq.value <= v.max_freq.value <= hi
    clamped = calibrate_val_freq({"min_freq": 1, "max_freq": 10**6}, make_run(total_iter=40_000))
    assert (clamped.min_freq.value, clamped.max_freq.value) == (lo, hi) and "within" in clamped.min_freq.reason


# ---- registry and --explain ------------------------------------------------------------------


def all_on() -> dict:
    return {"enabled": True, **{n: {"enabled": True} for n in registry.AUTOMATION_NAMES}}


def test_registry_is_the_one_list_and_matches_the_schema_and_plan() -> None:
    from autosr import fork_keys, schema
    from autosr.plan import planner

    assert (*planner.AUTOMATIONS, *planner.GAN_AUTOMATIONS) == registry.AUTOMATION_NAMES
    assert set(schema.AUTOMATIONS.keys) - {"enabled"} == set(registry.AUTOMATION_NAMES)
    # besides its own keys, a section accepts the fork's keys autosr does not use (tests/test_fork_keys.py)
    for name, cls in registry.AUTOMATIONS.items():
        assert set(schema.AUTOMATIONS.keys[name].keys) - {"enabled"} - set(fork_keys.UNUSED.get(name, {})) == set(cls.options), name
    assert set(schema.DLS.keys) - {"enabled"} - set(fork_keys.UNUSED[fork_keys.DLS_SECTION]) == set(registry.DLS.options)


def test_build_automations_enables_what_the_yaml_enables() -> None:
    run = make_run()
    autos, notes = registry.build_automations({"enabled": True}, all_on(), run)
    assert [a.name for a in autos] == ["dynamic_loss_scheduling", *registry.AUTOMATION_NAMES] and notes == []
    autos, notes = registry.build_automations(
        {"enabled": False}, {"enabled": True, "AdaptiveGradientClipping": {"enabled": False}, "IntelligentEarlyStopping": {}}, run)
    assert [a.name for a in autos] == ["IntelligentEarlyStopping"]
    assert any("dynamic_loss_scheduling: off" in n for n in notes) and any("AdaptiveGradientClipping: off" in n for n in notes)
    autos, notes = registry.build_automations({}, {**all_on(), "enabled": False}, run)
    assert autos == [] and any("training_automations: off" in n for n in notes)
    with pytest.raises(AutosrError, match="did you mean 'AdaptiveGradientClipping'"):
        registry.build_automations({}, {"AdaptiveGradientClippin": {}}, run)
    _, notes = registry.build_automations({"enabled": True}, {}, make_run(variant="zz"))
    assert any("'s' preset" in n for n in notes)


def test_describe_lists_settings_with_reasons_per_phase_and_nano_differs_from_xl() -> None:
    nano = registry.describe(make_run(warmup_iter=500), {"enabled": True}, all_on())
    xl = registry.describe(make_run(warmup_iter=500, variant="xl", arch="paragonsr2_xl"), {"enabled": True}, all_on())
    assert {r[0] for r in nano} == {"dynamic_loss_scheduling", *registry.AUTOMATION_NAMES}
    assert all(r[2] and "(" in r[2] for r in nano)  # every value carries its reason
    phases = [r[1] for r in nano if r[1].startswith(("warmup", "early", "middle", "late"))]
    assert len(phases) == 12  # 4 phases × momentum, adaptation_rate, max_weight
    assert dict((r[1], r[2]) for r in nano if r[0] == "dynamic_loss_scheduling") != dict(
        (r[1], r[2]) for r in xl if r[0] == "dynamic_loss_scheduling")
    single = registry.describe(make_run(losses=(LossInfo("l1", "l1loss", 1.0),)), {"enabled": True}, {})
    assert single == [("dynamic_loss_scheduling", "no-op", "a single loss: nothing to balance, the weights stay as configured")]


def test_the_package_imports_without_torch() -> None:
    code = "import sys, autosr.schedule, autosr.schedule.calibration; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
