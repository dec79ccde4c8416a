"""Disk full (or an unwritable run folder) while saving: one line, exit 1, the previous checkpoint
intact, no temp files, every JSONL line whole, and the next `autosr train` resumes (issue 11).

Faults are injected: torch.save's file writes fail with ENOSPC after a few bytes (the way a real
full disk fails, torch wrapping the OSError in a RuntimeError), and os.write on events.jsonl writes
half a line and then fails.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import make_config
from typer.testing import CliRunner

from autosr.cli import app
from autosr.errors import AutosrRuntimeError
from autosr.fsutil import is_temp_name
from autosr.runfolder import JsonlWriter, read_jsonl, write_failure
from autosr.train import checkpoint as ckpt

runner = CliRunner()
real_torch_save = torch.save
real_os_write = os.write


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


class _FullAfter:
    """A file proxy whose writes fail with ENOSPC once `room` bytes went through."""

    def __init__(self, f: Any, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        if n > self.room:
            self.f.write(bytes(memoryview(data).cast("B")[: self.room]))  # a partial write, then the error
            self.room = 0
            raise _enospc()
        self.room -= n
        return self.f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def fail_torch_save_on(monkeypatch: pytest.MonkeyPatch, nth: int) -> list[int]:
    """The `nth` torch.save (1-based) runs out of space half-way; returns the call counter."""
    calls = [0]

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] == nth:
            return real_torch_save(obj, _FullAfter(f, 4096), *args, **kwargs)
        return real_torch_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return calls


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temp_name(p.name)]


def assert_jsonl_whole(path: Path) -> None:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), data[-80:]
    for line in data.splitlines():
        json.loads(line)


def one_line(output: str) -> str:
    lines = [x for x in output.splitlines() if x.strip()]
    return lines[-1]


# ----------------------------------------------------------------------------- unit level (fast)
def test_write_failure_names_file_and_cause(tmp_path: Path) -> None:
    wrapped = RuntimeError("[enforce fail at inline_container.cc] unexpected pos")
    wrapped.__context__ = _enospc()
    failure = write_failure(wrapped, tmp_path / "x.pt", "the last complete checkpoint is y")
    assert isinstance(failure, AutosrRuntimeError) and failure.exit_code == 1
    assert str(failure) == (f"{tmp_path / 'x.pt'}: cannot write: no space left on device (ENOSPC) — "
                            "free space or pass --out on another disk; the last complete checkpoint is y")
    for code in (errno.EDQUOT, errno.EROFS, errno.EACCES):
        assert write_failure(OSError(code, "x"), tmp_path) is not None
    assert write_failure(RuntimeError("other"), tmp_path) is None
    assert write_failure(OSError(errno.ENOENT, "x"), tmp_path) is None


def test_store_save_disk_full_keeps_previous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ckpt.CheckpointStore(tmp_path / "run")
    weights = {"w": torch.randn(64, 64)}
    state = {"iteration": 1, "big": torch.randn(256, 256)}
    store.save(1, state, net_g=weights, net_g_ema=weights)
    fail_torch_save_on(monkeypatch, 1)
    with pytest.raises(AutosrRuntimeError) as info:
        store.save(2, {**state, "iteration": 2}, net_g=weights, net_g_ema=weights)
    text = str(info.value)
    assert "state_2.pt: cannot write: no space left on device (ENOSPC)" in text
    assert f"the last complete checkpoint is {store.state_path(1)}" in text and "\n" not in text
    monkeypatch.undo()
    assert ckpt.load_training_state(store.state_path(1))["iteration"] == 1
    assert not temp_files(tmp_path)
    assert store.iterations() == [1]
    # the half save's weights are gone (they only took space); iteration 1's stay
    assert not store.model_path(2).exists() and not store.model_path(2, ema=True).exists()
    assert store.model_path(1).exists() and store.model_path(1, ema=True).exists()


def test_store_first_save_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ckpt.CheckpointStore(tmp_path / "run")
    fail_torch_save_on(monkeypatch, 1)
    with pytest.raises(AutosrRuntimeError, match="no checkpoint of this run is complete yet"):
        store.save(1, {"big": torch.randn(256, 256)}, net_g={"w": torch.zeros(4)})
    assert not temp_files(tmp_path) and store.iterations() == []


def test_mark_best_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ckpt.CheckpointStore(tmp_path / "run")
    store.save(1, {"iteration": 1}, net_g={"w": torch.zeros(4)})

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(ckpt, "save_safetensors", refuse)
    with pytest.raises(AutosrRuntimeError, match=r"net_g_best\.safetensors: cannot write: read-only file system \(EROFS\)"):
        store.mark_best(1, weights={"w": torch.ones(4)})
    monkeypatch.undo()
    assert store.iterations() == [1] and not store.best_model_path.exists()


def fail_os_write_on(monkeypatch: pytest.MonkeyPatch, path: Path, nth: int) -> None:
    """The `nth` os.write to `path` writes half its bytes, then fails with ENOSPC."""
    calls = [0]

    def write(fd: int, data: Any) -> int:
        if path.exists() and os.path.samestat(os.fstat(fd), os.stat(path)):
            calls[0] += 1
            if calls[0] == nth:
                real_os_write(fd, bytes(memoryview(data)[: len(data) // 2]))
                raise _enospc()
        return real_os_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_jsonl_writer_never_leaves_a_cut_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    writer = JsonlWriter(path)
    writer.append({"iter": 0, "key": "a"})
    fail_os_write_on(monkeypatch, path, 1)
    with pytest.raises(AutosrRuntimeError, match=r"events\.jsonl: cannot write: no space left on device \(ENOSPC\)"):
        writer.append({"iter": 1, "key": "b" * 200})
    monkeypatch.undo()
    writer.close()
    assert_jsonl_whole(path)
    read = read_jsonl(path)
    assert [r["key"] for r in read.records] == ["a"] and read.skipped == 0


# ----------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_train_disk_full_at_second_save_then_resume(tmp_path: Path, pair_set: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, pair_set, 20, ["logger.save_checkpoint_freq=5"])
    out = tmp_path / "runs"
    run = out / "t"
    fail_torch_save_on(monkeypatch, 2)  # saves at 5 (ok), 10 (disk full)
    result = runner.invoke(app, ["train", str(config), "--out", str(out)])
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert "state_10.pt: cannot write: no space left on device (ENOSPC)" in line, result.output
    assert "state_5.pt" in line
    assert result.output.count("no space left on device") == 1, result.output  # one message, not a log line too
    monkeypatch.undo()

    assert ckpt.load_training_state(run / "checkpoints" / "state_5.pt")["iteration"] == 5
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["state_5.pt"]
    assert not (run / "models" / "net_g_10.safetensors").exists()
    assert not temp_files(run)
    for name in ("events.jsonl", "metrics.jsonl"):
        assert_jsonl_whole(run / name)

    # the space is back: the next `autosr train` resumes from the last complete checkpoint
    result = runner.invoke(app, ["train", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "resumed from iteration 5" in result.output
    assert ckpt.load_training_state(ckpt.CheckpointStore(run).latest() or run)["iteration"] == 20
    assert not temp_files(run)


@pytest.mark.slow
def test_train_disk_full_at_start_journal(tmp_path: Path, pair_set: tuple[Path, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path, pair_set, 10)
    out = tmp_path / "runs"
    events = out / "t" / "events.jsonl"
    fail_os_write_on(monkeypatch, events, 2)  # the journal's second line, while the plan is copied in
    result = runner.invoke(app, ["train", str(config), "--out", str(out)])
    monkeypatch.undo()
    assert result.exit_code == 1, result.output
    assert "unexpected" not in result.output and "Traceback" not in result.output
    assert "events.jsonl: cannot write: no space left on device (ENOSPC)" in one_line(result.output), result.output
    assert_jsonl_whole(events)
    assert len(read_jsonl(events).records) == 1
    assert not temp_files(out)
    assert not (out / "t" / "checkpoints").exists() or not any((out / "t" / "checkpoints").iterdir())


def test_disk_full_at_start_is_one_line(tmp_path, pair_set, monkeypatch):
    """config.yml / hardware.json are the first files a run writes: a full disk there is one line, exit 1."""
    import autosr.train_cmd as run_module

    config = make_config(tmp_path, pair_set, 4, ["val.val_enabled=false"])

    def full(path, text, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(run_module, "write_text_atomic", full)
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    assert "no space left on device" in result.output and "unexpected" not in result.output
