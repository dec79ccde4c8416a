"""init → train: the pairs `autosr init` lists are the pairs `autosr train` reads, whatever the names.

Both sides pair through autosr.images; these tests hold them to one rule (exact names, letter
case included) and one pair-list format that round-trips any name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from autosr.errors import AutosrError
from autosr.images import (
    Pair,
    collect_pairs,
    image_size,
    load_rgb_uint8,
    load_val_pairs,
    pair_folders,
    read_header,
    read_meta_info,
    write_meta_info,
)
from autosr.init_cmd import run_init
from autosr.plan.dataset import analyse, hold_out

GT_SIZE, LQ_SIZE = 40, 20  # ×2

# Keys (relative path without extension) that must survive init → pair list → train.
AWKWARD = [
    "my photo",  # a space: traiNNer-redux's reader would stop at it
    "café ü",  # unicode
    "sub/deep/x 1",  # sub-folders
    "sub dir/in space",  # a space in the folder name
    " lead",  # a leading space
    "trail ",  # a space before the extension
    "#hash",  # a '#' where comments start
    "Mixed",  # GT "Mixed.PNG", LQ "Mixed.png": extensions match in any case
    "plain",
]
if sys.platform != "win32":  # legal on Linux and macOS only
    AWKWARD += ["tab\there", "line\u2028sep", "nel\x85name"]


def _images(seed: int) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, GT_SIZE, dtype=np.float32)
    gt = np.clip(ramp[None, :, None] * 0.5 + rng.integers(0, 128, (GT_SIZE, GT_SIZE, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(gt)
    return image, image.resize((LQ_SIZE, LQ_SIZE), Image.Resampling.BICUBIC)


def _write(root: Path, gt_names: list[str], lq_names: list[str]) -> tuple[Path, Path]:
    """root/hr and root/lr holding small real images under the given relative file names."""
    for i, (gt_name, lq_name) in enumerate(zip(gt_names, lq_names, strict=True)):
        gt, lq = _images(i)
        for folder, name, image in (("hr", gt_name, gt), ("lr", lq_name, lq)):
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, format="PNG")
    return root / "hr", root / "lr"


def _init(gt: Path, lq: Path, out: Path, **kw: object) -> dict:
    options: dict = dict(
        gt=gt, lq=lq, arch="paragonsr2_nano", val_gt=None, val_lq=None, output=out, name=None, scale=None,
        overrides=["datasets.train.lq_size=16"], flavor="fork", force=False, print_only=False, explain=False,
        sample=256,
    )
    options.update(kw)
    run_init(**options)  # type: ignore[arg-type]
    return yaml.safe_load(out.read_text(encoding="utf-8"))


def _train_pairs(cfg: dict, which: str) -> list[Pair]:
    """The pairs train reads for one dataset of the YAML, through the trainer's own function."""
    ds = cfg["datasets"][which]
    return collect_pairs(ds["dataroot_gt"], ds["dataroot_lq"], ds.get("meta_info"))


