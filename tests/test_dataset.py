"""Dataset analysis: pairing, scale, bad input, odd modes, complexity, degradation, hold-out."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autosr import images
from autosr.errors import AutosrError
from autosr.images import Pair, list_images, pair_folders, read_meta_info, write_meta_info
from autosr.plan.dataset import analyse, check_patch, hold_out, image_complexity
from autosr.synthetic import paint, write_pairs


def _save(path: Path, image: Image.Image, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def _pair(root: Path, key: str, hr_size: tuple[int, int], lr_size: tuple[int, int], seed: int = 0) -> None:
    hr = Image.fromarray(paint(*hr_size, seed=seed))
    _save(root / "hr" / f"{key}.png", hr)
    _save(root / "lr" / f"{key}.png", hr.resize(lr_size, Image.Resampling.BICUBIC))


def _png16_rgb(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG, which Pillow cannot write itself."""
    h, w, _ = rgb.shape
    rows = b"".join(b"\0" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def x2(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_pairs(tmp_path_factory.mktemp("x2"), 6, scale=2, size=(192, 160))


# ─── listing and pairing ──────────────────────────────────────────────────────────────────────


def test_list_images_recursive_case_insensitive_skips_non_images(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 8))
    _save(tmp_path / "A.PNG", img)
    _save(tmp_path / "b.JpEg", img, format="JPEG")
    _save(tmp_path / "sub" / "deep" / "c.webp", img)
    _save(tmp_path / "d.TIFF", img)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._A.png").write_bytes(b"macOS resource fork")
    found = list_images(tmp_path)
    assert sorted(found) == ["A", "b", "d", "sub/deep/c"]
    assert found["sub/deep/c"] == tmp_path / "sub" / "deep" / "c.webp"


def test_duplicate_stem_names_both_files(tmp_path: Path) -> None:
    _save(tmp_path / "x.png", Image.new("RGB", (8, 8)))
    _save(tmp_path / "x.jpg", Image.new("RGB", (8, 8)))
    with pytest.raises(AutosrError, match=r"x\.png") as err:
        list_images(tmp_path)
    assert "x.jpg" in str(err.value) and str(tmp_path) in str(err.value)


def test_pairing_by_stem_across_extensions_and_folders(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 8))
    for key in ("a", "sub/b", "only_hr1", "only_hr2"):
        _save(tmp_path / "hr" / f"{key}.png", img)
    for key in ("a", "sub/b", "only_lr"):
        _save(tmp_path / "lr" / f"{key}.JPG", img, format="JPEG")
    pairing = pair_folders(tmp_path / "hr", tmp_path / "lr")
    assert [p.key for p in pairing.pairs] == ["a", "sub/b"]
    assert pairing.pairs[1].lq == tmp_path / "lr" / "sub" / "b.JPG"
    assert pairing.unpaired_gt == ["only_hr1", "only_hr2"] and pairing.unpaired_lq == ["only_lr"]


def test_unpaired_files_are_counted_and_named_in_the_profile(tmp_path: Path) -> None:
    hr, lr = write_pairs(tmp_path, 3, scale=2, size=(64, 64))
    _save(hr / "extra.png", Image.new("RGB", (64, 64)))
    profile = analyse(hr, lr)
    assert profile.pair_count == 3 and profile.unpaired_gt == 1 and profile.unpaired_lq == 0
    assert profile.unpaired_gt_names == ("extra",)
    assert any("extra" in note and "skipped" in note for note in profile.notes)


def test_folder_errors_name_the_folder(tmp_path: Path) -> None:
    hr, _ = write_pairs(tmp_path / "ok", 1, scale=2, size=(64, 64))
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "readme.txt").write_text("x")
    (tmp_path / "file.png").write_bytes(b"")
    cases = {
        tmp_path / "missing": "does not exist",
        tmp_path / "file.png": "not a folder",
        tmp_path / "empty": "is empty",
        tmp_path / "texts": "no image files",
    }
    for folder, words in cases.items():
        with pytest.raises(AutosrError, match=words) as err:
            pair_folders(hr, folder)
        assert str(folder) in err.value.message


