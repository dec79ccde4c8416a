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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError, did_you_mean

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


METRICS: dict[str, Callable[..., float]] = {
    "calculate_psnr": calculate_psnr,
    "calculate_ssim": calculate_ssim,
}
_METRIC_KEYS = ("type", "crop_border", "test_y_channel", "better")


def calculate_metric(spec: Mapping[str, object], img: Tensor, img2: Tensor, *, where: str = "val.metrics") -> float:
    """Score one pair with a traiNNer metric mapping: ``{type, crop_border, test_y_channel, better}``.

    ``better`` ("higher", the default, or "lower") is traiNNer's hint for best-model tracking: it is
    checked here but is the caller's to use. ``where`` names the mapping in errors (e.g.
    ``val.metrics.psnr``). Unknown keys and types are errors with a did-you-mean, never ignored.
    """
    for key in spec:
        if key not in _METRIC_KEYS:
            raise AutosrError(f"{where}.{key}: unknown key{did_you_mean(str(key), _METRIC_KEYS)}",
                              f"known keys: {', '.join(_METRIC_KEYS)}")
    kind = spec.get("type")
    if not isinstance(kind, str) or kind.lower() not in METRICS:
        raise AutosrError(f"{where}.type: unknown metric {kind!r}{did_you_mean(str(kind), METRICS)}",
                          f"autosr computes: {', '.join(METRICS)}")
    crop = spec.get("crop_border", 0)
    y_only = spec.get("test_y_channel", False)
    if isinstance(crop, bool) or not isinstance(crop, int) or crop < 0:
        raise AutosrError(f"{where}.crop_border must be an integer ≥ 0, got {crop!r}")
    if not isinstance(y_only, bool):
        raise AutosrError(f"{where}.test_y_channel must be true or false, got {y_only!r}")
    if spec.get("better", "higher") not in ("higher", "lower"):
        raise AutosrError(f"{where}.better must be 'higher' or 'lower', got {spec['better']!r}")
    return METRICS[kind.lower()](img, img2, crop_border=crop, test_y_channel=y_only)


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

