"""On-the-fly degradations (autosr.train.degradations) and HR-only crop sources: determinism under
(seed, counter), independence from how a stream is split, exact resume, each degradation at its
configured rate and strength, the bicubic kind against Pillow, the JPEG codec against Pillow's,
option checking, and the cost benchmark's smallest run. Statistical checks use fixed seeds."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from autosr.errors import AutosrError
from autosr.images import collect_pairs
from autosr.synthetic import paint, write_pairs
from autosr.train import degradations as D
from autosr.train.data import build_crop_source, build_hr_crop_source
from autosr.train.degradations import Degrader, RealESRGANDegrader, jpeg

SCALE = 2
# Every stage on, several filters and kernel shapes: the pipeline at its busiest.
BUSY = {
    "lq_usm": True, "thicklines_prob": 0.5, "blur_prob": 0.7, "blur_prob2": 0.7, "final_sinc_prob": 0.5,
    "sinc_prob": 0.2, "sinc_prob2": 0.2, "resize_range": [0.3, 1.5], "resize_range2": [0.5, 1.2],
    "resize_mode_list": list(D.RESIZE_MODES), "resize_mode_prob": [1, 1, 1, 1, 1],
    "gaussian_noise_prob": 0.5, "noise_range": [1, 20], "poisson_scale_range": [0.1, 2], "gray_noise_prob": 0.4,
    "gaussian_noise_prob2": 0.5, "noise_range2": [1, 15], "poisson_scale_range2": [0.1, 2], "gray_noise_prob2": 0.4,
    "jpeg_prob": 0.7, "jpeg_range": [30, 95], "jpeg_prob2": 0.7, "jpeg_range2": [30, 95],
}  # fmt: skip
# Nothing but the final resize (area: each LR pixel the mean of 2×2 HR pixels): a stage under test adds to this.
QUIET = {"resize_prob": [0, 0, 1], "resize_prob2": [0, 0, 1], "jpeg_prob": 0, "jpeg_prob2": 0,
         "resize_mode_list3": ["area"], "resize_mode_prob3": [1]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Hundreds of small ops per batch: on a shared 2-core box, OpenMP's two threads spin against
    # each other and run these tests ~50× slower than one thread does.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _hr(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """n HR crops of natural-looking texture, uint8 levels as floats."""
    img = torch.from_numpy(paint(size * 4, size * 2, seed)).permute(2, 0, 1).float() / 255
    spots = [((i // 7) % 2 * size, (i % 7) * size // 2) for i in range(n)]
    crops = [img[:, y : y + size, x : x + size] for y, x in spots]
    return torch.stack(crops).contiguous()


def _degrader(opts: dict | None = None, seed: int = 5, kind: str = "realesrgan") -> Degrader:
    return Degrader.from_options(kind, opts or {}, SCALE, seed)


def _levels(t: torch.Tensor) -> torch.Tensor:
    return (t * 255).round()


# ------------------------------------------------------------------------------ determinism ----


def test_same_seed_and_counter_same_lr_otherwise_different():
    hr = _hr(6, 32)
    a, b = _degrader(BUSY), _degrader(BUSY)
    first = a.degrade(hr, 100)
    assert first.shape == (6, 3, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, b.degrade(hr, 100))  # another instance, same (seed, counter)
    assert torch.equal(first, a.degrade(hr, 100))  # and again: nothing carried between calls
    assert torch.equal(_levels(first) * (1 / 255), first)  # uint8 levels
    later = a.degrade(hr, 106)
    reseeded = _degrader(BUSY, seed=6).degrade(hr, 100)
    for other in (later, reseeded):
        assert all(not torch.equal(first[i], other[i]) for i in range(6))


def test_batch_does_not_depend_on_how_it_is_split():
    # Sample c draws from (seed, c) alone: batches of 7, of 3 + 4, or one by one give the same LR.
    hr, d = _hr(7, 32), _degrader(BUSY)
    whole = d.degrade(hr, 40)
    assert torch.equal(whole, torch.cat([d.degrade(hr[:3], 40), d.degrade(hr[3:], 43)]))
    assert torch.equal(whole, torch.cat([d.degrade(hr[i : i + 1], 40 + i) for i in range(7)]))


def test_draws_are_per_sample_and_independent_of_the_options():
    d = _degrader(BUSY)
    table = d.draws(1000, 32, 32, 32)
    assert np.array_equal(table[8:], d.draws(1008, 24, 32, 32))  # a sample's row depends on its counter only
    # Changing one probability moves only its own decisions: the other columns keep their values.
    other = _degrader({**BUSY, "blur_prob": 0.1}).draws(1000, 32, 32, 32)
    changed = {D._COLUMNS[c] for c in range(table.shape[1]) if not np.array_equal(table[:, c], other[:, c])}
    assert changed == {"k1_on"}
    keys = D.sample_keys(5, 1000, 4)
    assert [int(k) for k in keys] == [D._mix(5, 1000 + b) for b in range(4)]


# ------------------------------------------------------------------------ rates and strength ----


def test_blur_applies_to_exactly_the_samples_drawn_and_blurs_them():
    hr = _hr(16, 32)
    opts = {**QUIET, "blur_sigma": [1.5, 3.0]}
    never = _degrader({**opts, "blur_prob": 0.0}).degrade(hr, 0)
    always = _degrader({**opts, "blur_prob": 1.0}).degrade(hr, 0)
    half = _degrader({**opts, "blur_prob": 0.5})
    mixed = half.degrade(hr, 0)
    on = half.draws(0, 16, 32, 32)[:, D._COL["k1_on"]] > 0
    assert 0 < on.sum() < 16
    for i in range(16):
        assert torch.equal(mixed[i], always[i] if on[i] else never[i])

    def sharpness(t: torch.Tensor) -> torch.Tensor:  # mean |Laplacian| per sample
        lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
        return F.conv2d(t, lap, groups=3).abs().mean(dim=(1, 2, 3))

    assert bool((sharpness(always) < 0.7 * sharpness(never)).all())
    # the rate, over many samples (host draws only)
    rate = (half.draws(0, 4000, 32, 32)[:, D._COL["k1_on"]] > 0).mean()
    assert abs(rate - 0.5) < 0.03


def test_gaussian_noise_has_the_configured_sigma():
    # Mid-gray HR (no clipping), noise sigma 10 levels, then the 2×2 area mean: residual std 10 / 2.
    hr = torch.full((16, 3, 32, 32), 128 / 255)
    clean = _degrader(QUIET).degrade(hr, 0)
    noisy = _degrader({**QUIET, "gaussian_noise_prob": 1, "noise_range": [10, 10]}).degrade(hr, 0)
    residual = _levels(noisy) - _levels(clean)
    assert abs(float(residual.std()) - 5.0) < 0.2 and abs(float(residual.mean())) < 0.1
    # gray noise: one field on all three channels
    gray = _degrader({**QUIET, "gaussian_noise_prob": 1, "noise_range": [10, 10], "gray_noise_prob": 1}).degrade(hr, 0)
    g = _levels(gray) - _levels(clean)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2]) and float(g.std()) > 4
    # per-sample sigma from the range: each sample's residual std follows its own drawn sigma
    d = _degrader({**QUIET, "gaussian_noise_prob": 1, "noise_range": [4, 20]})
    per = (_levels(d.degrade(hr, 0)) - _levels(clean)).std(dim=(1, 2, 3))
    sigma = torch.from_numpy(d.draws(0, 16, 32, 32)[:, D._COL["n1_sigma"]]).float()
    assert torch.allclose(per, sigma / 2, rtol=0.12)


def test_poisson_noise_variance_follows_the_level():
    # Every 8-bit level present (vals = 256): noise at level L has variance (L / 255) / 256.
    levels = torch.arange(256.0).repeat_interleave(96).view(1, 1, 256, 96).expand(1, 3, 256, 96) / 255
    bits = D._hash32(torch.arange(levels.numel()).view(levels.shape) ^ 12345)
    noise = D._poisson_noise(levels, bits, D._poisson_table(), None)
    var = noise[0].permute(1, 0, 2).reshape(256, -1).var(dim=1)
    expected = torch.arange(256.0) / 255 / 256
    assert abs(float(var[64:].sum() / expected[64:].sum()) - 1) < 0.04
    assert abs(float(noise.mean())) < 8e-4  # 5 standard errors
    # three distinct levels → vals = 4: much coarser counts, variance (L / 255) / 4
    few = torch.tensor([0.0, 128.0, 255.0]).repeat_interleave(4000).view(1, 1, 3, 4000).expand(1, 3, 3, 4000) / 255
    bits = D._hash32(torch.arange(few.numel()).view(few.shape) ^ 777)
    noise = D._poisson_noise(few, bits, D._poisson_table(), None)
    assert abs(float(noise[0, :, 1].var()) / (128 / 255 / 4) - 1) < 0.05
    # in the pipeline, the noise scales with poisson_scale_range
    hr = _hr(8, 32)
    clean = _degrader(QUIET).degrade(hr, 0)
    one, two = (_degrader({**QUIET, "poisson_scale_range": [s, s]}).degrade(hr, 0) for s in (1.0, 2.0))
    ratio = float((two - clean).std() / (one - clean).std())
    assert abs(ratio - 2) < 0.15


def _blockiness(t: torch.Tensor) -> torch.Tensor:
    """Per sample: mean |step| across the 8-px block borders over the mean |step| inside blocks."""
    d = (t[..., 1:] - t[..., :-1]).abs().mean(dim=(1, 2))  # [N, W-1] column steps
    cols = torch.arange(1, t.shape[-1])
    return d[:, cols % 8 == 0].mean(1) / d[:, cols % 8 != 0].mean(1)


def test_jpeg_quality_shows_as_blockiness():
    img = _hr(4, 64, seed=3)
    by_quality = [float(_blockiness(jpeg(img, torch.full((4,), float(q)))).mean()) for q in (10, 40, 90)]
    assert by_quality[0] > by_quality[1] > by_quality[2] and by_quality[0] > 1.5
    assert abs(float(_blockiness(img).mean()) - 1) < 0.15
    # In the pipeline: the second JPEG after the final resize (half the samples) leaves 8-px blocks at LR.
    hr = _hr(16, 64)
    opts = {**QUIET, "jpeg_prob2": 1}
    d = _degrader({**opts, "jpeg_range2": [10, 10]})
    late = torch.from_numpy(d.draws(0, 16, 64, 64)[:, D._COL["j2_late"]] > 0)
    low = _blockiness(d.degrade(hr, 0))
    high = _blockiness(_degrader({**opts, "jpeg_range2": [95, 95]}).degrade(hr, 0))
    assert 0 < int(late.sum()) < 16
    assert bool((low[late] > high[late] + 0.3).all())
    # the drawn qualities cover the range uniformly (integers)
    q = _degrader({"jpeg_range": [30, 95]}).draws(0, 4000, 32, 32)[:, D._COL["j1_q"]]
    assert q.min() == 30 and q.max() == 95 and abs(q.mean() - 62.5) < 1.0 and np.array_equal(q, np.round(q))


def test_resize_takes_each_path_at_its_rate():
    d = _degrader({"resize_prob": [0.2, 0.7, 0.1], "resize_range": [0.4, 1.5]})
    t = d.draws(0, 4000, 64, 64)
    h = t[:, D._COL["r1_h"]]
    keep = t[:, D._COL["r1_mode"]] == D._KEEP
    for share, measured in ((0.2, (h > 64).mean()), (0.7, ((h < 64) & ~keep).mean()), (0.1, keep.mean())):
        assert abs(measured - share) < 0.03
    assert h.min() >= round(0.4 * 64) and h.max() <= round(1.5 * 64)
    modes = t[~keep, D._COL["r1_mode"]]
    for code in (0, 1, 2, 3):  # the default four filters, a quarter each
        assert abs((modes == code).mean() - 0.25) < 0.03
    # the second resize is relative to the LR size (traiNNer: int(ori / scale · factor))
    d2 = _degrader({"resize_prob2": [0, 1, 0], "resize_range2": [0.5, 1.0]})
    h2 = d2.draws(0, 500, 64, 64)[:, D._COL["r2_h"]]
    assert h2.min() >= 16 and h2.max() <= 32


# ------------------------------------------------------------------------- the building blocks ----


def _reference_kernel(kind: int, size: int, sx: float, sy: float, theta: float, beta: float, omega: float) -> np.ndarray:
    """traiNNer's kernels (traiNNer/data/degradations.py), restated: 21×21, normalised."""
    ax = np.arange(-(size - 1) / 2, (size - 1) / 2 + 1)
    xx, yy = np.meshgrid(ax, ax)
    if kind == D._SINC:
        r = np.sqrt(xx**2 + yy**2)
        j1 = torch.special.bessel_j1(torch.from_numpy(omega * r)).numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            k = omega * j1 / (2 * np.pi * r)
        k[(size - 1) // 2, (size - 1) // 2] = omega**2 / (4 * np.pi)
    else:
        u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        inv = np.linalg.inv(u @ np.diag([sx**2, sy**2]) @ u.T)
        grid = np.stack([xx, yy], -1)
        q = np.sum((grid @ inv) * grid, -1)
        k = np.exp(-0.5 * q) if kind < 2 else np.exp(-0.5 * q**beta) if kind < 4 else 1 / (q**beta + 1)
    k = k / k.sum()
    pad = (21 - size) // 2
    return np.pad(k, pad)


def test_kernels_match_trainners_formulas():
    opts = {"kernel_list": list(D.KERNEL_TYPES), "kernel_prob": [1] * 6, "sinc_prob": 0.25, "kernel_range": [3, 21],
            "blur_sigma": [0.3, 4.0], "betag_range": [0.5, 4.0], "betap_range": [1.0, 2.0], "blur_prob": 1}
    d = _degrader(opts)
    table = d.draws(0, 64, 32, 32)
    p = torch.from_numpy(table)
    kinds = set(table[:, D._COL["k1_type"]].astype(int).tolist())
    assert kinds == set(range(7))  # all six shapes and sinc occur
    got = D._kernels(p, "k1", frozenset(kinds), D._kernel_grids()).double().numpy()
    for i, row in enumerate(table):
        c = {name: row[D._COL[f"k1_{name}"]] for name in ("type", "size", "sx", "sy", "theta", "beta", "omega")}
        ref = _reference_kernel(int(c["type"]), int(c["size"]), c["sx"], c["sy"], c["theta"], c["beta"], c["omega"])
        assert np.abs(got[i] - ref).max() < 1e-6, (i, c)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest-exact", "area", "lanczos"])
def test_resize_matches_torch_and_pillow_per_sample(mode):
    # Each sample from its own size to its own size, on shared canvases; compare its valid area.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 40, 40, generator=g)
    sizes_in, sizes_out = [40, 33, 17, 26], [13, 40, 35, 26]
    code = D.RESIZE_MODES.index(mode)
    t = np.zeros((4, len(D._COLUMNS)))
    D._put_mode(t, "r1", np.full(4, code))
    d = _degrader()
    src = D._Sizes(torch.tensor(sizes_in, dtype=torch.float32), torch.tensor(sizes_in, dtype=torch.float32), False)
    dst = D._Sizes(torch.tensor(sizes_out, dtype=torch.float32), torch.tensor(sizes_out, dtype=torch.float32), False)
    out = d._resize(x, src, dst, torch.from_numpy(t).float(), "r1", frozenset({code}), (40, 40))
    for i, (a, b) in enumerate(zip(sizes_in, sizes_out, strict=True)):
        sample = x[i : i + 1, :, :a, :a]
        if mode == "lanczos":  # Pillow's float resampling, per channel
            ref = torch.stack([torch.from_numpy(np.array(Image.fromarray(c.numpy(), mode="F").resize(
                (b, b), Image.Resampling.LANCZOS))) for c in sample[0]])[None]
        else:
            ref = F.interpolate(sample, size=(b, b), mode=mode, antialias=mode in ("bilinear", "bicubic"))
        assert torch.allclose(out[i : i + 1, :, :b, :b], ref.clamp(0, 1), atol=2e-5), (mode, a, b)


def test_jpeg_is_close_to_pillows():
    # Pillow (libjpeg-turbo) at the same quality, on an odd-sized natural-looking image.
    img = paint(117, 90, 4)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    for quality in (30, 75, 95):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        pil = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float64)
        ours = jpeg(x, torch.tensor([float(quality)]))[0].permute(1, 2, 0).numpy() * 255
        psnr = 10 * math.log10(255**2 / float(np.mean((pil - ours) ** 2)))
        assert psnr > 45, (quality, psnr)
        assert (np.round(ours) == pil).mean() > 0.6


