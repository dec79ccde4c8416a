"""init's batch × LR trials on the user's data: selection, cost bound, fallbacks, and the wiring into the
plan, --explain and the run's journal."""

from __future__ import annotations

import itertools

import pytest

from autosr.hardware import fake_profile
from autosr.images import complete_pairs
from autosr.init_cmd import run_init
from autosr.plan import trials
from autosr.plan.calibrate import SpeedProbe
from autosr.plan.trials import Candidate, TrialResult, candidates, choose, run_trials, trial_seconds
from autosr.plan_file import plan_path_for, plan_records, read_plan
from autosr.synthetic import write_pairs

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
    monkeypatch.setattr("autosr.plan.calibrate.measure_speed", lambda *a, **k: SpeedProbe(30.0, 10, 1.0, None, "fake speed probe"))
    monkeypatch.setattr(trials, "MIN_TRIAL_S", 0.2)
    monkeypatch.setattr(trials, "TRIALS_MAX_S", 1.5)
    config = tmp_path / "auto.yml"
    plan = run_init(gt=root / "hr", lq=root / "lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, output=config,
                    name="t", scale=None, overrides=["datasets.train.lq_size=24"], flavor="fork", force=True,
                    print_only=False, explain=True, sample=64, time_budget=3600.0, calibrate=True, trials=True)
    assert len(plan.trials) == 5 and {t["label"] for t in plan.trials} == {"default", "lr ×0.5", "lr ×2", "batch ×0.5", "batch ×2"}
    batch, lr = plan.values["datasets.train.batch_size_per_gpu"], plan.values["train.optim_g.lr"]
    assert "trial" in batch.reason and batch.reason == lr.reason
    assert (batch.value, lr.value) in {(t["batch"], t["lr"]) for t in plan.trials}
    err = capsys.readouterr().err
    assert err.count("calibration.trial ") == 5 and "trials: 5 trials of" in err  # and one calibration.trials row
    saved = read_plan(plan_path_for(config))
    assert len(saved["calibration"]["trials"]) == 5
    import yaml

    records = [r for r in plan_records(saved, yaml.safe_load(config.read_text())) if r[0] == "calibration.trial"]
    assert len(records) == 5 and all("over bicubic" in text or "failed" in text for _, _, text in records)


def test_trials_are_off_unless_asked_for_and_explain_says_why(pairs, tmp_path, monkeypatch, capsys):
    """Not yet measured helping on a GPU: off by default (issue 24), the reason in the notes and --explain."""
    root, _ = pairs
    monkeypatch.setattr("autosr.init_cmd.probe", lambda _path: fake_profile((("NVIDIA H200", 80.0, "9.0"),)))
    monkeypatch.setattr("autosr.plan.calibrate.measure_speed", lambda *a, **k: SpeedProbe(30.0, 10, 1.0, None, "fake speed probe"))
    plan = run_init(gt=root / "hr", lq=root / "lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, output=tmp_path / "a.yml",
                    name="t", scale=None, overrides=["datasets.train.lq_size=24"], flavor="fork", force=True,
                    print_only=False, explain=True, sample=64, time_budget=3600.0, calibrate=True)
    assert plan.trials == [] and any("off by default" in n and "--trials" in n for n in plan.notes)
    assert "calibration.trials" in capsys.readouterr().err


def test_no_trials_over_a_set_batch_or_on_a_cpu(pairs, tmp_path, monkeypatch):
    root, _ = pairs
    common = dict(gt=root / "hr", lq=root / "lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, name="t", scale=None,
                  flavor="fork", force=True, print_only=False, explain=False, sample=64, time_budget=3600.0, calibrate=True,
                  trials=True)
    monkeypatch.setattr("autosr.plan.calibrate.measure_speed", lambda *a, **k: SpeedProbe(30.0, 10, 1.0, None, "fake speed probe"))
    plan = run_init(output=tmp_path / "cpu.yml", overrides=["datasets.train.lq_size=24"], **common)
    assert plan.trials == [] and any("trials: no CUDA GPU" in n for n in plan.notes)
    monkeypatch.setattr("autosr.init_cmd.probe", lambda _path: fake_profile((("NVIDIA H200", 80.0, "9.0"),)))
    plan = run_init(output=tmp_path / "set.yml", overrides=["datasets.train.lq_size=24", "train.optim_g.lr=1e-3"], **common)
    assert plan.trials == [] and any("you set the batch or the learning rate" in n for n in plan.notes)
    assert plan.get("train.optim_g.lr") == 1e-3


# ---- the memory probe -------------------------------------------------------------------------


