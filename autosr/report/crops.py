"""Pictures for `autosr report`: validation crops at the best checkpoint, LR / bicubic / autosr / HR side by side.

- The model is the run's best (else newest) model file (`autosr.use.upscale.find_model`, `load_model`);
  the validation pairs are config.yml's datasets.val* entries, paired and decoded by autosr.images
  exactly as the trainer does (`collect_pairs`, `load_val_pairs`).
- Bicubic is the validator's baseline upsampling (torch bicubic, align_corners=False, clamped).
- Cheap: at most MAX_IMAGES images and about PIXEL_BUDGET LR pixels through the model in all. An image
  within its share runs whole; a bigger one only on the REGION_LR-sided regions where bicubic errs
  most (the proxy for where the model matters), each with MARGIN px of LR context cut off after
  upscaling and the content gain held at the whole image's value, as `autosr upscale` holds it
  across tiles.
- Rows: the windows where autosr removes the most squared error of bicubic's, and the one where it adds the
  most; each labelled with the local PSNR of both.
- Never raises: whatever is missing (model, validation set, images, torch) is returned as text.
"""

from __future__ import annotations

import base64
import html
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autosr.runfolder import PSNR_BEST_MODEL

MAX_IMAGES = 8
CROP_HR = 128  # HR px of each panel
MARGIN = 48  # LR px of context around a region, cut off after upscaling
PIXEL_BUDGET = 500_000  # LR pixels through the model, all images together (~1 s for nano on 2 idle CPU cores)
REGION_LR = 128  # LR side of each region of a bigger image
BEST_ROWS = 2


@dataclass
class CropRow:
    label: str  # "largest gain" / "largest loss"
    image: str
    x: int  # HR px, top-left
    y: int
    size: int
    psnr_bicubic: float
    psnr_model: float
    panels: list[bytes]  # PNG: LR (nearest), bicubic, autosr, HR
    # a realistic run: the PSNR-best model (the fidelity phase's) on the same crop — (label, PSNR, PNG)
    beside: list[tuple[str, float, bytes]] = field(default_factory=list)


@dataclass
class Crops:
    rows: list[CropRow] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    model: str | None = None
    images: int = 0
    seconds: float = 0.0


def _val_entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    datasets = config.get("datasets") if isinstance(config, dict) else None
    if not isinstance(datasets, dict):
        return []
    return [v for k, v in datasets.items() if str(k).startswith("val") and isinstance(v, dict)
            and v.get("dataroot_gt") and v.get("dataroot_lq")]


def _has_model_file(folder: Path) -> bool:
    models = folder / "models"
    return models.is_dir() and any(p.name.startswith("net_g") and p.suffix == ".safetensors" for p in models.iterdir())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def build_crops(folder: Path, config: dict[str, Any], *, max_images: int = MAX_IMAGES) -> Crops:
    """The crop rows of a run folder; what stops them is named in `missing` (never raises)."""
    started = time.perf_counter()
    out = Crops()
    try:
        _build(Path(folder), config, out, max_images)
    except Exception as exc:  # noqa: BLE001 - pictures are optional: the report must render anyway
        out.rows = []
        out.missing.append(f"pictures failed: {_first_line(exc)}")
    out.seconds = time.perf_counter() - started
    return out