def test_describe_lists_every_key_with_its_value():
    params = _degrader({"blur_prob": 0.3}).describe()
    keys = [p.key for p in params]
    assert keys[:2] == ["kind", "scale"] and set(keys[2:]) == set(D.ROOT_KEYS) | set(D.DATASET_KEYS)
    assert dict((p.key, p.value) for p in params)["blur_prob"] == 0.3
    assert all(p.meaning for p in params)
    assert [p.key for p in _degrader(kind="bicubic").describe()] == ["kind", "scale", "kernel"]


def test_options_are_checked_by_name():
    with pytest.raises(AutosrError, match="unknown degradation option 'blur_porb'.*did you mean 'blur_prob'"):
        _degrader({"blur_porb": 0.5})
    with pytest.raises(AutosrError, match="blur_prob: a probability must lie in"):
        _degrader({"blur_prob": 1.5})
    with pytest.raises(AutosrError, match="resize_mode_list: unknown entry 'nearest'.*did you mean 'nearest-exact'"):
        _degrader({"resize_mode_list": ["nearest"], "resize_mode_prob": [1]})
    with pytest.raises(AutosrError, match="resize_mode_list has 4 entries but resize_mode_prob has 2"):
        _degrader({"resize_mode_prob": [1, 1]})
    with pytest.raises(AutosrError, match="kernel_range: kernel sizes must be odd"):
        _degrader({"kernel_range": [4, 17]})
    with pytest.raises(AutosrError, match="jpeg_range: expected"):
        _degrader({"jpeg_range": [95, 30]})
    with pytest.raises(AutosrError, match="noise_range: expected a number"):
        _degrader({"noise_range": [1, "5"]})
    with pytest.raises(AutosrError, match="dataroot_lq_prob: mixing paired LR"):
        _degrader({"dataroot_lq_prob": 0.5})
    with pytest.raises(AutosrError, match="blur_prob belongs to the realesrgan and paragon degradations, not bicubic"):
        _degrader({"blur_prob": 0.5}, kind="bicubic")
    with pytest.raises(AutosrError, match="unknown degradation kind 'bicubc'.*did you mean 'bicubic'"):
        _degrader(kind="bicubc")