def _case_sensitive(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / "CaseProbe"
    probe.write_text("x")
    try:
        return not (folder / "caseprobe").exists()
    finally:
        probe.unlink()


def test_init_lists_exactly_the_pairs_train_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    gt_names = [("Mixed.PNG" if k == "Mixed" else f"{k}.png") for k in AWKWARD]
    lq_names = [f"{k}.png" for k in AWKWARD]
    hr, lr = _write(tmp_path / "data", gt_names + ["Dd.png"], lq_names + ["dd.png"])
    cfg = _init(hr, lr, tmp_path / "auto.yml")

    # What init decided: every awkward key paired, Dd/dd not (letter case differs), one held out.
    profile = analyse(hr.resolve(), lr.resolve())
    split = hold_out(profile.pairs)
    assert sorted(p.key for p in profile.pairs) == sorted(AWKWARD)
    assert (profile.unpaired_gt_names, profile.unpaired_lq_names) == (("Dd",), ("dd",))
    assert any("letter case" in note for note in profile.notes)
    assert any("spaces" in note and "traiNNer" in note for note in profile.notes)

    # What train reads back from the written lists: the same pairs, path for path.
    train, val = _train_pairs(cfg, "train"), _train_pairs(cfg, "val")
    assert train == split.train and val == split.val
    assert not {p.key for p in train} & {p.key for p in val}
    assert {p.key for p in train} | {p.key for p in val} == set(AWKWARD)
    for pair in train + val:
        assert pair.gt.is_file() and pair.lq.is_file() and pair.gt.stem == pair.lq.stem


def test_pair_list_round_trips_any_name(tmp_path: Path) -> None:
    names = [f"{k}.png" for k in AWKWARD] + ["0001.JPEG", "x.png (1).png", "a.png b.png"]
    pairs = [Pair(n.rpartition(".")[0], tmp_path / "hr" / n, tmp_path / "lr" / n) for n in names]
    listed = write_meta_info(pairs, tmp_path / "list.txt")
    assert read_meta_info(listed) == names
    # traiNNer-redux reads the text before the first space: plain names are plain lines.
    assert listed.read_bytes().startswith(b"my photo.png\ncaf\xc3\xa9 \xc3\xbc.png\n")
    # BasicSR's shape field, extra tokens, CRLF line ends, a BOM and comments are read too.
    other = tmp_path / "other.txt"
    other.write_bytes("\ufeff0001.png (480,480,3)\r\n# a comment\r\nmy photo.png 7\r\n\r\n#2.png\r\n".encode())
    assert read_meta_info(other) == ["0001.png", "my photo.png", "#2.png"]
    other.write_text("readme\n")
    with pytest.raises(AutosrError, match="does not name an image"):
        read_meta_info(other)


def test_a_name_with_a_line_break_is_refused_when_listed(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("Windows file names cannot hold a line break")
    hr, lr = _write(tmp_path, ["a.png", "b\nc.png"], ["a.png", "b\nc.png"])
    with pytest.raises(AutosrError, match="line break"):
        pair_folders(hr, lr)


def test_letter_case_is_one_rule_for_init_and_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hr, lr = _write(tmp_path / "data", ["a.png", "b.png", "Dd.png"], ["a.png", "b.png", "dd.png"])
    # init: Dd and dd are unpaired, and the note says why.
    profile = analyse(hr, lr)
    assert [p.key for p in profile.pairs] == ["a", "b"]
    assert any("letter case" in note and "Dd" in note for note in profile.notes)
    # train on the whole folders: the same two files have no partner, with the same reason.
    with pytest.raises(AutosrError, match="Dd") as err:
        collect_pairs(hr, lr)
    assert "letter case" in err.value.hint
    # train on init's lists: exactly init's pairs (two pairs: one trains, one validates).
    cfg = _init(hr, lr, tmp_path / "auto.yml")
    assert sorted(p.key for p in _train_pairs(cfg, "train") + _train_pairs(cfg, "val")) == ["a", "b"]


def test_names_that_differ_only_in_case_in_one_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _case_sensitive(tmp_path / "probe"):
        pytest.skip("this file system cannot hold Dd.png and dd.png side by side")
    monkeypatch.chdir(tmp_path)
    names = ["Dd.png", "dd.png", "e.png"]
    hr, lr = _write(tmp_path / "data", names, names)
    profile = analyse(hr, lr)
    # Each pairs with its exact namesake, in code-point order; init warns about Windows/macOS.
    assert [(p.key, p.gt.name, p.lq.name) for p in profile.pairs] == [
        ("Dd", "Dd.png", "Dd.png"), ("dd", "dd.png", "dd.png"), ("e", "e.png", "e.png"),
    ]
    assert any("Windows and macOS" in note and "Dd" in note for note in profile.notes)
    assert collect_pairs(hr, lr) == profile.pairs  # train's folder mode: the same pairs
    cfg = _init(hr, lr, tmp_path / "auto.yml")
    assert sorted(_train_pairs(cfg, "train") + _train_pairs(cfg, "val"), key=lambda p: p.key) == profile.pairs
    # Validation images name output folders: unique even on a case-insensitive file system.
    names_out = [name for name, _, _ in load_val_pairs(profile.pairs[:2], scale=2)]
    assert names_out == ["Dd", "dd_2"]


def test_validation_folders_must_pair_completely_at_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hr, lr = _write(tmp_path / "data", ["a.png", "b.png"], ["a.png", "b.png"])
    vhr, vlr = _write(tmp_path / "val", ["v.png", "W.png"], ["v.png", "w.png"])
    with pytest.raises(AutosrError, match="W") as err:  # train would refuse these folders: so does init
        _init(hr, lr, tmp_path / "auto.yml", val_gt=vhr, val_lq=vlr)
    assert "letter case" in err.value.hint and not (tmp_path / "auto.yml").exists()


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "WEBP", "PNG"])
def test_header_size_is_the_decoded_size_under_exif_rotation(tmp_path: Path, fmt: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation  # 6: "rotate 90° clockwise to view"
        path = tmp_path / f"o{orientation}.{fmt.lower()}"
        Image.fromarray(pixels).save(path, format=fmt, exif=exif)
        header, decoded = read_header(path), load_rgb_uint8(path)
        assert header.size == image_size(path) == (decoded.shape[1], decoded.shape[0]), (fmt, orientation)
        assert header.orientation == orientation and header.rotated == (orientation != 1)
        upright = fmt != "PNG" and orientation >= 5  # PNG's tag is noted, not applied
        assert header.size == ((20, 40) if upright else (40, 20))
    if fmt == "JPEG":
        Image.fromarray(pixels).save(tmp_path / "q.jpg", quality=90)
        assert read_header(tmp_path / "q.jpg").jpeg_quality == 90


def test_unreadable_files_raise_one_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    for read in (read_header, load_rgb_uint8):
        with pytest.raises(AutosrError, match="cannot read image") as err:
            read(bad)
        assert str(bad) in err.value.message and "corrupt" in err.value.hint


def test_init_then_a_real_training_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autosr.train_cmd import train_from_file

    monkeypatch.chdir(tmp_path)
    keys = ["my photo", "café ü", "sub/x 1", " lead", "#hash"]
    hr, lr = _write(tmp_path / "data", [f"{k}.png" for k in keys], [f"{k}.png" for k in keys])
    out = tmp_path / "auto.yml"
    _init(hr, lr, out)
    overrides = [
        "train.total_iter=2", "datasets.train.lq_size=8", "datasets.train.batch_size_per_gpu=2",
        "datasets.train.accum_iter=1", "datasets.train.num_worker_per_gpu=0", "use_compile=false",
    ]
    assert train_from_file(out, out_dir=tmp_path / "runs", resume=None, overrides=overrides, dry_run=True) == 0
