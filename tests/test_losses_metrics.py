"""Losses (build, values, gradients, autocast) and validation metrics against numpy references.

Loss values are checked against traiNNer-redux's definitions (traiNNer/losses/basic_loss.py,
mssim_loss.py, cosim_loss.py), re-stated below in numpy float64 and also pinned as literal numbers
that traiNNer-redux's own classes return; docs/losses.md has the formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from autosr.errors import AutosrError
from autosr.train.losses import OPTIONS, LossTerm, build_losses, ms_ssim, ssim, total_loss
from autosr.train.metrics import calculate_metric, calculate_psnr, calculate_ssim, tiled_forward

LOSS_TYPES = ["l1loss", "mseloss", "charbonnierloss", "fftloss", "ssimloss", "mssimloss", "cosimloss", "fftmagloss"]


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


# traiNNer-redux's loss maths, re-stated in numpy float64 from its source (not imported from it).
TR_LUMA = {"yiq": (0.0, 0.299, 0.587, 0.114), "ycbcr": (16 / 255, 65.481 / 255, 128.553 / 255, 24.966 / 255),
           "lhm": (0.0, 0.2989, 0.587, 0.114)}
TR_MS_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def tr_fft(sr: np.ndarray, gt: np.ndarray) -> float:
    """FFTLoss: nn.L1Loss between stack([real, imag]) of torch.fft.rfft2 (norm "backward") of each."""
    a, b = np.fft.rfft2(sr), np.fft.rfft2(gt)
    return float(np.abs(np.stack([a.real - b.real, a.imag - b.imag], axis=-1)).mean())


def tr_cosim(sr: np.ndarray, gt: np.ndarray, lam: float = 5.0) -> float:
    """CosimLoss: lam · (1 − mean over pixels of cos(sr, gt) along channels), inputs clamped to [1e-12, 1]."""
    x, y = np.clip(sr, 1e-12, 1), np.clip(gt, 1e-12, 1)
    cos = (x * y).sum(1) / np.sqrt((x * x).sum(1) * (y * y).sum(1))
    return float(lam * (1 - cos.mean()))


def tr_preprocess(x: np.ndarray, y_channel: bool = True, color_space: str = "yiq") -> np.ndarray:
    """preprocess_rgb(data_range=1): clamp to [0, 1]; 3 channels → the luma of color_space."""
    x = np.clip(x, 0, 1)
    if y_channel and x.shape[1] == 3:
        off, r, g, b = TR_LUMA[color_space]
        x = off + r * x[:, :1] + g * x[:, 1:2] + b * x[:, 2:3]
    return x


def tr_ssim_parts(x: np.ndarray, y: np.ndarray, luminance: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """mssim_loss.ssim(): per-image mean SSIM and mean cs; 'same' (zero-padded) if width < 11."""
    if x.shape[-1] < 11:
        pad = ((0, 0), (0, 0), (5, 5), (5, 5))
        x, y = np.pad(x, pad), np.pad(y, pad)
    win = ref_gaussian_window()

    def filt(v: np.ndarray) -> np.ndarray:
        return (sliding_window_view(v, (11, 11), axis=(-2, -1)) * win).sum(axis=(-2, -1))

    c1, c2 = 0.01**2, 0.03**2
    mu1, mu2 = filt(x), filt(y)
    s1, s2, s12 = filt(x * x) - mu1**2, filt(y * y) - mu2**2, filt(x * y) - mu1 * mu2
    cs = np.maximum((2 * s12 + c2) / (s1 + s2 + c2), 0)  # F.relu
    lum = (2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1) if luminance else 1.0
    return (lum * cs).mean(axis=(1, 2, 3)), cs.mean(axis=(1, 2, 3))


def tr_pool(x: np.ndarray) -> np.ndarray:
    """F.avg_pool2d(kernel 2, padding (H%2, W%2)), zeros counted in the average."""
    ph, pw = x.shape[2] % 2, x.shape[3] % 2
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (x.shape[2] - 2) // 2 + 1, (x.shape[3] - 2) // 2 + 1
    x = x[..., : 2 * oh, : 2 * ow]
    return x.reshape(*x.shape[:2], oh, 2, ow, 2).mean(axis=(3, 5))


def tr_ssim(sr: np.ndarray, gt: np.ndarray, y_channel: bool = True, color_space: str = "yiq") -> float:
    """What SSIMLoss returns (the fork's scalar; upstream returns the per-image vector): SSIM itself."""
    s, _ = tr_ssim_parts(tr_preprocess(sr, y_channel, color_space), tr_preprocess(gt, y_channel, color_space))
    return float(s.mean())


def tr_mssim_loss(sr: np.ndarray, gt: np.ndarray, *, is_prod: bool = True, include_luminance: bool = False,
                  test_y_channel: bool = True, color_space: str = "yiq") -> float:
    """MSSIMLoss: 1 − clamp(mean over images of the 5-scale MS-SSIM, 0, 1)."""
    x, y = tr_preprocess(sr, test_y_channel, color_space), tr_preprocess(gt, test_y_channel, color_space)
    mcs = []
    for _ in range(5):
        s, cs = tr_ssim_parts(x, y, include_luminance)
        mcs.append(cs)
        x, y = tr_pool(x), tr_pool(y)
    w = TR_MS_WEIGHTS
    if is_prod:
        score = np.prod([mcs[i] ** w[i] for i in range(4)], axis=0) * s**w[4]
    else:
        w = w / w.sum()
        score = sum(mcs[i] * w[i] for i in range(4)) + s * w[4]
    return float(1 - np.clip(score.mean(), 0, 1))


TR_REFERENCE = {
    "l1loss": lambda a, b: float(np.abs(a - b).mean()),
    "mseloss": lambda a, b: float(((a - b) ** 2).mean()),
    "charbonnierloss": lambda a, b: float(np.sqrt((a - b) ** 2 + 1e-12).mean()),
    "fftloss": tr_fft,
    "ssimloss": lambda a, b: 1 - tr_ssim(a, b),  # autosr's 1 − SSIM: see test_ssimloss_is_one_minus_traiNNer_ssim
    "mssimloss": tr_mssim_loss,
    "cosimloss": tr_cosim,
}


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 3, 48, 48, generator=g)
    sr = (gt + 0.1 * torch.randn(2, 3, 48, 48, generator=g)).clamp(0, 1)
    return sr, gt