# ------------------------------------------------------------------------- bicubic vs offline ----


def test_bicubic_equals_pillows_resize_of_the_same_crop():
    hr = _hr(6, 40, seed=2)
    lq = _degrader(kind="bicubic").degrade(hr, 0)
    for crop, small in zip(hr, lq, strict=True):
        img = Image.fromarray(_levels(crop).permute(1, 2, 0).to(torch.uint8).numpy())
        ref = np.asarray(img.resize((20, 20), Image.Resampling.BICUBIC))
        assert np.array_equal(_levels(small).permute(1, 2, 0).to(torch.uint8).numpy(), ref)


@pytest.mark.parametrize("kind", ["cache", "loader"])
@pytest.mark.parametrize("use_rot", [False, True])
def test_hr_only_bicubic_source_equals_the_offline_lr_set(tmp_path, kind, use_rot):
    # The same crops from an HR-only source and from the paired set written offline (Pillow's bicubic
    # of each whole image): identical LR away from the crop edges, where the offline LR saw pixels
    # outside the crop (the kernel reaches 2 LR px at ×2). Transposed crops (use_rot) too: the
    # source tells the degrader which they are, and Pillow's passes run in the stored crop's order.
    # (margin=0: crops without context, drawn exactly where the paired source draws them)
    hr_dir, lr_dir = write_pairs(tmp_path, 3, scale=SCALE, size=(96, 80), seed=7)
    common = dict(lq_size=16, batch_size=24, use_hflip=True, use_rot=use_rot, seed=3, device="cpu", channels_last=False,
                  cache_budget_bytes=1 << 30 if kind == "cache" else 0, num_workers=0)
    paired = build_crop_source(collect_pairs(str(hr_dir), str(lr_dir)), scale=SCALE, **common)
    alone = build_hr_crop_source(sorted(hr_dir.iterdir()), _degrader(kind="bicubic"), margin=0, **common)
    assert paired.kind == alone.kind == kind
    for _ in range(2):
        offline, fly = paired.next_batch(), alone.next_batch()
        assert torch.equal(offline.gt, fly.gt)
        assert torch.equal(offline.lq[..., 2:-2, 2:-2], fly.lq[..., 2:-2, 2:-2])


