"""Losses (build, values, gradients, autocast) and validation metrics against numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from autosr.errors import AutosrError
from autosr.train.losses import LossTerm, build_losses, ms_scales, ms_ssim, ssim, total_loss
from autosr.train.metrics import calculate_metric, calculate_psnr, calculate_ssim, tiled_forward

LOSS_TYPES = ["l1loss", "mseloss", "charbonnierloss", "ssimloss", "mssimloss", "fftloss"]


# ----------------------------------------------------------------------------- numpy references
def ref_gaussian_window() -> np.ndarray:
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    return np.outer(g, g)


def ref_ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's _ssim written plainly: 2-D window, valid filtering, float64, [0,255] constants."""
    win = ref_gaussian_window()

    def filt(x: np.ndarray) -> np.ndarray:
        return (sliding_window_view(x, (11, 11)) * win).sum(axis=(-2, -1))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = filt(a), filt(b)
    s1 = filt(a * a) - mu1**2
    s2 = filt(b * b) - mu2**2
    s12 = filt(a * b) - mu1 * mu2
    return float((((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))).mean())


def ref_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """a, b: (C, H, W) float64 on [0, 255]; mean over channels."""
    return float(np.mean([ref_ssim_channel(a[c], b[c]) for c in range(a.shape[0])]))


def ref_y(img_u8: np.ndarray) -> np.ndarray:
    """BasicSR's to_y_channel on an RGB (C,H,W) uint8 image, float32 like theirs."""
    x = img_u8.astype(np.float32).transpose(1, 2, 0) / 255.0
    y = x @ np.array([65.481, 128.553, 24.966], dtype=np.float32) + 16.0
    return (y / 255.0 * 255.0)[None].astype(np.float64)


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 48, 48, generator=g)
    sr = (gt + 0.1 * torch.randn(2, 3, 48, 48, generator=g)).clamp(0, 1)
    return sr, gt


def one(kind: str, **opts: object) -> LossTerm:
    (term,) = build_losses([{"type": kind, "loss_weight": 1.0, **opts}])
    return term


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("kind", LOSS_TYPES)
def test_loss_zero_for_identical_positive_otherwise(kind: str, pair) -> None:
    sr, gt = pair
    term = one(kind)
    assert term(gt, gt.clone()).item() == pytest.approx(0.0, abs=2e-6)  # charbonnier: sqrt(eps)=1e-6
    assert term(sr, gt).item() > 1e-3


@pytest.mark.parametrize("kind", LOSS_TYPES)
def test_gradients_flow(kind: str, pair) -> None:
    sr, gt = pair
    sr = sr.clone().requires_grad_(True)
    one(kind)(sr, gt).backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0


def test_fft_gradient_finite_on_flat_images() -> None:
    sr = torch.zeros(1, 3, 16, 16, requires_grad=True)  # every frequency bin is exactly zero
    one("fftloss")(sr, torch.full((1, 3, 16, 16), 0.5)).backward()
    assert torch.isfinite(sr.grad).all()


def test_ssim_loss_matches_metric_style_ssim(pair) -> None:
    sr, gt = pair
    loss = one("ssimloss")(sr, gt).item()
    expected = np.mean([ref_ssim(sr[i].double().numpy() * 255, gt[i].double().numpy() * 255) for i in range(2)])
    assert 1 - loss == pytest.approx(expected, abs=1e-5)


def test_ms_ssim_scales_fit_the_patch() -> None:
    assert [ms_scales(s, 11) for s in (176, 175, 128, 64, 21, 11, 10)] == [5, 4, 4, 3, 1, 1, 0]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g)
    y = (x + 0.1 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1)
    assert ms_ssim(x, y).item() == pytest.approx(ssim(x, y).item(), rel=1e-5)  # one scale = SSIM
    big = torch.rand(1, 3, 176, 176, generator=g)
    assert ms_ssim(big, big).item() == pytest.approx(1.0, abs=1e-5)


def test_ssim_losses_refuse_patches_smaller_than_the_window() -> None:
    x = torch.rand(1, 3, 8, 8)
    for kind in ("ssimloss", "mssimloss"):
        with pytest.raises(AutosrError, match="at least 11×11"):
            one(kind)(x, x)


def test_mssim_cosim_option(pair) -> None:
    sr, gt = pair
    black = torch.zeros(1, 3, 32, 32)
    with_cos = one("mssimloss", cosim=True, cosim_lambda=5.0)
    assert with_cos(black, black.clone()).item() == pytest.approx(0.0, abs=1e-5)
    assert with_cos(sr, gt).item() > one("mssimloss")(sr, gt).item()


def test_bf16_autocast_computes_losses_in_fp32(pair) -> None:
    sr, gt = pair
    net = nn.Conv2d(3, 3, 3, padding=1)
    terms = build_losses([{"type": k, "loss_weight": 0.5} for k in LOSS_TYPES])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(sr)
        assert out.dtype == torch.bfloat16
        total, values = total_loss(terms, out, gt)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    assert set(values) == {"l1", "mse", "charbonnier", "ssim", "mssim", "fft"}
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in values.values())
    total.backward()
    assert torch.isfinite(net.weight.grad).all()


