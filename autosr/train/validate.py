"""Validation: the EMA model on whole validation images, PSNR/SSIM as traiNNer defines them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from autosr.train.metrics import calculate_metric, tiled_forward

ValImage = tuple[str, torch.Tensor, torch.Tensor]  # (name, lq uint8 CHW, gt uint8 CHW)


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: Sequence[ValImage],
    metrics: Mapping[str, Mapping[str, Any]],
    *,
    scale: int,
    device: torch.device,
    autocast: Callable[[], Any],
    channels_last: bool,
    tile: int = 256,
    save_dir: Path | None = None,
    iteration: int = 0,
) -> dict[str, float]:
    """Mean of each metric over the images (name → value). With `save_dir`, each SR image is also
    written as <save_dir>/<name>/<name>_<iteration>.png (traiNNer's layout)."""
    sums = {name: 0.0 for name in metrics}
    for image_name, lq_u8, gt_u8 in images:
        lq = lq_u8.to(device, non_blocking=True).unsqueeze(0).float().div_(255)
        if channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with autocast():
            sr = tiled_forward(model, lq, scale, tile=tile)
        sr = sr.float().clamp_(0, 1)[0].cpu()
        gt = gt_u8.float().div_(255)
        for name, spec in metrics.items():
            sums[name] += calculate_metric(spec, sr, gt, where=f"val.metrics.{name}")
        if save_dir is not None:
            _save_png(sr, save_dir / image_name / f"{image_name}_{iteration}.png")
    return {name: total / max(1, len(images)) for name, total in sums.items()}


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image.mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path)


def bicubic_baseline(images: Sequence[ValImage], metrics: Mapping[str, Mapping[str, Any]], scale: int) -> dict[str, float]:
    """The same metrics for a plain bicubic upscale: the bar a trained model must clear."""
    sums = {name: 0.0 for name in metrics}
    for _, lq_u8, gt_u8 in images:
        lq = lq_u8.float().div(255).unsqueeze(0)
        up = torch.nn.functional.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False)
        up = up.clamp(0, 1)[0][:, : gt_u8.shape[1], : gt_u8.shape[2]]
        gt = gt_u8.float().div(255)
        for name, spec in metrics.items():
            sums[name] += calculate_metric(spec, up, gt, where=f"val.metrics.{name}")
    return {name: total / max(1, len(images)) for name, total in sums.items()}
