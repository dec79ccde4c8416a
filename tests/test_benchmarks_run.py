"""Every benchmark runs on a CPU with its smallest settings, so that none breaks unseen before the next
device session (upscale_speed.py once stopped at start on the GPU machine's torch; scheduler_profile.py
once printed nothing for 300 s). Subprocesses, as they are run on the device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.mark.slow
def test_upscale_speed(tmp_path: Path) -> None:
    out = tmp_path / "u.jsonl"
    done = run("benchmarks/upscale_speed.py", "--device", "cpu", "--variants", "nano", "--height", "32", "--width", "48",
               "--dtypes", "fp32", "--seconds", "0.1", "--repeats", "2", "--no-onnx", "--out", str(out))
    assert done.returncode == 0, done.stderr[-1500:]
    assert out.read_text().strip()


@pytest.mark.slow
def test_train_throughput_modes() -> None:
    done = run("benchmarks/train_throughput.py", "--batch", "2", "--lq", "16", "--steps", "2", "--warmup", "1", "--images", "2",
               "--workers", "0", "--modes", "eager,graphed", "--ssim", "--schedule")
    assert done.returncode == 0, done.stderr[-1500:]
    assert "eager" in done.stdout and "graphed" in done.stdout


@pytest.mark.slow
def test_scheduler_profile_shows_progress_and_finishes(tmp_path: Path) -> None:
    from autosr.init_cmd import run_init

    configs = []
    for name, extra in (("on", []), ("off", ["train.dynamic_loss_scheduling.enabled=false",
                                             "train.training_automations.enabled=false"])):
        config = tmp_path / f"{name}.yml"
        run_init(gt=PHOTOS / "train/hr", lq=PHOTOS / "train/lr", arch="paragonsr2_nano", val_gt=None, val_lq=None, output=config,
                 name=name, scale=None, overrides=["datasets.train.lq_size=16", "datasets.train.batch_size_per_gpu=2", *extra],
                 flavor="fork", force=True, print_only=False, explain=False, sample=16)
        configs.append(str(config))
    done = run("benchmarks/scheduler_profile.py", *configs, "--block", "2", "--rounds", "2", "--profile-steps", "2", "--no-validation")
    assert done.returncode == 0, done.stderr[-1500:]
    assert "round 2/2" in done.stderr and '"ratio_on_off"' in done.stdout


@pytest.mark.slow
def test_quality_at_time_together() -> None:
    done = run("benchmarks/quality_at_time.py", "--data", str(PHOTOS), "--iters", "2", "--together", "2", "--work",
               "/tmp/autosr-bench-q", "--setting", "a=datasets.train.lq_size=16", "--setting",
               "b=arch:paragonsr2_realtime;env:AUTOSR_NO_CUDA_GRAPH=1;datasets.train.lq_size=16")
    assert done.returncode == 0, done.stderr[-1500:]
    assert "| a |" in done.stdout and "| b |" in done.stdout


@pytest.mark.slow
def test_degradation_cost_small() -> None:
    done = run("benchmarks/degradation_cost.py", "--small", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-1500:]


def test_checkpointing_cost_small(tmp_path: Path) -> None:
    done = run("benchmarks/checkpointing_cost.py", "--variants", "realtime", "--lq", "32", "--rounds", "2",
               "--json", str(tmp_path / "c.json"))
    assert done.returncode == 0, done.stderr[-1500:]
    assert "realtime:" in done.stdout and "slowdown" in done.stdout
    result = json.loads((tmp_path / "c.json").read_text())["results"]["realtime"]
    assert 0 < result["share"] < 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_ddp_keeps_gloo_alive_prints_each_ranks_threads() -> None:
    done = run("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "benchmarks/ddp_keeps_gloo_alive.py")
    assert done.returncode == 0, done.stderr[-1500:]
    assert done.stdout.count("threads after destroy_process_group") == 2


def test_preset_memory_says_it_needs_a_gpu() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the benchmark would measure")
    done = run("benchmarks/preset_memory.py")
    assert done.returncode == 2 and "NVIDIA GPU" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_two_process_runs_exit_cleanly() -> None:
    """Two consecutive torchrun runs and one `autosr train` that starts its two processes itself (gloo):
    every rank done, exit 0, no C++ abort on the way out (benchmarks/two_process_exits.py --runs 20 is the check)."""
    pytest.importorskip("torch.distributed.run")
    done = run("benchmarks/two_process_exits.py", "--runs", "2", timeout=900)
    assert done.returncode == 0, done.stdout[-2000:]
    done = run("benchmarks/two_process_exits.py", "--runs", "1", "--autosr", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:]
