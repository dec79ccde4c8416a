"""Dynamic loss scheduling on scripted loss streams, without a Trainer."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import torch

from autosr.schedule.calibration import DLS_PRESETS
from autosr.schedule.dls import DynamicLossScheduling
from autosr.schedule.phases import dls_phase_params
from autosr.schedule.testing import FakeControls, make_run, step_stats
from autosr.train.hooks import LossInfo, RunInfo

BASE = torch.tensor([1.0, 0.05])  # make_run's l1 and ssim weights

Stream = Callable[[int], dict[str, float]]


def diverging(seed: int = 0) -> Stream:
    """l1 falls by half while ssim doubles over 1000 steps, with ±10% noise (deterministic)."""
    rng = random.Random(seed)

    def at(it: int) -> dict[str, float]:
        return {"l1": 0.1 * (1 - 0.5 * it / 1000) * (1 + 0.2 * (rng.random() - 0.5)),
                "ssim": 0.2 * (1 + it / 1000) * (1 + 0.2 * (rng.random() - 0.5))}

    return at


def start(run: RunInfo | None = None, section: dict | None = None, phase: str = "middle") -> tuple[DynamicLossScheduling, FakeControls]:
    run = run or make_run()
    dls, controls = DynamicLossScheduling(section or {"enabled": True}, run), FakeControls()
    dls.on_start(run, controls)
    dls.on_phase(phase, run.start_iter, controls)
    return dls, controls


def feed(dls: DynamicLossScheduling, controls: FakeControls, stream: Stream, first: int, last: int) -> None:
    for it in range(first, last + 1):
        dls.after_step(step_stats(it, stream(it)), controls)


def balance(dls: DynamicLossScheduling, weights: torch.Tensor) -> tuple[float, float]:
    s = dls.smoothed()
    assert s is not None
    return float((weights * s).sum()), float((BASE * s).sum())


def test_nano_and_xl_calibrate_differently() -> None:
    nano, _ = start(make_run(variant="nano"))
    xl, _ = start(make_run(variant="xl", arch="paragonsr2_xl"))
    assert nano.settings is not None and xl.settings is not None
    assert nano.settings.preset == "nano" and xl.settings.preset == "xl"
    assert nano.settings.values() != xl.settings.values()
    assert nano.params is not None and xl.params is not None and nano.params.values() != xl.params.values()


def test_complexity_bands_change_the_calibration() -> None:
    mid, simple, complex_ = (start(make_run(complexity=c, total_iter=20_000))[0].settings for c in (0.5, 0.1, 0.9))
    assert mid is not None and simple is not None and complex_ is not None
    nano = DLS_PRESETS["nano"]
    assert mid.momentum.value == nano.momentum
    assert simple.momentum.value == pytest.approx(nano.momentum * 0.95)
    assert simple.adaptation_rate.value == pytest.approx(nano.adaptation_rate * 1.2)
    assert simple.max_weight.value == pytest.approx(nano.max_weight * 0.8)
    assert complex_.momentum.value == pytest.approx(nano.momentum * 1.05)
    assert complex_.adaptation_rate.value == pytest.approx(nano.adaptation_rate * 0.8)
    assert complex_.max_weight.value == pytest.approx(nano.max_weight * 1.3)


def test_opposite_trends_move_the_balance_measurably_and_keep_the_scale() -> None:
    dls, controls = start()
    stream = diverging()
    feed(dls, controls, stream, 1, 50)
    assert controls.of("set_loss_weights") == []  # the baseline: weights stay at base
    for it in range(51, 1001):
        dls.after_step(step_stats(it, stream(it)), controls)
        got, want = balance(dls, controls.weights)
        assert got == pytest.approx(want, rel=1e-5)  # Σ w·S = Σ base·S at every step
    w = controls.weights
    ratio = float((w[1] / w[0]) / (BASE[1] / BASE[0]))
    # the rising loss (ssim) is damped relative to the falling one (l1) by far more than the ~2%
    # an implementation that restarted its multiplier from 1 every step could reach
    assert ratio < 0.9, ratio
    assert float(w[0]) > 1.0 and float(w[1]) < 0.05
    assert len(controls.of("set_loss_weights")) == 1000 - 50  # every step after the baseline
    assert all(torch.isfinite(c.args[0]).all() for c in controls.of("set_loss_weights"))


def test_weights_tensor_follows_runinfo_order_with_zero_for_inactive_terms() -> None:
    losses = (LossInfo("l1", "l1loss", 1.0), LossInfo("fft", "fftloss", 0.0), LossInfo("ssim", "ssimloss", 0.05))
    dls, controls = start(make_run(losses=losses))
    feed(dls, controls, diverging(), 1, 80)
    w = controls.weights
    assert w.shape == (3,) and w.dtype == torch.float32 and float(w[1]) == 0.0 and float(w[0]) > 0 and float(w[2]) > 0


def test_single_loss_is_a_noop_said_once() -> None:
    run = make_run(losses=(LossInfo("l1", "l1loss", 1.0), LossInfo("ssim", "ssimloss", 0.0)))
    dls, controls = start(run)
    dls.on_start(run, controls)  # a second start (a resume in the same process) says nothing new
    feed(dls, controls, lambda it: {"l1": 0.1}, 1, 200)
    assert [c.method for c in controls.calls] == ["note"]
    assert "single loss" in controls.calls[0].reason and controls.calls[0].args[2] == "no-op"
    fresh = DynamicLossScheduling({}, run)
    fresh.load_state_dict(dls.state_dict())
    again = FakeControls()
    fresh.on_start(run, again)
    assert again.calls == []  # said once per run, also across a resume


def test_phase_boundaries_apply_the_phase_factors_and_journal_them() -> None:
    run = make_run(total_iter=2000)
    dls, controls = start(run, phase="early")
    assert dls.settings is not None
    stream = diverging(1)
    feed(dls, controls, stream, 1, 199)
    for phase, it in (("middle", 200), ("late", 1600)):
        before = len(controls.calls)
        dls.on_phase(phase, it, controls)
        new = controls.calls[before:]
        note = next(c for c in new if c.method == "note")
        want = dls_phase_params(dls.settings, phase)
        assert note.args[0] == "dynamic_loss_scheduling.params" and note.args[2]["max_weight"] == pytest.approx(want.max_weight.value)
        assert f"entering the {phase} phase at iteration {it}" in note.reason and f"×{'1.2' if phase == 'late' else ''}" in note.reason
        assert dls.params is not None and dls.params.values() == pytest.approx(want.values())
        assert any(c.method == "set_loss_weights" for c in new)  # bounds re-applied at once
        feed(dls, controls, stream, it, it + 50)
    n = len(controls.calls)
    dls.on_phase("late", 1700, controls)  # the same phase again: nothing
    assert len(controls.calls) == n
    m = dls.multipliers()
    assert m is not None and dls.params is not None and float(m.max()) <= dls.params.max_weight.value + 1e-6


def test_multipliers_respect_bounds_and_a_floored_loss_is_still_observed() -> None:
    dls, controls = start(section={"enabled": True, "max_weight": 1.5, "min_weight": 0.2, "adaptation_rate": 0.2,
                                   "baseline_iterations": 10})

    def runaway(it: int) -> dict[str, float]:  # ssim (the minor term) keeps rising, then levels off
        return {"l1": 0.1 * (1 + 0.01 * math.sin(it)), "ssim": 0.2 * 1.02 ** min(it, 60)}

    feed(dls, controls, runaway, 1, 400)
    m = dls.multipliers()
    assert m is not None and float(m.min()) >= 0.2 - 1e-6 and float(m.max()) <= 1.5 + 1e-6
    assert float(m[1]) < 0.21  # at (renormalised: just above) its floor ...
    s1 = dls.smoothed()
    feed(dls, controls, lambda it: {"l1": 0.01, "ssim": 1.0}, 401, 430)
    s2 = dls.smoothed()
    assert s1 is not None and s2 is not None and float(s2[1]) != float(s1[1])  # ... and still observed


def test_non_finite_losses_do_not_poison_the_state() -> None:
    dls, controls = start()
    stream = diverging(2)
    feed(dls, controls, stream, 1, 100)
    dls.after_step(step_stats(101, {"l1": math.nan, "ssim": math.inf}), controls)
    feed(dls, controls, stream, 102, 150)
    s = dls.smoothed()
    assert s is not None and torch.isfinite(s).all() and torch.isfinite(controls.weights).all()


def test_stability_monitor_corrects_at_most_once_per_100_iterations() -> None:
    dls, controls = start(make_run(total_iter=5000))
    before = dls.params
    assert before is not None

    def growing(it: int) -> dict[str, float]:  # doubles every ~10 steps after iteration 550
        g = 2 ** max(0, (it - 550) / 10)
        return {"l1": 0.1 * g, "ssim": 0.2 * g}

    at: list[int] = []
    for it in range(1, 801):
        n = len(controls.notes("dynamic_loss_scheduling.params"))
        dls.after_step(step_stats(it, growing(it)), controls)
        if len(controls.notes("dynamic_loss_scheduling.params")) > n:
            at.append(it)
    fixes = controls.notes("dynamic_loss_scheduling.params")[1:]  # [0] is the phase entry
    assert fixes and "loss growth" in fixes[0].reason and "momentum ×1.05" in fixes[0].reason
    assert at[0] > 500 and all(b - a >= 100 for a, b in zip(at, at[1:], strict=False))
    assert len(at) == len(fixes) <= (800 - 500) // 100
    after = dls.params
    assert after is not None
    assert after.adaptation_rate.value < before.adaptation_rate.value and after.max_weight.value < before.max_weight.value
    # explicit keys are never corrected
    pinned, c2 = start(make_run(total_iter=5000), {"enabled": True, "momentum": 0.8, "adaptation_rate": 0.01, "max_weight": 4.0})
    feed(pinned, c2, growing, 1, 700)
    assert pinned.params is not None and pinned.params.values()["adaptation_rate"] == 0.01
    assert any("nothing corrected" in c.reason for c in c2.notes("dynamic_loss_scheduling.stability"))


def test_state_dict_round_trip_continues_identically() -> None:
    run = make_run(total_iter=5000)
    n = 300
    straight, c_straight = start(run)
    feed(straight, c_straight, diverging(3), 1, 2 * n)

    first, c_first = start(run)
    stream = diverging(3)
    feed(first, c_first, stream, 1, n)
    state = first.state_dict()
    resumed_run = make_run(total_iter=5000, resumed=True, start_iter=n, complexity=0.9)  # another first batch
    second, c_second = DynamicLossScheduling({"enabled": True}, resumed_run), FakeControls()
    second.on_start(resumed_run, c_second)
    second.load_state_dict(state)
    second.on_phase("middle", n, c_second)  # not repeated after a resume: ignored
    feed(second, c_second, stream, n + 1, 2 * n)

    assert c_second.notes() == []  # a resume journals no calibration again
    assert second.settings is not None and straight.settings is not None
    assert second.settings.values() == straight.settings.values()  # calibration kept from the run's start
    assert torch.equal(c_second.weights, c_straight.weights)
    assert torch.equal(second.smoothed(), straight.smoothed())  # type: ignore[arg-type]


def test_sampled_every_8_iterations_moves_the_balance_like_every_step() -> None:
    """The trainer samples the scheduler every 8 iterations (SCHEDULE_EVERY): with its constants
    scaled to the interval, DLS moves the balance about as far as when it sees every step."""
    from autosr.train.loop import SCHEDULE_EVERY

    ratios = []
    for k in (1, SCHEDULE_EVERY):
        dls, controls = start()
        dls.step_interval = k
        stream = diverging(seed=1)
        for it in range(1, 1001):
            losses = stream(it)
            if it % k == 0:
                dls.after_step(step_stats(it, losses), controls)
        w = controls.of("set_loss_weights")[-1].args[0]
        s = dls._S
        assert s is not None
        assert float((w * s).sum()) == pytest.approx(float((BASE * s).sum()), rel=1e-4)  # the scale is kept
        ratios.append(float((w[1] / w[0]) / (BASE[1] / BASE[0])))
    assert ratios[0] < 0.9 and ratios[1] < 0.9, ratios  # both damp the rising loss measurably
    assert ratios[1] == pytest.approx(ratios[0], rel=0.25), ratios


def test_per_phase_yaml_values_apply_in_their_phase_only_and_are_journaled() -> None:
    run = make_run(total_iter=2000)
    section = {"enabled": True, "phases": {"late": {"max_weight": 2.0, "adaptation_rate": 0.001}}}
    dls, controls = start(run, section=section, phase="middle")
    assert dls.settings is not None and dls.params is not None
    middle = dls.params.values()
    assert middle["max_weight"] != 2.0  # the middle phase keeps its calibrated values
    dls.on_phase("late", 1600, controls)
    late = dls.params.values()
    assert late["max_weight"] == 2.0 and late["adaptation_rate"] == 0.001
    assert late["momentum"] == pytest.approx(dls_phase_params(dls.settings, "late").momentum.value)  # not set: calibrated
    note = next(c for c in reversed(controls.calls) if c.method == "note" and c.args[0] == "dynamic_loss_scheduling.params")
    assert "set in the YAML for the late phase" in note.reason
    rows = [r for r in dls.describe() if r[1].startswith("late")]
    assert any("set in the YAML for the late phase" in r[2] for r in rows)  # --explain shows it


def test_per_phase_yaml_values_are_checked_by_the_schema() -> None:
    from autosr.config import validate
    from autosr.errors import AutosrError

    def tree(phases: dict) -> dict:
        return {"name": "x", "scale": 2, "network_g": {"type": "paragonsr2_nano"},
                "datasets": {"train": {"name": "t", "type": "pairedimagedataset", "dataroot_gt": "a", "dataroot_lq": "b",
                                         "lq_size": 32, "batch_size_per_gpu": 4}},
                "train": {"total_iter": 10, "optim_g": {"type": "AdamW", "lr": 1e-3},
                          "losses": [{"type": "l1loss", "loss_weight": 1.0}],
                          "dynamic_loss_scheduling": {"enabled": True, "phases": phases}}}

    with pytest.raises(AutosrError, match="did you mean 'late'"):
        validate(tree({"lat": {"max_weight": 2.0}}), "t.yml")
    with pytest.raises(AutosrError, match="max_weight"):
        validate(tree({"late": {"max_weight": 0.5}}), "t.yml")
    with pytest.raises(AutosrError, match="did you mean 'momentum'"):
        validate(tree({"late": {"momentun": 0.5}}), "t.yml")


def _gan_run(rise: float) -> tuple[DynamicLossScheduling, FakeControls, torch.Tensor]:
    """l1 + perceptual from the start, ganloss from iteration 300 (its start_iter), its value rising by
    `rise`× its start over the 700 iterations after (D winning); ±5% noise. Returns DLS, its controls and
    the weights just before the switch."""
    losses = (LossInfo("l1", "l1loss", 1.0), LossInfo("perceptual", "perceptualloss", 0.05),
              LossInfo("gan", "ganloss", 0.1, starts_late=True))
    dls, controls = start(make_run(losses=losses, has_gan=True))
    rng = random.Random(3)

    def at(it: int) -> dict[str, float]:
        noise = lambda: 1 + 0.1 * (rng.random() - 0.5)  # noqa: E731
        values = {"l1": 0.05 * noise(), "perceptual": 0.4 * noise()}
        if it >= 300:
            values["gan"] = 0.7 * (1 + rise * (it - 300) / 700) * noise()
        return values

    feed(dls, controls, at, 1, 299)
    before = controls.weights.clone()
    feed(dls, controls, at, 300, 300)
    smoothed = dls.smoothed()
    assert smoothed is not None and float(smoothed[2]) == pytest.approx(0.7, rel=0.06)  # its own value, not the placeholder 1
    feed(dls, controls, at, 301, 1000)
    return dls, controls, before


def test_the_adversarial_weight_moves_when_that_loss_rises_after_it_switches_on() -> None:
    """DLS is gentle by design (adaptation rate 0.015, the GAN threshold ×1.5): a G adversarial loss that
    rises 4× over 700 iterations loses ~6% of its weight relative to the steady terms, against ~0.1% when it
    stays flat; the overall scale Σ w·S stays that of the configured weights."""
    dls, controls, before = _gan_run(rise=3.0)
    after = controls.weights
    relative = float((after[2] / after[0]) / (before[2] / before[0]))
    assert relative < 0.97, (before, after)
    s = dls.smoothed()
    assert s is not None
    assert float((after * s).sum()) == pytest.approx(float((torch.tensor([1.0, 0.05, 0.1]) * s).sum()), rel=1e-5)
    assert dls.state_dict()["observed"] == [1.0, 1.0, 1.0]
    _, flat, flat_before = _gan_run(rise=0.0)
    flat_relative = float((flat.weights[2] / flat.weights[0]) / (flat_before[2] / flat_before[0]))
    assert abs(flat_relative - 1) < 0.005, flat_relative
