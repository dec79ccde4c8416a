"""Training data: decoding rules, pairing, and both crop sources (shapes, alignment, augmentation,
determinism, resume, batch-size changes, workers under spawn)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from autosr.errors import AutosrError
from autosr.images import collect_pairs, load_rgb_uint8, load_val_pairs, pairs_from_meta_info
from autosr.synthetic import write_pairs
from autosr.train.data import Batch, build_crop_source

SCALE = 2


def _box_down(hr: np.ndarray, s: int) -> np.ndarray:
    h, w = hr.shape[0] // s, hr.shape[1] // s
    blocks = hr[: h * s, : w * s].reshape(h, s, w, s, 3).astype(np.float64)
    return np.floor(blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8)


def _write_box_pairs(root: Path, sizes: list[tuple[int, int]], seed: int = 0) -> list[tuple[Path, Path]]:
    """Random-texture HR images and exact box-downscaled LR: any misaligned crop shows at once."""
    rng = np.random.default_rng(seed)
    (root / "hr").mkdir(parents=True, exist_ok=True)
    (root / "lr").mkdir(parents=True, exist_ok=True)
    pairs = []
    for i, (w, h) in enumerate(sizes):
        hr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        gt, lq = root / "hr" / f"p{i}.png", root / "lr" / f"p{i}.png"
        Image.fromarray(hr).save(gt)
        Image.fromarray(_box_down(hr, SCALE)).save(lq)
        pairs.append((gt, lq))
    return pairs


@pytest.fixture(scope="module")
def box_pairs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path]]:
    # Mixed sizes; the last GT is one pixel wider and taller than LQ×2 (allowed slack).
    return _write_box_pairs(tmp_path_factory.mktemp("box"), [(64, 48), (40, 40), (96, 34), (67, 51)])


def _source(pairs, kind: str = "cache", **kw):
    args = dict(
        scale=SCALE,
        lq_size=12,
        batch_size=16,
        use_hflip=True,
        use_rot=True,
        seed=7,
        device="cpu",
        channels_last=True,
        cache_budget_bytes=1 << 30 if kind == "cache" else 0,
        num_workers=0,
    )
    args.update(kw)
    source = build_crop_source(pairs, **args)
    assert source.kind == kind
    return source


def _same(a, b) -> bool:
    return torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)


# ------------------------------------------------------------------------------ crop sources ----


@pytest.mark.parametrize("kind", ["cache", "loader"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_batch_shapes_dtypes_ranges(box_pairs, kind, channels_last):
    source = _source(box_pairs, kind, channels_last=channels_last)
    lq, gt = source.next_batch()
    assert lq.shape == (16, 3, 12, 12) and gt.shape == (16, 3, 24, 24)
    assert lq.dtype == gt.dtype == torch.float32
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert lq.is_contiguous(memory_format=fmt) and gt.is_contiguous(memory_format=fmt)
    for t in (lq, gt):
        assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0 and float(t.std()) > 0.1
    assert source.batch_size == 16 and "budget" in source.reason
    source.close()


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_gt_crop_is_the_scaled_region_of_the_lq_crop(box_pairs, kind):
    source = _source(box_pairs, kind, batch_size=64)
    for _ in range(3):
        lq, gt = source.next_batch()
        # LR = box-downscale of HR, so box-downscaling the GT crop must give the LQ crop (±rounding).
        err = (F.avg_pool2d(gt, SCALE) - lq).abs().amax(dim=(1, 2, 3))
        assert float(err.max()) <= 0.51 / 255


def _transform_ids(crops: torch.Tensor, image: np.ndarray) -> set[int]:
    variants = [np.rot90(image, k) for k in range(4)] + [np.rot90(image[:, ::-1], k) for k in range(4)]
    keys = [v.tobytes() for v in variants]
    assert len(set(keys)) == 8
    found = set()
    for crop in crops:
        hwc = (crop.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        found.add(keys.index(np.ascontiguousarray(hwc).tobytes()))
    return found


@pytest.mark.parametrize("kind", ["cache", "loader"])
@pytest.mark.parametrize(
    ("flags", "expected"), [((True, True), set(range(8))), ((True, False), {0, 4}), ((False, False), {0})]
)
def test_augmentations(tmp_path, kind, flags, expected):
    # LQ exactly lq_size: the only crop is the whole image, so each crop is one of its 8 symmetries.
    (pair,) = _write_box_pairs(tmp_path, [(12, 12)], seed=3)
    use_hflip, use_rot = flags
    source = _source([pair], kind, lq_size=6, batch_size=64, use_hflip=use_hflip, use_rot=use_rot)
    seen_lq, seen_gt = set(), set()
    for _ in range(2):
        lq, gt = source.next_batch()
        seen_lq |= _transform_ids(lq, load_rgb_uint8(pair[1]))
        seen_gt |= _transform_ids(gt, load_rgb_uint8(pair[0]))
        assert float((F.avg_pool2d(gt, SCALE) - lq).abs().max()) <= 0.51 / 255  # same transform on both
    assert seen_lq == seen_gt == expected


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_same_seed_same_batches(box_pairs, kind):
    a, b, c = (_source(box_pairs, kind, seed=s) for s in (1, 1, 2))
    for _ in range(3):
        ba, bb, bc = a.next_batch(), b.next_batch(), c.next_batch()
        assert _same(ba, bb) and not torch.equal(ba.gt, bc.gt)


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_resume_continues_the_stream(box_pairs, kind):
    straight = _source(box_pairs, kind)
    first = _source(box_pairs, kind)
    for _ in range(3):
        straight.next_batch()
        first.next_batch()
    state = first.state_dict()
    first.close()
    resumed = _source(box_pairs, kind)
    resumed.load_state_dict(state)
    assert _same(resumed.next_batch(), straight.next_batch())


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_set_batch_size(box_pairs, kind):
    source = _source(box_pairs, kind, batch_size=8)
    source.next_batch()
    source.set_batch_size(5)
    assert source.batch_size == 5
    lq, gt = source.next_batch()
    assert lq.shape[0] == gt.shape[0] == 5
    state = source.state_dict()
    reference = source.next_batch()
    # A resume restores the smaller batch size too, and lands on the same batch.
    resumed = _source(box_pairs, kind, batch_size=8)
    resumed.load_state_dict(state)
    assert resumed.batch_size == 5 and _same(resumed.next_batch(), reference)


def _crops(t: torch.Tensor) -> list[bytes]:
    """A batch's crops as a sorted multiset (order within a batch carries no meaning)."""
    return sorted(bytes(row) for row in (t.flatten(1) * 255).round().to(torch.uint8).numpy())


