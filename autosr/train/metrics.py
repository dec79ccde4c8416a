"""Validation metrics as traiNNer-redux / BasicSR compute them, and tiled inference for big images.

Parity notes (what "as traiNNer computes them" means here):
- Images are scored in the uint8 range [0, 255]. A uint8 tensor is used as is; a floating tensor is
  taken as [0, 1] and quantised like traiNNer's ``tensor2img``: clamp to [0, 1], ×255, round.
- ``crop_border`` pixels are removed from every edge before scoring.
- ``test_y_channel`` scores BT.601 luma with the studio offsets (BasicSR's ``rgb2ycbcr(y_only=True)``):
  Y = 16 + (65.481·R + 128.553·G + 24.966·B) / 255 on [0, 255] RGB, not rounded. Inputs here are RGB
  (BasicSR feeds BGR arrays to ``bgr2ycbcr``: the same weights per colour). One-channel images are
  scored as they are. BasicSR does this step in float32, we in float64 (differences ~1e-6 dB).
- PSNR = 10·log10(255² / MSE) per image; identical images give ``inf`` (as BasicSR does). A batch
  returns the mean over its images, so one inf makes the mean inf.
- SSIM: 11×11 gaussian window (σ 1.5), C1 = (0.01·255)², C2 = (0.03·255)², 'valid' filtering (no
  padding), mean over the map and over channels.
- LPIPS and DISTS: the uint8-quantised images ÷255 through the networks of ``perceptual.py``, as
  traiNNer's ``calculate_lpips``/``calculate_dists``; they need weight files (``metric_available``).
- ``calculate_hf_ratio`` and ``calculate_gmsd`` are autosr's own realism measures, needing no weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError, did_you_mean
from autosr.train.perceptual import dists_distance, lpips_distance, metric_files, missing_weights

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


# ----------------------------------------------------------------------------- shared SSIM core
@lru_cache(maxsize=32)
def gaussian_window_1d(
    size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Normalised 1-D gaussian taps (the 2-D window is their outer product, as cv2 builds it).

    Cached: the losses ask for it every step and building it launches kernels.
    """
    half = (size - 1) / 2
    x = torch.arange(size, dtype=torch.float64) - half
    w = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (w / w.sum()).to(device=device, dtype=dtype)


def filter_valid(x: Tensor, window_1d: Tensor) -> Tensor:
    """Depthwise gaussian filter with 'valid' borders, as two 1-D passes (same result, fewer FLOPs).

    float64 (the metrics) goes through shifted multiply-adds: PyTorch's float64 depthwise convolution
    is a slow generic path (CPU: 5.7 s vs 0.7 s for one 2-megapixel SSIM's moments, equal to 1e-13),
    while the losses' float32/bf16 batches are launch-bound and want the two convolutions."""
    if x.dtype == torch.float64:
        return _shifted_pass(_shifted_pass(x, window_1d, dim=-2), window_1d, dim=-1)
    c, k = x.shape[1], window_1d.numel()
    vertical = window_1d.view(1, 1, k, 1).repeat(c, 1, 1, 1)
    horizontal = window_1d.view(1, 1, 1, k).repeat(c, 1, 1, 1)
    x = F.conv2d(x, vertical, groups=c)
    return F.conv2d(x, horizontal, groups=c)


def _shifted_pass(x: Tensor, window_1d: Tensor, dim: int) -> Tensor:
    """One 'valid' 1-D filter pass along `dim` as k shifted multiply-adds."""
    k = window_1d.numel()
    size = x.shape[dim] - k + 1
    taps = window_1d.tolist()
    out = x.narrow(dim, 0, size) * taps[0]
    for i in range(1, k):
        out.add_(x.narrow(dim, i, size), alpha=taps[i])
    return out


def ssim_maps(x: Tensor, y: Tensor, window_1d: Tensor, c1: float, c2: float) -> tuple[Tensor, Tensor]:
    """SSIM map and contrast-structure map, each (N, C, H-k+1, W-k+1), for images in one range.

    The five local moments go through a single depthwise convolution (one kernel launch per pass).
    """
    c = x.shape[1]
    moments = filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window_1d)
    mu_x, mu_y, xx, yy, xy = moments.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs = (2 * (xy - mu_xy) + c2) / ((xx - mu_xx) + (yy - mu_yy) + c2)
    ssim = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs
    return ssim, cs


