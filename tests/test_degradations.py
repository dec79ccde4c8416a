"""On-the-fly degradations (autosr.train.degradations) and HR-only crop sources: determinism under
(seed, counter), independence from how a stream is split, exact resume, each degradation at its
configured rate and strength, the bicubic kind against Pillow, the JPEG codec against Pillow's,
option checking, and the cost benchmark's smallest run; the same for the paragon kind (the
ParagonSR2 fork's pipeline), its codecs through Pillow, its notes, and the fork's showcase configs.
Statistical checks use fixed seeds."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
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


def _hr_source(files, kind: str, opts: dict | None = None, degradation: str = "realesrgan", **kw):
    args = dict(lq_size=12, batch_size=8, use_hflip=True, use_rot=True, seed=7, device="cpu", channels_last=True,
                cache_budget_bytes=1 << 30 if kind == "cache" else 0, num_workers=0)
    args.update(kw)
    source = build_hr_crop_source(files, _degrader(opts if opts is not None else BUSY, kind=degradation), **args)
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
    paragon = module.main(["--small", "--device", "cpu", "--steps", "1", "--config", "paragon"])
    out = capsys.readouterr().out
    assert "config paragon" in out and paragon["degrade_ms"] > 0 and paragon["host_draws_ms"] > 0
    assert ("note: HEIF compression unavailable" in out) == bool(D.codec_problem("heif"))


# ------------------------------------------------------------------------------------ paragon ----

FORK_CONFIGS = Path(__file__).parent / "data" / "fork_configs"
SHOWCASES = [FORK_CONFIGS / "previous" / "2xS_real_photography_showcase.yml",
             FORK_CONFIGS / "previous" / "2xS_real_photography_showcase copy.yml",
             FORK_CONFIGS / "fidelity" / "2xS_real_photography_showcase_copy.yml"]
# The fork's pipeline with every stage on about half the time, every format this Pillow can encode.
P_BUSY = {
    "p_clean": 0.1, "lens_distort_prob": 0.5, "lens_distort_strength_range": [-0.2, 0.2], "chromatic_aberration_prob": 0.5,
    "motion_blur_prob": 0.5, "motion_blur_kernel_size": [3, 8], "blur_prob": 0.5, "sinc_prob": 0.2, "demosaic_prob": 0.5,
    "sensor_noise_prob": 0.5, "sensor_noise_std_range": [0.01, 0.05], "rolling_shutter_prob": 0.5,
    "rolling_shutter_strength_range": [-0.05, 0.05], "exposure_prob": 0.5, "exposure_factor_range": [0.8, 1.2],
    "color_temp_prob": 0.5, "oversharpen_prob": 0.5, "aliasing_prob": 0.5, "final_sinc_prob": 0.5,
    "resize_mode_list3": list(D.RESIZE_MODES), "resize_mode_prob3": [1] * 5,
    "compression_formats": ["jpeg", "webp", "avif"], "compression_weights": [1, 1, 1], "recompression_prob": 0.5,
    "recompression_formats": ["jpeg", "webp", "avif"], "recompression_weights": [1, 1, 1],
    "editing_prob": 0.6, "editing_exposure_prob": 0.5, "editing_oversharpen_prob": 0.5,
}  # fmt: skip
# Nothing but the area resize to the LR size (and the compression every sample gets: JPEG 90 here).
P_QUIET = {"resize_mode_list3": ["area"], "resize_mode_prob3": [1], "compression_formats": ["jpeg"],
           "compression_weights": [1], "compression_jpeg_range": [90, 91]}


def _paragon(opts: dict | None = None, seed: int = 5) -> D.ParagonDegrader:
    d = _degrader(opts, seed, kind="paragon")
    assert isinstance(d, D.ParagonDegrader)
    return d


def _front(d: D.ParagonDegrader, hr: torch.Tensor, counter: int = 0) -> torch.Tensor:
    """The paragon pipeline up to its compressions (the LR canvas, float): what a CUDA graph captures."""
    n, _, h, w = hr.shape
    plan = d.plan(n, h, w)
    return d._front(hr, torch.from_numpy(d.pack(d.draws(counter, n, h, w), plan)), plan)[0]


def _column(d: D.ParagonDegrader, name: str, n: int = 4000, size: int = 32) -> np.ndarray:
    return d.draws(0, n, size, size)[:, D._PC[name]]


def test_paragon_same_seed_and_counter_same_lr_and_split_independent():
    hr = _hr(6, 32)
    a, b = _paragon(P_BUSY), _paragon(P_BUSY)
    first = a.degrade(hr, 100)
    assert first.shape == (6, 3, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, b.degrade(hr, 100)) and torch.equal(first, a.degrade(hr, 100))
    assert torch.equal(_levels(first) * (1 / 255), first)
    for other in (a.degrade(hr, 106), _paragon(P_BUSY, seed=6).degrade(hr, 100)):
        assert sum(not torch.equal(first[i], other[i]) for i in range(6)) >= 5  # (two clean samples may agree)
    # split three ways, the window included: the same LR and GT
    lq, gt = a.crop(hr, 40, 2)
    assert lq.shape == (6, 3, 12, 12) and gt.shape == (6, 3, 24, 24)
    halves = [a.crop(hr[:2], 40, 2), a.crop(hr[2:], 42, 2)]
    assert torch.equal(lq, torch.cat([h[0] for h in halves])) and torch.equal(gt, torch.cat([h[1] for h in halves]))
    singles = [a.crop(hr[i : i + 1], 40 + i, 2)[0] for i in range(6)]
    assert torch.equal(lq, torch.cat(singles))
    # the batch drew every compression format it could (so the CPU codecs took part)
    formats = set(a.draws(40, 6, 32, 32)[:, D._PC["c1_fmt"]].tolist()) | set(a.draws(40, 6, 32, 32)[:, D._PC["c2_fmt"]].tolist())
    assert {0.0, 1.0} <= formats


def test_paragon_draws_are_per_sample_and_independent_of_the_options():
    d = _paragon(P_BUSY)
    table = d.draws(1000, 32, 32, 32)
    assert np.array_equal(table[8:], d.draws(1008, 24, 32, 32))
    base = {**P_BUSY, "p_clean": 0.0}  # a clean sample turns its other stages off
    table = _paragon(base).draws(1000, 32, 32, 32)
    for change, expected in (({"motion_blur_prob": 0.1}, {"mb_on"}), ({"exposure_factor_range": [0.5, 0.6]}, {"ex_f"}),
                             ({"compression_weights": [1, 5, 1]}, {"c1_fmt", "c1_q"}), ({"editing_prob": 0.1},
                                                                                        {"ed_on", "ed_ex_on", "ed_os_on"})):
        other = _paragon({**base, **change}).draws(1000, 32, 32, 32)
        changed = {D._P_COLUMNS[c] for c in range(table.shape[1]) if not np.array_equal(table[:, c], other[:, c])}
        assert changed == expected, change


def test_paragon_stages_run_at_their_rates():
    probs = {"lens_distort_prob": 0.1, "chromatic_aberration_prob": 0.15, "motion_blur_prob": 0.2, "blur_prob": 0.25,
             "demosaic_prob": 0.3, "sensor_noise_prob": 0.35, "rolling_shutter_prob": 0.4, "exposure_prob": 0.45,
             "color_temp_prob": 0.5, "oversharpen_prob": 0.55, "aliasing_prob": 0.6, "final_sinc_prob": 0.65,
             "recompression_prob": 0.7}
    columns = ("lens_on", "ca_on", "mb_on", "k1_on", "dm_on", "sn_on", "rs_on", "ex_on", "ct_on", "os_on", "al_on", "ks_on", "c2_on")
    opts = {**probs, "editing_prob": 0.6, "editing_exposure_prob": 0.5, "editing_oversharpen_prob": 0.25,
            "compression_formats": ["jpeg", "webp"], "compression_weights": [0.7, 0.3],
            "recompression_formats": ["webp", "jpeg"], "recompression_weights": [0.8, 0.2],
            "compression_jpeg_range": [45, 95], "motion_blur_kernel_size": [3, 9]}
    t = _paragon(opts).draws(0, 4000, 32, 32)
    for column, p in zip(columns, probs.values(), strict=True):
        assert abs((t[:, D._PC[column]] > 0).mean() - p) < 0.03, column
    assert abs((t[:, D._PC["ed_ex_on"]] > 0).mean() - 0.3) < 0.03 and abs((t[:, D._PC["ed_os_on"]] > 0).mean() - 0.15) < 0.03
    first, second = t[:, D._PC["c1_fmt"]], t[:, D._PC["c2_fmt"]]
    assert abs((first == 0).mean() - 0.7) < 0.03 and set(first.tolist()) == {0.0, 1.0}
    again = t[:, D._PC["c2_on"]] > 0
    assert np.array_equal(second < 0, ~again) and abs((second[again] == 1).mean() - 0.8) < 0.03
    # JPEG qualities: int() of a uniform draw in [45, 95], as the fork's
    q = t[first == 0, D._PC["c1_q"]]
    assert q.min() == 45 and q.max() == 94 and np.array_equal(q, np.round(q)) and abs(q.mean() - 69.5) < 1.0
    sizes = t[:, D._PC["mb_size"]]  # random.randint(3, 9): every size, even ones too
    assert set(sizes.tolist()) == set(range(3, 10)) and abs(sizes.mean() - 6) < 0.1
    # clean samples: the rate, and nothing else on for them
    c = _paragon({**P_BUSY, "p_clean": 0.2}).draws(0, 4000, 32, 32)
    clean = c[:, D._PC["clean"]] > 0
    assert abs(clean.mean() - 0.2) < 0.03
    flags = [D._PC[f] for f in D._P_FLAGS]
    assert not c[np.ix_(clean, flags)].any() and (c[clean, D._PC["c1_fmt"]] == -1).all() and c[~clean][:, flags].any()


# Each stage on, with an effect that shows after the area resize and the JPEG.
STAGES = {
    "lens_on": {"lens_distort_prob": "p", "lens_distort_strength_range": [0.2, 0.3]},
    "ca_on": {"chromatic_aberration_prob": "p"},
    "mb_on": {"motion_blur_prob": "p", "motion_blur_kernel_size": [5, 9]},
    "k1_on": {"blur_prob": "p", "blur_sigma": [1.5, 3.0]},
    "dm_on": {"demosaic_prob": "p"},
    "sn_on": {"sensor_noise_prob": "p", "sensor_noise_std_range": [0.03, 0.05]},
    "rs_on": {"rolling_shutter_prob": "p", "rolling_shutter_strength_range": [0.05, 0.1]},
    "ex_on": {"exposure_prob": "p", "exposure_factor_range": [0.6, 0.8]},
    "ct_on": {"color_temp_prob": "p", "color_temp_shift_range": [0.1, 0.2]},
    "os_on": {"oversharpen_prob": "p", "oversharpen_strength": [1.5, 2.0]},
    "al_on": {"aliasing_prob": "p", "aliasing_scale_range": [0.5, 0.7]},
    "ks_on": {"final_sinc_prob": "p", "final_kernel_range": [7, 11]},
    "c2_on": {"recompression_prob": "p", "recompression_formats": ["jpeg"], "recompression_weights": [1],
              "compression_jpeg_range": [20, 30]},
    "ed_ex_on": {"editing_prob": 1, "editing_exposure_prob": "p", "editing_exposure_range": [1.2, 1.3]},
    "ed_os_on": {"editing_prob": 1, "editing_oversharpen_prob": "p", "editing_oversharpen_strength": [1.5, 2.0]},
    "clean": {"p_clean": "p", "sensor_noise_prob": 1, "sensor_noise_std_range": [0.05, 0.05]},
}


@pytest.mark.parametrize("column", list(STAGES))
def test_paragon_each_stage_applies_to_exactly_the_samples_drawn(column):
    hr = _hr(8, 32)

    def with_prob(p: float) -> D.ParagonDegrader:
        return _paragon({**P_QUIET, **{k: p if v == "p" else v for k, v in STAGES[column].items()}})

    never, always = (with_prob(p).degrade(hr, 0) for p in (0.0, 1.0))
    half = with_prob(0.5)
    on = half.draws(0, 8, 32, 32)[:, D._PC[column]] > 0
    assert 0 < on.sum() < 8
    mixed = half.degrade(hr, 0)
    for i in range(8):
        assert torch.equal(mixed[i], always[i] if on[i] else never[i]), i
    assert sum(not torch.equal(always[i], never[i]) for i in range(8)) >= 6  # the stage shows


def test_paragon_exposure_colour_temperature_and_editing_exposure_scale_by_the_drawn_factors():
    hr = torch.full((16, 3, 32, 32), 0.4)
    d = _paragon({**P_QUIET, "exposure_prob": 1, "exposure_factor_range": [0.7, 1.3], "color_temp_prob": 1,
                  "color_temp_shift_range": [-0.3, 0.3]})
    out = _front(d, hr).mean(dim=(2, 3))
    t = torch.from_numpy(d.draws(0, 16, 32, 32)).float()
    shift, factor = t[:, D._PC["ct_s"]], t[:, D._PC["ex_f"]]
    gains = torch.stack([1 + 0.3 * shift.clamp(min=0), 1 + 0.1 * shift.abs(), 1 + 0.3 * (-shift).clamp(min=0)], 1)
    assert (shift > 0).any() and (shift < 0).any()
    assert torch.allclose(out, 0.4 * factor[:, None] * gains, atol=1e-5)
    # editing exposure, after the compression: the LR times the factor
    e = _paragon({**P_QUIET, "editing_prob": 1, "editing_exposure_prob": 1, "editing_exposure_range": [0.8, 1.2]})
    base = _paragon(P_QUIET).degrade(hr, 0).mean(dim=(1, 2, 3))
    f = torch.from_numpy(e.draws(0, 16, 32, 32)[:, D._PC["ed_ex_f"]]).float()
    assert torch.allclose(e.degrade(hr, 0).mean(dim=(1, 2, 3)), base * f, atol=0.6 / 255)


def test_paragon_sensor_noise_has_the_drawn_std_per_channel():
    hr = torch.full((12, 3, 64, 64), 0.5)
    d = _paragon({**P_QUIET, "sensor_noise_prob": 1, "sensor_noise_std_range": [0.01, 0.06]})
    residual = _front(d, hr) - 0.5  # after the 2×2 area mean: std / 2
    std = torch.from_numpy(d.draws(0, 12, 64, 64)[:, D._PC["sn_std"]]).float()
    assert torch.allclose(residual.std(dim=(1, 2, 3)), std / 2, rtol=0.1)
    assert abs(float(residual.mean())) < 5e-4
    flat = residual.permute(1, 0, 2, 3).reshape(3, -1)
    assert float(torch.corrcoef(flat).fill_diagonal_(0).abs().max()) < 0.05  # each channel its own noise


def test_paragon_oversharpening_is_the_forks_formula():
    hr = _hr(4, 32, seed=1)
    d = _paragon({**P_QUIET, "oversharpen_prob": 1, "oversharpen_strength": [1.0, 2.0]})
    s = torch.from_numpy(d.draws(0, 4, 32, 32)[:, D._PC["os_s"]]).float()[:, None, None, None]
    box = F.conv2d(F.pad(hr, (2, 2, 2, 2), mode="reflect"), torch.ones(3, 1, 5, 5) / 25, groups=3)
    want = F.avg_pool2d((hr + (hr - box) * s).clamp(0, 1), 2)
    assert torch.allclose(_front(d, hr), want, atol=1e-5)
    # editing sharpening: the same on the compressed LR, with editing_oversharpen_strength
    e = _paragon({**P_QUIET, "editing_prob": 1, "editing_oversharpen_prob": 1, "editing_oversharpen_strength": [1.0, 2.0]})
    s = torch.from_numpy(e.draws(0, 4, 32, 32)[:, D._PC["ed_os_s"]]).float()[:, None, None, None]
    plain = _paragon(P_QUIET).degrade(hr, 0)
    box = F.conv2d(F.pad(plain, (2, 2, 2, 2), mode="reflect"), torch.ones(3, 1, 5, 5) / 25, groups=3)
    want = torch.round((plain + (plain - box) * s).clamp(0, 1) * 255)
    diff = (_levels(e.degrade(hr, 0)) - want).abs()
    assert float(diff.max()) <= 1 and float((diff == 0).float().mean()) > 0.99  # (a level where a .5 meets float rounding)


@pytest.mark.parametrize("size", [32, 37, 48])
def test_paragon_aliasing_is_nearest_there_and_back(size):
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
    downs = [1, 5, int(size * 0.6), int(size * 0.75), size // 2, size - 1, size]
    index = D._nearest_there_and_back(size, torch.tensor(downs, dtype=torch.float32))
    for row, down in zip(index, downs, strict=True):
        want = F.interpolate(F.interpolate(x, size=(down, down), mode="nearest"), size=(size, size), mode="nearest")
        assert torch.equal(x[..., row, :][..., row], want), down


def _fork_motion_kernel(size: int, angle: float) -> np.ndarray:
    """The fork's _create_motion_blur_kernel, restated."""
    centre, c, s = size // 2, math.cos(math.radians(angle)), math.sin(math.radians(angle))
    k = np.array([[1.0 if abs((i - centre) * c + (j - centre) * s) < 0.5 else 0.0 for j in range(size)] for i in range(size)])
    return k / k.sum()


