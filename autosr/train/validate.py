"""Validation: the EMA model on whole validation images, metrics as traiNNer defines them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from autosr.train.metrics import calculate_metric, check_metric, metric_available, metric_better, tiled_forward

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
    tile: int = 0,
    save_dir: Path | None = None,
    iteration: int = 0,
) -> dict[str, float]:
    """Mean of each metric over the images (name → value). With `save_dir`, each SR image is also
    written as <save_dir>/<name>/<name>_<iteration>.png (traiNNer's layout)."""
    # Whole images come in many sizes, each seen once per validation: cuDNN's autotuning for every
    # new size cost the first validation 5.8 s on an H100 (9 photos; the next ones took 0.06 s).
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        return _evaluate_images(model, images, metrics, scale=scale, device=device, autocast=autocast,
                                channels_last=channels_last, tile=tile, save_dir=save_dir, iteration=iteration)
    finally:
        torch.backends.cudnn.benchmark = benchmark


def _evaluate_images(
    model: Callable[[torch.Tensor], torch.Tensor], images: Sequence[ValImage], metrics: Mapping[str, Mapping[str, Any]],
    *, scale: int, device: torch.device, autocast: Callable[[], Any], channels_last: bool, tile: int,
    save_dir: Path | None, iteration: int,
) -> dict[str, float]:
    sums = {name: 0.0 for name in metrics}
    for image_name, lq_u8, gt_u8 in images:
        lq = lq_u8.to(device, non_blocking=True).unsqueeze(0).float().div_(255)
        if channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with autocast():
            sr = tiled_forward(model, lq, scale, tile=tile) if tile > 0 else model(lq)
        sr = sr.float().clamp_(0, 1)[0]
        for name, value in _scores(metrics, sr, gt_u8).items():
            sums[name] += value
        if save_dir is not None:
            _save_png(sr.cpu(), save_dir / image_name / f"{image_name}_{iteration}.png")
    return {name: total / max(1, len(images)) for name, total in sums.items()}


def _scores(metrics: Mapping[str, Mapping[str, Any]], sr: torch.Tensor, gt_u8: torch.Tensor) -> dict[str, float]:
    """Every metric of one image, on `sr`'s device: on a GPU a 2-megapixel SSIM takes milliseconds
    instead of the CPU's seconds, which decided how many validations a time budget could afford.
    Out of memory there (a huge image beside training): the CPU."""
    try:
        gt = gt_u8.to(sr.device)
        return {name: calculate_metric(spec, sr, gt, where=f"val.metrics.{name}") for name, spec in metrics.items()}
    except torch.cuda.OutOfMemoryError:
        if sr.device.type == "cpu":
            raise
        torch.cuda.empty_cache()
        return _scores(metrics, sr.cpu(), gt_u8)


def _save_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = image.mul(255).round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()
    Image.fromarray(pixels).save(path)


def bicubic_baseline(images: Sequence[ValImage], metrics: Mapping[str, Mapping[str, Any]], scale: int,
                     device: torch.device | None = None) -> dict[str, float]:
    """The same metrics for a plain bicubic upscale: the bar a trained model must clear."""
    sums = {name: 0.0 for name in metrics}
    for _, lq_u8, gt_u8 in images:
        lq = lq_u8.to(device or "cpu").float().div(255).unsqueeze(0)
        up = torch.nn.functional.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False)
        up = up.clamp(0, 1)[0][:, : gt_u8.shape[1], : gt_u8.shape[2]]
        for name, value in _scores(metrics, up, gt_u8).items():
            sums[name] += value
    return {name: total / max(1, len(images)) for name, total in sums.items()}


@dataclass(frozen=True)
class ValResult:
    iteration: int
    values: dict[str, float]
    improved: tuple[str, ...]  # metrics that reached a new best here
    best: dict[str, tuple[float, int]]  # metric → (value, iteration)
    higher_is_better: dict[str, bool]


class Validator:
    """Validation in one place: evaluate the model, decide better/worse per metric, track the best.

    A metric that cannot be computed here (LPIPS/DISTS without their weight files, TOPIQ) is left out
    at construction: ``dropped`` maps its name to a one-line reason for the caller to print and journal.
    ``calculate_hf_ratio`` (without an explicit ``better``) improves by coming closer to 1.
    """

    def __init__(self, images: Sequence[ValImage], metrics: Mapping[str, Mapping[str, Any]], *, scale: int,
                 tile: int, device: torch.device, autocast: Callable[[], Any], channels_last: bool,
                 save_dir: Path | None = None) -> None:
        self.images, self.metrics, self.scale, self.tile = list(images), dict(metrics), scale, tile
        self.device, self.autocast, self.channels_last, self.save_dir = device, autocast, channels_last, save_dir
        self.best: dict[str, tuple[float, int]] = {}
        self.tile_note = ""  # set when an out-of-memory switched to tiles (journaled by the trainer)
        self.dropped: dict[str, str] = {}
        for name, spec in list(self.metrics.items()):
            ok, reason = metric_available(spec, where=f"val.metrics.{name}")
            if not ok:
                self.dropped[name] = reason
                del self.metrics[name]
        self.higher = {name: metric_better(spec) == "higher" for name, spec in self.metrics.items()}
        self.target = {name: 1.0 for name, spec in self.metrics.items()
                       if check_metric(spec)[0] == "calculate_hf_ratio" and "better" not in spec}

    @property
    def primary(self) -> str:
        """The metric that picks the best model: the first one configured."""
        return next(iter(self.metrics))

    def run(self, model: Callable[[torch.Tensor], torch.Tensor], iteration: int) -> ValResult:
        try:
            values = self._evaluate(model, iteration)
        except torch.cuda.OutOfMemoryError:
            if self.tile == 0:  # whole images do not fit beside training: tiles do
                torch.cuda.empty_cache()
                self.tile, self.tile_note = OOM_TILE, f"whole validation images ran out of memory: tiles of {OOM_TILE} px"
                values = self._evaluate(model, iteration)
            else:
                raise
        improved = []
        for name, value in values.items():
            old = self.best.get(name)
            if old is None or self._improves(name, value, old[0]):
                self.best[name] = (value, iteration)
                improved.append(name)
        return ValResult(iteration, values, tuple(improved), dict(self.best), dict(self.higher))

    def _improves(self, name: str, value: float, old: float) -> bool:
        if name in self.target:
            return abs(value - self.target[name]) < abs(old - self.target[name])
        return value > old if self.higher[name] else value < old

    def _evaluate(self, model: Callable[[torch.Tensor], torch.Tensor], iteration: int) -> dict[str, float]:
        return evaluate(model, self.images, self.metrics, scale=self.scale, device=self.device,
                        autocast=self.autocast, channels_last=self.channels_last, tile=self.tile,
                        save_dir=self.save_dir, iteration=iteration)

    def bicubic(self) -> dict[str, float]:
        return bicubic_baseline(self.images, self.metrics, self.scale, self.device)

    def state_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.best.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = {k: (float(v[0]), int(v[1])) for k, v in state.items()}


OOM_TILE = 256