# ----------------------------------------------------------------------------- image preparation
def _as_uint8_range(img: Tensor) -> Tensor:
    """(C,H,W) or (N,C,H,W), uint8 or float [0,1] → float64 (N,C,H,W) holding uint8 values."""
    if img.dim() == 3:
        img = img.unsqueeze(0)
    if img.dim() != 4:
        raise AutosrRuntimeError(f"metric input must be (C,H,W) or (N,C,H,W), got shape {tuple(img.shape)}")
    img = img.detach()
    # float64 is missing on some backends (MPS): score there on the CPU.
    if img.device.type == "mps":
        img = img.cpu()
    if img.dtype == torch.uint8:
        return img.to(torch.float64)
    if img.is_floating_point():
        # tensor2img: float32, clamp to [0,1], ×255, round.
        return (img.float().clamp(0, 1) * 255.0).round().to(torch.float64)
    raise AutosrRuntimeError(f"metric input must be uint8 or floating point, got {img.dtype}")


def _rgb_to_y(img: Tensor) -> Tensor:
    """BT.601 Y with studio offsets on [0,255] RGB (BasicSR rgb2ycbcr, y_only); 1-channel passes."""
    if img.shape[1] != 3:
        return img
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    return 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _prepare(img: Tensor, img2: Tensor, crop_border: int, test_y_channel: bool) -> tuple[Tensor, Tensor]:
    if img.shape != img2.shape:
        raise AutosrRuntimeError(
            f"metric inputs differ in shape: {tuple(img.shape)} vs {tuple(img2.shape)}",
            "the model output must be exactly scale × the LR size",
        )
    a = _as_uint8_range(img)
    b = _as_uint8_range(img2).to(a.device)
    if crop_border < 0:
        raise AutosrRuntimeError(f"crop_border must be ≥ 0, got {crop_border}")
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
        if a.numel() == 0:
            raise AutosrRuntimeError(
                f"crop_border {crop_border} leaves nothing of a {tuple(img.shape[-2:])} image",
                "use larger validation images or a smaller crop_border",
            )
    if test_y_channel:
        a, b = _rgb_to_y(a), _rgb_to_y(b)
    return a, b


# ----------------------------------------------------------------------------- metrics
def calculate_psnr(img: Tensor, img2: Tensor, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """PSNR in dB on the uint8 scale; ``inf`` for identical images; mean over a batch."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    mse = ((a - b) ** 2).mean(dim=(1, 2, 3))
    psnr = 10.0 * torch.log10((255.0 * 255.0) / mse)  # mse 0 → inf, as BasicSR returns
    return float(psnr.mean())


def calculate_ssim(img: Tensor, img2: Tensor, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """SSIM (BasicSR's definition: 11×11 gaussian σ 1.5, valid filtering, channel mean); batch mean."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise AutosrRuntimeError(
            f"SSIM needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} after cropping, got {tuple(a.shape[-2:])}",
            "use larger validation images or a smaller crop_border",
        )
    window = gaussian_window_1d(SSIM_WINDOW, SSIM_SIGMA, torch.float64, a.device)
    ssim, _ = ssim_maps(a, b, window, (0.01 * 255) ** 2, (0.03 * 255) ** 2)
    return float(ssim.mean(dim=(1, 2, 3)).mean())


# ----------------------------------------------------------------------------- perceptual and realism metrics
def _unit_rgb(img: Tensor, img2: Tensor) -> tuple[Tensor, Tensor]:
    """Both images as traiNNer hands them to LPIPS/DISTS: quantised to uint8 (tensor2img), ÷255, float32,
    grey made RGB (img2tensor)."""
    a, b = _prepare(img, img2, 0, False)
    a, b = a.float() / 255.0, b.float() / 255.0
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    return a, b


def calculate_lpips(img: Tensor, img2: Tensor, net: str = "alex") -> float:
    """LPIPS v0.1 (lower is better; 0 for identical images) as traiNNer's ``calculate_lpips``; batch mean.

    Needs torchvision's AlexNet (or VGG16 for ``net: vgg``) and LPIPS's heads: see ``metric_available``.
    """
    a, b = _unit_rgb(img, img2)
    return float(lpips_distance(a, b, net).mean())


def calculate_dists(img: Tensor, img2: Tensor) -> float:
    """DISTS (1 − similarity, lower is better) as traiNNer's ``calculate_dists``; batch mean.

    Needs torchvision's VGG16 and DISTS's alpha/beta: see ``metric_available``.
    """
    a, b = _unit_rgb(img, img2)
    return float(dists_distance(a, b).mean())


def _luma(img: Tensor) -> Tensor:
    """BT.601 luma without offset, 0.299 R + 0.587 G + 0.114 B, of (N, 3, H, W); 1 channel passes."""
    if img.shape[1] != 3:
        return img
    return 0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]