def test_paragon_motion_kernels_are_the_forks():
    d = _paragon({"motion_blur_prob": 1, "motion_blur_kernel_size": [2, 11], "motion_blur_angle_range": [-180, 180]})
    table = d.draws(0, 64, 32, 32)
    side = d.plan(64, 32, 32).motion
    assert side == 11
    got = D._motion_kernels(torch.from_numpy(table), side).double().numpy()
    for i, row in enumerate(table):
        size, angle = int(row[D._PC["mb_size"]]), row[D._PC["mb_angle"]]
        at = side // 2 - size // 2  # the fork's centre is size // 2: even sizes reach further up-left
        want = np.zeros((side, side))
        want[at : at + size, at : at + size] = _fork_motion_kernel(size, angle)
        assert np.abs(got[i] - want).max() < 1e-6, (size, angle)
    # 0° blurs along rows, 90° along columns
    flat = torch.zeros(2, len(D._P_COLUMNS), dtype=torch.float64)
    flat[:, D._PC["mb_size"]] = 5
    flat[:, D._PC["mb_cos"]] = torch.tensor([1.0, 0.0])
    flat[:, D._PC["mb_sin"]] = torch.tensor([0.0, 1.0])
    k = D._motion_kernels(flat, 5)
    assert torch.equal(k[0, 2], torch.full((5,), 0.2)) and torch.equal(k[1, :, 2], torch.full((5,), 0.2))