@pytest.mark.parametrize("k", [1, 4])
def test_loader_ranks_split_one_stream(box_pairs, k):
    # Rank r takes units r, r + 2, …: together the two ranks cut exactly the single-rank batch.
    whole = _source(box_pairs, "loader", batch_size=16, crops_per_pair=k).next_batch()
    parts = [
        _source(box_pairs, "loader", batch_size=8, rank=r, world_size=2, crops_per_pair=k).next_batch()
        for r in (0, 1)
    ]
    assert _crops(torch.cat([part.gt for part in parts])) == _crops(whole.gt)
    assert _crops(parts[0].gt) != _crops(parts[1].gt)


def test_loader_decodes_each_pair_once_per_k_crops(box_pairs, monkeypatch):
    decoded = []

    def counting_load(path):
        decoded.append(path)
        return load_rgb_uint8(path)

    monkeypatch.setattr("autosr.train.data.load_rgb_uint8", counting_load)  # num_workers=0: in-process
    # K=1 decodes a pair per crop, K=8 one per 8 crops. Batches of 12 from crops 0, 12 and 24 touch
    # units 0–1, 1–2 and 3–4: a unit that straddles two batches is decoded by both, each cutting
    # its own crops of it.
    for k, batch_size, pairs_per_batch in ((1, 32, [32, 32]), (8, 32, [4, 4]), (8, 12, [2, 2, 2])):
        source = _source(box_pairs, "loader", batch_size=batch_size, crops_per_pair=k)
        for expected in pairs_per_batch:
            decoded.clear()
            source.next_batch()
            assert len(decoded) == 2 * expected, (k, batch_size)  # an LQ and a GT file per pair


def test_loader_batches_are_runs_of_one_crop_stream(box_pairs):
    # Whatever the batch sizes (and so wherever units are split), the same crops come out.
    whole = _source(box_pairs, "loader", batch_size=24).next_batch()
    source = _source(box_pairs, "loader", batch_size=5)
    pieces = []
    for size in (5, 7, 12):
        source.set_batch_size(size)
        pieces.append(source.next_batch().gt)
    assert _crops(torch.cat(pieces)) == _crops(whole.gt)


def test_loader_batch_is_shuffled_and_grouped_by_transform(box_pairs):
    source = _source(box_pairs, "loader", batch_size=64)
    stream = source._dataset.stream
    units, counts = stream.batch(0, 64)
    assert len(units) == 8 and sum(counts) == 64
    slots = [[slot for slot, *_ in crops] for _, crops in units]
    assert sorted(sum(slots, [])) == list(range(64))
    assert any(max(s) - min(s) >= len(s) for s in slots)  # a unit's crops are spread over the batch
    by_slot = sorted((slot, code >> 1) for _, crops in units for slot, _, _, code in crops)
    assert [group for _, group in by_slot] == sorted(group for _, group in by_slot)
    assert stream.batch(0, 64) == (units, counts) and stream.batch(64, 64) != (units, counts)


