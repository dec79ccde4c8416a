"""The training automations on scripted statistic streams, without a Trainer (a fake Controls)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.batch_size import DynamicBatchSizeOptimizer
from autosr.schedule.calibration import rows_of, val_freq_bounds
from autosr.schedule.early_stop import IntelligentEarlyStopping
from autosr.schedule.grad_clip import AdaptiveGradientClipping
from autosr.schedule.lr_plateau import IntelligentLearningRateScheduler
from autosr.schedule.registry import AUTOMATIONS
from autosr.schedule.testing import FakeControls, make_run, step_stats, val_stats
from autosr.train.hooks import LossInfo, RunInfo

GiB = 2**30


def started(cls: type[ScheduledAutomation], section: dict[str, Any] | None = None, **run: Any) -> tuple[Any, FakeControls]:
    info = make_run(**run)
    auto, controls = cls(section or {}, info), FakeControls()
    auto.on_start(info, controls)
    return auto, controls


def plateau_loss(it: int) -> float:
    """Falls until iteration 300, then flat."""
    return 0.2 - 0.1 * min(it, 300) / 300


def run_lr(auto: IntelligentLearningRateScheduler, controls: FakeControls, first: int, last: int,
           loss: Callable[[int], float] = plateau_loss) -> list[int]:
    """Steps first..last; the iterations at which the LR was scaled."""
    cuts = []
    for it in range(first, last + 1):
        n = len(controls.of("scale_lr"))
        auto.after_step(step_stats(it, {"l1": loss(it), "ssim": 2 * loss(it)}, lr_scale=controls.lr_scale), controls)
        if len(controls.of("scale_lr")) > n:
            cuts.append(it)
    return cuts


# ---- IntelligentLearningRateScheduler ----------------------------------------------------------


def test_lr_plateau_cuts_once_by_08_then_waits_a_cooldown() -> None:
    lr, controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 200}, total_iter=20_000, val_freq=0)
    cuts = run_lr(lr, controls, 1, 750)
    assert len(cuts) == 1 and 500 <= cuts[0] <= 750  # the plateau starts at ~300 (+ smoothing lag) + patience 200
    assert controls.of("scale_lr")[0].args == (pytest.approx(0.8),) and "training-loss plateau" in controls.of("scale_lr")[0].reason
    more = run_lr(lr, controls, 751, cuts[0] + 199)
    assert more == []  # nothing during the cooldown
    nxt = run_lr(lr, controls, cuts[0] + 200, cuts[0] + 399)
    assert len(nxt) == 1 and nxt[0] - cuts[0] >= 200  # never on consecutive steps


def test_lr_total_factor_stays_within_bounds() -> None:
    lr, controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 100, "min_lr_factor": 0.3}, val_freq=0)
    cuts = run_lr(lr, controls, 1, 3000)
    assert all(b - a >= 100 for a, b in zip(cuts, cuts[1:], strict=False))
    assert controls.lr_scale == pytest.approx(0.3)  # 0.8^5 = 0.33 → the last cut stops at the floor
    assert len(cuts) == 6 and len(controls.notes("IntelligentLearningRateScheduler.lr_scale")) == 1  # "at its floor", once


def test_lr_does_nothing_during_warmup_or_while_the_loss_improves() -> None:
    lr, controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 100}, warmup_iter=1000, val_freq=0)
    assert run_lr(lr, controls, 1, 1000, loss=lambda it: 0.1) == []  # flat, but warming up
    assert run_lr(lr, controls, 1001, 2000, loss=lambda it: 1.0 / it) == []  # steadily improving


def test_lr_a_flat_training_loss_is_no_plateau_while_validation_sets_new_bests() -> None:
    # the H100 case: the smoothed loss of random crops stalls while the held-out PSNR still rises
    lr, controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 200}, total_iter=20_000, val_freq=100)
    for start in range(1, 1000, 100):  # a new best every 100 iterations
        assert run_lr(lr, controls, start, start + 99) == []
        lr.after_validation(val_stats(start + 99, 30.0 + start / 1e4, improved=True), controls)
    assert controls.of("scale_lr") == []
    cuts = run_lr(lr, controls, 1000, 1300)  # validation stops too (no more new bests): the plateau counts from 1000
    assert len(cuts) == 1 and 1199 <= cuts[0] <= 1250, cuts
    assert "nor of the validation metric since iteration 1000" in controls.of("scale_lr")[0].reason


def test_lr_a_non_finite_loss_is_not_observed() -> None:
    """inf and NaN losses (steps the trainer skipped) leave the smoothed level where it was: the level
    stays finite and the plateau is cut as in the clean stream (one cut, about as late)."""
    def poisoned(it: int) -> float:
        return float("nan") if it % 50 == 7 else float("inf") if it % 50 == 31 else -float("inf") if it % 50 == 44 else plateau_loss(it)

    clean, clean_controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 200}, total_iter=20_000, val_freq=0)
    dirty, dirty_controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 200}, total_iter=20_000, val_freq=0)
    expected, got = run_lr(clean, clean_controls, 1, 750), run_lr(dirty, dirty_controls, 1, 750, loss=poisoned)
    assert len(expected) == 1 and len(got) == 1 and abs(got[0] - expected[0]) <= 100  # a few fewer observations
    assert torch.isfinite(dirty._ema) and torch.isfinite(dirty._best)


def test_lr_validation_plateau_cuts_by_09_at_half_patience() -> None:
    lr, controls = started(IntelligentLearningRateScheduler, {"plateau_patience": 1000, "monitor_loss": False})
    for it, psnr in ((500, 30.0), (1000, 30.5), (1500, 30.5), (2000, 30.505)):  # +0.005 dB: under 0.01, no progress
        lr.after_validation(val_stats(it, psnr), controls)
    cuts = controls.of("scale_lr")
    assert len(cuts) == 1 and cuts[0].args == (pytest.approx(0.9),) and "validation plateau" in cuts[0].reason
    lr.after_validation(val_stats(2500, 30.5), controls)  # cooldown
    assert len(controls.of("scale_lr")) == 1


# ---- AdaptiveGradientClipping -------------------------------------------------------------------


def feed_clip(clip: AdaptiveGradientClipping, controls: FakeControls, norms: Callable[[int], float], first: int, last: int) -> list[int]:
    sets = []
    for it in range(first, last + 1):
        n = len(controls.of("set_clip_threshold"))
        clip.after_step(step_stats(it, {"l1": 0.1}, grad_norm=norms(it), clip_threshold=controls.clip_threshold), controls)
        if len(controls.of("set_clip_threshold")) > n:
            sets.append(it)
    return sets


def test_clip_threshold_is_p95_times_15_of_the_first_100_norms() -> None:
    clip, controls = started(AdaptiveGradientClipping)
    norms = [0.01 * ((i * 37) % 100 + 1) for i in range(100)]  # 0.01 … 1.0, shuffled
    assert feed_clip(clip, controls, lambda it: norms[it - 1], 1, 99) == []
    assert feed_clip(clip, controls, lambda it: norms[it - 1], 100, 100) == [100]
    want = float(torch.quantile(torch.tensor(norms), 0.95)) * 1.5
    call = controls.of("set_clip_threshold")[0]
    assert call.args[0] == pytest.approx(want) and "p95 of the first 100 grad norms" in call.reason


def test_clip_calibration_ignores_non_finite_norms() -> None:
    """A step whose grad norm is inf or NaN (skipped by the trainer) is not a sample of the norms."""
    clip, controls = started(AdaptiveGradientClipping)
    norms = [0.01 * ((i * 37) % 100 + 1) for i in range(100)]
    poisoned = [float("inf") if i % 10 == 3 else float("nan") if i % 10 == 7 else x for i, x in enumerate(norms)]
    feed_clip(clip, controls, lambda it: poisoned[it - 1], 1, 100)
    finite = [x for x in poisoned if x == x and x != float("inf")]
    want = float(torch.quantile(torch.tensor(finite), 0.95)) * 1.5
    assert controls.of("set_clip_threshold")[0].args[0] == pytest.approx(want)


def test_clip_threshold_is_reset_at_most_once_per_500_steps_and_reports_the_clipped_share() -> None:
    clip, controls = started(AdaptiveGradientClipping)
    sets = feed_clip(clip, controls, lambda it: 0.1 + 0.002 * it, 1, 2600)  # norms keep growing
    assert sets[0] == 100 and len(sets) >= 3
    assert all(b - a >= 500 for a, b in zip(sets, sets[1:], strict=False))
    assert all(0.1 <= c.args[0] <= 10.0 or c.args[0] == pytest.approx(10.0) for c in controls.of("set_clip_threshold"))
    clip.on_end(2600, controls)
    share = controls.notes("AdaptiveGradientClipping.clipped_share")
    assert len(share) == 1 and 0.0 <= share[0].args[2] <= 1.0 and "steps with clipping on were clipped" in share[0].reason


def test_clip_bounds_and_explicit_initial_threshold() -> None:
    clip, controls = started(AdaptiveGradientClipping, {"initial_threshold": 2.0, "calibration_steps": 10})
    assert controls.of("set_clip_threshold")[0].args == (2.0,)  # applied at start, from the YAML
    feed_clip(clip, controls, lambda it: 100.0, 1, 10)
    assert controls.of("set_clip_threshold")[-1].args[0] == 10.0  # clamp(150, 0.1, 10)


# ---- IntelligentEarlyStopping ---------------------------------------------------------------------


def validate(stop: IntelligentEarlyStopping, controls: FakeControls, points: list[tuple[int, float]], lr: float = 1e-4) -> None:
    best: tuple[float, int] | None = None
    for it, psnr in points:
        stop.after_step(step_stats(it, {"l1": 0.1}, lr_scale=lr / 1e-4), controls)
        best = (psnr, it) if best is None or psnr > best[0] else best
        stop.after_validation(val_stats(it, psnr, best=best), controls)


def test_early_stop_fires_after_the_patience_and_names_the_best_iteration() -> None:
    # patience 1000 iterations ÷ val_freq 500 = 2 validations; 20% of 10000 = 2000
    stop, controls = started(IntelligentEarlyStopping, {"patience": 1000}, total_iter=10_000, val_freq=500)
    validate(stop, controls, [(500, 28.0), (1000, 29.0), (1500, 30.0), (2000, 30.2)])
    validate(stop, controls, [(2500, 30.205), (3000, 30.19)], lr=0.5e-4)  # the LR dropped since the best
    assert controls.stopped is not None
    assert "best checkpoint: iteration 2500" in controls.stopped and "for 2 validations" in controls.stopped


def test_early_stop_never_before_20_percent_and_waits_for_a_lower_lr() -> None:
    stop, controls = started(IntelligentEarlyStopping, {"patience": 1000}, total_iter=10_000, val_freq=500)
    validate(stop, controls, [(500, 30.0)])
    validate(stop, controls, [(1000, 30.0), (1500, 30.0)], lr=0.1e-4)
    assert controls.stopped is None  # flat with a lower LR, but before 20% of the run
    assert len(controls.notes("IntelligentEarlyStopping.stop")) == 1 and "not before 20%" in controls.notes()[-1].reason
    late, c2 = started(IntelligentEarlyStopping, {"patience": 1000}, total_iter=10_000, val_freq=500)
    validate(late, c2, [(3000, 30.0), (3500, 30.0), (4000, 30.0), (4500, 30.0)])  # the LR never changed
    assert c2.stopped is None
    validate(late, c2, [(5000, 30.0)])  # twice the patience
    assert c2.stopped is not None and "twice the patience" in c2.stopped and "iteration 3000" in c2.stopped


def test_early_stop_does_not_stop_when_less_than_the_patience_is_left() -> None:
    # the end of the schedule (its last LR decay) is near: little to save, and a flat stretch often gains again there
    stop, controls = started(IntelligentEarlyStopping, {"patience": 1000}, total_iter=10_000, val_freq=500)
    validate(stop, controls, [(8600, 30.0), (8900, 30.0)])
    validate(stop, controls, [(9200, 30.0), (9500, 30.0)], lr=0.5e-4)  # flat for 3 validations, the LR dropped
    assert controls.stopped is None
    note = controls.notes("IntelligentEarlyStopping.stop")
    assert len(note) == 1 and "only 800 iterations are left, fewer than the patience of 1000: the run goes to its end" in note[0].reason
    early, c2 = started(IntelligentEarlyStopping, {"patience": 1000}, total_iter=10_000, val_freq=500)
    validate(early, c2, [(7000, 30.0), (7500, 30.0)])
    validate(early, c2, [(8000, 30.0)], lr=0.5e-4)
    assert c2.stopped is not None  # 2,000 left: more than the patience, the same plateau stops


# ---- AdaptiveValidationFrequency ---------------------------------------------------------------------


def test_val_freq_adapts_within_bounds() -> None:
    from autosr.schedule.val_freq import AdaptiveValidationFrequency

    total = 50_000
    lo, hi = val_freq_bounds(total)
    vf, controls = started(AdaptiveValidationFrequency, total_iter=total, val_freq=2000)
    it, psnr, freq = 0, 25.0, 2000
    for k in range(60):
        it += freq
        psnr += 1.0 if k < 10 else 0.0  # moves fast, then flat
        vf.after_validation(val_stats(it, psnr), controls)
        freq = controls.val_freq or freq
        if k == 9:
            assert freq < 2000  # validating more often while the metric moves
    assert freq > 2000  # and less often once it is flat
    values = [c.args[0] for c in controls.of("set_val_freq")]
    assert values and all(lo <= v <= hi for v in values)
    # a configured val_freq outside the bounds is brought within them at start
    _, c2 = started(AdaptiveValidationFrequency, total_iter=total, val_freq=5)
    assert lo <= c2.of("set_val_freq")[0].args[0] <= hi


# ---- DynamicBatchSizeOptimizer -----------------------------------------------------------------------


def feed_batch(auto: DynamicBatchSizeOptimizer, controls: FakeControls, first: int, last: int, peak: int) -> list[tuple[int, int]]:
    grows = []
    for it in range(first, last + 1):
        b = controls.batch_size
        auto.after_step(step_stats(it, {"l1": 0.1}, batch_size=b, peak_memory_bytes=peak), controls)
        if controls.batch_size != b:
            auto.on_batch_size(b, controls.batch_size, "automation", controls)
            grows.append((it, controls.batch_size))
    return grows


def test_batch_growth_never_revisits_a_failed_size_and_waits_1000_iterations() -> None:
    batch, controls = started(DynamicBatchSizeOptimizer, {"max_batch_size": 64}, batch_size=32, tier="high_end")
    controls.batch_size = 32
    feed_batch(batch, controls, 1, 50, peak=10 * GiB)
    batch.on_batch_size(32, 28, "CUDA out of memory at batch 32", controls)  # the trainer's back-off
    controls.batch_size = 28
    grows = feed_batch(batch, controls, 51, 4000, peak=8 * GiB)  # plenty of room now
    assert grows and all(size < 32 for _, size in grows)
    assert grows[0][0] - 50 >= 1000  # not within 1000 iterations of the back-off
    assert all(b[0] - a[0] >= 1000 for a, b in zip(grows, grows[1:], strict=False))
    assert grows[-1][1] == 31 and "sizes that failed: [32]" in controls.of("set_batch_size")[-1].reason


def test_batch_grows_only_under_target_minus_margin_for_200_iterations() -> None:
    batch, controls = started(DynamicBatchSizeOptimizer, {"max_batch_size": 64}, batch_size=16, tier="high_end")
    controls.batch_size = 16
    limit = (0.90 - 0.03) * 24 * GiB
    assert feed_batch(batch, controls, 1, 1500, peak=int(limit) + 1) == []  # at the limit: never
    for it in range(1501, 1700):  # 199 low steps
        batch.after_step(step_stats(it, {"l1": 0.1}, batch_size=16, peak_memory_bytes=int(limit * 0.5)), controls)
    assert controls.of("set_batch_size") == []
    batch.after_step(step_stats(1700, {"l1": 0.1}, batch_size=16, peak_memory_bytes=int(limit * 0.5)), controls)
    assert [c.args[0] for c in controls.of("set_batch_size")] == [20]  # +25% at most


def test_batch_default_ceiling_is_the_planned_batch_and_cpu_is_a_noop() -> None:
    batch, controls = started(DynamicBatchSizeOptimizer, batch_size=16)
    controls.batch_size = 16
    assert feed_batch(batch, controls, 1, 1500, peak=GiB) == []  # max_batch_size defaults to the plan
    cpu, c2 = started(DynamicBatchSizeOptimizer, tier="cpu")
    assert [c.args[2] for c in c2.notes()] == ["no-op"]
    feed_batch(cpu, c2, 1, 300, peak=0)
    assert c2.of("set_batch_size") == []


# ---- every automation: exact resume --------------------------------------------------------------------


def scripted(auto: Any, controls: FakeControls, first: int, last: int) -> None:
    """Steps with a loss plateau, growing grad norms and low memory; a validation every 100
    iterations: a metric that rises then stays flat (or, for the validation frequency, jumps
    every 300 iterations)."""
    jumps = auto.name == "AdaptiveValidationFrequency"
    for it in range(first, last + 1):
        loss = plateau_loss(it)
        # GANBalance: a D whose loss falls from chance towards 0 while its logits part (it overpowers G)
        d_loss, gap = 1.386 * max(0.02, 1 - it / 300), it / 100
        extras = {"l_d_real": d_loss / 2, "l_d_fake": d_loss / 2, "out_d_real": gap / 2, "out_d_fake": -gap / 2}
        auto.after_step(step_stats(it, {"l1": loss, "ssim": loss}, grad_norm=0.5 + it * 0.002 + (it % 7) * 0.1,
                                    lr_scale=controls.lr_scale, clip_threshold=controls.clip_threshold,
                                    batch_size=controls.batch_size or 16, peak_memory_bytes=GiB, extras=extras), controls)
        if it % 100 == 0:
            psnr = 30.0 + (0.5 * (it // 300) if jumps else min(it, 400) / 1000)
            auto.after_validation(val_stats(it, psnr), controls)


@pytest.mark.parametrize("name", list(AUTOMATIONS))
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    cls = AUTOMATIONS[name]
    section = {"plateau_patience": 100, "patience": 200, "max_batch_size": 64, "calibration_steps": 50}
    section = {k: v for k, v in section.items() if k in cls.options}
    gan = {"has_gan": True, "losses": (LossInfo("l1", "l1loss", 1.0), LossInfo("gan", "ganloss", 0.1))} if name == "GANBalance" else {}
    run = make_run(total_iter=1200, val_freq=100, **gan)

    def fresh(info: RunInfo) -> tuple[Any, FakeControls]:
        auto, controls = cls(section, info), FakeControls()
        auto.on_start(info, controls)
        return auto, controls

    straight, c1 = fresh(run)
    scripted(straight, c1, 1, 1200)
    first, c2 = fresh(run)
    scripted(first, c2, 1, 600)
    state = first.state_dict()
    resumed = make_run(total_iter=1200, val_freq=100, resumed=True, start_iter=600, **gan)
    second, c3 = cls(section, resumed), FakeControls(lr_scale=c2.lr_scale, clip_threshold=c2.clip_threshold,
                                                      batch_size=c2.batch_size, val_freq=c2.val_freq)
    second.load_state_dict(state)
    second.on_start(resumed, c3)
    scripted(second, c3, 601, 1200)
    calibration = {f"{name}.{key}" for key, _ in rows_of(straight.settings)}  # journaled once, at the run's start
    tail = [(c.method, c.args, c.reason) for c in c1.calls[len(c2.calls):]]
    got = [(c.method, c.args, c.reason) for c in c3.calls if not (c.method == "note" and c.args[0] in calibration)]
    assert got == tail and any(c[0] != "note" for c in got)  # the second half acts, exactly as the straight run
    assert second.state_dict() == straight.state_dict()


# ---- no host sync per step -------------------------------------------------------------------------


def test_no_host_read_of_a_tensor_on_ordinary_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a device tensor on the host (item, tolist, bool, float, int) stalls the GPU queue:
    allowed only at the automations' check iterations, never on every step."""
    from autosr.schedule.registry import AUTOMATION_NAMES, build_automations

    reads: list[int] = []
    current = [0]
    for method in ("item", "tolist", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, method)

        def spy(self: torch.Tensor, *a: Any, _original: Any = original, **k: Any) -> Any:
            reads.append(current[0])
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, method, spy)
    run = make_run(total_iter=40_000)
    autos, _ = build_automations({"enabled": True}, {"enabled": True, **{n: {} for n in AUTOMATION_NAMES}}, run)
    controls = FakeControls()
    for auto in autos:
        auto.on_start(run, controls)
        auto.on_phase("middle", 0, controls)
    steps = [step_stats(it, {"l1": 0.1 + 0.01 * (it % 5), "ssim": 0.2}, grad_norm=1.0 + 0.1 * (it % 3),
                        clip_threshold=1.2, peak_memory_bytes=GiB) for it in range(1, 1201)]
    reads.clear()
    for stats in steps:
        current[0] = stats.iteration
        for auto in autos:
            auto.after_step(stats, controls)
    # the LR check (every 100), the clip measurement (100) and re-measure (600), DLS's monitor (600+)
    assert reads and set(reads) <= {it for it in range(100, 1201, 100)}, sorted(set(reads))