HF_SIGMA = 1.0  # the high-pass of calculate_hf_ratio: Y − gaussian(σ 1 px, 7 taps) of Y
HF_TAPS = 7


def calculate_hf_ratio(img: Tensor, img2: Tensor, crop_border: int = 0) -> float:
    """High-frequency energy of ``img`` (the SR) over that of ``img2`` (the HR); 1 = as much detail as the truth.

    On the uint8-scale luma Y (0.299 R + 0.587 G + 0.114 B): the detail layer D = Y − G∗Y, G a 7-tap
    gaussian with σ = 1 px, 'valid' borders (so the energy of D is mostly above ~0.15 cycles/px: the
    band a 2×–4× upscale has to invent); ratio = ΣD_sr² / ΣD_hr² per image (1 when both are 0), mean
    over a batch. Blurrier than the truth < 1 (fidelity models sit well below 1), noisier or
    over-sharpened > 1. Needs no weights.
    """
    a, b = _prepare(img, img2, crop_border, False)
    ya, yb = _luma(a), _luma(b)
    if min(ya.shape[-2:]) < HF_TAPS:
        raise AutosrRuntimeError(f"hf_ratio needs images of at least {HF_TAPS}×{HF_TAPS}, got {tuple(ya.shape[-2:])}")
    window = gaussian_window_1d(HF_TAPS, HF_SIGMA, torch.float64, ya.device)
    r = HF_TAPS // 2
    ea = ((ya[..., r:-r, r:-r] - filter_valid(ya, window)) ** 2).sum(dim=(1, 2, 3))
    eb = ((yb[..., r:-r, r:-r] - filter_valid(yb, window)) ** 2).sum(dim=(1, 2, 3))
    ratio = torch.where(eb > 0, ea / eb.clamp(min=1e-300), torch.where(ea > 0, torch.inf, 1.0))
    return float(ratio.mean())


GMSD_T = 170.0  # Xue et al.'s stability constant for [0, 255] images


def _prewitt_magnitude(y: Tensor) -> Tensor:
    """Gradient magnitude with the 3×3 Prewitt filters (÷3), 'valid' borders, as shifted differences."""
    dx = y[..., :, :-2] - y[..., :, 2:]
    dy = y[..., :-2, :] - y[..., 2:, :]
    gx = (dx[..., :-2, :] + dx[..., 1:-1, :] + dx[..., 2:, :]) / 3
    gy = (dy[..., :, :-2] + dy[..., :, 1:-1] + dy[..., :, 2:]) / 3
    return torch.sqrt(gx * gx + gy * gy)


def calculate_gmsd(img: Tensor, img2: Tensor, crop_border: int = 0) -> float:
    """GMSD (Xue et al. 2014): the standard deviation of the gradient-magnitude similarity map; 0 for
    identical images, lower is better. Needs no weights.

    Luma Y (0.299 R + 0.587 G + 0.114 B, uint8 scale) average-pooled 2×2; Prewitt gradient magnitudes
    m (valid borders); GMS = (2·m_sr·m_hr + 170) / (m_sr² + m_hr² + 170); GMSD = population std of
    the GMS map per image, mean over a batch.
    """
    a, b = _prepare(img, img2, crop_border, False)
    ya, yb = F.avg_pool2d(_luma(a), 2), F.avg_pool2d(_luma(b), 2)
    if min(ya.shape[-2:]) < 3:
        raise AutosrRuntimeError(f"GMSD needs images of at least 6×6, got {tuple(a.shape[-2:])}")
    ma, mb = _prewitt_magnitude(ya), _prewitt_magnitude(yb)
    gms = (2 * ma * mb + GMSD_T) / (ma * ma + mb * mb + GMSD_T)
    return float(gms.flatten(1).std(dim=1, correction=0).mean())


