"""autosr train on the CPU: learning, determinism, exact resume, OOM back-off, hooks, Ctrl-C, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from autosr.cli import app
from autosr.config import load_config
from autosr.init_cmd import run_init
from autosr.journal import Journal, read_journal
from autosr.safetensors_io import load_safetensors
from autosr.synthetic import write_pairs
from autosr.train.hooks import Automation
from autosr.train.loop import Trainer
from autosr.train.setup import DistInfo
from autosr.train_cmd import build_trainer, train_from_file

runner = CliRunner()
FAST = [
    "datasets.train.lq_size=32", "datasets.train.batch_size_per_gpu=8", "datasets.train.accum_iter=1",
    "train.optim_g.lr=5.0e-3", "train.warmup_iter=10", "logger.print_freq=5",
]


def make_config(tmp_path: Path, pair_set, iters: int, extra: list[str] = (), val: tuple[Path, Path] | None = None) -> Path:
    hr, lr = pair_set
    out = tmp_path / "cfg.yml"
    val_gt, val_lq = val or (None, None)
    run_init(gt=hr, lq=lr, arch="paragonsr2_nano", val_gt=val_gt, val_lq=val_lq, output=out, name="t", scale=None,
             overrides=[f"train.total_iter={iters}", f"val.val_freq={iters}", f"logger.save_checkpoint_freq={iters}", *FAST, *extra],
             flavor="fork", force=True, print_only=False, explain=False, sample=64)
    return out


def metrics(run_dir: Path, kind: str | None = "train") -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


@pytest.mark.slow
def test_short_run_learns_and_beats_bicubic(tmp_path, pair_set):
    val = write_pairs(tmp_path / "val", 4, scale=2, size=(192, 160), seed=100)
    config = make_config(tmp_path, pair_set, 600, ["datasets.train.batch_size_per_gpu=16"], val=val)
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    run = tmp_path / "runs" / "t"
    train = metrics(run)
    assert train[-1]["loss_l1"] < 0.6 * train[0]["loss_l1"]
    baseline = metrics(run, "baseline")[0]["psnr"]
    best = max(r["psnr"] for r in metrics(run, "val"))
    assert best > baseline, (best, baseline)
    assert (run / "models" / "net_g_best.safetensors").exists()
    assert runner.invoke(app, ["report", str(run)]).exit_code == 0 and (run / "report.html").exists()
    events = read_journal(run / "events.jsonl")
    keys = {e["key"] for e in events}
    assert {"datasets.train.batch_size_per_gpu", "precision", "data", "phase"} <= keys
    # The scheduler the plan enabled acts: its calibration is journaled and DLS moved the weights.
    assert any(e["key"].startswith("dynamic_loss_scheduling.") and e["source"] == "automation" for e in events)
    assert any(e["key"] == "loss_weight.ssim" for e in events)
    assert not any(e.get("new") == "not applied" for e in events)


def test_same_seed_same_first_losses(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 20, ["logger.print_freq=1", "val.val_enabled=false"])
    losses = []
    for attempt in range(2):
        train_from_file(config, out_dir=tmp_path / f"r{attempt}", resume=None, overrides=[], dry_run=False, quiet=True)
        losses.append([r["loss"] for r in metrics(tmp_path / f"r{attempt}" / "t")])
    assert len(losses[0]) == 20 and losses[0] == losses[1]


def test_resume_is_exact(tmp_path, pair_set):
    n = 12
    config = make_config(tmp_path, pair_set, 2 * n, ["logger.print_freq=2", "logger.save_checkpoint_freq=100"])
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_from_file(config, out_dir=straight, resume=None, overrides=[], dry_run=False, quiet=True)
    train_from_file(config, out_dir=split, resume=None, overrides=[f"train.total_iter={n}"], dry_run=False, quiet=True)
    code = train_from_file(config, out_dir=split, resume=None, overrides=[], dry_run=False, quiet=True)
    assert code == 0
    a = load_safetensors(straight / "t" / "models" / f"net_g_{2 * n}.safetensors")
    b = load_safetensors(split / "t" / "models" / f"net_g_{2 * n}.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    fields = ("iter", "loss", "loss_l1", "loss_ssim", "lr", "grad_norm")
    tail = lambda run: [tuple(r[f] for f in fields) for r in metrics(run / "t") if r["iter"] > n]  # noqa: E731
    assert tail(straight) == tail(split) and len(tail(split)) == n // 2
    assert any(e["key"] == "resume" for e in read_journal(split / "t" / "events.jsonl"))


@pytest.mark.slow
def test_resume_is_exact_with_the_scheduler_acting(tmp_path, pair_set, monkeypatch):
    """2N straight vs N, stop (as Ctrl-C), resume, N: identical weights, metrics and journal tail,
    with DLS, the LR automation, clipping and the validation interval acting on both sides of N."""
    n, a = 16, "train.training_automations."
    val = write_pairs(tmp_path / "val", 2, scale=2, size=(64, 64), seed=5)
    config = make_config(tmp_path, pair_set, 2 * n, [
        "logger.print_freq=4", "val.val_freq=4", "logger.save_checkpoint_freq=100",
        "train.dynamic_loss_scheduling.baseline_iterations=4", a + "IntelligentLearningRateScheduler.plateau_patience=2",
        a + "AdaptiveGradientClipping.calibration_steps=8"], val=val)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_from_file(config, out_dir=straight, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    original = Trainer._should_leave
    monkeypatch.setattr(Trainer, "_should_leave", lambda self: self.iteration == n or original(self))
    train_from_file(config, out_dir=split, resume=None, overrides=[], dry_run=False, quiet=True)  # leaves at n, as Ctrl-C
    assert max(r["iter"] for r in metrics(split / "t", None)) == n
    monkeypatch.undo()
    assert train_from_file(config, out_dir=split, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    a_w = load_safetensors(straight / "t" / "models" / f"net_g_{2 * n}.safetensors")
    b_w = load_safetensors(split / "t" / "models" / f"net_g_{2 * n}.safetensors")
    for key in a_w:
        torch.testing.assert_close(a_w[key], b_w[key], rtol=0, atol=1e-6)
    fields = ("iter", "kind", "loss", "lr", "lr_scale", "grad_norm", "dynamic_weight_ssim", "psnr")
    tail = lambda run: [tuple(r.get(f) for f in fields) for r in metrics(run / "t", None) if r["iter"] > n]  # noqa: E731
    assert tail(straight) == tail(split)

    def decisions(run: Path) -> list[tuple]:
        return [(e["iter"], e["key"], e["old"], e["new"]) for e in read_journal(run / "t" / "events.jsonl")
                if e["iter"] > n and e["source"] in ("automation", "trainer") and e["key"] != "resume"]

    acted = {k for _, k, _, _ in decisions(straight)}
    assert {"loss_weight.ssim", "lr_scale", "phase"} <= acted, acted  # the scheduler acts after the resume point too
    assert decisions(straight) == decisions(split)


def test_finished_run_says_how_to_continue(tmp_path, pair_set, capsys):
    config = make_config(tmp_path, pair_set, 5, ["val.val_enabled=false"])
    train_from_file(config, out_dir=tmp_path, resume=None, overrides=[], dry_run=False, quiet=True)
    first = capsys.readouterr().err
    run = tmp_path / load_config(config).data["name"]
    assert f"use it: autosr upscale {run} INPUT OUTPUT" in first and f"use it: autosr export {run} --onnx" in first
    assert train_from_file(config, out_dir=tmp_path, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    assert "--set train.total_iter=10" in capsys.readouterr().err


class FakeOOM:
    """Makes the model raise CUDA's out-of-memory error above a batch size, as a small card would."""

    def __init__(self, model: torch.nn.Module, limit: int) -> None:
        self.model, self.limit = model, limit

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return self.model(x)