def test_bicubic_with_its_margin_equals_the_offline_lr_everywhere(tmp_path):
    # With 2 LR px of context (the kernel's reach) the window is the offline LR of the whole image,
    # edges included, for plain and transposed crops alike.
    hr_dir, lr_dir = write_pairs(tmp_path, 1, scale=SCALE, size=(96, 80), seed=9)
    hr = torch.from_numpy(np.array(Image.open(next(hr_dir.iterdir())))).permute(2, 0, 1).float() * (1 / 255)
    lr = torch.from_numpy(np.array(Image.open(next(lr_dir.iterdir())))).permute(2, 0, 1).float() * (1 / 255)
    d, p, m = _degrader(kind="bicubic"), 12, 2
    assert d.margin == m
    spots = [(0, 0), (3, 7), (20, 30), (40 - p - 2 * m, 48 - p - 2 * m)]  # LR top-left of each crop with its context
    big = torch.stack([hr[:, y * 2 : (y + p + 2 * m) * 2, x * 2 : (x + p + 2 * m) * 2] for y, x in spots])
    transposed = torch.tensor([False, True, False, True])
    big = torch.where(transposed[:, None, None, None], big.transpose(-1, -2), big)
    lq, gt = d.crop(big, 0, m, transposed)
    for i, (y, x) in enumerate(spots):
        want_lq, want_gt = lr[:, y + m : y + m + p, x + m : x + m + p], hr[:, (y + m) * 2 : (y + m + p) * 2, (x + m) * 2 : (x + m + p) * 2]
        if transposed[i]:
            want_lq, want_gt = want_lq.transpose(-1, -2), want_gt.transpose(-1, -2)
        assert torch.equal(lq[i], want_lq) and torch.equal(gt[i], want_gt)