# ----------------------------------------------------------------------------- the metric table
METRICS: dict[str, Callable[..., float]] = {
    "calculate_psnr": calculate_psnr,
    "calculate_ssim": calculate_ssim,
    "calculate_lpips": calculate_lpips,
    "calculate_dists": calculate_dists,
    "calculate_hf_ratio": calculate_hf_ratio,  # autosr only (traiNNer-redux has no such type)
    "calculate_gmsd": calculate_gmsd,  # autosr only
}
# Each type's options and their defaults, besides ``type`` and ``better``. traiNNer's LPIPS/DISTS take
# (and silently ignore) crop_border and test_y_channel; here they are refused, not ignored.
METRIC_OPTIONS: dict[str, dict[str, object]] = {
    "calculate_psnr": {"crop_border": 0, "test_y_channel": False},
    "calculate_ssim": {"crop_border": 0, "test_y_channel": False},
    "calculate_lpips": {"net": "alex"},
    "calculate_dists": {},
    "calculate_topiq": {},
    "calculate_hf_ratio": {"crop_border": 0},
    "calculate_gmsd": {"crop_border": 0},
}
# Which way is better, when the spec has no ``better``. hf_ratio's target is 1 (see the Validator);
# "higher" holds below 1, where fidelity and most realistic models sit.
METRIC_BETTER = {"calculate_psnr": "higher", "calculate_ssim": "higher", "calculate_lpips": "lower",
                 "calculate_dists": "lower", "calculate_topiq": "higher", "calculate_hf_ratio": "higher",
                 "calculate_gmsd": "lower"}
# The offline realism measures a realistic run always shows (autosr-only types: traiNNer cannot load them).
REALISM_METRICS: dict[str, dict[str, object]] = {"hf_ratio": {"type": "calculate_hf_ratio"},
                                                  "gmsd": {"type": "calculate_gmsd"}}
TOPIQ_REASON = ("autosr does not compute TOPIQ: it needs pyiqa's CFANet (a ResNet-50 with attention heads) and its "
                "weights cfanet_fr_kadid_res50-2c4cc61d.pth (huggingface.co/chaofengc/IQA-PyTorch-Weights, "
                "traiNNer keeps it in <torch hub>/pyiqa/), which autosr does not implement")


def check_metric(spec: Mapping[str, object], where: str = "val.metrics") -> tuple[str, dict[str, object]]:
    """The lower-case type and its options (defaults filled in) of one ``val.metrics`` mapping.

    Unknown types and keys, and values of the wrong kind, are AutosrErrors with a did-you-mean.
    """
    kind = spec.get("type")
    if not isinstance(kind, str) or kind.lower() not in METRIC_OPTIONS:
        raise AutosrError(f"{where}.type: unknown metric {kind!r}{did_you_mean(str(kind), METRIC_OPTIONS)}",
                          f"autosr knows: {', '.join(METRIC_OPTIONS)}")
    kind = kind.lower()
    opts = dict(METRIC_OPTIONS[kind])
    for key, value in spec.items():
        if key in ("type", "better"):
            continue
        if key not in opts:
            choices = ["type", "better", *opts]
            ignored = key in ("crop_border", "test_y_channel") and kind in ("calculate_lpips", "calculate_dists")
            hint = (f"traiNNer ignores {key} for {kind} and scores the whole image: remove the key" if ignored
                    else f"{kind} takes: {', '.join(choices)}")
            raise AutosrError(f"{where}.{key}: unknown key for {kind}{did_you_mean(str(key), choices)}", hint)
        opts[key] = value
    crop = opts.get("crop_border", 0)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise AutosrError(f"{where}.crop_border must be an integer ≥ 0, got {crop!r}")
    if not isinstance(opts.get("test_y_channel", False), bool):
        raise AutosrError(f"{where}.test_y_channel must be true or false, got {opts['test_y_channel']!r}")
    if opts.get("net", "alex") not in ("alex", "vgg"):
        raise AutosrError(f"{where}.net must be alex or vgg, got {opts['net']!r}", "traiNNer's squeeze is not available")
    if spec.get("better", "higher") not in ("higher", "lower"):
        raise AutosrError(f"{where}.better must be 'higher' or 'lower', got {spec['better']!r}")
    return kind, opts


