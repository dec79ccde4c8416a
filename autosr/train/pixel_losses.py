"""Pixel-space losses of traiNNer-redux and the ParagonSR2 fork: colour, frequency, edge and TV terms.

Each function computes what the traiNNer class of that type name computes, with its options and
defaults (sources: upstream ``traiNNer/losses/basic_loss.py`` HSLuvLoss with ``utils/hsluv.py``,
``focal_frequency_loss.py``; the fork's ``consistency_loss.py`` + ``chc_loss.py``, ``hfen_loss.py``,
``laplacian_loss.py``, ``adaptive_block_tv_loss.py``), **without** ``loss_weight``: autosr's
``LossTerm`` multiplies by it once, as upstream's trainer does. The fork's consistency, HFEN,
Laplacian-pyramid and adaptive-block-TV classes multiply by ``loss_weight`` inside ``forward`` and its
trainer multiplies again, so there a ``loss_weight`` w weighs w²; here it weighs w. docs/losses.md
has the formulas and the comparison.

All take (sr, gt) float32 (N, C, H, W) tensors on [0, 1] and return a 0-d tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.train.loss_specs import Opt

LossFn = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------- shared pieces
@lru_cache(maxsize=64)
def constant(values: tuple[Any, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small constant tensor, made once per device (no host-to-device copy per step)."""
    return torch.tensor(values, dtype=dtype, device=device)


def criterion(name: str, eps: float = 1e-12) -> Callable[[Tensor], Tensor]:
    """Elementwise penalty of a difference: l1 |d|, l2 d², charbonnier sqrt(d² + eps) (traiNNer's eps 1e-12)."""
    if name == "l1":
        return torch.abs
    if name == "l2":
        return torch.square
    if name == "charbonnier":
        return lambda d: torch.sqrt(d * d + eps)
    raise AssertionError(name)