def test_realesrgan_window_is_random_per_sample_and_gt_follows():
    d = _degrader(QUIET)
    assert d.margin == 8  # traiNNer: a crop 32 HR px larger than gt_size, at ×2
    hr = _hr(12, 64)
    lq, gt = d.crop(hr, 0, 8, None)
    assert lq.shape == (12, 3, 16, 16) and gt.shape == (12, 3, 32, 32)
    t = d.draws(0, 12, 64, 64, 8)
    offsets = t[:, [D._COL["win_y"], D._COL["win_x"]]].astype(int)
    assert offsets.min() >= 0 and offsets.max() <= 16 and len({tuple(o) for o in offsets}) > 6
    full = d.degrade(hr, 0)  # the same draws, no window
    for i, (y, x) in enumerate(offsets):
        assert torch.equal(gt[i], hr[i, :, y * 2 : y * 2 + 32, x * 2 : x * 2 + 32])
        assert torch.equal(lq[i], full[i, :, y : y + 16, x : x + 16])


# ------------------------------------------------------------------------------ HR-only sources ----


@pytest.fixture(scope="module")
def hr_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("hr")
    files = []
    for i, (w, h) in enumerate([(64, 48), (40, 40), (96, 34), (67, 51)]):
        path = root / f"h{i}.png"
        Image.fromarray(paint(w, h, i)).save(path)
        files.append(path)
    return files