def test_paragon_geometry_lens_shutter_and_chromatic_aberration():
    d = _paragon()
    n, size = 3, 64
    u = ((torch.arange(size) * 2 + 1) / size - 1).float()
    ramp_x = u.view(1, 1, 1, size).expand(n, 3, size, size)  # value = the normalised x of the pixel centre
    ramp_y = u.view(1, 1, size, 1).expand(n, 3, size, size)
    k = torch.tensor([-0.2, 0.0, 0.3]).view(n, 1, 1, 1)
    # lens distortion: the pixel at (x, y) shows the crop at (x, y)·(1 + k·r²); x stays x (the fork's grid is transposed)
    r2 = u.view(1, size) ** 2 + u.view(size, 1) ** 2
    lens_x = d._warp(ramp_x, k, "lens")
    want = u.view(1, 1, 1, size) * (1 + k * r2)
    inside = (want.abs() < 0.95) & (r2 < 0.9)
    assert torch.allclose(lens_x[inside.expand_as(lens_x)], want.expand_as(lens_x)[inside.expand_as(lens_x)], atol=1e-4)
    assert torch.allclose(d._warp(ramp_x, torch.zeros(n, 1, 1, 1), "lens"), ramp_x, atol=1e-5)  # k = 0: identity
    # rolling shutter: row y px below the centre shifted k·y px: x samples at x + k·y·(2 / size)
    shear = d._warp(ramp_x, k, "shear")
    want = u.view(1, 1, 1, size) + k * u.view(1, 1, size, 1)
    ok = want.abs() < 0.95
    assert torch.allclose(shear[ok.expand_as(shear)], want.expand_as(shear)[ok.expand_as(shear)], atol=1e-4)
    assert torch.allclose(d._warp(ramp_y, k, "shear"), ramp_y, atol=1e-5)  # rows stay rows
    # chromatic aberration: red sampled ×1.001 from the centre, blue ×0.999, green untouched
    x = torch.stack([ramp_x[:, 0] * 0.5 + 0.5] * 3, 1)
    ca = d._chromatic(x)
    assert torch.equal(ca[:, 1], x[:, 1])
    inner = slice(1, -1)  # the outermost red pixels sample beyond the border (reflected there)
    assert torch.allclose(ca[:, 0, :, inner], (u * 1.001 * 0.5 + 0.5)[inner].expand(n, size, size - 2), atol=1e-5)
    assert torch.allclose(ca[:, 2], (u * 0.999 * 0.5 + 0.5).expand(n, size, size), atol=1e-5)


