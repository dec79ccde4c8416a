"""EMA, the safetensors reader/writer, RNG capture and the checkpoint store (atomicity, pruning)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from autosr.errors import AutosrError
from autosr.safetensors_io import load_safetensors, read_safetensors_metadata, save_safetensors
from autosr.train import checkpoint as checkpoint_mod
from autosr.train.checkpoint import (
    CheckpointStore,
    load_training_state,
    rng_state,
    save_training_state,
    set_rng_state,
)
from autosr.train.ema import ModelEMA

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- EMA
def test_ema_decay_follows_the_ema_pytorch_warmup() -> None:
    ema = ModelEMA(nn.Linear(2, 2), decay=0.999, power=0.75)
    assert ema.decay_at(0) == 0.0  # the first update copies
    for t in (1, 2, 10, 100, 1000):
        assert ema.decay_at(t) == pytest.approx(min(0.999, 1 - (1 + t) ** -0.75))
    assert ema.decay_at(1_000_000) == 0.999
    assert ModelEMA(nn.Linear(2, 2), decay=0.999).decay_at(1) == 0.999  # traiNNer's default power 10
    late = ModelEMA(nn.Linear(2, 2), decay=0.99, power=1.0, update_after_step=3)
    assert [late.decay_at(s) for s in range(6)] == pytest.approx([0, 0, 0, 0, 0.5, 1 - 1 / 3])


def test_ema_update_values_and_buffers() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(model, decay=0.9, power=1.0)
    assert not ema.module.training and all(not p.requires_grad for p in ema.module.parameters())
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        d = min(0.9, 1 - (1 + step) ** -1.0) if step else 0.0
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters(), strict=True)]
        assert ema.update(model) == pytest.approx(d)
        for e, got in zip(expected, ema.module.parameters(), strict=True):
            torch.testing.assert_close(got, e)
        torch.testing.assert_close(ema.module[1].running_mean, model[1].running_mean)  # copied
    assert ema.step == 6
    assert ema.module[0].weight.data_ptr() != model[0].weight.data_ptr()


def test_ema_state_round_trip(tmp_path: Path) -> None:
    model = nn.Linear(3, 3)
    ema = ModelEMA(model, decay=0.99, power=0.75)
    for _ in range(4):
        with torch.no_grad():
            model.weight.mul_(1.1)
        ema.update(model)
    save_training_state(tmp_path / "s.pt", {"ema": ema.state_dict()})
    restored = ModelEMA(nn.Linear(3, 3), decay=0.99, power=0.75)
    restored.load_state_dict(load_training_state(tmp_path / "s.pt")["ema"])
    assert restored.step == 4 and restored.decay_at(restored.step) == ema.decay_at(ema.step)
    torch.testing.assert_close(restored.module.weight, ema.module.weight)
    x = torch.randn(2, 3)
    torch.testing.assert_close(restored(x), ema(x))


def test_ema_unwraps_compiled_models_and_checks_decay() -> None:
    model = nn.Linear(2, 2)
    ema = ModelEMA(torch.compile(model), decay=0.9)
    assert type(ema.module) is nn.Linear
    ema.update(torch.compile(model))
    with pytest.raises(AutosrError, match="ema_decay"):
        ModelEMA(model, decay=1.0)


# ----------------------------------------------------------------------------- safetensors
def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=g)
    out = {
        "f64": base.double(), "f32": base, "f16": base.half(), "bf16": base.bfloat16(),
        "i64": torch.randint(-(2**40), 2**40, (7,), generator=g), "i32": torch.randint(-9, 9, (2, 3), generator=g,
                                                                                     dtype=torch.int32),
        "i16": torch.arange(-3, 3, dtype=torch.int16), "i8": torch.arange(-4, 4, dtype=torch.int8),
        "u8": torch.arange(250, 256, dtype=torch.uint8), "bool": base > 0,
        "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4), "transposed": base.t(), "slice": base[1:4, ::2],
        "deep.name/with:chars": torch.ones(1, 1, 1, 2),
    }
    if hasattr(torch, "float8_e4m3fn"):
        out["f8"] = base.to(torch.float8_e4m3fn)
    return out


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Same names, dtypes, shapes and bytes (bytes also work for float8, where == does not)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        as_bytes = [t.contiguous().reshape(-1).view(torch.uint8) for t in (a[k], b[k])]
        assert torch.equal(*as_bytes), k


def test_safetensors_round_trip_all_dtypes(tmp_path: Path) -> None:
    tensors = sample_tensors()
    path = save_safetensors(tensors, tmp_path / "m.safetensors", {"iter": "100", "note": "héllo"})
    loaded = load_safetensors(path)
    assert_same(tensors, loaded)
    assert read_safetensors_metadata(path) == {"iter": "100", "note": "héllo"}
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and raw[8 + n - 1:8 + n] in (b"}", b" ")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left


def test_safetensors_saves_shared_and_strided_tensors(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied weights: one storage under two names
    base = torch.arange(24.0).reshape(4, 6)
    tensors = {**model.state_dict(), "base": base, "row": base[2], "cols": base[:, 1::2], "t": base.t()}
    loaded = load_safetensors(save_safetensors(tensors, tmp_path / "m.safetensors"))
    assert_same(tensors, loaded)
    loaded["0.weight"].add_(1)  # independent tensors, writable
    assert not torch.equal(loaded["0.weight"], loaded["1.weight"])


def test_safetensors_files_open_with_the_reference_reader(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    ours = save_safetensors(sample_tensors(), tmp_path / "ours.safetensors", {"k": "v"})
    with safe_open(ours, framework="pt") as f:
        assert f.metadata() == {"k": "v"} and set(f.keys()) == set(sample_tensors())
    theirs = tmp_path / "theirs.safetensors"
    save_file({"w": torch.ones(3)}, theirs)  # no metadata at all
    assert read_safetensors_metadata(theirs) == {}
    assert_same(load_safetensors(theirs), {"w": torch.ones(3)})


def header_only(header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return len(raw).to_bytes(8, "little") + raw


@pytest.mark.parametrize("damage", ["truncated", "extra bytes", "not json", "huge header length", "empty",
                                    "text file", "metadata not str", "overlapping offsets"])
def test_safetensors_rejects_damaged_files_with_one_clear_error(tmp_path: Path, damage: str) -> None:
    path = save_safetensors({"w": torch.randn(64), "b": torch.randn(2)}, tmp_path / "m.safetensors", {"iter": "1"})
    raw = path.read_bytes()
    path.write_bytes({
        "truncated": raw[:-10],
        "extra bytes": raw + b"\0" * 8,
        "not json": b"\x05\x00\x00\x00\x00\x00\x00\x00{oops",
        "huge header length": b"\xff" * 16,
        "empty": b"",
        "text file": b"iteration,psnr\n100,31.5\n",
        "metadata not str": header_only({"__metadata__": {"iter": 1}}),
        "overlapping offsets": header_only({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                            "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + b"\0" * 4,
    }[damage])
    for read in (load_safetensors, read_safetensors_metadata):
        with pytest.raises(AutosrError, match="not a valid safetensors file") as err:
            read(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_safetensors_unreadable_paths_are_clear_errors(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.safetensors", tmp_path):
        for read in (load_safetensors, read_safetensors_metadata):
            with pytest.raises(AutosrError, match="cannot read the file") as err:
                read(path)
            assert str(path) in str(err.value)


def test_safetensors_rejects_what_it_cannot_write(tmp_path: Path) -> None:
    with pytest.raises(AutosrError, match="metadata must map str to str"):
        save_safetensors({"w": torch.ones(1)}, tmp_path / "m.safetensors", {"iter": 1})  # type: ignore[dict-item]
    with pytest.raises(AutosrError, match="not a dense tensor"):
        save_safetensors({"w": torch.ones(2).to_sparse()}, tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_safetensors_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = save_safetensors({"w": torch.zeros(4)}, tmp_path / "m.safetensors")

    def disk_full(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)  # atomic_write fsyncs the bytes before the rename
    with pytest.raises(OSError, match="disk full"):
        save_safetensors({"a": torch.ones(4), "b": torch.ones(4)}, path)
    monkeypatch.undo()
    assert_same(load_safetensors(path), {"w": torch.zeros(4)})
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


# ----------------------------------------------------------------------------- RNG
def draws() -> tuple:
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn()


def test_rng_state_restores_the_same_draws(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    saved = rng_state()
    first = draws()
    save_training_state(tmp_path / "rng.pt", {"rng": saved})
    draws()  # move every generator on
    set_rng_state(load_training_state(tmp_path / "rng.pt")["rng"])  # weights_only=True load
    assert draws() == first


# ----------------------------------------------------------------------------- checkpoint store
def weights(value: float) -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.full((2, 3), value), "conv.bias": torch.full((2,), value)}


def save_iter(store: CheckpointStore, it: int) -> Path:
    return store.save(it, {"iter": it, "rng": rng_state(), "opt": {"lr": 1e-3}}, weights(it), weights(it + 0.5))


def test_state_files_load_with_weights_only(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    path = save_iter(store, 100)
    state = load_training_state(path)
    assert state["iter"] == 100 and state["opt"] == {"lr": 1e-3}
    assert_same(load_safetensors(store.model_path(100, ema=True)), weights(100.5))
    assert read_safetensors_metadata(store.model_path(100)) == {"iter": "100"}


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    store = CheckpointStore(tmp_path)
    save_iter(store, 100)

    def dies_half_way(obj: object, f) -> None:
        f.write(b"PK\x03\x04" + b"\0" * 1000)  # the start of an archive, then the process "dies"
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(checkpoint_mod.torch, "save", dies_half_way)
    with pytest.raises(RuntimeError, match="killed"):
        save_iter(store, 200)
    monkeypatch.undo()
    assert not store.state_path(200).exists()
    assert store.latest() == store.state_path(100)
    assert load_training_state(store.latest())["iter"] == 100
    assert not [p for p in store.checkpoints_dir.iterdir() if p.name.endswith(".tmp")]


def test_sigkill_during_saves_never_leaves_a_broken_latest(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from autosr.train.checkpoint import CheckpointStore
        store = CheckpointStore(sys.argv[1], keep_last=2)
        big = torch.zeros(8_000_000)
        for it in range(1, 10_000):
            big.fill_(it)
            store.save(it, {{"iter": it, "big": big}}, {{"w": big}})
            print(it, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if int(line) >= 2:
                break
        time.sleep(random.Random(0).uniform(0.0, 0.15))  # somewhere inside a later save
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = CheckpointStore(tmp_path, keep_last=2)  # also clears the killed writer's temp files
    latest = store.latest()
    assert latest is not None and store.skipped == []
    state = load_training_state(latest)
    it = state["iter"]
    assert latest == store.state_path(it) and it >= 2
    assert bool((state["big"] == it).all())
    assert bool((load_safetensors(store.model_path(it))["w"] == it).all())
    leftovers = [p for d in (store.checkpoints_dir, store.models_dir) for p in d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_latest_skips_unreadable_and_ignores_temp_files(tmp_path: Path, caplog) -> None:
    store = CheckpointStore(tmp_path)
    save_iter(store, 100)
    good = save_iter(store, 200)
    (store.checkpoints_dir / ".state_400.pt.abcd1234.tmp").write_bytes(good.read_bytes()[:100])
    store.state_path(300).write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated archive
    with caplog.at_level("WARNING", logger="autosr.checkpoint"):
        assert store.latest() == good
    assert [p.name for p, _ in store.skipped] == ["state_300.pt"]
    assert "state_300.pt" in caplog.text and "falling back" in caplog.text
    store.state_path(300).write_bytes(b"garbage")
    assert store.latest() == good
    CheckpointStore(tmp_path)  # a new store (resume) removes the temp file
    assert not (store.checkpoints_dir / ".state_400.pt.abcd1234.tmp").exists()
    for p in store.checkpoints_dir.iterdir():
        p.unlink()
    assert store.latest() is None


def test_pruning_keeps_last_n_and_the_best(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2)
    save_iter(store, 100)
    save_iter(store, 200)
    best = store.mark_best(200, {"psnr": 31.5})
    for it in (300, 400, 500):
        save_iter(store, it)
    assert store.iterations() == [200, 400, 500]
    models = sorted(p.name for p in store.models_dir.glob("net_g_*_*.safetensors"))
    assert models == [f"net_g_ema_{i}.safetensors" for i in (200, 400, 500)]
    assert sorted(p.name for p in store.models_dir.glob("net_g_[0-9]*.safetensors")) == [
        f"net_g_{i}.safetensors" for i in (200, 400, 500)]
    assert_same(load_safetensors(best), weights(200.5))  # the EMA weights
    record = json.loads(store.best_json_path.read_text())
    assert record == {"iter": 200, "metrics": {"psnr": 31.5}, "source": "net_g_ema_200.safetensors"}

    resumed = CheckpointStore(tmp_path, keep_last=2)  # best.json is read back on resume
    assert resumed.best_iter == 200
    save_iter(resumed, 600)
    assert resumed.iterations() == [200, 500, 600]

    resumed.mark_best(650, {"psnr": 32.0}, weights=weights(7.0))  # between checkpoints
    assert resumed.iterations() == [500, 600]  # the old best is no longer protected
    assert_same(load_safetensors(resumed.best_model_path), weights(7.0))
    assert json.loads(resumed.best_json_path.read_text())["iter"] == 650


def test_mark_best_without_weights_needs_saved_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(AutosrError, match="no saved weights for iteration 100"):
        store.mark_best(100)
    store.save(100, {"iter": 100}, weights(1.0))  # no EMA: the plain weights become best
    store.mark_best(100)
    assert_same(load_safetensors(store.best_model_path), weights(1.0))