def _hr_source(files, kind: str, opts: dict | None = None, **kw):
    args = dict(lq_size=12, batch_size=8, use_hflip=True, use_rot=True, seed=7, device="cpu", channels_last=True,
                cache_budget_bytes=1 << 30 if kind == "cache" else 0, num_workers=0)
    args.update(kw)
    source = build_hr_crop_source(files, _degrader(opts if opts is not None else BUSY), **args)
    assert source.kind == kind
    return source


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_hr_only_source_batches(hr_files, kind):
    source = _hr_source(hr_files, kind)
    lq, gt = source.next_batch()
    assert lq.shape == (8, 3, 12, 12) and gt.shape == (8, 3, 24, 24)
    assert lq.is_contiguous(memory_format=torch.channels_last) and gt.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(_levels(lq) * (1 / 255), lq)
    # context: 8 LR px asked, the shortest side (34 px: 17 LR px, crops of 12) allows 2
    assert source.table.margin == 2 and "2 LR px of context" in source.reason
    assert source.state_dict()["samples"] == 8
    if kind == "cache":
        assert "fits" in source.reason and source.lq is None  # only the HR images are held
    source.close()
    # without context the LR is the degradation of these very GT crops, keyed by the sample counter
    plain = _hr_source(hr_files, kind, margin=0)
    lq, gt = plain.next_batch()
    assert torch.equal(lq, plain.degrader.degrade(gt, 0))


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_hr_only_source_resumes_the_exact_lr_stream(hr_files, kind):
    straight = _hr_source(hr_files, kind)
    first = _hr_source(hr_files, kind)
    for _ in range(2):
        straight.next_batch()
        first.next_batch()
    state = first.state_dict()
    first.close()
    resumed = _hr_source(hr_files, kind, seed=99)  # the saved seed wins, as for paired sets
    resumed.load_state_dict(state)
    for _ in range(2):
        a, b = resumed.next_batch(), straight.next_batch()
        assert torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)
    # a peek looks at a side stream and leaves the training stream as it was
    peek = straight.peek_batch(4)
    assert peek.lq.shape == (4, 3, 12, 12)
    assert torch.equal(straight.next_batch().lq, resumed.next_batch().lq)