def metric_available(spec: Mapping[str, object], where: str = "val.metrics") -> tuple[bool, str]:
    """Whether a (valid) metric can be computed here, and if not, why, in one line.

    LPIPS and DISTS need weight files (never downloaded): without them the reason names the file, the
    folder it was looked for in and where to get it. TOPIQ is never available. The validator drops
    an unavailable metric and reports the reason. A malformed spec raises AutosrError instead.
    """
    kind, opts = check_metric(spec, where)
    if kind == "calculate_topiq":
        return False, f"{where} ({kind}) skipped: {TOPIQ_REASON}"
    if kind in ("calculate_lpips", "calculate_dists"):
        files = metric_files("lpips" if kind == "calculate_lpips" else "dists", str(opts.get("net", "alex")))
        reason = missing_weights(files)
        if reason:
            return False, f"{where} ({kind}) skipped: {reason}"
    return True, ""


def metric_better(spec: Mapping[str, object]) -> str:
    """'higher' or 'lower': the spec's ``better``, else the type's own direction."""
    better = spec.get("better")
    if isinstance(better, str):
        return better
    kind = spec.get("type")
    return METRIC_BETTER.get(kind.lower(), "higher") if isinstance(kind, str) else "higher"


def calculate_metric(spec: Mapping[str, object], img: Tensor, img2: Tensor, *, where: str = "val.metrics") -> float:
    """Score one pair (``img`` the SR, ``img2`` the HR) with a traiNNer metric mapping such as
    ``{type: calculate_psnr, crop_border: 4, test_y_channel: true, better: higher}``.

    ``better`` ("higher" or "lower") is traiNNer's hint for best-model tracking: it is checked here but
    is the caller's to use. ``where`` names the mapping in errors (e.g. ``val.metrics.psnr``). Unknown
    keys and types are errors with a did-you-mean, never ignored; an unavailable metric (see
    ``metric_available``) raises its reason.
    """
    kind, opts = check_metric(spec, where)
    if kind == "calculate_topiq":
        raise AutosrError(f"{where} ({kind}): {TOPIQ_REASON}", "remove it from val.metrics")
    return METRICS[kind](img, img2, **opts)


# ----------------------------------------------------------------------------- tiled inference
@torch.no_grad()
def tiled_forward(model: Callable[[Tensor], Tensor], lq: Tensor, scale: int, tile: int = 256,
                  overlap: int = 16) -> Tensor:
    """Run ``model`` on overlapping tiles of ``lq`` (N,C,H,W) and stitch the tile centres.

    Each tile of ``tile``×``tile`` LR pixels is run with ``overlap`` extra pixels of context on every
    side (less at the image edge, where the full forward sees the same edge). Only the centre goes
    into the output, so for a fully-convolutional net whose receptive-field radius is ≤ ``overlap``
    the result equals the whole-image forward (up to float rounding). Images that fit in one tile
    go through in one call.
    """
    if tile <= 0 or overlap < 0:
        raise AutosrRuntimeError(f"tiled_forward needs tile > 0 and overlap ≥ 0, got {tile}, {overlap}")
    h, w = lq.shape[-2:]
    if h <= tile and w <= tile:
        return model(lq)
    out: Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, h), min(x1 + overlap, w)
            sr = model(lq[..., py0:py1, px0:px1])
            if sr.shape[-2:] != ((py1 - py0) * scale, (px1 - px0) * scale):
                raise AutosrRuntimeError(
                    f"tiled_forward: a {py1 - py0}×{px1 - px0} tile gave {tuple(sr.shape[-2:])}, "
                    f"expected ×{scale}",
                    "check the model's scale",
                )
            if out is None:
                out = sr.new_empty((*sr.shape[:-2], h * scale, w * scale))
            cy, cx = (y0 - py0) * scale, (x0 - px0) * scale
            out[..., y0 * scale:y1 * scale, x0 * scale:x1 * scale] = \
                sr[..., cy:cy + (y1 - y0) * scale, cx:cx + (x1 - x0) * scale]
    assert out is not None
    return out

