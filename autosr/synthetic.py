"""Natural-looking synthetic image pairs: for the built-in demo, the tests and the benchmarks.

Real photos cannot ship with the package, so autosr paints smooth colour fields, soft-edged
shapes and fine texture: enough structure that a model learns something a bicubic upscale
does not know, with statistics near those of photos (gradients, edges, noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def paint(width: int, height: int, seed: int) -> np.ndarray:
    """An H×W×3 uint8 image, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    # Smooth background: a few low-frequency colour waves.
    for c in range(3):
        for _ in range(3):
            fx, fy = rng.uniform(0.5, 3.0, 2) * 2 * np.pi / np.array([width, height])
            img[..., c] += rng.uniform(0.04, 0.14) * np.sin(fx * xx + fy * yy + rng.uniform(0, 6.28))
    img += rng.uniform(0.3, 0.6, 3)
    # Soft-edged shapes (ellipses and bars) give edges at many orientations.
    for _ in range(rng.integers(6, 14)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.03, 0.25, 2) * np.array([width, height])
        angle = rng.uniform(0, np.pi)
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / rx
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ry
        inside = np.clip((1.0 - (u * u + v * v)) * rng.uniform(4, 30), 0, 1)
        img = img * (1 - inside[..., None]) + rng.uniform(0, 1, 3) * inside[..., None]
    # Fine texture: stripes and grain that only the HR image resolves.
    stripe = np.sin((xx * rng.uniform(0.6, 1.4) + yy * rng.uniform(-0.5, 0.5)) * rng.uniform(0.8, 1.6))
    img += 0.035 * stripe[..., None] + rng.normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_pairs(
    root: Path, count: int, scale: int = 2, size: tuple[int, int] = (192, 160), seed: int = 0, ext: str = "png"
) -> tuple[Path, Path]:
    """Write `count` HR images and their bicubic ×1/scale LR versions to root/hr and root/lr."""
    hr_dir, lr_dir = Path(root) / "hr", Path(root) / "lr"
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    width, height = size
    for i in range(count):
        hr = Image.fromarray(paint(width, height, seed + i))
        lr = hr.resize((width // scale, height // scale), Image.Resampling.BICUBIC)
        hr.save(hr_dir / f"img_{i:04d}.{ext}")
        lr.save(lr_dir / f"img_{i:04d}.{ext}")
    return hr_dir, lr_dir