def test_hr_only_sources_agree_on_seed_and_differ_by_seed(hr_files):
    a, b, c = (_hr_source(hr_files, "cache", seed=s) for s in (1, 1, 2))
    ba, bb, bc = a.next_batch(), b.next_batch(), c.next_batch()
    assert torch.equal(ba.lq, bb.lq) and not torch.equal(ba.lq, bc.lq)
    # ranks degrade from their own keys
    r0 = _hr_source(hr_files, "cache", seed=1, rank=0, world_size=2).degrader
    r1 = _hr_source(hr_files, "cache", seed=1, rank=1, world_size=2).degrader
    assert r0.seed != r1.seed


def test_hr_only_image_too_small_is_named(hr_files):
    with pytest.raises(AutosrError, match="h1.png .40×40. is smaller than the HR crop, 48 px") as err:
        _hr_source(hr_files, "cache", lq_size=24)
    assert "lower lq_size to at most 20" in err.value.hint


# ------------------------------------------------------------------------------------ GPU only ----


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_replays_what_eager_computes():
    hr = _hr(8, 32).cuda()
    graph, eager = _degrader(BUSY), _degrader(BUSY)
    assert isinstance(eager, RealESRGANDegrader)
    eager.cuda_graph = False
    for counter in (0, 8, 16):
        a, b = graph.degrade(hr, counter), eager.degrade(hr, counter)
        assert graph.graph_note == ""
        # same kernels, same order: equal, but for float rounding that can move a level where a
        # JPEG step or a rounding sits on the edge
        assert float((a - b).abs().mean()) < 1e-3
    cpu = _degrader(BUSY).degrade(hr.cpu(), 0)
    assert float((graph.degrade(hr, 0).cpu() - cpu).abs().mean()) < 2e-3


# ------------------------------------------------------------------------------------ benchmark ----


def test_cost_benchmark_runs_on_the_cpu(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "degradation_cost.py"
    spec = importlib.util.spec_from_file_location("degradation_cost", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--small", "--device", "cpu", "--steps", "1"])
    out = capsys.readouterr().out
    assert "degradation / step:" in out and result["degrade_over_step"] > 0 and result["batch"] == 8