def test_loader_resume_keeps_the_saved_k(box_pairs):
    straight = _source(box_pairs, "loader", batch_size=12, crops_per_pair=4)
    straight.next_batch()
    state = straight.state_dict()
    assert state["crops_per_pair"] == 4 and state["samples"] == 12
    resumed = _source(box_pairs, "loader", batch_size=12)  # another K by default
    resumed.load_state_dict(state)
    assert resumed.crops_per_pair == 4
    for _ in range(2):
        assert _same(resumed.next_batch(), straight.next_batch())


def test_loader_workers_under_spawn(box_pairs):
    # Workers are started the Windows way; batches must not depend on the number of workers.
    # Batches of 12 split units of 8, so neighbouring batches in different workers share a unit.
    inline = _source(box_pairs, "loader", batch_size=12)
    spawned = _source(box_pairs, "loader", batch_size=12, num_workers=2, mp_context="spawn")
    try:
        for _ in range(3):
            assert _same(inline.next_batch(), spawned.next_batch())
    finally:
        spawned.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_equal_cpu_batches(box_pairs):
    # The random stream lives on the CPU, so every placement of the cache cuts the same crops.
    cpu = _source(box_pairs, "cache").next_batch()
    for kind, extra in (("cache", {}), ("cache", {"cache_device": "cpu"}), ("loader", {})):
        batch = _source(box_pairs, kind, device="cuda", **extra).next_batch()
        assert batch.lq.is_cuda and batch.lq.is_contiguous(memory_format=torch.channels_last)
        if kind == "cache":
            assert torch.equal(batch.lq.cpu(), cpu.lq) and torch.equal(batch.gt.cpu(), cpu.gt)
        else:
            assert _same(Batch(batch.lq.cpu(), batch.gt.cpu()), _source(box_pairs, kind).next_batch())


def test_factory_reason_names_the_decision(box_pairs):
    cached = _source(box_pairs, "cache", cache_budget_bytes=10 << 20)
    loader = _source(box_pairs, "loader", cache_budget_bytes=1000, num_workers=0)
    assert "fits" in cached.reason and "cpu" in cached.reason
    assert "exceeds" in loader.reason and "workers" in loader.reason


# ------------------------------------------------------------------------------ decoding ----


