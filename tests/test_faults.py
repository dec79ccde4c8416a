"""Faults around `autosr train`: SIGTERM, a second train on the same run folder, unreadable checkpoints,
and the resume command printed after a stop."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import make_config, metrics
from typer.testing import CliRunner

from autosr.cli import app
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.journal import read_journal
from autosr.train import runlock
from autosr.train_cmd import DEFAULT_OUT, resume_command, train_from_file

runner = CliRunner()


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(run_dir: Path, pid: int, host: str) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    lock.write_text(json.dumps({"pid": pid, "host": host, "started": time.time()}))
    return lock


# ---- the lock, by itself ----------------------------------------------------------------------


def test_lock_is_exclusive_and_released(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    lock = runlock.acquire(run_dir)
    record = json.loads((run_dir / ".lock").read_text())
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname() and record["started"] > 0
    # another process of this host holding it: a live pid that is not this one
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / ".lock").write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": time.time()}))
        with pytest.raises(AutosrError) as info:
            runlock.acquire(run_dir)
        assert f"another autosr train (pid {sleeper.pid} on host {socket.gethostname()}) is using {run_dir}" in str(info.value)
    finally:
        sleeper.kill()
        sleeper.wait()
    (run_dir / ".lock").write_text(json.dumps(record))
    lock.release()
    assert not (tmp_path / "runs").exists()  # the folders acquire created, empty again, are gone


def test_stale_lock_on_this_host_is_taken_over(tmp_path):
    run_dir = tmp_path / "t"
    dead = _dead_pid()
    _write_lock(run_dir, dead, socket.gethostname())
    lock = runlock.acquire(run_dir)
    assert lock.takeover is not None and f"pid {dead}" in lock.takeover and "no longer running" in lock.takeover
    assert json.loads((run_dir / ".lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (run_dir / ".lock").exists() and run_dir.is_dir()  # a folder it did not create stays


def test_lock_from_another_host_is_respected(tmp_path):
    run_dir = tmp_path / "t"
    lock = _write_lock(run_dir, _dead_pid(), "some-other-host")
    before = lock.read_text()
    with pytest.raises(AutosrError) as info:
        runlock.acquire(run_dir)
    text = str(info.value)
    assert "pid" in text and "on host some-other-host" in text and "another machine" in text
    assert f"delete {lock}" in text
    assert lock.read_text() == before


# ---- the lock in autosr train -----------------------------------------------------------------


@pytest.mark.slow
def test_second_train_on_a_locked_run_is_refused_and_changes_nothing(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 4, ["val.val_enabled=false", "logger.print_freq=2"])
    out = tmp_path / "runs"
    assert train_from_file(config, out_dir=out, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    run_dir = out / "t"
    assert not (run_dir / ".lock").exists()  # released at the end
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _write_lock(run_dir, sleeper.pid, socket.gethostname())
        # a save of the running train in progress: the refused one must not clean it up
        (run_dir / "checkpoints" / ".state_8.pt.abcd1234.tmp").write_bytes(b"half-written")
        before = _snapshot(run_dir)
        result = runner.invoke(app, ["train", str(config), "--out", str(out), "--set", "train.total_iter=8"])
        assert result.exit_code == 2, result.output
        assert f"pid {sleeper.pid} on host {socket.gethostname()}" in result.output and "is using" in result.output
        assert _snapshot(run_dir) == before
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone now: the next train takes the lock over, says so in the journal, and resumes
    code = train_from_file(config, out_dir=out, resume=None, overrides=["train.total_iter=6"], dry_run=False, quiet=True)
    assert code == 0
    events = read_journal(run_dir / "events.jsonl")
    takeover = [e for e in events if e["key"] == "run_lock"]
    assert len(takeover) == 1 and f"pid {sleeper.pid}" in takeover[0]["reason"]
    assert any(e["key"] == "resume" for e in events) and not (run_dir / ".lock").exists()


# ---- unreadable checkpoints ---------------------------------------------------------------------


@pytest.mark.slow
def test_every_checkpoint_unreadable_keeps_history(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 8, ["val.val_enabled=false", "logger.print_freq=2", "logger.save_checkpoint_freq=4"])
    out = tmp_path / "runs"
    assert train_from_file(config, out_dir=out, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    run_dir = out / "t"
    states = sorted((run_dir / "checkpoints").glob("state_*.pt"))
    assert len(states) >= 2
    for state in states:
        state.write_bytes(b"not a checkpoint" * 10)
    history = {name: (run_dir / name).read_bytes() for name in ("metrics.jsonl", "events.jsonl")}
    assert metrics(run_dir)

    result = runner.invoke(app, ["train", str(config), "--out", str(out), "--set", "train.total_iter=12"])
    assert result.exit_code == 1, result.output
    assert all(state.name in result.output for state in states) and "kept" in result.output
    for flag in (None, False):  # --no-resume must not start over on top of the history either
        with pytest.raises(AutosrRuntimeError):
            train_from_file(config, out_dir=out, resume=flag, overrides=[], dry_run=False, quiet=True)
    assert {name: (run_dir / name).read_bytes() for name in history} == history
    assert not (run_dir / ".lock").exists()


# ---- SIGTERM and the resume command -------------------------------------------------------------


def test_resume_command_names_the_out_folder_only_when_not_the_default():
    cfg = Path("cfg dir/auto.yml")
    assert resume_command(cfg, [], DEFAULT_OUT) == "autosr train 'cfg dir/auto.yml'"
    assert resume_command(cfg, [], Path("./runs")) == "autosr train 'cfg dir/auto.yml'"
    assert (resume_command(cfg, ["train.ema=false"], Path("my runs"))
            == "autosr train 'cfg dir/auto.yml' --out 'my runs' --set train.ema=false")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_saves_exits_143_and_the_printed_command_resumes(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 100000, ["val.val_enabled=false", "logger.print_freq=1"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # --out relative to the working folder, not the default: the resume command must carry it
    proc = subprocess.Popen([sys.executable, "-m", "autosr.cli", "train", str(config), "--out", "elsewhere"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    run_dir = tmp_path / "elsewhere" / "t"
    metrics_file = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 3):
        time.sleep(0.2)
    lock = json.loads((run_dir / ".lock").read_text())
    assert lock["pid"] == proc.pid and lock["host"] == socket.gethostname()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM: finishing this step" in err
    states = list((run_dir / "checkpoints").glob("state_*.pt"))
    assert states and not (run_dir / ".lock").exists()
    command = err.split("Resume with:")[1].strip().splitlines()[0]
    assert command == f"autosr train {shlex.quote(str(config))} --out elsewhere"

    stopped = max(int(p.stem.split("_")[1]) for p in states)
    args = shlex.split(command)
    assert args[0] == "autosr"
    resumed = subprocess.run([sys.executable, "-m", "autosr.cli", *args[1:], "--set", f"train.total_iter={stopped + 2}"],
                             cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from iteration {stopped} (state_{stopped}.pt)" in resumed.stderr
    assert not (tmp_path / "runs").exists()
