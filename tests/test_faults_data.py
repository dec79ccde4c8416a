"""Faults in the training data (issue 11): images that become unreadable while the loader trains, and
dataset folders the user did not make (symlink loops, unreadable files and folders, zero-byte files, huge
images, EXIF-rotated JPEGs) at `autosr init`."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_faults_input import IS_ROOT, one_line, squeezed  # the same checks of one-line errors
from typer.testing import CliRunner

from autosr.cli import app
from autosr.images import collect_pairs, load_rgb_uint8
from autosr.journal import read_journal
from autosr.synthetic import write_pairs
from autosr.train import checkpoint as ckpt
from autosr.train import data as data_module
from autosr.train import inputs as inputs_module
from autosr.train.data import build_crop_source
from autosr.train.loop import Trainer
from autosr.train_cmd import train_from_file

runner = CliRunner()


# ---- 1. a training image lost mid-run (the loader path) ------------------------------------------


def _loader(pairs: Any, **kw: Any) -> Any:
    args: dict[str, Any] = dict(scale=2, lq_size=16, batch_size=8, use_hflip=True, use_rot=True, seed=3, device="cpu",
                                channels_last=False, cache_budget_bytes=0, num_workers=0)
    source = build_crop_source(pairs, **{**args, **kw})
    assert source.kind == "loader"
    return source


def test_cache_path_reads_nothing_after_start(tmp_path):
    """The cache decodes every image when it is built: deleting the files afterwards changes nothing."""
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 48), seed=2)
    cache = build_crop_source(collect_pairs(str(hr), str(lr)), scale=2, lq_size=16, batch_size=8, use_hflip=True,
                              use_rot=True, seed=3, device="cpu", channels_last=False, cache_budget_bytes=1 << 30, num_workers=0)
    assert cache.kind == "cache"
    for path in [*hr.iterdir(), *lr.iterdir()]:
        path.unlink()
    for _ in range(4):
        cache.next_batch()
    assert cache.take_skips() == []


def test_loader_draws_around_a_lost_pair_in_spawned_workers(tmp_path, monkeypatch):
    """A deleted file is skipped (reported once), its crops come from another pair; the stream stays a function
    of (seed, crop counter): spawned workers and the main process give the same batches."""
    monkeypatch.setattr(data_module, "UNREADABLE_LIMIT", 0.5)
    hr, lr = write_pairs(tmp_path / "d", 4, scale=2, size=(64, 48), seed=2)
    pairs = collect_pairs(str(hr), str(lr))
    inline, spawned = _loader(pairs), _loader(pairs, num_workers=2, mp_context="spawn")
    lost = Path(pairs[1].lq)
    lost.unlink()
    try:
        for _ in range(12):  # 12 units of 4 pairs: the lost one comes up (checked below)
            a, b = inline.next_batch(), spawned.next_batch()
            assert a.lq.shape == (8, 3, 16, 16) and a.gt.shape == (8, 3, 32, 32)
            assert np.array_equal(a.lq.numpy(), b.lq.numpy()) and np.array_equal(a.gt.numpy(), b.gt.numpy())
        for source in (inline, spawned):
            skips = source.take_skips()
            assert [(s.image, s.skipped, s.total) for s in skips] == [(1, 1, 4)]  # once, however often it came up
            assert str(lost) in skips[0].reason and skips[0].reason.endswith("no such file or directory")
            assert source.take_skips() == []
    finally:
        spawned.close()


def test_a_worker_aborting_on_its_way_out_does_not_fail_close(tmp_path):
    """torch reports a worker that aborts while it is being stopped (seen on a loaded CI box) as an error of
    the shutdown itself; close() has nothing left to lose and finishes, while any other error still comes out."""
    hr, lr = write_pairs(tmp_path / "d", 2, scale=2, size=(64, 48), seed=2)
    source = _loader(collect_pairs(str(hr), str(lr)))

    class DyingWorkers:
        def __init__(self, message: str) -> None:
            self.message = message

        def _shutdown_workers(self) -> None:
            raise RuntimeError(self.message)

    source._iter = DyingWorkers("DataLoader worker (pid 26791) is killed by signal: Aborted. ")
    source.close()
    assert source._iter is None
    source._iter = DyingWorkers("something else broke")
    with pytest.raises(RuntimeError, match="something else"):
        source.close()


def test_loader_stops_when_more_than_the_limit_is_lost(tmp_path):
    hr, lr = write_pairs(tmp_path / "d", 4, scale=2, size=(64, 48), seed=2)
    pairs = collect_pairs(str(hr), str(lr))
    source = _loader(pairs)
    Path(pairs[2].gt).write_bytes(b"")  # emptied (a failed copy, a sync tool)
    with pytest.raises(data_module.UnreadableSet) as info:
        for _ in range(40):
            source.next_batch()
    assert info.value.exit_code == 1
    text = str(info.value)
    assert f"1 of 4 training pairs became unreadable while training (the limit is 1%); first: cannot read image {pairs[2].gt}" in text


def _force_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """No cache budget: the trainer takes the loader path, as it does for a set larger than memory."""
    monkeypatch.setattr(inputs_module, "cache_budget_bytes", lambda device: (0, None, "test: no cache"))


def _delete_at(monkeypatch: pytest.MonkeyPatch, iteration: int, count: int, lost: list[Path]) -> None:
    """After step `iteration`, delete the LR files of the first `count` pairs the stream draws 8+ batches later
    (beyond what the worker has prefetched, so that training meets the loss)."""
    original = Trainer.train_step

    def train_step(self: Trainer) -> Any:
        result = original(self)
        if self.iteration == iteration:
            source = self.source
            stream, size = source._dataset.stream, source.batch_size
            images: list[int] = []
            for b in range(self.iteration + 8, self.total_iter):
                images += [i for i, _ in stream.batch(b * size, size)[0] if i not in images]
            for i in images[:count]:
                path = Path(source.table.pairs[i].lq)
                path.unlink()
                lost.append(path)
        return result

    monkeypatch.setattr(Trainer, "train_step", train_step)


def _config(tmp_path: Path, pairs: int, iters: int) -> Path:
    from test_train import make_config

    data = write_pairs(tmp_path / "data", pairs, scale=2, size=(64, 48), seed=4)
    return make_config(tmp_path, data, iters, ["val.val_enabled=false", "datasets.train.lq_size=16",
                                               "datasets.train.num_worker_per_gpu=1", "logger.print_freq=4"])


def _assert_jsonl_whole(path: Path) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    for line in data.splitlines():
        json.loads(line)


@pytest.mark.slow
def test_a_pair_lost_mid_run_is_skipped_warned_and_journaled(tmp_path, monkeypatch, capsys):
    config = _config(tmp_path, 110, 24)  # one pair of 109 (one is held out) is under 1%: the run goes on
    _force_loader(monkeypatch)
    lost: list[Path] = []
    _delete_at(monkeypatch, 2, 1, lost)
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    run = tmp_path / "runs" / "t"
    events = read_journal(run / "events.jsonl")
    assert any(e["key"] == "data" and e["new"] == "loader" for e in events)
    assert len(lost) == 1
    err = squeezed(capsys.readouterr().err)
    assert err.count(squeezed(f"warning: skipped a training pair: cannot read image {lost[0]}")) == 1
    assert "1of109pairssofar" in err  # init held one pair out for validation
    skips = [e for e in events if e["key"] == "data.unreadable"]
    assert [(e["old"], e["new"]) for e in skips] == [(0, 1)] and str(lost[0]) in skips[0]["reason"]
    assert 10 <= skips[0]["iter"] < 24
    assert (run / "models" / "net_g_24.safetensors").exists()


def test_too_many_pairs_lost_saves_and_stops_with_one_line(tmp_path, monkeypatch):
    config = _config(tmp_path, 12, 40)  # one pair of 12 is over 1%
    _force_loader(monkeypatch)
    lost: list[Path] = []
    _delete_at(monkeypatch, 3, 1, lost)
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 1, result.output
    line = one_line(result.output.split("warning: skipped")[-1].split(")", 1)[1])  # what follows the warning
    assert "1 of 11 training pairs became unreadable while training (the limit is 1%)" in line
    assert squeezed(str(lost[0])) in squeezed(line) and "restore the files" in line
    run = tmp_path / "runs" / "t"
    saved = ckpt.CheckpointStore(run).iterations()
    assert saved and squeezed(str(ckpt.CheckpointStore(run).state_path(saved[-1]))) in squeezed(line)
    state = ckpt.load_training_state(ckpt.CheckpointStore(run).state_path(saved[-1]))
    assert 3 < state["iteration"] < 40 and f"iteration {state['iteration']}:" in line
    events = read_journal(run / "events.jsonl")
    assert [e["new"] for e in events if e["key"] == "data.unreadable"] == [1]
    failed = [e for e in events if e["key"] == "failed"]  # the journal says how the run ended; the report reads it
    assert len(failed) == 1 and "became unreadable while training" in failed[0]["reason"]
    from autosr.report.summary import load_run, summarize

    assert summarize(load_run(run))["state"]["code"] == "crashed"
    for name in ("events.jsonl", "metrics.jsonl"):
        _assert_jsonl_whole(run / name)


# ---- 2. dataset folders the user did not make, at `autosr init` ----------------------------------


def init(hr: Path, lr: Path, out: Path) -> Any:
    return runner.invoke(app, ["init", "--no-calibrate", "--arch", "paragonsr2_nano", "--gt", str(hr), "--lq", str(lr), "-o", str(out)])


def refused(result: Any, *words: str) -> str:
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    for word in words:
        assert squeezed(word) in squeezed(line), (word, line)
    return line


def test_folder_symlink_loops_are_followed_once(tmp_path):
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    (hr / "loop").symlink_to(hr, target_is_directory=True)  # a link to the folder itself
    (lr / "sub").mkdir()
    (lr / "sub" / "up").symlink_to("..", target_is_directory=True)  # a link to its parent
    result = init(hr, lr, tmp_path / "a.yml")
    assert result.exit_code == 0, result.output
    assert "3 pairs" in result.output and "without" not in result.output  # no pair twice, none unpaired


def test_file_symlink_loop_is_named(tmp_path):
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    os.symlink("b.png", hr / "a.png")
    os.symlink("a.png", hr / "b.png")
    refused(init(hr, lr, tmp_path / "a.yml"), f"{hr / 'a.png'}", "symbolic link that points back to itself")
    assert not (tmp_path / "a.yml").exists()


def _deny(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """Permission denied on one path, as for a non-root user (root reads through chmod 000)."""
    import PIL.Image

    real_open, real_scandir = PIL.Image.open, os.scandir

    def image_open(fp: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(fp) == denied:
            raise PermissionError(13, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    def scandir(path: Any = ".") -> Any:
        if Path(path) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(PIL.Image, "open", image_open)
    monkeypatch.setattr(os, "scandir", scandir)


def test_permission_denied_on_a_file_is_named(tmp_path, monkeypatch):
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    _deny(monkeypatch, lr / "img_0002.png")
    refused(init(hr, lr, tmp_path / "a.yml"), f"cannot read image {lr / 'img_0002.png'}: permission denied", "check its permissions")


def test_permission_denied_on_a_sub_folder_is_named(tmp_path, monkeypatch):
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    (hr / "more").mkdir()
    _deny(monkeypatch, hr / "more")
    refused(init(hr, lr, tmp_path / "a.yml"), f"cannot read folder {hr / 'more'}: Permission denied", "check its permissions")


@pytest.mark.skipif(IS_ROOT or not hasattr(os, "geteuid"), reason="root reads files whatever their mode")
def test_permission_denied_for_real(tmp_path):
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    (lr / "img_0002.png").chmod(0)
    try:
        refused(init(hr, lr, tmp_path / "a.yml"), f"{lr / 'img_0002.png'}", "check its permissions")
    finally:
        (lr / "img_0002.png").chmod(0o644)


def test_zero_byte_image_is_named(tmp_path):
    # (a non-image with an image extension: tests/test_dataset.py::test_unreadable_header_names_the_file)
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    (lr / "img_0002.png").write_bytes(b"")
    refused(init(hr, lr, tmp_path / "a.yml"), f"cannot read image {lr / 'img_0002.png'}", "corrupt or not an image")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A 100-byte PNG whose header declares width×height (its pixel data is a few bytes)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_huge_image_is_one_line_not_a_memory_error(tmp_path):
    hr, lr = write_pairs(tmp_path / "d", 3, scale=2, size=(64, 64), seed=1)
    _png_header_only(hr / "img_0001.png", 20000, 20000)  # 400 Mpx: past Pillow's decompression-bomb limit
    refused(init(hr, lr, tmp_path / "a.yml"), f"image {hr / 'img_0001.png'} is too large to read safely", "cut it into tiles")
    # the same file found by train's header scan (it was replaced after init)
    hr2, lr2 = write_pairs(tmp_path / "e", 3, scale=2, size=(64, 64), seed=1)
    assert init(hr2, lr2, tmp_path / "b.yml").exit_code == 0
    _png_header_only(hr2 / "img_0000.png", 20000, 20000)
    result = runner.invoke(app, ["train", str(tmp_path / "b.yml"), "--out", str(tmp_path / "runs")])
    refused(result, f"image {hr2 / 'img_0000.png'} is too large to read safely")
    assert not (tmp_path / "runs").exists()


def _jpeg(path: Path, pixels: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95, exif=exif)


def _rotated_set(root: Path, hr_tag: int, lr_tag: int) -> tuple[Path, Path]:
    """Pairs stored landscape (HR 96×64, LR 48×32); one of them, 'turned', has EXIF tags on each side."""
    rng = np.random.default_rng(0)
    for i in range(3):
        stored = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        hr_tag_i, lr_tag_i = (hr_tag, lr_tag) if i == 0 else (1, 1)
        name = "turned" if i == 0 else f"plain{i}"
        _jpeg(root / "hr" / f"{name}.jpg", stored, hr_tag_i)
        _jpeg(root / "lr" / f"{name}.jpg", np.asarray(Image.fromarray(stored).resize((48, 32))), lr_tag_i)
    return root / "hr", root / "lr"


def test_exif_rotated_pair_is_read_upright_on_both_sides(tmp_path):
    hr, lr = _rotated_set(tmp_path / "d", 6, 6)
    result = init(hr, lr, tmp_path / "a.yml")
    assert result.exit_code == 0, result.output
    assert "EXIF rotation" in result.output and "different EXIF orientations" not in result.output
    # init and train decode both sides with the tag applied: 64×96 and 32×48, aligned
    assert load_rgb_uint8(hr / "turned.jpg").shape == (96, 64, 3) and load_rgb_uint8(lr / "turned.jpg").shape == (48, 32, 3)
    source = build_crop_source(collect_pairs(str(hr), str(lr)), scale=2, lq_size=16, batch_size=8, use_hflip=False,
                               use_rot=False, seed=1, device="cpu", channels_last=False, cache_budget_bytes=0, num_workers=0)
    source.next_batch()  # header sizes equal decoded sizes: no "decoded to …, header said …"


def test_exif_rotation_on_one_side_only_is_refused_by_name(tmp_path):
    hr, lr = _rotated_set(tmp_path / "d", 6, 1)  # as stored ×2, as shown HR 64×96 against LR 48×32
    refused(init(hr, lr, tmp_path / "a.yml"), f"{hr / 'turned.jpg'} carries EXIF orientation 6", f"but {lr / 'turned.jpg'} does not",
            "save both upright")
    assert not (tmp_path / "a.yml").exists()
