"""Time budgets: duration parsing, the arithmetic, a slowing run that still ends on time, a real run."""

from __future__ import annotations

import time

import pytest

from autosr.durations import format_duration, parse_duration
from autosr.errors import AutosrError
from autosr.init_cmd import run_init
from autosr.journal import read_journal
from autosr.plan_file import plan_path_for, read_plan
from autosr.runfolder import RunFolder
from autosr.synthetic import write_pairs
from autosr.train.budget import TimeBudget
from autosr.train_cmd import train_from_file


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(("text", "seconds"), [("20m", 1200), ("2h", 7200), ("1h30m", 5400), ("90s", 90),
                                               ("45", 2700), ("1.5h", 5400), ("2 min", 120)])
def test_durations_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "3s", "-2m", "2m30", "m", "0"])
def test_bad_durations_are_one_line_errors(text):
    with pytest.raises(AutosrError) as err:
        parse_duration(text)
    assert "--time" in str(err.value)


def test_format_duration():
    assert format_duration(3725) == "1 h 2 min" and format_duration(95) == "1 min 35 s" and format_duration(7) == "7 s"


def simulate(budget_s: float, step_s, val_every: int = 0, val_s: float = 0.0) -> tuple[float, int]:
    """The trainer's loop against a fake clock: re-fit, step, mark (validations are paused time)."""
    clock = FakeClock()
    budget = TimeBudget(budget_s, clock=clock)
    iteration, total, paused = 0, 10_000, 0.0
    while True:
        vals_left = (total - iteration) // val_every + 1 if val_every else 0
        total = budget.fit_total(iteration, fallback=total, upcoming=vals_left * val_s)
        if iteration >= total:
            break
        clock.t += step_s(budget.elapsed)
        iteration += 1
        if val_every and iteration % val_every == 0:
            clock.t += val_s
            paused += val_s
        budget.mark(iteration, paused)
    clock.t += val_s  # the final validation
    return budget.elapsed, iteration


def test_steady_run_ends_on_time():
    elapsed, iterations = simulate(600, lambda t: 0.1)
    assert abs(elapsed - 600) <= 0.01 * 600 and iterations == pytest.approx(6000, rel=0.02)


def test_run_that_slows_down_midway_still_ends_within_5_percent():
    # a GPU that gets 3× slower half-way (thermal throttling, a neighbour's job)
    elapsed, _ = simulate(600, lambda t: 0.1 if t < 300 else 0.3, val_every=500, val_s=4.0)
    assert abs(elapsed - 600) <= 0.05 * 600, elapsed


def test_run_that_speeds_up_uses_the_time():
    elapsed, iterations = simulate(600, lambda t: 0.3 if t < 100 else 0.1)
    assert abs(elapsed - 600) <= 0.05 * 600 and iterations > 4500


def test_resume_counts_the_time_already_spent():
    clock = FakeClock()
    first = TimeBudget(600, clock=clock)
    clock.t += 200
    state = first.state_dict()
    second = TimeBudget(600, clock=clock)
    second.load_state_dict(state)
    assert second.elapsed == pytest.approx(200)


@pytest.mark.slow
def test_init_time_and_train_end_on_time(tmp_path):
    hr, lr = write_pairs(tmp_path / "data", 12, scale=2, size=(128, 96), seed=1)
    config = tmp_path / "auto.yml"
    run_init(gt=hr, lq=lr, arch="paragonsr2_nano", val_gt=None, val_lq=None, output=config, name="budget",
             scale=None, overrides=["datasets.train.lq_size=32"], flavor="fork", force=True, print_only=False,
             explain=False, sample=64, time_budget=25.0, calibrate=True)
    assert read_plan(plan_path_for(config))["time_budget_s"] == 25.0
    started = time.perf_counter()
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    took = time.perf_counter() - started
    assert abs(took - 25.0) <= 0.10 * 25.0, took
    events = read_journal(RunFolder(tmp_path / "runs" / "budget").events)
    assert any(e["key"] == "time_budget" for e in events)
    assert any(e["key"] == "train.total_iter" and e["source"] == "trainer" for e in events)
    assert (RunFolder(tmp_path / "runs" / "budget").plan).is_file()  # the plan travels with the run
