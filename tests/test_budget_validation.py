"""Validations under a time budget, on a fake clock: they cost training time, so their number is
bounded by the time they take, and AdaptiveValidationFrequency changes how many there are."""

from __future__ import annotations

import types

import pytest
import torch
from test_train import make_config

import autosr.train.loop as trainer_module
from autosr.config import load_config
from autosr.journal import Journal
from autosr.train.budget import TimeBudget
from autosr.train.loop import Trainer
from autosr.train.setup import DistInfo
from autosr.train.validate import ValResult
from autosr.train_cmd import build_trainer

STEP_S = 0.2  # fake seconds per training step: 500 real steps fill the 100 s budget


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def budget_trainer(tmp_path, pair_set, monkeypatch, *, budget_s: float, val_s: float, psnr_per_val: float,
                   val_freq: int = 400, extra: list[str] = ()) -> tuple[Trainer, Journal, list[int], FakeClock]:
    """A budget run whose steps take STEP_S and whose validations take `val_s` fake seconds; the
    validation PSNR rises by `psnr_per_val` each time (0: flat)."""
    clock = FakeClock()
    monkeypatch.setattr(trainer_module, "time", types.SimpleNamespace(perf_counter=clock))
    # The smallest real step (batch 2, lq 16): the time is the fake clock's, the steps only have to run.
    small = ["datasets.train.batch_size_per_gpu=2", "datasets.train.lq_size=16"]
    config = make_config(tmp_path, pair_set, 4000, [f"val.val_freq={val_freq}", "logger.print_freq=50", *small, *extra],
                         val=pair_set)
    journal = Journal(tmp_path / "events.jsonl")
    trainer = build_trainer(load_config(config), tmp_path / "run", DistInfo(), journal, quiet=True,
                      budget=TimeBudget(budget_s, clock=clock))
    real_step = trainer.objective.g.step_model

    def timed_step(x: torch.Tensor) -> torch.Tensor:
        clock.t += STEP_S
        return real_step(x)

    trainer.objective.g.step_model = timed_step
    assert trainer.validator is not None
    validator = trainer.validator
    validator.images = validator.images[:1]  # the real validation is not what is timed here
    done: list[int] = []

    def fake_validation(model: torch.nn.Module, iteration: int) -> ValResult:
        clock.t += val_s
        done.append(iteration)
        value = 30.0 + psnr_per_val * len(done)
        improved = ("psnr",) if psnr_per_val > 0 or len(done) == 1 else ()
        best = {"psnr": (value, iteration)} if improved else validator.best
        validator.best = best
        return ValResult(iteration, {"psnr": value}, improved, best, {"psnr": True})

    validator.run = fake_validation  # type: ignore[method-assign]
    return trainer, journal, done, clock


@pytest.mark.slow
@pytest.mark.parametrize(("val_s", "most_vals", "trained"), [(10, 3, 0.7), (20, 2, 0.55), (30, 1, 0.6)])
def test_slow_validations_are_fewer_instead_of_eating_the_training(tmp_path, pair_set, monkeypatch, val_s, most_vals, trained):
    # 10 validations planned; each takes 10 s (or 30 s) of a 100 s budget: all of them would leave no training
    trainer, journal, done, clock = budget_trainer(tmp_path, pair_set, monkeypatch, budget_s=100, val_s=val_s,
                                                   psnr_per_val=0.0,
                                                   extra=["train.training_automations.enabled=false"])
    start = clock.t
    assert trainer.fit() == 0
    spent = clock.t - start
    assert abs(spent - 100) <= 5, spent
    assert 1 <= len(done) <= most_vals, done  # ~15% of the time left, not 10 × 10 s
    assert trainer.iteration * STEP_S >= trained * 100  # most of the budget trained
    bound = [e for e in journal.records if e["key"] == "val.count"]
    assert bound and bound[0]["old"] > bound[0]["new"] and "15%" in bound[0]["reason"]
    if val_s > 25:  # one validation is over a quarter of the budget: not even the last one, the time trains
        assert bound[-1]["new"] == 0 and "the time goes to training" in bound[-1]["reason"]
        assert done[-1] < trainer.iteration
    else:  # the final model is measured (the best model is chosen from it too)
        assert done[-1] == trainer.iteration, (done, trainer.iteration)
    if val_s == 20:  # the 15% share holds no more: only the last one
        assert bound[-1]["new"] == 1 and "only the last one" in bound[-1]["reason"]


@pytest.mark.slow
@pytest.mark.parametrize(("psnr_per_val", "more"), [(1.0, True), (0.0, False)])
def test_adaptive_validation_frequency_acts_under_a_time_budget(tmp_path, pair_set, monkeypatch, psnr_per_val, more):
    a = "train.training_automations."
    only_avf = [f"{a}{name}.enabled=false" for name in ("IntelligentLearningRateScheduler", "DynamicBatchSizeOptimizer",
                                                          "AdaptiveGradientClipping", "IntelligentEarlyStopping")]
    trainer, journal, done, clock = budget_trainer(tmp_path, pair_set, monkeypatch, budget_s=100, val_s=0.2,
                                                   psnr_per_val=psnr_per_val, val_freq=200,
                                                   extra=["train.dynamic_loss_scheduling.enabled=false", *only_avf])
    start = clock.t
    first_plan = trainer.vals.plan.planned
    assert trainer.fit() == 0
    assert abs(clock.t - start - 100) <= 5
    changes = [e for e in journal.records if e["key"] == "val_freq" and "time budget" in e["reason"]]
    assert changes, [e["key"] for e in journal.records]
    # a metric that moves fast gets more validations than planned, a flat one fewer
    assert (len(done) > first_plan) if more else (len(done) < first_plan), (len(done), first_plan)


def test_val_plan_spreads_what_is_left_over_the_rest_of_the_run():
    from autosr.train.val_plan import ValPlan

    plan = ValPlan(planned=4)
    assert [plan.next_point(0, 1000)] == [250] and plan.interval(1000) == 250
    plan.done = 2
    assert plan.next_point(500, 1000) == 750 and plan.next_point(500, 2000) == 1500  # the run re-fitted longer
    plan.respread(600, 1)  # one more fits: at the end
    assert (plan.planned, plan.left, plan.state()) == (3, 1, [3, 600, 2])
    assert plan.next_point(600, 1000) == 1000 and plan.interval(1000) == 400
    assert plan.next_point(999, 1000) == 1000 and plan.next_point(1000, 1000) == 1001  # always after now
    other = ValPlan(planned=0)
    other.load(plan.state())
    other.done = plan.done
    assert other == plan
