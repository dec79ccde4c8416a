"""init's batch × LR trials on the user's data: selection, cost bound, fallbacks, and the wiring into the
plan, --explain and the run's journal."""

from __future__ import annotations

import itertools

import pytest

from autosr import trials
from autosr.calibrate import SpeedProbe
from autosr.hardware import fake_profile
from autosr.images import complete_pairs
from autosr.init_cmd import run_init
from autosr.plan_file import plan_path_for, plan_records, read_plan
from autosr.synthetic import write_pairs
from autosr.trials import Candidate, TrialResult, candidates, choose, run_trials, trial_seconds

DEFAULT = Candidate(64, 2e-3, "default")
HIGH = Candidate(64, 4e-3, "lr ×2")
LOW = Candidate(64, 1e-3, "lr ×0.5")
BIG = Candidate(128, 2.83e-3, "batch ×2")


def _result(c: Candidate, gain: float | None) -> TrialResult:
    return TrialResult(c, 500, 12.0, gain, "" if gain is not None else "out of memory")


def test_a_candidate_that_beats_the_default_by_more_than_the_margin_wins():
    chosen, reason = choose([_result(DEFAULT, 0.80), _result(HIGH, 0.95), _result(LOW, 0.60), _result(BIG, 0.70)], DEFAULT)
    assert chosen == HIGH
    assert "lr ×2" in reason and "+0.150 dB over the default's +0.800 dB" in reason


def test_within_the_margin_the_measured_default_stays_and_the_runner_up_is_named():
    chosen, reason = choose([_result(DEFAULT, 0.80), _result(HIGH, 0.84), _result(LOW, 0.60)], DEFAULT)
    assert chosen == DEFAULT
    assert "kept the measured default" in reason and "lr ×2" in reason and "0.05 dB" in reason


def test_the_default_best_keeps_it():
    chosen, reason = choose([_result(DEFAULT, 0.9), _result(HIGH, 0.5)], DEFAULT)
    assert chosen == DEFAULT and "best other: batch 64, lr 0.004" in reason


def test_failed_trials_fall_back():
    chosen, reason = choose([_result(DEFAULT, None), _result(BIG, None)], DEFAULT)
    assert chosen == DEFAULT and "every trial failed" in reason
    chosen, reason = choose([_result(DEFAULT, None), _result(LOW, 0.3), _result(BIG, None)], DEFAULT)
    assert chosen == LOW and "the default failed" in reason


def test_candidates_double_the_batch_only_where_memory_allows():
    assert [c.label for c in candidates(64, 2e-3, max_batch=512)] == ["default", "lr ×0.5", "lr ×2", "batch ×0.5", "batch ×2"]
    assert [c.label for c in candidates(64, 2e-3, max_batch=100)] == ["default", "lr ×0.5", "lr ×2", "batch ×0.5"]
    assert [c.label for c in candidates(8, 2e-3, max_batch=8)] == ["default", "lr ×0.5", "lr ×2"]
    half = candidates(64, 2e-3, max_batch=512)[3]
    assert (half.batch, half.lr) == (32, pytest.approx(2e-3 / 2**0.5, rel=1e-2))  # √-scaled with the batch


def test_the_cost_bound_and_every_reason_to_skip():
    assert trial_seconds(3600, 5, on_gpu=False)[0] is None and "no CUDA GPU" in trial_seconds(3600, 5, on_gpu=False)[1]
    assert trial_seconds(None, 5, on_gpu=True)[0] is None
    each, why = trial_seconds(600, 5, on_gpu=True)  # 4% of 10 min = 24 s: under 12 s a trial
    assert each is None and "too short" in why and "from --time 25m" in why
    for budget in (1500, 3600, 8 * 3600):
        each, why = trial_seconds(budget, 5, on_gpu=True)
        assert each is not None and each >= trials.MIN_TRIAL_S
        assert each * 5 <= min(trials.TRIALS_MAX_S, trials.TRIAL_SHARE * budget) + 1e-9  # never above its share
    each, _ = trial_seconds(3600, 5, on_gpu=True, share=0.03)
    assert each is not None and each * 5 <= 0.03 * 3600


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("trial_pairs")
    gt, lq = write_pairs(root, 10, scale=2, size=(128, 96), seed=5)
    return root, complete_pairs(gt, lq)


def _run(pairs_, cands, seconds, clock=None):
    kwargs = {"clock": clock} if clock else {"bound_s": 600.0}  # a loaded CI box must not skip a trial here
    return run_trials(network={"type": "paragonsr2_nano", "scale": 2}, losses=[{"type": "l1loss", "loss_weight": 1.0}],
                      optim={"betas": [0.9, 0.99], "weight_decay": 0.0}, train_pairs=pairs_[:8], val_pairs=pairs_[8:],
                      scale=2, lq_size=24, precision="fp32", channels_last=False, warmup=5, cands=cands,
                      seconds_each=seconds, device="cpu", **kwargs)