def test_total_loss_weights_and_skips_zero_weight_terms(pair) -> None:
    sr, gt = pair
    l1, mse = build_losses([{"type": "l1loss", "loss_weight": 2.0}, {"type": "mseloss", "loss_weight": 1.0}])
    total, values = total_loss([l1, mse], sr, gt)
    assert total.item() == pytest.approx(2 * values["l1"].item() + values["mse"].item(), rel=1e-6)

    def boom(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        raise AssertionError("a zero-weight term must not be computed")

    mse.weight = 0.0  # the runtime scheduler may do this
    total, values = total_loss([l1, mse, LossTerm("x", 0.0, "l1loss", boom)], sr, gt)
    assert set(values) == {"l1"} and total.item() == pytest.approx(2 * values["l1"].item())


def test_names_are_traiNNer_labels_made_unique() -> None:
    terms = build_losses([{"type": "L1Loss", "loss_weight": 1.0}, {"type": "l1loss", "loss_weight": 0.5},
                          {"type": "MSSIMLoss", "loss_weight": 0.1}, {"type": "perceptualloss", "loss_weight": 0}])
    assert [t.name for t in terms] == ["l1", "l1_2", "mssim"]
    assert [t.weight for t in terms] == [1.0, 0.5, 0.1]


@pytest.mark.parametrize(
    ("entries", "words"),
    [
        ([{"type": "l1los", "loss_weight": 1.0}], ["train.losses[0].type", "did you mean 'l1loss'"]),
        ([{"type": "l1loss", "loss_weight": 1.0}, {"type": "charbonnierloss", "loss_weight": 1.0, "epsilon": 1e-6}],
         ["train.losses[1].epsilon", "did you mean 'eps'"]),
        ([{"type": "ssimloss", "loss_weight": 1.0, "window": 7}], ["train.losses[0].window", "'window_size'"]),
        ([{"type": "ssimloss", "loss_weight": 1.0, "window_size": 10}], ["window_size", "odd"]),
        ([{"type": "l1loss", "loss_weight": 0}, {"type": "mseloss", "loss_weight": 0.0}], ["every loss_weight is 0"]),
        ([{"type": "perceptualloss", "loss_weight": 1.0}], ["train.losses[0]", "VGG19", "loss_weight to 0"]),
        ([{"type": "ganloss", "loss_weight": 0.1}], ["network_d", "optim_d"]),
        ([{"type": "l1loss"}], ["train.losses[0].loss_weight", "missing"]),
        ([{"type": "l1loss", "loss_weight": "5e-4"}], ["must be a number", "5.0e-4"]),
        ([{"type": "l1loss", "loss_weight": -1.0}], ["≥ 0"]),
        ([{"loss_weight": 1.0}], ["train.losses[0].type"]),
        ([], ["at least one loss"]),
        (["l1loss"], ["must be a mapping"]),
    ],
)
def test_bad_loss_configs_raise_autosr_error(entries: list, words: list[str]) -> None:
    with pytest.raises(AutosrError) as info:
        build_losses(entries)
    text = str(info.value)
    for word in words:
        assert word in text, text


# ----------------------------------------------------------------------------- metrics
def u8(*shape: int, seed: int = 0, low: int = 0, high: int = 256) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_psnr_of_a_known_mse() -> None:
    gt = u8(3, 32, 40, low=10, high=240)
    signs = u8(3, 32, 40, seed=1, high=2).to(torch.int16) * 2 - 1
    sr = (gt.to(torch.int16) + 3 * signs).to(torch.uint8)  # every pixel off by exactly 3: MSE 9
    assert calculate_psnr(sr, gt) == pytest.approx(10 * math.log10(255**2 / 9), abs=1e-10)
    assert calculate_psnr(gt, gt) == math.inf


def test_psnr_and_ssim_on_batches_average_images() -> None:
    a, b = u8(2, 3, 24, 24), u8(2, 3, 24, 24, seed=5)
    assert calculate_psnr(a, b) == pytest.approx((calculate_psnr(a[0], b[0]) + calculate_psnr(a[1], b[1])) / 2)
    assert calculate_ssim(a, b) == pytest.approx((calculate_ssim(a[0], b[0]) + calculate_ssim(a[1], b[1])) / 2)


def test_crop_border_removes_edges() -> None:
    gt = u8(3, 30, 30)
    sr = gt.clone()
    sr[:, :2, :] = 255 - sr[:, :2, :]  # damage only the top two rows
    assert math.isfinite(calculate_psnr(sr, gt, crop_border=1))
    assert calculate_psnr(sr, gt, crop_border=2) == math.inf
    assert calculate_ssim(sr, gt, crop_border=2) == pytest.approx(1.0)
    cropped = ref_psnr(sr[:, 1:-1, 1:-1].numpy(), gt[:, 1:-1, 1:-1].numpy())
    assert calculate_psnr(sr, gt, crop_border=1) == pytest.approx(cropped, abs=1e-10)


def test_y_channel_matches_basicsr_rgb2ycbcr() -> None:
    a, b = u8(3, 40, 36, seed=2), u8(3, 40, 36, seed=3)
    ya, yb = ref_y(a.numpy()), ref_y(b.numpy())
    assert calculate_psnr(a, b, test_y_channel=True) == pytest.approx(ref_psnr(ya, yb), abs=1e-4)
    assert calculate_ssim(a, b, test_y_channel=True) == pytest.approx(ref_ssim(ya, yb), abs=1e-6)
    assert calculate_psnr(a, b, test_y_channel=True) != pytest.approx(calculate_psnr(a, b), abs=1e-3)
    grey_a, grey_b = a[:1], b[:1]  # one channel: scored as is
    assert calculate_psnr(grey_a, grey_b, test_y_channel=True) == pytest.approx(calculate_psnr(grey_a, grey_b))


def test_float_inputs_are_quantised_like_tensor2img() -> None:
    a, b = u8(3, 20, 20, seed=4), u8(3, 20, 20, seed=6)
    fa = a.float() / 255 + 0.4 / 255  # rounds back to a
    fb = (b.float() / 255).clamp(0, 1)
    assert calculate_psnr(fa, fb) == pytest.approx(calculate_psnr(a, b), abs=1e-12)
    assert calculate_ssim(fa, fb) == pytest.approx(calculate_ssim(a, b), abs=1e-12)
    over = fa.clone()
    over[0, 0, 0] = 1.7  # clamped to 255, as tensor2img does
    a2 = a.clone()
    a2[0, 0, 0] = 255
    assert calculate_psnr(over, fb) == pytest.approx(calculate_psnr(a2, b), abs=1e-12)


@pytest.mark.parametrize(("crop", "y_only"), [(0, False), (3, False), (2, True)])
def test_ssim_matches_numpy_reference(crop: int, y_only: bool) -> None:
    gt = u8(3, 45, 52, seed=7)
    noise = torch.randint(-25, 26, gt.shape, generator=torch.Generator().manual_seed(8))
    sr = (gt.int() + noise).clamp(0, 255).to(torch.uint8)
    a, b = sr.numpy(), gt.numpy()
    if crop:
        a, b = a[:, crop:-crop, crop:-crop], b[:, crop:-crop, crop:-crop]
    if y_only:
        a, b = ref_y(a), ref_y(b)
    expected = ref_ssim(a.astype(np.float64), b.astype(np.float64))
    tol = 1e-7 if y_only else 1e-10  # BasicSR computes Y in float32, autosr in float64
    assert calculate_ssim(sr, gt, crop_border=crop, test_y_channel=y_only) == pytest.approx(expected, abs=tol)
    assert calculate_ssim(gt, gt, crop_border=crop, test_y_channel=y_only) == pytest.approx(1.0, abs=1e-12)


def test_calculate_metric_reads_traiNNer_specs() -> None:
    a, b = u8(3, 30, 30), u8(3, 30, 30, seed=9)
    spec = {"type": "calculate_psnr", "crop_border": 2, "test_y_channel": False, "better": "higher"}
    assert calculate_metric(spec, a, b) == calculate_psnr(a, b, crop_border=2)
    with pytest.raises(AutosrError, match=r"val.metrics.psnr.test_y_chanel: unknown key.*'test_y_channel'"):
        calculate_metric({"type": "calculate_psnr", "test_y_chanel": True}, a, b, where="val.metrics.psnr")
    with pytest.raises(AutosrError, match="calculate_ssim"):
        calculate_metric({"type": "calculate_ssmi"}, a, b)


def test_metric_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(AutosrError, match="differ in shape"):
        calculate_psnr(u8(3, 10, 10), u8(3, 10, 12))


# ----------------------------------------------------------------------------- tiled inference
class ToyUpscaler(nn.Module):
    """Three 3×3 convs (receptive-field radius 3 in LR pixels) and a ×2 pixel shuffle."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_tiled_forward_equals_whole_image_forward() -> None:
    torch.manual_seed(0)
    net = ToyUpscaler().eval()
    lq = torch.rand(2, 3, 70, 91)
    with torch.no_grad():
        whole = net(lq)
    tiled = tiled_forward(net, lq, scale=2, tile=32, overlap=4)
    assert tiled.shape == whole.shape == (2, 3, 140, 182)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    # the check has teeth: without enough context the seams differ
    assert not torch.allclose(tiled_forward(net, lq, scale=2, tile=32, overlap=1), whole, atol=1e-5)
    # small images go through in one piece
    small = lq[..., :30, :30]
    torch.testing.assert_close(tiled_forward(net, small, scale=2, tile=32), net(small).detach())