def gaussian_blur(x: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """torchvision's ``gaussian_blur``: reflect-padded by kernel_size // 2, normalised gaussian taps at
    integer offsets (σ in pixels), here as two 1-D passes (the 2-D kernel is their outer product)."""
    half = (kernel_size - 1) / 2
    taps = torch.exp(-0.5 * (torch.linspace(-half, half, kernel_size, dtype=x.dtype, device=x.device) / sigma) ** 2)
    taps = taps / taps.sum()
    c, p = x.shape[1], kernel_size // 2
    x = F.pad(x, (p, p, p, p), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def srgb_to_linear(x: Tensor, floor: float = 0.0) -> Tensor:
    """The sRGB transfer curve undone; ``floor`` clamps the power's base (the fork's 1e-8)."""
    curve = ((x + 0.055) / 1.055).clamp(min=floor) ** 2.4 if floor else ((x + 0.055) / 1.055) ** 2.4
    return torch.where(x <= 0.04045, x / 12.92, curve)


# ----------------------------------------------------------------------------- hsluvloss
# HSLuv (hsluv.org) constants, as traiNNer's utils/hsluv.py (a float32 port of hsluv-python).
_M = ((3.240969941904521, -1.537383177570093, -0.498610760293),
      (-0.96924363628087, 1.87596750150772, 0.041555057407175),
      (0.055630079696993, -0.20397695888897, 1.056971514242878))
_M_INV = ((0.41239079926595, 0.35758433938387, 0.18048078840183),
          (0.21263900587151, 0.71516867876775, 0.072192315360733),
          (0.019330818715591, 0.11919477979462, 0.95053215224966))
_REF_U, _REF_V = 0.19783000664283, 0.46831999493879
_KAPPA, _EPSILON = 903.2962962, 0.0088564516


def _safe_divisor(d: Tensor) -> Tensor:
    """traiNNer's guard: |d| at least 1e-3 keeping its sign, and 1e-3 where d is 0."""
    return torch.where(d == 0, 1e-3, torch.sign(d) * d.abs().clamp(min=1e-3))


def _max_chroma(light: Tensor, hue_deg: Tensor) -> Tensor:
    """Largest in-gamut LCh chroma for each (L, h): the nearest of the six gamut-boundary lines."""
    hrad = torch.deg2rad(hue_deg)
    sin, cos = torch.sin(hrad), torch.cos(hrad)
    sub1 = (light + 16) ** 3 / 1560896
    sub2 = torch.where(sub1 > _EPSILON, sub1, light / _KAPPA)
    lengths = []
    for m1, m2, m3 in _M:
        for t in (0, 1):
            bottom = _safe_divisor((632260 * m3 - 126452 * m2) * sub2 + 126452 * t)
            slope = (284517 * m1 - 94839 * m3) * sub2 / bottom
            intercept = ((838422 * m3 + 769860 * m2 + 731718 * m1) * light * sub2 - 769860 * t * light) / bottom
            lengths.append(intercept / _safe_divisor(sin - slope * cos))
    stacked = torch.stack(lengths)
    # negative lengths point away from the boundary: replaced by the largest length of the whole batch
    stacked = torch.where(stacked >= 0, stacked, stacked.max())
    return stacked.min(dim=0).values


def rgb_to_hsluv(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) sRGB on [0, 1] → (N, 3, H, W): hue [0, 360), saturation [0, 100], lightness [0, 100]."""
    x = srgb_to_linear(rgb.permute(0, 2, 3, 1).clamp(1e-12, 1))
    xyz = x @ constant(_M_INV, x.dtype, x.device).T
    cx, cy, cz = xyz.unbind(-1)
    light = torch.where(cy > _EPSILON, 116 * cy ** (1 / 3) - 16, cy * _KAPPA)
    div = (cx + 15 * cy + 3 * cz).clamp(min=1e-6)
    u = torch.where(light < 1e-4, 0.0, 13 * light * (4 * cx / div - _REF_U))
    v = torch.where(light < 1e-4, 0.0, 13 * light * (9 * cy / div - _REF_V))
    u, v = torch.where(u == 0, 1e-12, u), torch.where(v == 0, 1e-12, v)  # a zero gets +1e-12, as traiNNer
    chroma = torch.sqrt(u * u + v * v)
    hue = torch.atan2(v, u) * 180 / math.pi
    hue = torch.where(hue < 0, hue + 360, hue)
    hue = torch.where(chroma < 0.028972067, 0, hue)  # traiNNer's float32 grey threshold
    sat = chroma / _max_chroma(light, hue).clamp(min=1e-2) * 100
    sat = torch.where((light > 99.99) | (light < 0.01), 0.0, sat)
    return torch.stack([hue, sat.clamp(0, 100), light.clamp(0, 100)], dim=1)


def hsluv_loss(sr: Tensor, gt: Tensor, *, hue_weight: float = 1 / 3, saturation_weight: float = 1 / 3,
               lightness_weight: float = 1 / 3, criterion_name: str = "l1", downscale_factor: int = 1,
               blur_strength: int = 0) -> Tensor:
    """traiNNer's HSLuvLoss (upstream; the sum of its hue, saturation and lightness terms).

    Hue: the circular distance ×2 (so 0..1), 0 between two greys (saturation < 0.1) or two blacks/whites
    (lightness < 0.1 or > 0.9), max(saturation) between a grey and a colour; mean × hue_weight.
    Saturation: criterion(s_sr, s_gt) weighted by min(l, 1−l) of each (0 at black/white); mean × weight.
    Lightness: mean criterion(l_sr, l_gt) × weight. Channels on [0, 1] (hue /360, others /100).
    """
    if blur_strength:
        sr = gaussian_blur(sr, 4 * blur_strength + 1, float(blur_strength))
        gt = gaussian_blur(gt, 4 * blur_strength + 1, float(blur_strength))
    if downscale_factor > 1:
        sr = F.interpolate(sr, scale_factor=1 / downscale_factor, mode="bicubic", antialias=True).clamp(0, 1)
        gt = F.interpolate(gt, scale_factor=1 / downscale_factor, mode="bicubic", antialias=True).clamp(0, 1)
    scale = constant((360.0, 100.0, 100.0), sr.dtype, sr.device).view(1, 3, 1, 1)
    hx, sx, lx = (rgb_to_hsluv(sr) / scale).unbind(1)
    hy, sy, ly = (rgb_to_hsluv(gt) / scale).unbind(1)
    eps = 0.1
    d = (hx - hy).abs()
    hue = torch.minimum(d, 1 - d) * 2
    hue = torch.where((sx < eps) & (sy < eps), 0, hue)
    hue = torch.where(((sx < eps) & (sy > eps)) | ((sx > eps) & (sy < eps)), torch.maximum(sx, sy), hue)
    hue = torch.where((lx < eps) & (ly < eps), 0, hue)
    hue = torch.where((lx > 1 - eps) & (ly > 1 - eps), 0, hue)
    crit = criterion(criterion_name)
    weight = torch.minimum(lx, 1 - lx).clamp(0, 0.5) + torch.minimum(ly, 1 - ly).clamp(0, 0.5)
    return (hue.mean() * hue_weight + (crit(sx - sy) * weight).mean() * saturation_weight
            + crit(lx - ly).mean() * lightness_weight)


# ----------------------------------------------------------------------------- consistencyloss
def oklab_ab(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) sRGB → (N, 2, H, W) Oklab a, b (the fork's _rgb_to_oklab_chroma)."""
    r, g, b = srgb_to_linear(rgb, floor=1e-8).unbind(1)
    lms = (0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b,
           0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b,
           0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b)
    l_, m_, s_ = (t.sign() * t.abs().clamp(min=1e-8) ** (1 / 3) for t in lms)
    return torch.stack([1.9779984951 * l_ - 2.4285922050 * m_ + 0.4505937099 * s_,
                        0.0259040371 * l_ + 0.7827717662 * m_ - 0.8086757660 * s_], dim=1)


def cie_lightness(rgb: Tensor) -> Tensor:
    """(N, 3, H, W) sRGB → (N, H, W) CIE L*/100 on [0, 1] from the BT.709 luminance (the fork's _rgb_to_l_star)."""
    r, g, b = srgb_to_linear(rgb, floor=1e-8).unbind(1)
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    lstar = torch.where(y <= 216.0 / 24389.0, y * (24389.0 / 27.0), y.clamp(min=1e-8) ** (1 / 3) * 116.0 - 16.0)
    return (lstar / 100.0).clamp(0.0, 1.0)


def chc(pred: Tensor, target: Tensor, loss_lambda: float) -> Tensor:
    """The fork's CHCLoss (criterion huber, mean): clamp(sqrt(d² + 1e-12) + λ·mean(1 − cos), 1/255, 254/255),
    averaged; the cosine runs along dim 1 (for the (N, H, W) lightness maps that is along H, as in the fork)."""
    cos_term = (1.0 - F.cosine_similarity(pred, target, dim=1, eps=1e-20)).mean()
    combined = torch.sqrt((pred - target) ** 2 + 1e-12) + loss_lambda * cos_term
    return combined.clamp(1.0 / 255.0, 254.0 / 255.0).mean()


def consistency_loss(sr: Tensor, gt: Tensor, *, criterion_name: str = "chc", blur: bool = True,
                     blur_kernel_size: int = 21, blur_sigma: float = 3.0, saturation: float = 1.0,
                     brightness: float = 0.9, cosim: bool = True, cosim_weight: float = 0.5,
                     chc_lambda: float = 0.012) -> Tensor:
    """The fork's ConsistencyLoss: lightness of the (optionally blurred) images and Oklab chroma.

    Both images clamped to [1/255, 1]; lightness L*/100 of the gaussian-blurred images against
    ``brightness`` × the target's; chroma (a, b) + 0.5 clamped to [0, 1] against ``saturation`` × the
    target's; data term = criterion(lightness) + criterion(chroma); with ``cosim``,
    + cosim_weight · ((1 − mean cos of the lightness) + (1 − mean cos of the chroma vectors)).
    """
    sr = sr.clamp(1.0 / 255.0, 1.0)
    gt = gt.clamp(1.0 / 255.0, 1.0)
    if blur:
        sr_b = gaussian_blur(sr, blur_kernel_size, blur_sigma).clamp(0.0, 1.0)
        gt_b = gaussian_blur(gt, blur_kernel_size, blur_sigma).clamp(0.0, 1.0)
    else:
        sr_b, gt_b = sr, gt
    in_l, tg_l = cie_lightness(sr_b), cie_lightness(gt_b) * brightness
    in_c = (oklab_ab(sr) + 0.5).clamp(0.0, 1.0)
    tg_c = (oklab_ab(gt) * saturation + 0.5).clamp(0.0, 1.0)
    if criterion_name == "chc":
        data = chc(in_l, tg_l, chc_lambda) + chc(in_c, tg_c, chc_lambda)
    elif criterion_name == "l1":
        data = F.l1_loss(in_l, tg_l) + F.l1_loss(in_c, tg_c)
    else:
        data = F.huber_loss(in_l, tg_l) + F.huber_loss(in_c, tg_c)
    if not cosim:
        return data
    lum = 1.0 - F.cosine_similarity(in_l.unsqueeze(1), tg_l.unsqueeze(1), dim=1, eps=1e-12).mean()
    chroma = 1.0 - F.cosine_similarity(in_c, tg_c, dim=1, eps=1e-12).mean()
    return data + cosim_weight * (lum + chroma)


# ----------------------------------------------------------------------------- ffloss
def focal_frequency_loss(sr: Tensor, gt: Tensor, *, alpha: float = 1.0, patch_factor: int = 1,
                         ave_spectrum: bool = True, log_matrix: bool = False, batch_matrix: bool = False) -> Tensor:
    """traiNNer's FFLoss (Jiang et al., ICCV 2021): 50 · mean(w ⊙ |F(sr) − F(gt)|²).

    F: orthonormal ``fft2`` of each of patch_factor² patches; ``ave_spectrum``: the spectra averaged
    over the batch first. w = |F(sr) − F(gt)|^alpha (log(w + 1) with ``log_matrix``), divided by its
    maximum per (image, patch, channel) — over everything with ``batch_matrix`` — 0 where that is 0/0,
    clamped to [0, 1] and detached. The 50 is traiNNer's fixed factor.
    """
    h, w = sr.shape[-2:]
    if h % patch_factor or w % patch_factor:
        raise AutosrRuntimeError(f"ffloss: patch_factor {patch_factor} does not divide the {h}×{w} patches",
                                 "choose a patch_factor that divides the training patch size")
    ph, pw = h // patch_factor, w // patch_factor

    def spectrum(x: Tensor) -> Tensor:
        patches = [x[..., i * ph:(i + 1) * ph, j * pw:(j + 1) * pw]
                   for i in range(patch_factor) for j in range(patch_factor)]
        freq = torch.fft.fft2(torch.stack(patches, 1), norm="ortho")
        return freq.mean(0, keepdim=True) if ave_spectrum else freq

    diff = torch.view_as_real(spectrum(sr) - spectrum(gt))
    distance = diff[..., 0] ** 2 + diff[..., 1] ** 2
    with torch.no_grad():
        weight = distance.sqrt() ** alpha
        if log_matrix:
            weight = torch.log(weight + 1.0)
        peak = weight.max() if batch_matrix else weight.amax(dim=(-2, -1), keepdim=True)
        weight = torch.nan_to_num(weight / peak, nan=0.0).clamp(0.0, 1.0)
    return 50 * (weight * distance).mean()


# ----------------------------------------------------------------------------- hfenloss
def log_kernel(kernel_size: int, sigma: float) -> Tensor:
    """The fork's Laplacian-of-Gaussian: (r² − 2σ²)/σ⁴ · exp(−r²/2σ²) on the integer grid, zero-mean."""
    r = kernel_size // 2
    xs = torch.arange(-r, r + 1, dtype=torch.float32)
    r2 = xs.view(1, -1) ** 2 + xs.view(-1, 1) ** 2
    s2 = sigma * sigma
    kernel = (r2 - 2 * s2) / (s2 * s2) * torch.exp(-r2 / (2 * s2))
    return kernel - kernel.mean()


def hfen_loss(sr: Tensor, gt: Tensor, *, kernel: Tensor, reduction: str = "mean", eps: float = 1e-6,
              criterion_name: str = "charbonnier") -> Tensor:
    """The fork's HFENLoss: criterion of LoG(sr) − LoG(gt), per channel, zero-padded 'same', reduced.

    The filter is linear, so one filtering of sr − gt gives the same difference (to float rounding).
    Its charbonnier uses ``eps`` (default 1e-6), not traiNNer's 1e-12.
    """
    c, k = sr.shape[1], kernel.shape[-1]
    hf = F.conv2d(sr - gt, kernel.expand(c, 1, k, k), padding=k // 2, groups=c)
    element = criterion(criterion_name, eps)(hf)
    return element.mean() if reduction == "mean" else element.sum()


# ----------------------------------------------------------------------------- laplacianpyramidloss
def laplacian_pyramid_loss(sr: Tensor, gt: Tensor, *, levels: int = 4, criterion_name: str = "charbonnier") -> Tensor:
    """The fork's LaplacianPyramidLoss: Σ over ``levels`` band-pass levels of the mean criterion.

    Gaussian pyramid by bilinear ×0.5 resizing (``F.interpolate``, align_corners false, no
    antialiasing); level i = g_i − bilinear upsize of g_{i+1} to g_i's size; the coarsest g_levels is
    not compared. Resizing is linear, so the pyramid of sr − gt is the difference of the pyramids.
    """
    crit = criterion(criterion_name)
    g = sr - gt
    total = sr.new_zeros(())
    for _ in range(levels):
        down = F.interpolate(g, scale_factor=0.5, mode="bilinear", align_corners=False)
        band = g - F.interpolate(down, size=g.shape[2:], mode="bilinear", align_corners=False)
        total = total + crit(band).mean()
        g = down
    return total


# ----------------------------------------------------------------------------- adaptiveblocktvloss
def adaptive_block_tv_loss(sr: Tensor, *, block_size: int = 2, sharpness: float = 4.0, reduction: str = "mean",
                           eps: float = 1e-6) -> Tensor:
    """The fork's AdaptiveBlockTVLoss: total variation of sr weighted where it breaks its block lattice.

    tv = sqrt(dx² + dy² + eps) with forward differences (0 past the last row/column);
    weight = sigmoid(sharpness · m / (mean(m) + eps)), m = |x − mean of its block_size² block| (0 in
    the rows/columns beyond the last whole block); loss = reduce(tv · weight). The target is not used.
    The weight is not detached (as in the fork), so its gradient flows too.
    """
    n, c, h, w = sr.shape
    dx = F.pad(sr[..., 1:] - sr[..., :-1], (0, 1))
    dy = F.pad(sr[..., 1:, :] - sr[..., :-1, :], (0, 0, 0, 1))
    tv = torch.sqrt(dx * dx + dy * dy + eps)
    b = block_size
    hb, wb = (h // b) * b, (w // b) * b
    blocks = sr[..., :hb, :wb].reshape(n, c, hb // b, b, wb // b, b)
    mismatch = (blocks - blocks.mean(dim=(3, 5), keepdim=True)).abs().reshape(n, c, hb, wb)
    mismatch = F.pad(mismatch, (0, w - wb, 0, h - hb))
    weighted = tv * torch.sigmoid(sharpness * mismatch / (mismatch.mean() + eps))
    return weighted.mean() if reduction == "mean" else weighted.sum()


# ----------------------------------------------------------------------------- registry
_CRIT3 = ("l1", "l2", "charbonnier")
_W = 1 / 3
SPECS: dict[str, dict[str, Opt]] = {
    "hsluvloss": {
        "hue_weight": Opt(_W, "float"), "saturation_weight": Opt(_W, "float"), "lightness_weight": Opt(_W, "float"),
        "criterion": Opt("l1", "choice", choices=_CRIT3), "downscale_factor": Opt(1, "int", low=1),
        "blur_strength": Opt(0, "int"),
    },
    "consistencyloss": {
        "criterion": Opt("chc", "choice", choices=("chc", "l1", "huber")), "blur": Opt(True, "bool"),
        "blur_kernel_size": Opt(21, "int", low=1), "blur_sigma": Opt(3.0, "float", above=True),
        "saturation": Opt(1.0, "float"), "brightness": Opt(0.9, "float"), "cosim": Opt(True, "bool"),
        "cosim_weight": Opt(0.5, "float"), "chc_lambda": Opt(0.012, "float"),
    },
    "ffloss": {
        "alpha": Opt(1.0, "float"), "patch_factor": Opt(1, "int", low=1), "ave_spectrum": Opt(True, "bool"),
        "log_matrix": Opt(False, "bool"), "batch_matrix": Opt(False, "bool"),
    },
    "hfenloss": {
        "kernel_size": Opt(7, "int", low=3), "sigma": Opt(1.0, "float", above=True),
        "reduction": Opt("mean", "choice", choices=("mean", "sum")), "eps": Opt(1e-6, "float"),
        "criterion": Opt("charbonnier", "choice", choices=_CRIT3),
    },
    "laplacianpyramidloss": {
        "levels": Opt(4, "int", low=1), "criterion": Opt("charbonnier", "choice", choices=_CRIT3),
    },
    "adaptiveblocktvloss": {
        "block_size": Opt(2, "int", low=2), "sharpness": Opt(4.0, "float"),
        "reduction": Opt("mean", "choice", choices=("mean", "sum")), "eps": Opt(1e-6, "float"),
    },
}


def make(kind: str, opts: dict[str, Any]) -> LossFn:
    """The loss function of one validated entry (``opts``: every option of ``SPECS[kind]``)."""
    if kind == "hsluvloss":
        hs = {k: opts[k] for k in ("hue_weight", "saturation_weight", "lightness_weight", "downscale_factor",
                                   "blur_strength")}
        return lambda sr, gt: hsluv_loss(sr, gt, criterion_name=opts["criterion"], **hs)
    if kind == "consistencyloss":
        if opts["blur"] and opts["blur_kernel_size"] % 2 == 0:
            raise AutosrError(f"blur_kernel_size must be odd, got {opts['blur_kernel_size']}", "e.g. 21")
        co = {k: v for k, v in opts.items() if k != "criterion"}
        return lambda sr, gt: consistency_loss(sr, gt, criterion_name=opts["criterion"], **co)
    if kind == "ffloss":
        return lambda sr, gt: focal_frequency_loss(sr, gt, **opts)
    if kind == "hfenloss":
        if opts["kernel_size"] % 2 == 0:
            raise AutosrError(f"kernel_size must be odd, got {opts['kernel_size']}", "e.g. 7")
        taps = tuple(tuple(row) for row in log_kernel(opts["kernel_size"], opts["sigma"]).tolist())
        return lambda sr, gt: hfen_loss(sr, gt, kernel=constant(taps, sr.dtype, sr.device), reduction=opts["reduction"],
                                        eps=opts["eps"], criterion_name=opts["criterion"])
    if kind == "laplacianpyramidloss":
        return lambda sr, gt: laplacian_pyramid_loss(sr, gt, levels=opts["levels"], criterion_name=opts["criterion"])
    if kind == "adaptiveblocktvloss":
        return lambda sr, gt: adaptive_block_tv_loss(sr, **opts)
    raise AssertionError(kind)