def test_no_pairs_shows_names_of_both_sides(tmp_path: Path) -> None:
    img = Image.new("RGB", (8, 8))
    for i in range(5):
        _save(tmp_path / "hr" / f"{i:04d}.png", img)
        _save(tmp_path / "lr" / f"{i:04d}x2.png", img)
    with pytest.raises(AutosrError, match="no pairs") as err:
        pair_folders(tmp_path / "hr", tmp_path / "lr")
    assert "0000" in err.value.message and "0000x2" in err.value.message and "2 more" in err.value.message


def test_no_pairs_hints_at_letter_case(tmp_path: Path) -> None:
    _save(tmp_path / "hr" / "Photo.png", Image.new("RGB", (8, 8)))
    _save(tmp_path / "lr" / "photo.png", Image.new("RGB", (4, 4)))
    with pytest.raises(AutosrError) as err:
        pair_folders(tmp_path / "hr", tmp_path / "lr")
    assert "letter case" in err.value.hint


# ─── scale ────────────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_scale_is_detected(tmp_path: Path, scale: int) -> None:
    hr, lr = write_pairs(tmp_path, 3, scale=scale, size=(192, 160))  # 160/3 rounds: the ±1 px case
    profile = analyse(hr, lr)
    assert (profile.scale, profile.scale_source) == (scale, "detected")
    assert profile.lq_min == (192 // scale, 160 // scale)


def test_scale_set_by_user(x2: tuple[Path, Path]) -> None:
    profile = analyse(*x2, scale=2)
    assert (profile.scale, profile.scale_source) == (2, "set")
    with pytest.raises(AutosrError, match=r"--scale 4 .*img_000\d"):
        analyse(*x2, scale=4)


def test_scale_disagreement_names_both_pairs(tmp_path: Path) -> None:
    _pair(tmp_path, "a", (128, 128), (64, 64))
    _pair(tmp_path, "b", (128, 128), (32, 32))
    with pytest.raises(AutosrError, match="disagree") as err:
        analyse(tmp_path / "hr", tmp_path / "lr")
    assert "'a' is ×2" in err.value.message and "'b' is ×4" in err.value.message


def test_non_integer_ratio_names_the_pair(tmp_path: Path) -> None:
    _pair(tmp_path, "odd", (120, 120), (80, 80))
    with pytest.raises(AutosrError, match=r"'odd'.*1\.50"):
        analyse(tmp_path / "hr", tmp_path / "lr")


def test_width_and_height_ratios_must_agree(tmp_path: Path) -> None:
    _pair(tmp_path, "squashed", (128, 128), (64, 32))
    with pytest.raises(AutosrError, match="'squashed'"):
        analyse(tmp_path / "hr", tmp_path / "lr")


def test_lr_larger_than_hr(tmp_path: Path) -> None:
    _pair(tmp_path, "swapped", (64, 64), (128, 128))
    with pytest.raises(AutosrError, match="larger than") as err:
        analyse(tmp_path / "hr", tmp_path / "lr")
    assert str(tmp_path / "lr" / "swapped.png") in err.value.message and "swapped" in err.value.hint


# ─── corrupt images and patch size ────────────────────────────────────────────────────────────


def test_unreadable_header_names_the_file(tmp_path: Path) -> None:
    hr, lr = write_pairs(tmp_path, 3, scale=2, size=(64, 64))
    (lr / "img_0001.png").write_bytes(b"not an image at all")
    with pytest.raises(AutosrError, match="cannot read image") as err:
        analyse(hr, lr)
    assert str(lr / "img_0001.png") in err.value.message


def test_truncated_pixels_name_the_file(tmp_path: Path) -> None:
    hr, lr = write_pairs(tmp_path, 2, scale=2, size=(128, 128))
    broken = hr / "img_0000.png"
    broken.write_bytes(broken.read_bytes()[:300])  # the header survives, the pixel data does not
    with pytest.raises(AutosrError, match="cannot read image") as err:
        analyse(hr, lr)
    assert str(broken) in err.value.message


def test_check_patch(tmp_path: Path) -> None:
    _pair(tmp_path, "big", (192, 192), (96, 96))
    _pair(tmp_path, "tiny", (80, 48), (40, 24))
    profile = analyse(tmp_path / "hr", tmp_path / "lr")
    assert profile.smallest_side == 24 and profile.smallest_lq == "tiny.png"
    check_patch(profile, 24)
    with pytest.raises(AutosrError, match="smaller than the 64px") as err:
        check_patch(profile, 64)
    assert str(tmp_path / "lr" / "tiny.png") in err.value.message
    assert "40×24" in err.value.message and "lq_size=24" in err.value.hint


# ─── odd modes, complexity, degradation ───────────────────────────────────────────────────────


def test_gray_rgba_and_16_bit_are_accepted_and_noted(tmp_path: Path) -> None:
    rgb = paint(96, 96, seed=1)
    images = {
        "gray": Image.fromarray(rgb).convert("L"),
        "alpha": Image.fromarray(rgb).convert("RGBA"),
        "deep": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
    }
    for key, im in images.items():
        _save(tmp_path / "hr" / f"{key}.png", im)
        _save(tmp_path / "lr" / f"{key}.png", im.resize((48, 48), Image.Resampling.BICUBIC))
    _png16_rgb(tmp_path / "hr" / "deep_rgb.png", rgb.astype(np.uint16) * 257)
    _png16_rgb(tmp_path / "lr" / "deep_rgb.png", rgb[::2, ::2].astype(np.uint16) * 257)
    profile = analyse(tmp_path / "hr", tmp_path / "lr")
    assert profile.scale == 2 and profile.pair_count == 4
    assert profile.modes["L"] == 2 and profile.modes["RGBA"] == 2 and profile.modes["RGB;16"] == 2
    assert profile.modes["I;16"] == 2
    notes = " | ".join(profile.notes)
    assert "grayscale" in notes and "alpha" in notes and "16-bit" in notes
    assert 0.0 <= profile.complexity <= 1.0


def test_exif_rotation_is_noted(tmp_path: Path) -> None:
    _pair(tmp_path, "a", (64, 64), (32, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(tmp_path / "hr" / "a.png", Image.open(tmp_path / "hr" / "a.png").copy())
    Image.open(tmp_path / "hr" / "a.png").save(tmp_path / "hr" / "b.jpg", exif=exif)
    Image.open(tmp_path / "lr" / "a.png").save(tmp_path / "lr" / "b.jpg", exif=exif)
    profile = analyse(tmp_path / "hr", tmp_path / "lr")
    assert any("EXIF rotation" in note and "b" in note for note in profile.notes)


def test_complexity_flat_below_textured(tmp_path: Path) -> None:
    flat = np.full((64, 64, 3), 0.5, np.float32)
    textured = paint(128, 128, seed=3).astype(np.float32) / 255
    assert image_complexity(flat) == 0.0
    assert 0.0 < image_complexity(textured) <= 1.0
    for i in range(3):
        _save(tmp_path / "flat" / "hr" / f"{i}.png", Image.new("RGB", (128, 128), (90 + i, 120, 140)))
        _save(tmp_path / "flat" / "lr" / f"{i}.png", Image.new("RGB", (64, 64), (90 + i, 120, 140)))
    flat_profile = analyse(tmp_path / "flat" / "hr", tmp_path / "flat" / "lr")
    rich_profile = analyse(*write_pairs(tmp_path / "rich", 3, scale=2, size=(128, 128)))
    assert 0.0 <= flat_profile.complexity < rich_profile.complexity <= 1.0
    assert flat_profile.complexity_label == "simple"


def test_degradation_jpeg_and_noise(tmp_path: Path, x2: tuple[Path, Path]) -> None:
    hr, lr = x2
    rng = np.random.default_rng(0)
    for f in sorted(lr.iterdir()):
        im = Image.open(f)
        _save(tmp_path / "jpeg" / f"{f.stem}.jpg", im, quality=20)
        noisy = np.asarray(im, np.float32) + rng.normal(0, 10, (im.height, im.width, 3))
        _save(tmp_path / "noisy" / f.name, Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8)))
    clean = analyse(hr, lr).degradation
    jpeg = analyse(hr, tmp_path / "jpeg").degradation
    noisy = analyse(hr, tmp_path / "noisy").degradation
    assert jpeg["jpeg_blockiness"] > clean["jpeg_blockiness"] + 0.3
    assert noisy["noise_sigma"] > clean["noise_sigma"] + 4
    assert (clean["label"], jpeg["label"], noisy["label"]) == ("clean", "jpeg", "noisy")
    assert jpeg["jpeg_quality"] == 20 and clean["jpeg_quality"] is None


# ─── sampling, profile, hold-out, meta_info ───────────────────────────────────────────────────


def test_sample_is_bounded_and_deterministic(
    tmp_path: Path, x2: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hr, lr = write_pairs(tmp_path, 12, scale=2, size=(64, 48))
    opened: list[str] = []
    real_open = Image.open

    def counting_open(fp: object, *args: object, **kwargs: object) -> Image.Image:
        opened.append(str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(images.Image, "open", counting_open)
    profile = analyse(hr, lr, sample=4, seed=7)
    assert profile.sampled == 4 and profile.pair_count == 12
    assert len({name for name in opened}) == 8  # 4 pairs, both sides; nothing else
    assert analyse(hr, lr, sample=4, seed=7) == profile


def test_profile_summary_is_json_and_omits_pairs(x2: tuple[Path, Path]) -> None:
    profile = analyse(*x2)
    summary = profile.to_dict()
    json.dumps(summary)
    assert "pairs" not in summary and "Pair(" not in repr(profile)
    assert summary["pair_count"] == 6 and summary["formats"] == {"png": 12}
    assert summary["lq_median"] == [96, 80] and summary["same_names"] is True
    assert len(profile.pairs) == 6


def _fake_pairs(n: int) -> list[Pair]:
    return [Pair(f"{i:05d}", Path(f"hr/{i:05d}.png"), Path(f"lr/{i:05d}.png")) for i in range(n)]


@pytest.mark.parametrize(("n", "held"), [(2, 1), (50, 1), (300, 3), (5000, 16)])
def test_hold_out_sizes_disjoint_and_deterministic(n: int, held: int) -> None:
    pairs = _fake_pairs(n)
    train, val = hold_out(pairs)
    assert len(val) == held and len(train) == n - held
    assert not {p.key for p in train} & {p.key for p in val}
    assert {p.key for p in train} | {p.key for p in val} == {p.key for p in pairs}
    assert hold_out(list(reversed(pairs))) == (train, val)
    assert hold_out(pairs, seed=1).val != val or n == 2


def test_hold_out_single_pair_is_shared() -> None:
    split = hold_out(_fake_pairs(1))
    assert split.train == split.val and split.shared and "both" in split.describe()
    assert not hold_out(_fake_pairs(10)).shared


def test_meta_info_lists_gt_names_relative(tmp_path: Path) -> None:
    pairs = [
        Pair("a", tmp_path / "hr" / "a.png", tmp_path / "lr" / "a.jpg"),
        Pair("sub/b", tmp_path / "hr" / "sub" / "b.PNG", tmp_path / "lr" / "sub" / "b.png"),
    ]
    out = write_meta_info(pairs, tmp_path / "meta" / "train.txt")
    assert out.read_bytes() == b"a.png\nsub/b.PNG\n"
    assert [p.name for p in out.parent.iterdir()] == ["train.txt"]  # no temp file left behind
    assert read_meta_info(out) == ["a.png", "sub/b.PNG"]
    (tmp_path / "basicsr.txt").write_text("0001.png (480,480,3)\nmy photo.png\n\n")
    assert read_meta_info(tmp_path / "basicsr.txt") == ["0001.png", "my photo.png"]


def test_names_that_traiNNer_cannot_pair_are_noted(tmp_path: Path) -> None:
    _pair(tmp_path, "a", (64, 64), (32, 32))
    (tmp_path / "lr" / "a.png").rename(tmp_path / "lr" / "a.PNG")
    profile = analyse(tmp_path / "hr", tmp_path / "lr")
    assert not profile.same_names and any("traiNNer" in note for note in profile.notes)