def _build(folder: Path, config: dict[str, Any], out: Crops, max_images: int) -> None:
    entries = _val_entries(config)
    if not _has_model_file(folder):
        out.missing.append(f"no model file in {folder / 'models'} (net_g_best.safetensors or net_g_*.safetensors)")
    if not entries:
        out.missing.append("no validation set in config.yml (datasets.val with dataroot_gt and dataroot_lq)")
    if out.missing:
        return
    try:
        import torch

        from autosr.images import collect_pairs
        from autosr.use.model_file import load_model
        from autosr.use.upscale import find_model
    except ImportError as exc:
        out.missing.append(f"pictures need torch: {_first_line(exc)}")
        return
    try:
        path, fallback = find_model(folder)
        model, info = load_model(path, network_opts=fallback)
    except Exception as exc:  # noqa: BLE001 - a cut or foreign file: say so, show the rest
        out.missing.append(f"model file unreadable: {_first_line(exc)}")
        return
    out.model = str(path)
    if info.in_chans != 3:
        out.missing.append(f"the model takes {info.in_chans} channels: pictures show RGB models only")
        return
    pairs: list[Any] = []
    for entry in entries:
        meta = entry.get("meta_info")
        try:
            pairs += collect_pairs(entry["dataroot_gt"], entry["dataroot_lq"], meta or None)
        except Exception as exc:  # noqa: BLE001 - moved or deleted validation images
            out.missing.append(f"validation images unreadable ({entry['dataroot_gt']}): {_first_line(exc)}")
    if not pairs:
        if not out.missing:
            out.missing.append("the validation set has no image pairs")
        return
    model.eval()
    scale = int(info.scale)
    candidates: list[Any] = []
    with torch.inference_mode():
        for name, lq, gt, sr, bic, at in _upscaled(model, scale, pairs[:max_images], out):
            candidates += _windows(name, lq, gt, sr, bic, scale, at)
    if not candidates:
        if not out.missing:
            out.missing.append(f"validation images smaller than a {CROP_HR} px crop")
        return
    candidates.sort(key=lambda c: c[0], reverse=True)
    chosen: list[Any] = []
    for c in candidates:  # the best windows, from different images first, never overlapping
        if len(chosen) < BEST_ROWS and all(o[1] != c[1] for o in chosen):
            chosen.append(c)
    for c in candidates:
        if len(chosen) < BEST_ROWS and all(not _overlap(o, c) for o in chosen):
            chosen.append(c)
    rows = [("where autosr gains most over bicubic" if c[0] > 0 else "where autosr loses least to bicubic", c) for c in chosen]
    worst = candidates[-1]
    if all(not _overlap(o, worst) for o in chosen):
        rows.append(("where autosr loses most to bicubic" if worst[0] < 0 else "where autosr gains least over bicubic", worst))
    for label, c in rows:
        out.rows.append(_row(label, c, scale))
    _beside_psnr_best(folder, [c for _, c in rows], out, scale)


def _beside_psnr_best(folder: Path, chosen: list[Any], out: Crops, scale: int) -> None:
    """A realistic run's result is its final model; its PSNR-best one (the fidelity phase's, as a rule)
    is shown beside it on the same crops, run on the same LR piece."""
    path = folder / "models" / PSNR_BEST_MODEL
    if not path.is_file():
        return
    import torch

    from autosr.train.metrics import calculate_psnr
    from autosr.use.model_file import load_model
    from autosr.use.upscale import CPU_TILE, upscale_tensor

    try:
        model, _ = load_model(path)
    except Exception as exc:  # noqa: BLE001 - pictures are optional
        out.missing.append(f"{PSNR_BEST_MODEL} unreadable: {_first_line(exc)}")
        return
    model.eval()
    size = CROP_HR // scale * scale
    with torch.inference_mode():
        for row, c in zip(out.rows, chosen, strict=True):
            _, _, _, _, x, y, lq, gt, _, _ = c
            sr = upscale_tensor(model, lq.to(next(model.parameters()).device), scale, tile=CPU_TILE).float().clamp(0, 1).cpu()
            cut = (slice(None), slice(None), slice(y, y + size), slice(x, x + size))
            row.beside.append(("PSNR-best model", calculate_psnr(sr[cut], gt[cut]), _png(sr[cut])))


def _overlap(a: Any, b: Any) -> bool:
    return bool(a[1] == b[1] and abs(a[2] - b[2]) < CROP_HR and abs(a[3] - b[3]) < CROP_HR)