def trainer_for(config: Path, journal: Journal, automations=()) -> Trainer:
    return build_trainer(load_config(config), None, DistInfo(), journal, automations=list(automations), quiet=True)


def test_oom_backs_off_the_batch_and_the_run_goes_on(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 6, ["val.val_enabled=false"])
    journal = Journal(tmp_path / "events.jsonl")
    trainer = trainer_for(config, journal)
    trainer.objective.g.step_model = FakeOOM(trainer.objective.model, limit=6)
    assert trainer.fit() == 0 and trainer.iteration == 6
    assert trainer.batch_size == 6 and trainer.source.batch_size == 6
    changes = [(e["old"], e["new"]) for e in journal.records if e["key"] == "batch_size"]
    assert changes == [(8, 7), (7, 6)]
    assert "out of memory" in journal.records[-1]["reason"] or any("out of memory" in e["reason"] for e in journal.records)


def test_accumulated_micro_batches_are_one_step_of_the_whole_batch(tmp_path, pair_set):
    """accum_iter=2 of 4 crops and accum_iter=1 of the same 8 crops: every loss is a mean, so the step
    gives the same weights and reports the same losses (to float rounding)."""
    from autosr.train.data import Batch

    trainers, stats = [], []
    crops = None
    for batch, accum in ((8, 1), (4, 2)):
        config = make_config(tmp_path / f"b{batch}", pair_set, 1, [
            "val.val_enabled=false", f"datasets.train.batch_size_per_gpu={batch}", f"datasets.train.accum_iter={accum}",
            "train.ema_decay=0", "train.dynamic_loss_scheduling.enabled=false", "train.training_automations.enabled=false"])
        trainer = trainer_for(config, Journal(None))
        before = next(trainer.objective.model.parameters()).detach().clone()
        crops = crops or trainer.source.next_batch()  # the 8 crops both trainers see
        parts = iter([crops] if accum == 1 else [Batch(crops.lq[:4], crops.gt[:4]), Batch(crops.lq[4:], crops.gt[4:])])
        trainer.source.next_batch = lambda parts=parts: next(parts)
        trainer._enter_phase()
        trainer._set_lr()
        stats.append(trainer._step())
        trainers.append(trainer)
    whole, accumulated = stats
    assert set(whole.losses) == set(accumulated.losses) and len(whole.losses) >= 2
    for name in whole.losses:
        assert torch.allclose(whole.losses[name], accumulated.losses[name], rtol=1e-5), name
    assert torch.allclose(whole.total, accumulated.total, rtol=1e-5)
    for a, b in zip(trainers[0].objective.model.parameters(), trainers[1].objective.model.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(before, next(trainers[0].objective.model.parameters()))  # the step did change the weights


def _denormals_flushed() -> bool:
    return (torch.tensor([1e-40]) * 1.0).item() == 0.0


def test_cpu_denormal_flushing_is_on_while_training_and_put_back_after(tmp_path, pair_set):
    # A process-wide flag: left on, it broke float maths elsewhere in the process (hypothesis refused to run).
    config = make_config(tmp_path, pair_set, 3, ["val.val_enabled=false"])
    seen = []

    class Probe(Automation):
        name = "Probe"

        def after_step(self, stats, controls):
            seen.append(_denormals_flushed())

    assert not _denormals_flushed()
    assert trainer_for(config, Journal(tmp_path / "events.jsonl"), [Probe()]).fit() == 0
    assert seen == [True, True, True] and not _denormals_flushed()


class Scripted(Automation):
    """A test automation that uses every control once (stats.iteration counts steps from 1)."""

    name = "Scripted"

    def after_step(self, stats, controls):
        if stats.iteration == 2:
            controls.scale_lr(0.5, "test: halve")
            controls.set_loss_weights(torch.tensor([1.0, 0.5]), "test: more ssim")
            controls.set_clip_threshold(0.3, "test: clip")
        if stats.iteration == 4:
            controls.set_batch_size(4, "test: smaller")
        if stats.iteration == 6:
            controls.stop("test: enough")


def test_automations_act_through_controls_and_are_journaled(tmp_path, pair_set):
    # lr 5e-3 (FAST), linear warm-up over 10 steps, one milestone at step 5 with gamma 0.5.
    config = make_config(tmp_path, pair_set, 50, ["val.val_enabled=false", "logger.print_freq=1",
                                                  "train.scheduler.milestones=[5]", "train.scheduler.gamma=0.5"])
    journal = Journal(tmp_path / "events.jsonl")
    seen = []

    class Recording(Scripted):
        def after_step(self, stats, controls):
            seen.append((stats.lr, stats.weights.tolist(), stats.clip_threshold, stats.batch_size))
            super().after_step(stats, controls)

    trainer = trainer_for(config, journal, [Recording()])
    trainer.fit()
    assert trainer.iteration == 6  # stopped after the step it asked at
    # step k (0-based): 5e-3 · (k+1)/10 (warm-up) · 0.5 from step 5 (milestone) · 0.5 from step 2 (halved after it)
    assert [lr for lr, *_ in seen] == pytest.approx([5e-4, 1e-3, 7.5e-4, 1e-3, 1.25e-3, 7.5e-4])
    assert [w for _, w, *_ in seen][1:3] == [pytest.approx([1.0, 0.05]), [1.0, 0.5]]  # what each step trained with
    assert [c for *_, c, _ in seen][1:3] == [0.8, 0.3]  # the planned cpu-tier threshold, then the automation's
    assert [b for *_, b in seen] == [8, 8, 8, 8, 4, 4]
    assert trainer.lr_scale == 0.5 and trainer.clip_threshold == 0.3
    keys = [e["key"] for e in journal.records]
    for key in ("lr_scale", "loss_weight.ssim", "grad_clip_max_norm", "batch_size", "stop"):
        assert key in keys


def test_bad_config_is_one_line_exit_2(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 5)
    text = config.read_text().replace("total_iter:", "total_iters:")
    bad = tmp_path / "bad.yml"
    bad.write_text(text)
    result = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "did you mean 'total_iter'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", str(config), "--set", "train.optim_g.lr=quick"])
    assert result.exit_code == 2 and "expected a number" in result.output
    result = runner.invoke(app, ["train", str(tmp_path / "missing.yml")])
    assert result.exit_code == 2 and "autosr init" in result.output
    assert not (tmp_path / "runs").exists()