@pytest.fixture
def odd_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """44×50: MS-SSIM's scales are 44×50, 22×25, 11×13, 6×7, 3×4 (odd sides padded, narrow ones
    zero-padded), and sr leaves [0, 1] so traiNNer's clamp matters."""
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(2, 3, 44, 50, generator=g, dtype=torch.float64)
    sr = gt + 0.1 * torch.randn(2, 3, 44, 50, generator=g, dtype=torch.float64)
    return sr, gt


def sinusoids(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """A (2, 3, 44, 50) pair from closed-form expressions, the same on every machine."""
    n, c, i, j = torch.meshgrid(*(torch.arange(k, dtype=dtype) for k in (2, 3, 44, 50)), indexing="ij")
    gt = 0.5 + 0.4 * torch.sin(0.37 * i + 0.23 * j * (c + 1) + n)
    sr = gt + 0.08 * torch.cos(0.91 * i - 0.53 * j + 2 * c + n)
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


@pytest.mark.parametrize("kind", list(TR_REFERENCE))
@pytest.mark.parametrize("which", ["pair", "odd_pair"])
def test_shared_losses_equal_traiNNer_formulas(kind: str, which: str, request: pytest.FixtureRequest) -> None:
    """The float32 loss autosr trains with equals traiNNer-redux's formula in float64."""
    sr, gt = request.getfixturevalue(which)
    expected = TR_REFERENCE[kind](np64(sr), np64(gt))
    # 1 − (a value near 1) in float32 loses digits: SSIM's and the cosine's tolerances are wider
    assert one(kind)(sr, gt).item() == pytest.approx(expected, rel=1e-5, abs=2e-5 if "ssim" in kind else 1e-7)


# traiNNer-redux's own classes (the-database/traiNNer-redux 6862931, traiNNer/losses/; the ParagonSR2
# fork delafer/traiNNer-redux b676e3a gives the same numbers) run in float64 on sinusoids(); ssimloss
# is 1 − the SSIM that SSIMLoss returns (0.9623609646224448, 0.9623562633631324 per image).
TRAINNER_VALUES = {
    "l1loss": 0.05093119930320024,
    "mseloss": 0.003199890602226424,
    "charbonnierloss": 0.05093119934153572,
    "fftloss": 0.378763765418443,
    "mssimloss": 0.0062396751616234924,
    "ssimloss": 1 - (0.9623609646224448 + 0.9623562633631324) / 2,
    "cosimloss": 0.03960190648894635,
}


@pytest.mark.parametrize("kind", list(TRAINNER_VALUES))
def test_loss_values_equal_traiNNer_redux_outputs(kind: str) -> None:
    sr, gt = sinusoids()
    assert one(kind)(sr, gt).item() == pytest.approx(TRAINNER_VALUES[kind], rel=1e-6, abs=1e-6)
    # and the float64 re-statement agrees with traiNNer's code to float64 precision (their window,
    # luma and scale weights are float32 constants: ~1e-8)
    assert TR_REFERENCE[kind](*(np64(t) for t in sinusoids(torch.float64))) == pytest.approx(
        TRAINNER_VALUES[kind], rel=1e-9, abs=5e-8)


@pytest.mark.parametrize(
    "opts",
    [{}, {"is_prod": False}, {"include_luminance": True}, {"test_y_channel": False}, {"color_space": "ycbcr"},
     {"color_space": "lhm"}, {"is_prod": False, "include_luminance": True, "test_y_channel": False}],
)
def test_ms_ssim_options_equal_traiNNer_maths_in_float64(opts: dict, odd_pair) -> None:
    sr, gt = odd_pair
    assert 1 - ms_ssim(sr, gt, **opts).item() == pytest.approx(tr_mssim_loss(np64(sr), np64(gt), **opts),
                                                               rel=1e-12, abs=1e-13)


def test_ssim_options_equal_traiNNer_maths_in_float64(odd_pair) -> None:
    sr, gt = odd_pair
    a, b = np64(sr), np64(gt)
    assert ssim(sr, gt).item() == pytest.approx(tr_ssim(a, b), rel=1e-12)
    assert ssim(sr, gt, test_y_channel=False).item() == pytest.approx(tr_ssim(a, b, y_channel=False), rel=1e-12)
    assert ssim(sr, gt, color_space="ycbcr").item() == pytest.approx(tr_ssim(a, b, color_space="ycbcr"), rel=1e-12)
    cropped = tr_ssim(a[..., 3:-3, 3:-3], b[..., 3:-3, 3:-3])
    assert ssim(sr, gt, crop_border=3).item() == pytest.approx(cropped, rel=1e-12)
    # downsample only acts from 384 px up (traiNNer: factor round(min(H, W) / 256)); below it is a no-op
    assert ssim(sr, gt, downsample=True).item() == ssim(sr, gt).item()


def test_fftloss_scale_is_traiNNer_s_unnormalised_fft() -> None:
    """sr − gt = 0.5 everywhere on 8×8: only the DC bin is non-zero, 0.5·64 = 32 (real part).

    traiNNer's mean runs over 2 (real, imag) × 8 × (8//2 + 1) = 80 numbers: 32 / 80 = 0.4; the sum is 32.
    autosr's former fftloss (now fftmagloss, ortho FFT) gives 0.5·8 / 40 = 0.1 on the same input.
    """
    gt = torch.zeros(1, 1, 8, 8)
    sr = torch.full((1, 1, 8, 8), 0.5)
    assert one("fftloss")(sr, gt).item() == pytest.approx(0.4, rel=1e-6)
    assert one("fftloss", reduction="sum")(sr, gt).item() == pytest.approx(32.0, rel=1e-6)
    assert one("fftmagloss")(sr, gt).item() == pytest.approx(0.1, rel=1e-6)


def test_fft_gradient_finite_on_flat_images() -> None:
    for kind in ("fftloss", "fftmagloss"):
        sr = torch.zeros(1, 3, 16, 16, requires_grad=True)  # every frequency bin is exactly zero
        one(kind)(sr, torch.full((1, 3, 16, 16), 0.5)).backward()
        assert torch.isfinite(sr.grad).all()


def test_ssimloss_is_one_minus_traiNNer_ssim(pair) -> None:
    """traiNNer's SSIMLoss returns SSIM itself (a loss that rewards lower SSIM); autosr's is 1 − SSIM.

    With ``test_y_channel: false`` it is the per-RGB-channel SSIM of BasicSR's metric (cs ≥ 0 here,
    so traiNNer's relu on cs changes nothing).
    """
    sr, gt = pair
    assert 1 - one("ssimloss")(sr, gt).item() == pytest.approx(tr_ssim(np64(sr), np64(gt)), abs=2e-6)
    expected = np.mean([ref_ssim(sr[i].double().numpy() * 255, gt[i].double().numpy() * 255) for i in range(2)])
    assert 1 - one("ssimloss", test_y_channel=False)(sr, gt).item() == pytest.approx(expected, abs=1e-5)
    # lower SSIM → higher loss, the direction a minimiser needs
    worse = (gt + 0.3 * torch.randn(gt.shape, generator=torch.Generator().manual_seed(9))).clamp(0, 1)
    assert one("ssimloss")(worse, gt).item() > one("ssimloss")(sr, gt).item()


def test_ssim_losses_pad_patches_narrower_than_the_window_as_traiNNer() -> None:
    g = torch.Generator().manual_seed(4)
    gt = torch.rand(1, 3, 8, 8, generator=g)
    sr = (gt + 0.1 * torch.randn(1, 3, 8, 8, generator=g)).clamp(0, 1)
    for kind in ("ssimloss", "mssimloss"):
        expected = TR_REFERENCE[kind](np64(sr), np64(gt))
        assert one(kind)(sr, gt).item() == pytest.approx(expected, abs=2e-6)
        assert one(kind)(gt, gt.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_cosimloss_is_its_own_type(pair) -> None:
    sr, gt = pair
    black = torch.zeros(1, 3, 32, 32)
    assert one("cosimloss")(black, black.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert one("cosimloss", cosim_lambda=1.0)(sr, gt).item() == pytest.approx(tr_cosim(np64(sr), np64(gt), 1.0),
                                                                             rel=1e-5)
    with pytest.raises(AutosrError, match="cosimloss"):  # the key older traiNNer/autosr took on mssimloss
        build_losses([{"type": "mssimloss", "loss_weight": 1.0, "cosim": True}])


def test_defaults_are_traiNNer_redux_defaults() -> None:
    """traiNNer-redux's docs/source/loss_reference.md, less loss_weight (and reduction 'none', which
    makes a per-pixel tensor, not a loss)."""
    assert OPTIONS["l1loss"] == OPTIONS["mseloss"] == OPTIONS["fftloss"] == {"reduction": "mean"}
    assert OPTIONS["charbonnierloss"] == {"reduction": "mean", "eps": 1e-12}
    assert OPTIONS["ssimloss"] == {"channels": 3, "downsample": False, "test_y_channel": True,
                                   "color_space": "yiq", "crop_border": 0}
    assert OPTIONS["mssimloss"] == {"channels": 3, "downsample": False, "test_y_channel": True, "is_prod": True,
                                    "color_space": "yiq", "include_luminance": False}
    assert OPTIONS["cosimloss"] == {"cosim_lambda": 5.0}
    # traiNNer's reference config loads as written
    build_losses([{"type": "ssimloss", "loss_weight": 1.0, "channels": 3, "downsample": False,
                   "test_y_channel": True, "color_space": "yiq", "crop_border": 0.0}])


def test_bf16_autocast_computes_losses_in_fp32(pair) -> None:
    sr, gt = pair
    net = nn.Conv2d(3, 3, 3, padding=1)
    terms = build_losses([{"type": k, "loss_weight": 0.5} for k in LOSS_TYPES])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(sr)
        assert out.dtype == torch.bfloat16
        total, values = total_loss(terms, out, gt)
    assert total.dtype == torch.float32 and torch.isfinite(total)
    assert set(values) == {"l1", "mse", "charbonnier", "fft", "ssim", "mssim", "cosim", "fftmag"}
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in values.values())
    total.backward()
    assert torch.isfinite(net.weight.grad).all()


def test_total_loss_weights_and_a_weight_tensor(pair) -> None:
    sr, gt = pair
    l1, mse = build_losses([{"type": "l1loss", "loss_weight": 2.0}, {"type": "mseloss", "loss_weight": 1.0}])
    total, values = total_loss([l1, mse], sr, gt)
    assert total.item() == pytest.approx(2 * values["l1"].item() + values["mse"].item(), rel=1e-6)
    # the runtime scheduler's weights (a device tensor) replace the configured ones; a term at a
    # tiny weight is still computed and observed
    total, values = total_loss([l1, mse], sr, gt, weights=torch.tensor([0.5, 1e-6]))
    assert set(values) == {"l1", "mse"}
    assert total.item() == pytest.approx(0.5 * values["l1"].item() + 1e-6 * values["mse"].item(), rel=1e-6)


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
        ([{"type": "ssimloss", "loss_weight": 1.0, "test_y_chanel": False}],
         ["train.losses[0].test_y_chanel", "'test_y_channel'"]),
        ([{"type": "ssimloss", "loss_weight": 1.0, "window_size": 11}], ["window_size", "11×11", "remove the key"]),
        ([{"type": "mssimloss", "loss_weight": 1.0, "color_space": "rgb"}], ["color_space", "yiq, ycbcr, lhm"]),
        ([{"type": "ssimloss", "loss_weight": 1.0, "crop_border": 1.5}], ["crop_border", "integer"]),
        ([{"type": "fftloss", "loss_weight": 1.0, "reduction": "none"}], ["'mean' or 'sum'", "tensor, not a loss"]),
        ([{"type": "l1loss", "loss_weight": 0}, {"type": "mseloss", "loss_weight": 0.0}], ["every loss_weight is 0"]),
        ([{"type": "perceptualloss", "loss_weight": 1.0}], ["train.losses[0]", "VGG19", "loss_weight to 0"]),
        ([{"type": "ganloss", "loss_weight": 0.1, "r1_weight": 1.0}], ["r1_weight", "gan_type r3gan"]),
        ([{"type": "l1loss"}], ["train.losses[0].loss_weight", "missing"]),
        ([{"type": "l1loss", "loss_weight": "5e-4"}], ["must be a number", "5.0e-4"]),
        ([{"type": "l1loss", "loss_weight": -1.0}], ["≥ 0"]),
        ([{"loss_weight": 1.0}], ["train.losses[0].type"]),
        ([], ["at least one loss"]),
        (["l1loss"], ["must be a mapping"]),
    ],
)
def test_bad_loss_configs_raise_autosr_error(entries: list, words: list[str], tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no pretrained weights, whatever this machine has cached
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