def _upscaled(model: Any, scale: int, pairs: list[Any], out: Crops) -> Any:
    """(name, lq, gt, sr, bicubic, (x, y) HR offset) per piece run — a whole image or a region of one —
    as float (1, 3, H, W) tensors in [0, 1]."""
    import torch.nn.functional as F  # noqa: N812

    from autosr.images import load_val_pairs
    from autosr.use.upscale import CPU_TILE, _image_gain, _without_content_gain, upscale_tensor

    device = next(model.parameters()).device
    share = PIXEL_BUDGET // max(1, len(pairs))
    s = scale
    for pair in pairs:
        try:
            ((name, lq_u8, gt_u8),) = load_val_pairs([pair], scale=scale)
        except Exception as exc:  # noqa: BLE001 - one unreadable pair: skip it, name it
            out.missing.append(f"{Path(pair[0]).name}: {_first_line(exc)}")
            continue
        lq = lq_u8.float().div(255).unsqueeze(0)
        gt = gt_u8.float().div(255).unsqueeze(0)
        bic = F.interpolate(lq, scale_factor=scale, mode="bicubic", align_corners=False)  # as validate.bicubic_baseline
        bic = bic.clamp(0, 1)[..., : gt.shape[2], : gt.shape[3]]
        h, w = lq.shape[-2:]
        x = lq.to(device)
        out.images += 1
        if h * w <= share:
            yield name, lq, gt, upscale_tensor(model, x, scale, tile=CPU_TILE).float().clamp(0, 1).cpu(), bic, (0, 0)
            continue
        with _without_content_gain(model) as gain:
            g = _image_gain(gain, x, CPU_TILE) if gain is not None else None
            for y0, x0, y1, x1 in _regions(bic, gt, scale, share):
                py0, px0, py1, px1 = max(y0 - MARGIN, 0), max(x0 - MARGIN, 0), min(y1 + MARGIN, h), min(x1 + MARGIN, w)
                t = x[..., py0:py1, px0:px1]
                d = model.detail(t)
                y = (model.base(t) + (d * g if g is not None else d)).float().clamp(0, 1).cpu()
                sr = y[..., (y0 - py0) * s:(y1 - py0) * s, (x0 - px0) * s:(x1 - px0) * s]
                hr = (..., slice(y0 * s, y1 * s), slice(x0 * s, x1 * s))
                yield name, lq[..., y0:y1, x0:x1], gt[hr], sr, bic[hr], (x0 * s, y0 * s)