def test_memory_probe_arithmetic_and_the_batch_it_gives():
    from autosr.plan.calibrate import MemoryProbe
    from autosr.plan.planner import memory_batch
    from autosr.plan.presets import load_preset
    from autosr.plan.recommend import batch_budget

    probe = MemoryProbe(1000.0, 100.0, "measured on a fake GPU: peak 4200 MiB at batch 32, 7400 MiB at batch 64")
    assert probe.batch_for(1000.0 + 100.0 * 37.5) == 37 and probe.batch_for(500.0) == 0
    assert MemoryProbe(None, None, "no CUDA GPU").batch_for(1e6) is None
    hw = fake_profile((("NVIDIA RTX 4090", 24.0, "8.9"),))
    m = load_preset("m")
    budget = batch_budget(hw).value
    d = memory_batch(hw, m, 64, 2, probe)
    assert d.value == min(512, int((budget - 1000) // 100)) and "measured (measured on a fake GPU" in d.reason
    fallback = memory_batch(hw, m, 64, 2, MemoryProbe(None, None, "batch 8 ran out of memory; too few batch sizes ran"))
    assert "memory probe: batch 8 ran out of memory, too few" in fallback.reason
    assert fallback.value == memory_batch(hw, m, 64, 2, None).value  # the estimate
    tiny = memory_batch(hw, m, 64, 2, MemoryProbe(budget + 1.0, 50.0, "x"))
    assert tiny.value == 1 and "expect out-of-memory" in tiny.reason


def test_memory_probe_on_a_cpu_says_so():
    from autosr.plan.calibrate import measure_memory

    probe = measure_memory({"type": "paragonsr2_nano", "scale": 2}, batch=4, lq_size=16, scale=2, precision="fp32",
                           channels_last=False, losses=[{"type": "l1loss", "loss_weight": 1.0}])
    assert probe.fixed_mib is None and "no CUDA GPU" in probe.note


def test_memory_probe_halves_a_batch_that_runs_out_and_fits_a_line(monkeypatch):
    """The CUDA calls faked: peak = 900 MiB + 40 MiB per sample; batches above 48 run out of memory."""
    import torch

    from autosr.plan import calibrate

    current = {"batch": 0}

    class FakeSteps:
        def __init__(self, *a, **k):
            self.device = torch.device("cuda")
            self.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

        def run(self, batch, count, keep_going=None):
            if batch > 48:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
            current["batch"] = batch
            return count

        def where(self):
            return "a fake GPU"

        def release(self):
            pass

    monkeypatch.setattr(calibrate, "_Steps", FakeSteps)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: (900 + 40 * current["batch"]) * 2**20)
    probe = calibrate.measure_memory({"type": "paragonsr2_m", "scale": 2}, batch=128, lq_size=64, scale=2,
                                     precision="bf16", channels_last=True, losses=[])
    assert probe.fixed_mib == pytest.approx(900) and probe.per_sample_mib == pytest.approx(40)
    assert probe.note.startswith("batch 128, 64 ran out of memory; measured on a fake GPU")
    assert "peak 1540 MiB at batch 16, 2180 MiB at batch 32" in probe.note


def test_init_sizes_the_batch_from_the_memory_probe(pairs, tmp_path, monkeypatch):
    from autosr.plan.calibrate import MemoryProbe
    from autosr.plan.recommend import batch_budget

    root, _ = pairs
    hw = fake_profile((("NVIDIA RTX 4090", 24.0, "8.9"),))
    probe = MemoryProbe(2000.0, 300.0, "measured on a fake GPU: peak 6800 MiB at batch 16, 11600 MiB at batch 32")
    asked = {}

    def fake_memory(network, **kw):
        asked.update(kw, type=network["type"])
        return probe

    monkeypatch.setattr("autosr.init_cmd.probe", lambda _path: hw)
    monkeypatch.setattr("autosr.plan.calibrate.measure_memory", fake_memory)
    monkeypatch.setattr("autosr.plan.calibrate.measure_speed", lambda *a, **k: SpeedProbe(3.0, 10, 1.0, None, "fake speed probe"))
    config = tmp_path / "m.yml"
    plan = run_init(gt=root / "hr", lq=root / "lr", arch="paragonsr2_m", val_gt=None, val_lq=None, output=config, name="t",
                    scale=None, overrides=["datasets.train.lq_size=24"], flavor="fork", force=True, print_only=False,
                    explain=False, sample=64, time_budget=None, calibrate=True)
    assert asked["type"] == "paragonsr2_m" and asked["lq_size"] == 24 and asked["precision"] == "bf16"
    batch = plan.values["datasets.train.batch_size_per_gpu"]
    assert batch.value == int((batch_budget(hw).value - 2000) // 300) and "measured (measured on a fake GPU" in batch.reason
    assert read_plan(plan_path_for(config))["calibration"]["memory"]["per_sample_mib"] == 300.0
    # --no-calibrate: no probe, the estimate
    plan = run_init(gt=root / "hr", lq=root / "lr", arch="paragonsr2_m", val_gt=None, val_lq=None, output=tmp_path / "n.yml",
                    name="t", scale=None, overrides=["datasets.train.lq_size=24"], flavor="fork", force=True, print_only=False,
                    explain=False, sample=64, time_budget=None, calibrate=False)
    assert "measured" not in plan.values["datasets.train.batch_size_per_gpu"].reason