def test_trials_train_on_the_pairs_and_score_on_held_out_crops(pairs):
    _, pairs_ = pairs
    cands = [Candidate(4, 2e-3, "default"), Candidate(4, 0.0, "lr 0")]
    results = _run(pairs_, cands, seconds=0.5)
    assert [r.candidate for r in results] == cands
    assert all(r.iterations >= 3 and r.seconds > 0 and r.gain_db is not None for r in results)
    # lr 0 leaves the network as built (same seed): training moved the weights and so the score. Passing the
    # untrained score takes ~1,000 iterations (a GPU's trial), more than a CPU test runs.
    assert results[0].gain_db != pytest.approx(results[1].gain_db, abs=1e-4)


def test_the_whole_calibration_stops_at_its_time_bound(pairs):
    _, pairs_ = pairs
    ticks = itertools.count(0.0, 1.0)  # a fake clock: every reading is a second later
    cands = [Candidate(2, 2e-3, "default"), Candidate(2, 1e-3, "a"), Candidate(2, 4e-3, "b"), Candidate(2, 3e-3, "c")]
    results = _run(pairs_, cands, seconds=1.0, clock=lambda: next(ticks))
    skipped = [r for r in results if "time bound" in r.note]
    assert skipped and results[0].gain_db is not None  # later trials were not started once the bound passed
    assert all(r.gain_db is None and r.iterations == 0 for r in skipped)


def test_init_runs_the_trials_on_a_gpu_budget_and_journals_them(pairs, tmp_path, monkeypatch, capsys):
    """On a (faked) 80 GB GPU with --time, init runs its trials (here on the CPU, shortened), puts the chosen
    batch and LR in the plan with the trial's reason, shows each trial in --explain, and the run's journal
    gets one record per trial."""
    root, _ = pairs
    monkeypatch.setattr("autosr.init_cmd.probe", lambda _path: fake_profile((("NVIDIA H200", 80.0, "9.0"),)))
    monkeypatch.setattr("autosr.calibrate.measure_speed", lambda *a, **k: SpeedProbe(30.0, 10, 1.0, None, "fake speed probe"))
    monkeypatch.setattr(trials, "MIN_TRIAL_S", 0.2)
    monkeypatch.setattr(trials, "TRIALS_MAX_S", 1.5)
    config = tmp_path / "auto.yml"
    plan = run_init(gt=root / "hr", lq=root / "lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, output=config,
                    name="t", scale=None, overrides=["datasets.train.lq_size=24"], flavor="fork", force=True,
                    print_only=False, explain=True, sample=64, time_budget=3600.0, calibrate=True)
    assert len(plan.trials) == 5 and {t["label"] for t in plan.trials} == {"default", "lr ×0.5", "lr ×2", "batch ×0.5", "batch ×2"}
    batch, lr = plan.values["datasets.train.batch_size_per_gpu"], plan.values["train.optim_g.lr"]
    assert "trial" in batch.reason and batch.reason == lr.reason
    assert (batch.value, lr.value) in {(t["batch"], t["lr"]) for t in plan.trials}
    err = capsys.readouterr().err
    assert err.count("calibration.trial") == 5 and "trials: 5 trials of" in err
    saved = read_plan(plan_path_for(config))
    assert len(saved["calibration"]["trials"]) == 5
    import yaml

    records = [r for r in plan_records(saved, yaml.safe_load(config.read_text())) if r[0] == "calibration.trial"]
    assert len(records) == 5 and all("over bicubic" in text or "failed" in text for _, _, text in records)


def test_no_trials_over_a_set_batch_or_on_a_cpu(pairs, tmp_path, monkeypatch):
    root, _ = pairs
    common = dict(gt=root / "hr", lq=root / "lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, name="t", scale=None,
                  flavor="fork", force=True, print_only=False, explain=False, sample=64, time_budget=3600.0, calibrate=True)
    monkeypatch.setattr("autosr.calibrate.measure_speed", lambda *a, **k: SpeedProbe(30.0, 10, 1.0, None, "fake speed probe"))
    plan = run_init(output=tmp_path / "cpu.yml", overrides=["datasets.train.lq_size=24"], **common)
    assert plan.trials == [] and any("trials: no CUDA GPU" in n for n in plan.notes)
    monkeypatch.setattr("autosr.init_cmd.probe", lambda _path: fake_profile((("NVIDIA H200", 80.0, "9.0"),)))
    plan = run_init(output=tmp_path / "set.yml", overrides=["datasets.train.lq_size=24", "train.optim_g.lr=1e-3"], **common)
    assert plan.trials == [] and any("you set the batch or the learning rate" in n for n in plan.notes)
    assert plan.get("train.optim_g.lr") == 1e-3