def _bilinear_bayer(img: np.ndarray) -> np.ndarray:
    """OpenCV's bilinear Bayer → RGB on the fork's mosaic (B at even/even, R at odd/odd), restated with
    loops over the interior (uint8 [H, W, 3] → uint8, border rows and columns left 0)."""
    h, w, _ = img.shape
    ch = np.where((np.arange(h)[:, None] % 2 == 0) & (np.arange(w)[None] % 2 == 0), 2,
                  np.where((np.arange(h)[:, None] % 2 == 1) & (np.arange(w)[None] % 2 == 1), 0, 1))
    mosaic = np.take_along_axis(img.astype(np.int64), ch[..., None], 2)[..., 0]
    out = np.zeros_like(img)
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            for c in range(3):
                near = [(y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if ch[y + dy, x + dx] == c]
                if ch[y, x] == c:
                    out[y, x, c] = mosaic[y, x]
                else:
                    dist = min(abs(a - y) + abs(b - x) for a, b in near)
                    vals = [mosaic[a, b] for a, b in near if abs(a - y) + abs(b - x) == dist]
                    out[y, x, c] = (sum(vals) + len(vals) // 2) // len(vals)
    return out


def test_paragon_demosaic_is_bilinear_bayer_on_the_forks_mosaic():
    img = paint(20, 16, 3)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    got = _levels(D._demosaic(x))[0].permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.array_equal(got[1:-1, 1:-1], _bilinear_bayer(img)[1:-1, 1:-1])
    flat = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    assert torch.equal(D._demosaic(flat), _levels(flat) * (1 / 255))  # a flat colour survives


def test_paragon_pillow_codecs_are_pillows_round_trip_at_the_drawn_quality():
    formats = [f for f in ("webp", "avif") if not D.codec_problem(f)]
    assert "webp" in formats  # Pillow always has WebP here
    hr = _hr(8, 32)
    d = _paragon({**P_QUIET, "compression_formats": formats, "compression_weights": [1] * len(formats),
                  "compression_webp_range": [20, 60], "compression_avif_range": [20, 60]})
    lq, canvas = d.degrade(hr, 0), _front(d, hr)
    t = d.draws(0, 8, 32, 32)
    assert len(set(t[:, D._PC["c1_fmt"]].tolist())) == len(formats)
    for i in range(8):
        fmt, q = D.CODECS[int(t[i, D._PC["c1_fmt"]])], int(t[i, D._PC["c1_q"]])
        assert 20 <= q < 60
        img = torch.floor(canvas[i] * 255 + 0.5).permute(1, 2, 0).to(torch.uint8).numpy()  # 8 bits, half up
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt.upper(), quality=q)
        want = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        assert np.array_equal(_levels(lq[i]).permute(1, 2, 0).to(torch.uint8).numpy(), want), (fmt, q)
    # JPEG: autosr's batched codec at the drawn quality
    j = _paragon({**P_QUIET, "compression_jpeg_range": [30, 80]})
    q = torch.from_numpy(j.draws(0, 8, 32, 32)[:, D._PC["c1_q"]]).float()
    assert torch.equal(j.degrade(hr, 0), torch.round(jpeg(_front(j, hr), q) * 255) * (1 / 255))
    # lower quality, larger error
    err = [float((_paragon({**P_QUIET, "compression_formats": ["webp"], "compression_weights": [1],
                            "compression_webp_range": [q, q + 1]}).degrade(hr, 0) - canvas).abs().mean()) for q in (5, 90)]
    assert err[0] > 2 * err[1]


def test_paragon_clean_samples_are_the_plain_resize():
    hr = torch.floor(_hr(16, 32) * 255 / 4) * 4 / 255  # levels in steps of 4: every 2×2 mean is a level
    d = _paragon({**P_BUSY, "p_clean": 0.5, "resize_mode_list3": ["area"], "resize_mode_prob3": [1]})
    clean = d.draws(0, 16, 32, 32)[:, D._PC["clean"]] > 0
    lq, want = d.degrade(hr, 0), torch.round(F.avg_pool2d(hr, 2) * 255) * (1 / 255)
    assert 0 < clean.sum() < 16
    for i in range(16):
        assert torch.equal(lq[i], want[i]) == bool(clean[i])


def test_paragon_notes_an_unavailable_codec_once_and_shares_its_weight(monkeypatch):
    monkeypatch.setattr(D, "codec_problem", lambda fmt: "not here (test)" if fmt in ("avif", "heif") else "")
    opts = {"compression_formats": ["jpeg", "webp", "avif", "heif"], "compression_weights": [0.6, 0.25, 0.1, 0.05],
            "recompression_prob": 0.5, "recompression_formats": ["jpeg", "webp", "avif", "heif"],
            "recompression_weights": [0.5, 0.35, 0.1, 0.05]}
    d = _paragon(opts)
    codec_notes = [n for n in d.notes if "compression unavailable" in n]
    assert len(codec_notes) == 2 and codec_notes[0].startswith("AVIF") and codec_notes[1].startswith("HEIF")
    assert "compression_weights 0.1, recompression_weights 0.1" in codec_notes[0] and "not here (test)" in codec_notes[0]
    assert "compression jpeg 0.706, webp 0.294" in codec_notes[0]
    t = d.draws(0, 4000, 32, 32)
    first, second = t[:, D._PC["c1_fmt"]], t[:, D._PC["c2_fmt"]]
    assert set(first.tolist()) == {0.0, 1.0} and set(second.tolist()) == {-1.0, 0.0, 1.0}
    assert abs((first == 0).mean() - 0.6 / 0.85) < 0.03
    assert d.degrade(_hr(4, 32), 0).shape == (4, 3, 16, 16)
    assert dict((p.key, p.value) for p in d.describe())["codecs"]["avif"] == "not here (test)"
    # no recompression: its formats are not looked at; nothing left to encode: refused by name
    quiet = _paragon({**opts, "recompression_prob": 0, "recompression_formats": ["avif"], "recompression_weights": [1]})
    assert not any("recompression_weights" in n for n in quiet.notes)
    with pytest.raises(AutosrError, match="compression_formats: no format with a weight can be encoded here .avif: not here"):
        _paragon({"compression_formats": ["avif"], "compression_weights": [1]})
    assert not [n for n in _paragon({"compression_formats": ["jpeg", "webp"], "compression_weights": [1, 1]}).notes]


def test_paragon_real_codec_availability_is_reported():
    d = _paragon()  # the fork's defaults name every format
    for fmt in ("avif", "heif"):
        assert any(n.startswith(f"{fmt.upper()} compression unavailable") for n in d.notes) == bool(D.codec_problem(fmt))
    assert D.codec_problem("jpeg") == "" and D.codec_problem("webp") == ""


def test_paragon_options_are_checked_by_name():
    with pytest.raises(AutosrError, match="unknown degradation option 'motion_blur_porb'.*did you mean 'motion_blur_prob'"):
        _paragon({"motion_blur_porb": 0.5})
    with pytest.raises(AutosrError, match="compression_formats: unknown entry 'jpg'.*did you mean 'jpeg'"):
        _paragon({"compression_formats": ["jpg"], "compression_weights": [1]})
    with pytest.raises(AutosrError, match="compression_formats has 3 entries but compression_weights has 4"):
        _paragon({"compression_formats": ["jpeg", "webp", "avif"]})
    with pytest.raises(AutosrError, match="enable_sequences: true is not implemented"):
        _paragon({"enable_sequences": True})
    with pytest.raises(AutosrError, match="motion_blur_kernel_size: expected"):
        _paragon({"motion_blur_kernel_size": [5, 60]})
    with pytest.raises(AutosrError, match="sensor_noise_std_range: expected"):
        _paragon({"sensor_noise_std_range": [0.1, 0.01]})
    with pytest.raises(AutosrError, match="lens_distort_prob: a probability"):
        _paragon({"lens_distort_prob": 2})
    with pytest.raises(AutosrError, match="dataroot_lq_prob: mixing paired LR"):
        _paragon({"dataroot_lq_prob": 0.5})
    with pytest.raises(AutosrError, match="compression_formats belongs to the paragon degradations, not realesrgan"):
        _degrader({"compression_formats": ["jpeg"]})
    with pytest.raises(AutosrError, match="lens_distort_prob belongs to the paragon degradations, not bicubic"):
        _degrader({"lens_distort_prob": 0.5}, kind="bicubic")
    # keys the fork's pipeline does not read: accepted as written (its configs write 'nearest'), noted
    d = _paragon({"resize_mode_list": ["nearest"], "jpeg_prob": 0.5, "webp_prob": 0.3})
    assert d.notes[-1] == "not read by the fork's ParagonOTF pipeline, so without effect: jpeg_prob, resize_mode_list, webp_prob"
    assert D.otf_kind("fork") == "paragon" and D.otf_kind("upstream") == "realesrgan"
    with pytest.raises(AutosrError, match="did you mean 'fork'"):
        D.otf_kind("forks")


def test_paragon_describe_lists_every_key_with_its_value():
    d = _paragon({"motion_blur_prob": 0.3, "jpeg_prob": 0.5})
    params = d.describe()
    keys = [p.key for p in params]
    assert keys[:3] == ["kind", "scale", "codecs"] and keys[3:-1] == list(D._P_READ) and keys[-1] == "jpeg_prob"
    values = dict((p.key, p.value) for p in params)
    assert values["motion_blur_prob"] == 0.3 and values["compression_weights"] == [0.60, 0.25, 0.10, 0.05]
    assert values["codecs"]["jpeg"] == "batched on the device"
    assert all(p.meaning for p in params) and params[-1].meaning.startswith("no effect")
    assert set(D.PARAGON_ROOT_KEYS) | set(D.PARAGON_DATASET_KEYS) == set(D._P_READ) | set(D._P_UNREAD)
    assert "kernel_list" in D.PARAGON_DATASET_KEYS and "compression_formats" in D.PARAGON_ROOT_KEYS


# datasets.train keys that are not degradation keys (traiNNer's DatasetOptions)
DATASET_GENERAL = {"name", "type", "dataroot_gt", "dataroot_lq", "gt_size", "lq_size", "use_hflip", "use_rot",
                   "num_worker_per_gpu", "batch_size_per_gpu", "accum_iter", "io_backend", "meta_info"}


@pytest.mark.parametrize("config", SHOWCASES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_paragon_from_the_forks_showcase_configs(config):
    tree = yaml.safe_load(config.read_text(encoding="utf-8"))
    train = tree["datasets"]["train"]
    known = set(D.PARAGON_ROOT_KEYS) | set(D.PARAGON_DATASET_KEYS)
    opts = {key: value for section in (tree, train) for key, value in section.items() if key in known}
    assert set(train) - known <= DATASET_GENERAL  # every other datasets.train key is a degradation key
    assert not {k for k in tree if k not in known and ("prob" in k or "range" in k)}
    d = _paragon(opts)
    assert d.opts["compression_formats"] == ["jpeg", "webp", "avif", "heif"] and d.opts["sensor_noise_prob"] == 0.5
    hr = _hr(6, 48)
    lq, gt = d.crop(hr, 0, d.margin)
    assert d.margin == 8 and lq.shape == (6, 3, 8, 8) and gt.shape == (6, 3, 16, 16)
    assert torch.equal(_levels(lq) * (1 / 255), lq)
    full = d.degrade(hr, 0)
    assert full.shape == (6, 3, 24, 24) and float((full - F.avg_pool2d(hr, 2)).abs().mean()) > 1 / 255
    unread = next((n for n in d.notes if n.startswith("not read")), "")
    # the copies carry upstream's second-order keys (under datasets.train), the original kernel 2's
    assert ("resize_prob" in unread) == ("copy" in config.name) == ("kernel_list2" not in unread)


@pytest.mark.parametrize("kind", ["cache", "loader"])
def test_paragon_hr_only_source_resumes_the_exact_lr_stream(hr_files, kind):
    opts = {**P_BUSY, "compression_formats": ["jpeg", "webp"], "compression_weights": [1, 1]}
    straight = _hr_source(hr_files, kind, opts, "paragon")
    first = _hr_source(hr_files, kind, opts, "paragon")
    for _ in range(2):
        straight.next_batch()
        first.next_batch()
    state = first.state_dict()
    first.close()
    resumed = _hr_source(hr_files, kind, opts, "paragon", seed=99)
    resumed.load_state_dict(state)
    for _ in range(2):
        a, b = resumed.next_batch(), straight.next_batch()
        assert a.lq.shape == (8, 3, 12, 12) and torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_paragon_cuda_graph_replays_what_eager_computes():
    hr = _hr(8, 32).cuda()
    graph, eager = _paragon(P_BUSY), _paragon(P_BUSY)
    eager.cuda_graph = False
    for counter in (0, 8, 16):
        a, b = graph.degrade(hr, counter), eager.degrade(hr, counter)
        assert graph.graph_note == ""
        assert float((a - b).abs().mean()) < 1e-3
    assert float((graph.degrade(hr, 0).cpu() - _paragon(P_BUSY).degrade(hr.cpu(), 0)).abs().mean()) < 3e-3