def _png48(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def test_modes_load_as_rgb_uint8(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((6, 5), 7, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    Image.fromarray(rgb).quantize(16).save(tmp_path / "palette.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    _png48(tmp_path / "rgb48.png", rgb.astype(np.uint16) * 257 + 3)

    for name in ("gray", "rgba", "la", "palette", "gray16", "rgb48"):
        arr = load_rgb_uint8(tmp_path / f"{name}.png")
        assert arr.shape == (6, 5, 3) and arr.dtype == np.uint8 and arr.flags.writeable, name
    assert np.array_equal(load_rgb_uint8(tmp_path / "rgba.png"), rgb)  # alpha dropped, colours kept
    assert np.array_equal(load_rgb_uint8(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, 2))
    assert np.array_equal(load_rgb_uint8(tmp_path / "gray16.png"), np.repeat(gray[..., None], 3, 2))
    assert np.array_equal(load_rgb_uint8(tmp_path / "rgb48.png"), rgb)


def test_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(AutosrError, match="bad.png"):
        load_rgb_uint8(bad)
    # A truncated file has a valid header: it fails only when decoded (here: filling the cache).
    hr, lr = write_pairs(tmp_path / "set", 2, size=(64, 48))
    gt = sorted(hr.iterdir())[1]
    gt.write_bytes(gt.read_bytes()[:200])
    with pytest.raises(AutosrError, match=gt.name):
        _source(collect_pairs(str(hr), str(lr)), "cache")
    loader = _source(collect_pairs(str(hr), str(lr)), "loader", batch_size=4)
    with pytest.raises(AutosrError, match=gt.name):
        # a batch of 4 decodes one pair: the broken one comes up sooner or later, is skipped, and with 1 of
        # the 2 pairs unreadable (over the 1% limit) the source stops, naming it
        for _ in range(20):
            loader.next_batch()


def test_size_mismatch_and_too_small_images(tmp_path):
    (gt, lq), *_ = _write_box_pairs(tmp_path / "a", [(64, 48)])
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(lq)
    with pytest.raises(AutosrError, match="does not match") as err:
        _source([(gt, lq)])
    assert gt.name in str(err.value) and lq.name in str(err.value)
    # The loader draws crops from the header sizes: a file that decodes to another size is named.
    ((gt_c, lq_c),) = _write_box_pairs(tmp_path / "c", [(64, 48)])
    loader = _source([(gt_c, lq_c)], "loader")
    Image.fromarray(np.zeros((50, 64, 3), np.uint8)).save(gt_c)  # changed after the scan
    with pytest.raises(AutosrError, match=f"{gt_c.name} decoded to 64×50, header said 64×48"):
        loader.next_batch()
    small = _write_box_pairs(tmp_path / "b", [(32, 32)])
    with pytest.raises(AutosrError, match="lower lq_size to at most 16"):
        _source(small, lq_size=24)


# ------------------------------------------------------------------------------ pairing ----


def test_pairs_from_meta_info(tmp_path):
    gt_root, lq_root = tmp_path / "gt", tmp_path / "lq"
    for folder in (gt_root / "sub", lq_root / "sub", gt_root / "deep"):
        folder.mkdir(parents=True)
    img = Image.new("RGB", (4, 4))
    for path in (gt_root / "sub" / "a.png", gt_root / "b.png", gt_root / "deep" / "c.png", gt_root / "D.png"):
        img.save(path)
    img.save(lq_root / "sub" / "a.PNG")  # extension in another case
    img.save(lq_root / "b.jpg")  # other extension
    img.save(lq_root / "c.png")  # basicsr layout: bare name at the LQ root
    img.save(lq_root / "d.png")  # letter case differs: no partner
    meta = tmp_path / "meta.txt"
    meta.write_text("sub/a.png (4,4,3)\n\n# comment\nb.png 1\ndeep/c.png\n")
    pairs = pairs_from_meta_info(meta, gt_root, lq_root)
    assert [tuple(p) for p in pairs] == [
        (gt_root / "sub" / "a.png", lq_root / "sub" / "a.PNG"),
        (gt_root / "b.png", lq_root / "b.jpg"),
        (gt_root / "deep" / "c.png", lq_root / "c.png"),
    ]
    assert [p.key for p in pairs] == ["sub/a", "b", "deep/c"]
    meta.write_text("missing.png\n")
    with pytest.raises(AutosrError, match="missing.png"):
        pairs_from_meta_info(meta, gt_root, lq_root)
    meta.write_text("d.png\n")  # the GT in the list is "d.png", the file on disk "D.png"
    with pytest.raises(AutosrError, match="does not exist") as err:
        pairs_from_meta_info(meta, gt_root, lq_root)
    assert "D.png" in err.value.hint and "letter case" in err.value.hint
    meta.write_text("D.png\n")  # the GT exists; its LQ is "d.png"
    with pytest.raises(AutosrError, match="no LQ image") as err:
        pairs_from_meta_info(meta, gt_root, lq_root)
    assert "d.png" in err.value.hint and "letter case" in err.value.hint
    img.save(lq_root / "b.png")  # now two LQ files share b's stem: which one?
    meta.write_text("b.png\n")
    with pytest.raises(AutosrError, match="share the name 'b'"):
        pairs_from_meta_info(meta, gt_root, lq_root)


def test_collect_pairs_by_stem_and_several_roots(tmp_path):
    hr1, lr1 = write_pairs(tmp_path / "one", 2, size=(32, 32))
    hr2, lr2 = write_pairs(tmp_path / "two", 1, size=(32, 32), ext="jpg")
    pairs = collect_pairs([str(hr1), str(hr2)], [str(lr1), str(lr2)])
    assert [(g.parent, q.parent) for g, q in pairs] == [(hr1, lr1), (hr1, lr1), (hr2, lr2)]
    assert all(g.stem == q.stem for g, q in pairs)
    (lr1 / "img_0001.png").rename(lr1 / "IMG_0001.png")
    with pytest.raises(AutosrError, match="img_0001") as err:
        collect_pairs(str(hr1), str(lr1))  # folder mode: every file must pair, letter case included
    assert "IMG_0001" in err.value.message and "letter case" in err.value.hint
    with pytest.raises(AutosrError, match="2 folders"):
        collect_pairs([str(hr1), str(hr2)], str(lr1))


def test_load_val_pairs_whole_images(box_pairs):
    val = load_val_pairs(box_pairs[2:], scale=SCALE)
    (n0, lq0, gt0), (n1, lq1, gt1) = val
    assert (n0, n1) == ("p2", "p3")
    assert lq0.shape == (3, 17, 48) and gt0.shape == (3, 34, 96) and lq0.dtype == torch.uint8
    assert lq1.shape == (3, 25, 33) and gt1.shape == (3, 50, 66)  # the extra GT pixel is trimmed
    assert lq1.is_contiguous() and gt1.is_contiguous()