def test_dry_run_writes_nothing(tmp_path, pair_set, monkeypatch):
    config = make_config(tmp_path, pair_set, 5)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", str(config), "--dry-run", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "dry run ok" in result.output and not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_saves_and_exits_130(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 100000, ["val.val_enabled=false", "logger.print_freq=1"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "autosr.cli", "train", str(config), "--out", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics_file = tmp_path / "runs" / "t" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with: autosr train" in err and "--set" not in err.split("Resume with:")[1]
    assert list((tmp_path / "runs" / "t" / "checkpoints").glob("state_*.pt"))


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu(tmp_path, pair_set):
    """torchrun with 2 ranks (gloo): one run folder written by rank 0, both ranks finish."""
    pytest.importorskip("torch.distributed.run")
    # the scheduler acts within 32 steps: DLS (sampled every 8) after its 4-iteration baseline, the LR plateau
    config = make_config(tmp_path, pair_set, 32, ["val.val_freq=4", "logger.print_freq=8",
                                                  "train.dynamic_loss_scheduling.baseline_iterations=4",
                                                  "train.training_automations.IntelligentLearningRateScheduler.plateau_patience=2"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        # --standalone: torch picks a free port, so two test runs on one machine never collide
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "autosr", "train", str(config), "--out", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "runs" / "t"
    train = metrics(run)
    assert [r["iter"] for r in train] == [8, 16, 24, 32]  # one writer, not two
    assert train[0]["samples_s"] > 0 and (run / "models" / "net_g_32.safetensors").exists()
    events = read_journal(run / "events.jsonl")
    assert any(e["key"] == "loss_weight.ssim" for e in events)  # DLS acted (on step stats averaged over ranks)
    # every validation point compared the ranks' weights and knobs: identical, after the scheduler's decisions
    assert any(e["key"] == "ranks_agree" and e["new"] == 2 for e in events)


def test_pretrained_weights_saved_images_and_overridden_hints(tmp_path, pair_set):
    first = make_config(tmp_path, pair_set, 6, ["val.val_enabled=false"])
    train_from_file(first, out_dir=tmp_path / "a", resume=None, overrides=[], dry_run=False, quiet=True)
    weights = tmp_path / "a" / "t" / "models" / "net_g_6.safetensors"
    # As a traiNNer .pth too: {"params_ema": state_dict}
    pth = tmp_path / "w.pth"
    torch.save({"params_ema": load_safetensors(weights)}, pth)
    for source in (weights, pth):
        config = make_config(tmp_path, pair_set, 4, [f"path.pretrain_network_g={source}", "val.save_img=true",
                                                     "val.val_freq=4", "datasets.train.prefetch_mode=cuda"])
        journal = Journal(tmp_path / f"events_{source.suffix}.jsonl")
        trainer = build_trainer(load_config(config), tmp_path / f"run{source.suffix}", DistInfo(), journal, quiet=True)
        for key, value in load_safetensors(weights).items():
            torch.testing.assert_close(trainer.objective.model.state_dict()[key], value)
        (tmp_path / f"run{source.suffix}").mkdir()
        trainer.fit()
        keys = {e["key"]: e for e in journal.records}
        assert keys["path.pretrain_network_g"]["new"] == "loaded"
        assert keys["datasets.train.prefetch_mode"]["new"] == "not used"
        assert list((tmp_path / f"run{source.suffix}" / "visualization").glob("*/*_4.png"))


def test_pretrained_weights_of_another_arch_are_a_clear_error(tmp_path, pair_set):
    first = make_config(tmp_path, pair_set, 2, ["val.val_enabled=false"])
    train_from_file(first, out_dir=tmp_path / "a", resume=None, overrides=[], dry_run=False, quiet=True)
    weights = tmp_path / "a" / "t" / "models" / "net_g_2.safetensors"
    config = make_config(tmp_path, pair_set, 2, [f"path.pretrain_network_g={weights}"])
    result = runner.invoke(app, ["train", str(config), "--set", "network_g.type=paragonsr2_micro", "--dry-run"])
    assert result.exit_code == 2 and "does not fit this network" in result.output


def test_bad_data_at_train_time_fails_cleanly_and_writes_nothing(tmp_path):
    hr, lr = write_pairs(tmp_path / "data", 4, scale=2, size=(192, 160), seed=9)
    config = make_config(tmp_path, (hr, lr), 5)
    (hr / "img_0002.png").write_bytes((hr / "img_0002.png").read_bytes()[:2000])  # truncated after planning
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "img_0002.png" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
    moved = runner.invoke(app, ["train", str(config), "--set", f"datasets.train.dataroot_gt={tmp_path / 'gone'}", "--dry-run"])
    assert moved.exit_code == 2 and "datasets.train.dataroot_gt" in moved.output and "is not a folder" in moved.output


def test_a_realtime_run_with_checkpointing_trains_and_saves_a_self_describing_model(tmp_path, pair_set):
    """The fork's family through the whole loop: frozen base parameters beside the optimiser and EMA,
    per-block checkpointing, and model files that rebuild the network alone."""
    from autosr.use.model_file import load_model

    hr, lr = pair_set
    out = tmp_path / "cfg.yml"
    run_init(gt=hr, lq=lr, arch="paragonsr2_realtime", val_gt=None, val_lq=None, output=out, name="t", scale=None,
             overrides=["train.total_iter=6", "val.val_freq=6", "logger.save_checkpoint_freq=6", *FAST,
                        "network_g.use_checkpointing=true", "network_g.upsampler_alpha=0.0"],
             flavor="fork", force=True, print_only=False, explain=False, sample=64)
    assert train_from_file(out, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    model, info = load_model(tmp_path / "runs" / "t" / "models" / "net_g_ema_6.safetensors")
    assert info.network_opts == {"type": "paragonsr2_realtime", "scale": 2, "use_checkpointing": True, "upsampler_alpha": 0.0}
    base = load_safetensors(tmp_path / "runs" / "t" / "models" / "net_g_6.safetensors")["base.sharp.h.weight"]
    assert torch.equal(base, model.base.sharp.h.weight)  # frozen: still the kernel it started as
    assert torch.allclose(base[0, 0, 0], torch.tensor([-1.0, 0, 9, 16, 9, 0, -1]) / 32)
