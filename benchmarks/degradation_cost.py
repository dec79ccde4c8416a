"""What on-the-fly degradation costs next to a training step, measured in one run on one device.

    python benchmarks/degradation_cost.py                      # GPU if there is one: nano, batch 64, lq 64, ×2
    python benchmarks/degradation_cost.py --eager              # no CUDA graph for the degradation
    python benchmarks/degradation_cost.py --small              # a CPU-sized run (batch 8, lq 16, 3 steps)
    python benchmarks/degradation_cost.py --config trainner    # traiNNer-redux's default OTF values
    python benchmarks/degradation_cost.py --config paragon     # the fork's own pipeline, its showcase values

Times, after warm-up, N times each (the device synchronised around each block):
  degrade  the degradation of one batch, as an HR-only crop source runs it: HR crops of
           (lq + 2·margin)·scale px (the degrader's context margin), the LR of each and its window
           (Degrader.crop): host draws + device work
  step     one ParagonSR2 training step on a ready batch (forward, L1, backward, AdamW; bf16
           autocast and channels_last on a GPU, fp32 on the CPU: what autosr plans)
  both     degrade then step, as the training loop does: what degrading really adds, overlap included
and prints degrade/step and (both - step)/step. The target for a GPU at nano batch 64 is ≤ 10%.
--config: realesrgan (default: every stage on, the fork's real-photo values in traiNNer-redux
keys), trainner (traiNNer-redux's defaults: resizes and two JPEGs), paragon (the ParagonSR2 fork's
pipeline with "2xS_real_photography_showcase.yml"'s values: WebP/AVIF on the CPU, per sample),
bicubic. --json FILE saves the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosr.archs import build_network  # noqa: E402
from autosr.synthetic import paint  # noqa: E402
from autosr.train.degradations import Degrader, ParagonDegrader, RealESRGANDegrader  # noqa: E402

# "2xS_real_photography_showcase copy.yml" of the ParagonSR2 fork (options/train/ParagonSR2/previous),
# its upstream-key degradation values; "nearest" there is "nearest-exact" (traiNNer-redux's name).
REAL_PHOTO = {
    "blur_prob": 0.3, "resize_prob": [0.2, 0.7, 0.1], "resize_range": [0.15, 1.5],
    "resize_mode_list": ["area", "bicubic", "bilinear", "nearest-exact"], "resize_mode_prob": [0.3, 0.4, 0.25, 0.05],
    "gaussian_noise_prob": 0.5, "noise_range": [1, 20], "poisson_scale_range": [0.05, 3], "gray_noise_prob": 0.4,
    "jpeg_range": [40, 95], "jpeg_prob": 0.65,
    "blur_prob2": 0.5, "resize_prob2": [0.3, 0.4, 0.3], "resize_range2": [0.3, 1.2],
    "resize_mode_list2": ["area", "bicubic", "bilinear"], "resize_mode_prob2": [0.3, 0.45, 0.25],
    "gaussian_noise_prob2": 0.5, "noise_range2": [1, 18], "poisson_scale_range2": [0.05, 2.5], "gray_noise_prob2": 0.4,
    "jpeg_range2": [45, 95], "jpeg_prob2": 0.7,
    "resize_mode_list3": ["area", "bicubic"], "resize_mode_prob3": [0.3, 0.7],
    "blur_kernel_size": 21, "sinc_prob": 0.1, "blur_sigma": [0.2, 3.0], "betag_range": [0.5, 4.0], "betap_range": [1, 2],
    "blur_kernel_size2": 21, "sinc_prob2": 0.1, "blur_sigma2": [0.2, 1.5], "betag_range2": [0.5, 4.0], "betap_range2": [1, 2],
    "final_sinc_prob": 0.1, "final_kernel_range": [7, 21],
}  # fmt: skip
# "2xS_real_photography_showcase.yml" of the fork (options/train/ParagonSR2/previous): its
# high_order_degradation keys, root and datasets.train, which the fork's own pipeline reads.
SHOWCASE = {
    "blur_prob": 0.3, "resize_mode_list3": ["bicubic", "bilinear"], "resize_mode_prob3": [0.7, 0.3],
    "compression_formats": ["jpeg", "webp", "avif", "heif"], "compression_weights": [0.60, 0.25, 0.10, 0.05],
    "compression_jpeg_range": [45, 95], "compression_webp_range": [60, 85], "compression_avif_range": [65, 90],
    "compression_heif_range": [70, 90], "recompression_prob": 0.5, "recompression_formats": ["jpeg", "webp", "avif", "heif"],
    "recompression_weights": [0.50, 0.35, 0.10, 0.05],
    "sensor_noise_prob": 0.5, "sensor_noise_std_range": [0.015, 0.06], "motion_blur_prob": 0.2, "motion_blur_kernel_size": [3, 9],
    "motion_blur_angle_range": [0, 360], "lens_distort_prob": 0.25, "lens_distort_strength_range": [-0.1, 0.2],
    "rolling_shutter_prob": 0.15, "rolling_shutter_strength_range": [0.01, 0.06], "chromatic_aberration_prob": 0.4,
    "oversharpen_prob": 0.4, "oversharpen_strength": [1.1, 1.5], "exposure_prob": 0.3, "exposure_factor_range": [0.90, 1.15],
    "color_temp_prob": 0.35, "color_temp_shift_range": [-0.15, 0.15], "aliasing_prob": 0.2, "aliasing_scale_range": [0.6, 0.9],
    "demosaic_prob": 0.1, "editing_prob": 0.4, "editing_exposure_prob": 0.6, "editing_exposure_range": [0.95, 1.10],
    "editing_oversharpen_prob": 0.4, "editing_oversharpen_strength": [1.05, 1.3], "queue_size": 120,
    "blur_kernel_size": 21, "sinc_prob": 0.1, "blur_sigma": [0.2, 3.0], "betag_range": [0.5, 4.0], "betap_range": [1, 2],
    "final_sinc_prob": 0.1, "final_kernel_range": [7, 21],
}  # fmt: skip
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "realesrgan": ("realesrgan", REAL_PHOTO),
    "trainner": ("realesrgan", {}),
    "paragon": ("paragon", SHOWCASE),
    "bicubic": ("bicubic", {}),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[int], object], n: int, device: torch.device) -> float:
    """Seconds per call of fn(i), i = 0 … n-1, the device drained before and after."""
    _sync(device)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    _sync(device)
    return (time.perf_counter() - start) / n


def hr_crops(batch: int, size: int, device: torch.device) -> torch.Tensor:
    """HR crops cut from natural-looking synthetic images (autosr.synthetic.paint)."""
    image = torch.from_numpy(paint(max(4 * size, 256), max(4 * size, 256), 0)).permute(2, 0, 1).float() / 255
    g = torch.Generator().manual_seed(0)
    ys = torch.randint(0, image.shape[1] - size + 1, (batch,), generator=g).tolist()
    xs = torch.randint(0, image.shape[2] - size + 1, (batch,), generator=g).tolist()
    return torch.stack([image[:, y : y + size, x : x + size] for y, x in zip(ys, xs, strict=True)]).to(device)


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    kind, opts = CONFIGS[args.config]
    degrader = Degrader.from_options(kind, opts, args.scale, seed=0)
    if isinstance(degrader, RealESRGANDegrader | ParagonDegrader):
        degrader.cuda_graph = not args.eager
    margin = degrader.margin
    big = hr_crops(args.batch, (args.lq + 2 * margin) * args.scale, device)
    fmt = torch.channels_last if cuda else torch.contiguous_format

    model = build_network({"type": args.arch, "scale": args.scale}).to(device, memory_format=fmt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda)

    def step(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
        lq, gt = pair
        with autocast:
            loss = F.l1_loss(model(lq.contiguous(memory_format=fmt)).float(), gt)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def degrade(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return degrader.crop(big, i * args.batch, margin)

    ready = degrade(0)
    for i in range(args.warmup):  # cuDNN autotuning, graph capture, tables
        step(degrade(i))
    t_degrade = _timed(degrade, args.steps, device)
    t_step = _timed(lambda i: step(ready), args.steps, device)
    t_both = _timed(lambda i: step(degrade(i)), args.steps, device)
    side = big.shape[2]
    t_draws = _timed(lambda i: degrader.draws(i * args.batch, args.batch, side, side, margin), args.steps, torch.device("cpu")) \
        if isinstance(degrader, RealESRGANDegrader | ParagonDegrader) else 0.0
    note = degrader.graph_note if isinstance(degrader, RealESRGANDegrader | ParagonDegrader) else ""
    graph = isinstance(degrader, RealESRGANDegrader | ParagonDegrader) and cuda and degrader.cuda_graph
    return {
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
        "torch": torch.__version__, "config": args.config, "arch": args.arch, "batch": args.batch, "lq": args.lq,
        "scale": args.scale, "margin": margin, "steps": args.steps, "cuda_graph": graph, "graph_note": note,
        "notes": list(degrader.notes),
        "degrade_ms": 1000 * t_degrade, "host_draws_ms": 1000 * t_draws, "step_ms": 1000 * t_step, "both_ms": 1000 * t_both,
        "degrade_over_step": t_degrade / t_step, "added_to_step": (t_both - t_step) / t_step,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="realesrgan")
    parser.add_argument("--arch", default="paragonsr2_nano")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lq", type=int, default=64)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="no CUDA graph for the degradation")
    parser.add_argument("--small", action="store_true", help="batch 8, lq 16, 3 steps, 1 warm-up (CPU-sized)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.small:
        args.batch, args.lq, args.steps, args.warmup = 8, 16, min(args.steps, 3), 1
    r = run(args)
    how = ("CUDA graph" if r["cuda_graph"] else "eager") + (f" · {r['graph_note']}" if r["graph_note"] else "")
    print(f"{r['device']} · torch {r['torch']} · {r['arch']} batch {r['batch']} lq {r['lq']} ×{r['scale']} · "
          f"config {r['config']} · margin {r['margin']} · {how}")
    print(f"degrade {r['degrade_ms']:.2f} ms/batch (host draws {r['host_draws_ms']:.2f} ms) · step {r['step_ms']:.2f} ms · "
          f"degrade then step {r['both_ms']:.2f} ms")
    print(f"degradation / step: {r['degrade_over_step']:.3f} · added to the step: {100 * r['added_to_step']:+.1f}%")
    for note in r["notes"]:
        print(f"note: {note}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n")
    return r


if __name__ == "__main__":
    main()