def _regions(bic: Any, gt: Any, scale: int, share: int) -> list[tuple[int, int, int, int]]:
    """The LR regions (y0, x0, y1, x1) of a grid where bicubic errs most, as many as `share` LR pixels pay for."""
    import torch.nn.functional as F  # noqa: N812

    h, w = gt.shape[-2] // scale, gt.shape[-1] // scale
    side = min(REGION_LR, h, w)
    count = max(1, share // (side + 2 * MARGIN) ** 2)
    err = F.avg_pool2d((bic - gt).pow(2).mean(dim=1, keepdim=True), side * scale, stride=side * scale)[0, 0]
    order = err.flatten().argsort(descending=True)[:count].tolist()
    cols = err.shape[1]
    return [(i // cols * side, i % cols * side, i // cols * side + side, i % cols * side + side) for i in order]


def _windows(name: str, lq: Any, gt: Any, sr: Any, bic: Any, scale: int, at: tuple[int, int]) -> list[Any]:
    """(mean squared error removed, name, x, y in the image, x, y in the piece, lq, gt, sr, bic) for
    CROP_HR windows on a half-crop grid of one piece."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    size = CROP_HR // scale * scale
    if min(gt.shape[-2:]) < size:
        return []
    step = max(scale, size // 2 // scale * scale)  # windows start on LR pixels
    g8 = gt.mul(255).round()

    def mse(img: Any) -> Any:
        err = (img.mul(255).round() - g8).pow(2).mean(dim=1, keepdim=True)
        return F.avg_pool2d(err, size, stride=step)[0, 0]

    m_sr, m_bic = mse(sr), mse(bic)
    gain = m_bic - m_sr  # squared error (0–255 scale) autosr removes: flat areas weigh little either way
    found = []
    for (i, j) in torch.nonzero(torch.isfinite(gain)).tolist():
        found.append((float(gain[i, j]), name, at[0] + j * step, at[1] + i * step, j * step, i * step, lq, gt, sr, bic))
    return found


def _png(pixels: Any) -> bytes:
    from PIL import Image

    arr = pixels[0].mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _row(label: str, c: Any, scale: int) -> CropRow:
    from autosr.train.metrics import calculate_psnr

    _, name, gx, gy, x, y, lq, gt, sr, bic = c
    size = CROP_HR // scale * scale
    cut = (slice(None), slice(None), slice(y, y + size), slice(x, x + size))
    lr = lq[:, :, y // scale:(y + size) // scale, x // scale:(x + size) // scale]
    nearest = lr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    psnr_b, psnr_m = calculate_psnr(bic[cut], gt[cut]), calculate_psnr(sr[cut], gt[cut])
    return CropRow(label, name, gx, gy, size, psnr_b, psnr_m, [_png(p) for p in (nearest, bic[cut], sr[cut], gt[cut])])


# ---- HTML ---------------------------------------------------------------------------------------

CSS = (".crops td{text-align:center;vertical-align:top;border:none;padding:4px}"
       ".crops img{image-rendering:pixelated;image-rendering:crisp-edges;width:256px;height:256px;display:block}"
       ".crops .cap{font-size:12px;text-align:left}")


def _db(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.2f}"


def crops_html(crops: Crops) -> str:
    """The "Pictures" section: one row per crop, four pixelated panels, or what is missing."""
    esc = html.escape
    head = "<h2>Pictures</h2>"
    if not crops.rows:
        items = "".join(f"<li>{esc(m)}</li>" for m in crops.missing) or "<li>nothing to show</li>"
        return f'{head}<p class="problem">No pictures: what is missing:</p><ul class="problem">{items}</ul>'
    note = (f"<p>Validation crops at the best checkpoint ({esc(Path(crops.model or '?').name)}), from {crops.images} "
            f"image{'s' if crops.images != 1 else ''}: where autosr gains most over bicubic, and where it does worst. "
            f"Local PSNR (RGB) on each crop. Pixels are shown at 2×, not smoothed.</p>")
    rows = []
    for r in crops.rows:
        cls = "good" if r.psnr_model > r.psnr_bicubic else "bad"
        cap = (f'<td colspan=4 class="cap"><b>{esc(r.label)}</b>: {esc(r.image)} at x={r.x}, y={r.y} '
               f"({r.size}×{r.size} HR px) · bicubic {_db(r.psnr_bicubic)} dB · "
               f'<span class="{cls}">autosr {_db(r.psnr_model)} dB</span></td>')
        titles = ["LR (nearest)", "bicubic", "autosr", "HR"]
        panels = list(r.panels)
        for title, psnr, png in r.beside:  # a realistic run: its PSNR-best model beside the result
            titles.insert(3, f"{title} ({_db(psnr)} dB)")
            panels.insert(3, png)
        cells = "".join(f'<td><img alt="{esc(t)}" src="data:image/png;base64,{base64.b64encode(p).decode("ascii")}">{esc(t)}</td>'
                        for t, p in zip(titles, panels, strict=True))
        rows.append(f"<tr>{cap}</tr><tr>{cells}</tr>")
    extra = "".join(f"<li>{esc(m)}</li>" for m in crops.missing)
    missing = f'<ul class="problem">{extra}</ul>' if extra else ""
    return f'{head}{note}<style>{CSS}</style><table class="crops">{"".join(rows)}</table>{missing}'
