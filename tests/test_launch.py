"""`autosr train` starts one process per GPU by itself (autosr/train/launch.py): the decision, and real 2-process CPU runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import make_config

from autosr.errors import AutosrError
from autosr.journal import read_journal
from autosr.train import launch
from autosr.train.launch import LaunchDecision, decide_procs, launch_note, maybe_launch, remember, train_args

NO_ENV: dict[str, str] = {}


@pytest.mark.parametrize(("num_gpu", "gpus", "count", "expected"), [
    ("auto", None, 0, 1),
    ("auto", None, 1, 1),
    ("auto", None, 4, 4),
    (2, None, 4, 2),
    (8, None, 4, 4),
    (1, None, 4, 1),
    (0, None, 4, 1),
    ("auto", 2, 4, 2),
    (1, 3, 4, 3),  # --gpus wins over the config
    ("auto", 6, 4, 4),  # never more than there are
    ("auto", 2, 1, 1),
    ("auto", 2, 0, 1),
])
def test_decision(num_gpu: int | str, gpus: int | None, count: int, expected: int) -> None:
    decision = decide_procs(num_gpu, gpus, count, env=NO_ENV)
    assert decision.nproc == expected
    assert decision.spawn == (expected > 1)
    assert decision.reason
    note = decision.note()
    assert (note.key, note.value) == ("num_gpu", expected)


def test_decision_reasons_name_their_cause() -> None:
    assert "--gpus 2" in decide_procs("auto", 2, 4, env=NO_ENV).reason
    assert "num_gpu: auto" in decide_procs("auto", None, 4, env=NO_ENV).reason
    assert "only 4 visible GPUs" in decide_procs(8, None, 4, env=NO_ENV).reason
    assert "CUDA_VISIBLE_DEVICES" in decide_procs("auto", None, 2, env={"CUDA_VISIBLE_DEVICES": "0,1"}).reason
    assert decide_procs("auto", None, 0, env=NO_ENV).reason.startswith("no GPU")
    forced = decide_procs("auto", None, 2, forced=True, env=NO_ENV)
    assert forced.forced and "AUTOSR_FORCE_PROCS" in forced.reason


def test_inside_a_launched_process_never_spawns() -> None:
    decision = decide_procs("auto", 4, 8, env={"WORLD_SIZE": "2"})
    assert decision.nproc == 1 and not decision.spawn and "WORLD_SIZE=2" in decision.reason


def test_bad_gpus_and_forced_value() -> None:
    with pytest.raises(AutosrError, match="--gpus 0"):
        decide_procs("auto", 0, 4, env=NO_ENV)
    with pytest.raises(AutosrError, match="AUTOSR_FORCE_PROCS"):
        launch.visible_devices({launch.FORCE_ENV: "two"})
    assert launch.visible_devices({launch.FORCE_ENV: "3"}) == (3, True)


def test_visible_devices_follow_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv(launch.FORCE_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launch.visible_devices({}) == (4, False)
    assert launch.decide("auto", None).nproc == 4
    assert launch.decide(1, None).nproc == 1
    assert launch.decide("auto", 2).nproc == 2


def test_note_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(launch.NOTE_ENV, raising=False)
    assert launch_note() is None
    remember(LaunchDecision(3, "num_gpu: auto uses every one of 3 visible GPUs"))
    note = launch_note()
    assert note is not None and note.value == 3 and "3 visible GPUs" in note.reason


def test_single_process_and_dry_run_do_not_spawn(tmp_path: Path, pair_set: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, pair_set, 20)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv(launch.FORCE_ENV, "1")
    assert maybe_launch(config, [], None, dry_run=False, argv=["train", str(config)]) is None
    monkeypatch.setenv(launch.FORCE_ENV, "2")
    assert maybe_launch(config, [], None, dry_run=True, argv=["train", str(config)]) is None
    note = launch_note()
    assert note is not None and note.value == 1 and "--dry-run" in note.reason
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv(launch.NOTE_ENV)
    assert maybe_launch(config, [], None, dry_run=False, argv=["train", str(config)]) is None
    note = launch_note()
    assert note is not None and note.value == 2 and "torchrun" in note.reason


def test_train_args() -> None:
    assert train_args(["train", "a.yml", "--gpus", "2"]) == ["train", "a.yml", "--gpus", "2"]
    assert train_args(["--verbose", "train", "a.yml"]) == ["train", "a.yml"]
    with pytest.raises(AutosrError):
        train_args(["a.yml"])


def _run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOSR_FORCE_PROCS": "2", **env}
    full.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "autosr", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_train_started_once_runs_two_ranks(tmp_path: Path, pair_set: tuple[Path, Path]) -> None:
    config = make_config(tmp_path, pair_set, 20, ["datasets.train.batch_size_per_gpu=4"])
    out = tmp_path / "runs"
    done = _run_cli(["train", str(config), "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = [p for p in out.iterdir() if p.is_dir()]
    assert [p.name for p in runs] == ["t"]  # one run folder
    run = runs[0]
    events = read_journal(run / "events.jsonl")
    assert [e["key"] for e in events].count("network_g") == 1  # one writer
    agree = [e for e in events if e["key"] == "ranks_agree"]
    assert agree and agree[0]["new"] == 2, agree  # both ranks trained, in step
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iter"] for r in rows if r.get("kind") == "train"]
    assert iters == sorted(set(iters)) and iters[-1] == 20  # written once per log point: rank 0 alone
    assert (run / "models").is_dir()


@pytest.mark.slow
def test_crash_on_one_rank_ends_both(tmp_path: Path, pair_set: tuple[Path, Path]) -> None:
    config = make_config(tmp_path, pair_set, 20)
    done = _run_cli(["train", str(config), "--out", str(tmp_path / "runs")], tmp_path, AUTOSR_TEST_CRASH_RANK="1")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [x for x in done.stderr.splitlines() if "error:" in x]
    assert len(lines) == 1, done.stderr
    assert "rank 1 of 2 failed (exit code 1)" in lines[0] and "failing on purpose" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_ctrl_c_stops_both_ranks_with_one_checkpoint(tmp_path: Path, pair_set: tuple[Path, Path]) -> None:
    config = make_config(tmp_path, pair_set, 100000, ["val.val_freq=100000", "logger.save_checkpoint_freq=100000"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AUTOSR_FORCE_PROCS": "2"}
    env.pop("WORLD_SIZE", None)
    run = tmp_path / "runs" / "t"
    proc = subprocess.Popen([sys.executable, "-m", "autosr", "train", str(config), "--out", str(tmp_path / "runs")], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not (run / "metrics.jsonl").exists():
            time.sleep(0.2)
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    states = list((run / "checkpoints").glob("state_*.pt"))
    assert len(states) == 1, states  # one checkpoint, written by rank 0
    assert "Resume with" in (out + err).replace("\n", " ")  # rank 0 talks to the terminal
    assert "death signal" not in err and "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize(("first", "second"), [(2, 1), (1, 2)])
def test_resume_with_another_number_of_processes(tmp_path: Path, pair_set: tuple[Path, Path], first: int, second: int) -> None:
    """A run started on N processes continues on M: weights and the step count carry over, the
    global batch changes with M (journaled), and the run ends where it should."""
    config = make_config(tmp_path, pair_set, 24, ["datasets.train.batch_size_per_gpu=4", "logger.print_freq=4"])
    out = tmp_path / "runs"
    started = _run_cli(["train", str(config), "--out", str(out), "--set", "train.total_iter=12"], tmp_path,
                       AUTOSR_FORCE_PROCS=str(first))
    assert started.returncode == 0, started.stderr[-2000:]
    resumed = _run_cli(["train", str(config), "--out", str(out)], tmp_path, AUTOSR_FORCE_PROCS=str(second))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    run = out / "t"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    iters = [r["iter"] for r in rows if r.get("kind") == "train"]
    assert iters == sorted(set(iters)) and iters[-1] == 24, iters
    events = read_journal(run / "events.jsonl")
    resume = [e for e in events if e["key"] == "resume"]
    assert resume and resume[-1]["new"] == 12
    world = [e for e in events if e["key"] == "world_size"]
    assert world and world[-1]["old"] == first and world[-1]["new"] == second, world
    assert (run / "models" / "net_g_24.safetensors").exists()
