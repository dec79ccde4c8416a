"""`autosr upscale`: apply a trained model to an image or a folder of images.

- The model is a model file, or a run folder (its models/net_g_best.safetensors, else the newest
  net_g_ema_* / net_g_* file).
- Big images run in overlapping tiles (autosr.train.metrics.tiled_forward). The content-gain branch
  pools over the whole image, so it is computed once per image (exactly, from tiles) and held fixed
  while the tiles run: tiling changes nothing but float rounding where the receptive field fits in
  the overlap. realtime…pro have no content gain; pro's squeeze-excitation pools per tile and photo's
  and pro's shifted windows wrap around at the tile's edge, so their tiles are close to, not equal to,
  one pass over the image.
- Colour runs through the model; alpha is upscaled apart with bicubic interpolation. Grayscale in
  gives grayscale out, 16-bit in gives 16-bit out; the output is always PNG.
- A file that cannot be read is skipped and reported at the end; an input is never overwritten.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image, ImageOps
from torch import Tensor, nn

from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.fsutil import atomic_write, check_creatable
from autosr.images import IMAGE_EXTS
from autosr.runfolder import RunFolder
from autosr.train.metrics import tiled_forward
from autosr.use.model_file import ModelInfo, load_model

OVERLAP = 32  # LR pixels of context around each tile (a multiple of the attention window)
CPU_TILE = 512
_MODEL_RE = re.compile(r"^net_g(_ema)?_(\d+)\.safetensors$")
_SIXTEEN_BIT_GRAY = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 4: 2, 2: 3, 6: 4}  # PNG colour type → samples per pixel


# ---------------------------------------------------------------- images


@dataclass
class Picture:
    """Pixels as float32 in [0, 1]: colour H×W×C (C 1 or 3), alpha H×W or None, and the bit depth."""

    color: np.ndarray
    alpha: np.ndarray | None
    bits: int


def _png16_header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, colour type, interlace) of a 16-bit PNG with more than one sample, else None."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return (w, h, ctype, interlace) if depth == 16 and ctype in (2, 4, 6) else None


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _read_png16(data: bytes, w: int, h: int, ctype: int) -> np.ndarray:
    """Decode a non-interlaced 16-bit RGB / RGBA / gray-alpha PNG (Pillow reads these as 8-bit)."""
    idat, pos = bytearray(), 8
    while pos + 8 <= len(data):
        length, tag = struct.unpack(">I4s", data[pos:pos + 8])
        if tag == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        elif tag == b"IEND":
            break
        pos += 12 + length
    c = _PNG_CHANNELS[ctype]
    bpp, stride = 2 * c, 2 * c * w
    raw = np.frombuffer(zlib.decompress(bytes(idat)), np.uint8)
    if raw.size < h * (stride + 1):
        raise ValueError("truncated PNG data")
    rows = raw[:h * (stride + 1)].reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.int64)
    for y in range(h):
        kind, line = int(rows[y, 0]), rows[y, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per byte lane
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1)
        elif kind == 2:  # Up
            cur = line + prev
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            vals, up = line.tolist(), prev.tolist()
            for i in range(stride):
                left = vals[i - bpp] if i >= bpp else 0
                if kind == 3:
                    vals[i] = (vals[i] + (left + up[i]) // 2) & 255
                else:
                    vals[i] = (vals[i] + _paeth(left, up[i], up[i - bpp] if i >= bpp else 0)) & 255
            cur = np.asarray(vals, np.int64)
        else:
            raise ValueError(f"bad PNG filter type {kind}")
        cur &= 255
        out[y] = cur
        prev = cur
    return out.view(">u2").reshape(h, w, c).astype(np.uint16)


def read_picture(path: Path) -> Picture:
    """Decode one image (EXIF rotation applied); raises on anything unreadable."""
    with path.open("rb") as f:
        png16 = _png16_header(f.read(33))
    if png16 is not None:
        w, h, ctype, interlace = png16
        if interlace:
            raise ValueError("interlaced 16-bit colour PNG is not supported")
        arr = _read_png16(path.read_bytes(), w, h, ctype).astype(np.float32) / 65535.0
        has_alpha = ctype in (4, 6)
        return Picture(arr[..., :-1] if has_alpha else arr, arr[..., -1] if has_alpha else None, 16)
    with Image.open(path) as opened:
        opened.load()
        im = ImageOps.exif_transpose(opened)
    mode = im.mode
    if mode in _SIXTEEN_BIT_GRAY:
        gray = np.clip(np.asarray(im).astype(np.float64), 0, 65535).astype(np.float32) / 65535.0
        return Picture(gray[..., None], None, 16)
    if mode == "F":
        raise ValueError("32-bit float pixels are not supported")
    if mode in ("1", "L"):
        return Picture(np.asarray(im.convert("L"), np.float32)[..., None] / 255.0, None, 8)
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"), np.float32) / 255.0
        return Picture(la[..., :1], la[..., 1], 8)
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), np.float32) / 255.0
        return Picture(rgba[..., :3], rgba[..., 3], 8)
    return Picture(np.asarray(im.convert("RGB"), np.float32) / 255.0, None, 8)


def _png16_bytes(arr: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, gray-alpha, RGB or RGBA) of an H×W×C uint16 array, no filtering."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = np.zeros((h, 1 + 2 * w * c), np.uint8)
    raw[:, 1:] = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, -1)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (_PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def write_picture(path: Path, pic: Picture) -> None:
    """PNG with the input's channels and bit depth, written atomically."""
    planes = pic.color if pic.alpha is None else np.concatenate([pic.color, pic.alpha[..., None]], axis=2)
    if pic.bits == 16:
        data = _png16_bytes(np.round(np.clip(planes, 0, 1) * 65535.0).astype(np.uint16))
    else:
        arr = np.round(np.clip(planes, 0, 1) * 255.0).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).save(buf, format="PNG")
        data = buf.getvalue()
    atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------- the model


def find_model(target: Path) -> tuple[Path, dict[str, Any] | None]:
    """A model file, or a run folder's best (else newest, EMA first) model; plus the run's
    network_g for files written before the metadata existed."""
    if target.is_file():
        return target, None
    if not target.is_dir():
        raise AutosrError(f"{target}: no such model file or run folder", "pass a .safetensors file or runs/<name>")
    folder = RunFolder(target)
    models = folder.models
    best = models / "net_g_best.safetensors"
    if best.is_file():
        chosen = best
    else:
        found = [(int(m.group(2)), bool(m.group(1)), p) for p in (models.iterdir() if models.is_dir() else [])
                 if (m := _MODEL_RE.match(p.name))]
        if not found:
            raise AutosrError(f"{target}: no model files in {models}", "train it first, or pass a .safetensors file")
        chosen = max(found, key=lambda t: (t[0], t[1]))[2]
    return chosen, _run_network_opts(folder)


def _run_network_opts(folder: RunFolder) -> dict[str, Any] | None:
    import yaml

    try:
        data = yaml.safe_load(folder.config.read_text(encoding="utf-8"))
        net = dict(data["network_g"])
        net.setdefault("scale", data["scale"])
        return net
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def pick_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise AutosrError(f"--device {device!r} is not a device", "use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AutosrError(f"--device {device}: CUDA is not available here", "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise AutosrError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def auto_tile(info: ModelInfo, device: torch.device, dtype: torch.dtype) -> int:
    """LR tile side: 512 on CPU; on CUDA, what about half the free memory holds (a multiple of 8)."""
    if device.type != "cuda":
        return CPU_TILE
    free, _ = torch.cuda.mem_get_info(device)
    width = _feature_width(info)
    # bytes per LR pixel: ~12 live feature maps in the body, the scale²-sized output and base path
    per_px = (12 * width + 8 * info.in_chans * info.scale ** 2) * (2 if dtype != torch.float32 else 4)
    side = int(math.sqrt(free * 0.5 / per_px)) // 8 * 8
    return max(64, min(side, 2048))


def _feature_width(info: ModelInfo) -> float:
    """Channels of the widest feature map the body keeps per LR pixel."""
    from autosr.use.model_file import resolve_network

    _, variant, full = resolve_network(info.network_opts)
    if "ffn_ratio" in full:  # nano…xl
        return float(full["num_feat"]) * max(1.0, float(full["ffn_ratio"]))
    from autosr.archs.paragonsr2_v2 import BODIES, EXPANSION

    return float(BODIES[variant]["num_feat"] * EXPANSION * (2 if variant == "stream" else 1))  # stream gates 4F


@contextlib.contextmanager
def _without_content_gain(model: nn.Module) -> Iterator[Any]:
    """The model's ContentGain (or None), detached from the model while the block runs."""
    gain = getattr(model, "content_gain", None)
    setattr(model, "content_gain", None)  # noqa: B010 - nn.Module's typed __setattr__ rejects None for mypy
    try:
        yield gain
    finally:
        setattr(model, "content_gain", gain)  # noqa: B010


def _image_gain(gain: Any, x: Tensor, tile: int) -> Tensor:
    """ContentGain of the whole image, its pooled mean summed over tile centres (exact: the three
    convolutions reach 6 pixels, the tiles see 8 more)."""
    h, w = x.shape[-2:]
    total: Tensor | None = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0, py1, px1 = max(y0 - 8, 0), max(x0 - 8, 0), min(y1 + 8, h), min(x1 + 8, w)
            f = gain.convs(x[..., py0:py1, px0:px1])
            s = f[..., y0 - py0:y0 - py0 + y1 - y0, x0 - px0:x0 - px0 + x1 - x0].float().sum(dim=(2, 3), keepdim=True)
            total = s if total is None else total + s
    assert total is not None
    s = gain.head((total / (h * w)).to(x.dtype))
    return 0.05 + 0.15 * torch.sigmoid(-s)  # as ContentGain.forward


def upscale_tensor(model: nn.Module, x: Tensor, scale: int, *, tile: int, overlap: int = OVERLAP) -> Tensor:
    """(N, C, H, W) → (N, C, s·H, s·W), tiled, with the content gain held at the whole image's value."""
    with _without_content_gain(model) as gain:
        g = _image_gain(gain, x, tile) if gain is not None else None
        base: Callable[[Tensor], Tensor] = model.base  # type: ignore[assignment]
        detail: Callable[[Tensor], Tensor] = model.detail  # type: ignore[assignment]

        def run(t: Tensor) -> Tensor:
            d = detail(t)
            return base(t) + (d * g if g is not None else d)

        return tiled_forward(run, x, scale, tile=tile, overlap=overlap)


# ---------------------------------------------------------------- jobs


@dataclass
class Result:
    done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. the tile made smaller after running out of memory


MIN_TILE = 64  # below this the overlap dominates: an image that does not fit in such tiles is reported


def upscale_fitting(model: nn.Module, info: ModelInfo, pic: Picture, *, device: torch.device, dtype: torch.dtype,
                    tile: int, notes: list[str]) -> tuple[Picture, int]:
    """upscale_picture; when the GPU runs out of memory (the tile estimate is rough, other programs use the
    card too), halve the tile and try again, down to MIN_TILE. Returns the picture and the tile that
    worked, which the next images start from."""
    while True:
        try:
            return upscale_picture(model, info, pic, device=device, dtype=dtype, tile=tile), tile
        except torch.cuda.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if tile // 2 < MIN_TILE:
                raise AutosrRuntimeError(f"out of GPU memory even in {tile}-pixel tiles",
                                         "close other programs on the GPU, pass --fp16/--bf16, or --device cpu") from None
            notes.append(f"tile {tile} ran out of GPU memory: {tile // 2} from now on")
            tile //= 2


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix[1:].lower() in IMAGE_EXTS


def plan_jobs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs; refuses anything that would overwrite an input."""
    if not src.exists():
        raise AutosrError(f"{src}: no such file or folder", "pass an image or a folder of images")
    src_r, dst_r = src.resolve(), dst.resolve()
    if src_r == dst_r:
        raise AutosrError(f"OUTPUT {dst} is the INPUT", "write to another file or folder: inputs are never overwritten")
    if src.is_file():
        if dst.suffix.lower() == ".png":
            jobs = [(src, dst)]
        elif dst.suffix[1:].lower() in IMAGE_EXTS:
            raise AutosrError(f"OUTPUT {dst}: the output is always PNG", "name it .png, or pass a folder")
        else:
            jobs = [(src, dst / (src.stem + ".png"))]
    else:
        if dst.is_file():
            raise AutosrError(f"OUTPUT {dst} is a file, INPUT {src} a folder", "pass an output folder")
        inputs = sorted(p for p in src.rglob("*") if _is_image(p) and not p.resolve().is_relative_to(dst_r))
        if not inputs:
            raise AutosrError(f"{src}: no images found", "images end in ." + ", .".join(sorted(IMAGE_EXTS)))
        jobs = [(p, dst / p.relative_to(src).with_suffix(".png")) for p in inputs]
        seen: dict[Path, Path] = {}
        for p, out in jobs:
            if out in seen:
                raise AutosrError(f"{seen[out]} and {p} would both be written to {out}", "rename one of them")
            seen[out] = p
    inputs_r = {p.resolve() for p, _ in jobs}
    for _, out in jobs:
        if out.resolve() in inputs_r:
            raise AutosrError(f"{out} would overwrite an input", "write to another folder: inputs are never overwritten")
    return jobs


def _precision(fp16: bool, bf16: bool, device: torch.device) -> torch.dtype:
    if fp16 and bf16:
        raise AutosrError("--fp16 and --bf16 exclude each other", "pass one of them")
    if (fp16 or bf16) and device.type != "cuda":
        raise AutosrError(f"--{'fp16' if fp16 else 'bf16'} needs a CUDA device", "drop it to run in fp32 on the CPU")
    return torch.float16 if fp16 else torch.bfloat16 if bf16 else torch.float32


def upscale_picture(model: nn.Module, info: ModelInfo, pic: Picture, *, device: torch.device, dtype: torch.dtype,
                    tile: int, overlap: int = OVERLAP) -> Picture:
    color = torch.from_numpy(np.ascontiguousarray(pic.color.transpose(2, 0, 1)))[None].to(device)
    c = color.shape[1]
    if info.in_chans == c:
        x = color
    elif info.in_chans == 3 and c == 1:
        x = color.expand(1, 3, *color.shape[2:])
    elif info.in_chans == 1:
        x = color.transpose(0, 1)  # each channel as one image of a batch
    else:
        raise AutosrError(f"the model takes {info.in_chans} channels, the image has {c}")
    autocast = torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)
    with torch.inference_mode(), autocast:
        y = upscale_tensor(model, x, info.scale, tile=tile, overlap=overlap).float()
    if info.in_chans == 1:
        y = y.transpose(0, 1)
    elif c == 1:
        y = y.mean(dim=1, keepdim=True)  # gray in: the channels agree up to the model's colour error
    out = y.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    alpha = None
    if pic.alpha is not None:
        a = torch.from_numpy(np.ascontiguousarray(pic.alpha))[None, None]
        alpha = F.interpolate(a, scale_factor=info.scale, mode="bicubic", align_corners=False).clamp(0, 1)[0, 0].numpy()
    return Picture(out, alpha, pic.bits)


def upscale(model_target: Path, src: Path, dst: Path, *, tile: int | None = None, device: str | None = None,
            fp16: bool = False, bf16: bool = False, show_progress: bool = True) -> tuple[Result, ModelInfo]:
    dev = pick_device(device)
    dtype = _precision(fp16, bf16, dev)
    jobs = plan_jobs(src, dst)
    check_creatable(dst if src.is_dir() else dst.parent, "OUTPUT")  # one line before any work, not a traceback later
    path, fallback = find_model(model_target)
    model, info = load_model(path, network_opts=fallback)
    model.to(dev)
    if tile is not None and tile < 16:
        raise AutosrError(f"--tile {tile} is too small", "use 16 or more (LR pixels)")
    side = tile or auto_tile(info, dev, dtype)
    result = Result(notes=list(info.notes))
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("upscaling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress, transient=False) as bar:
        task = bar.add_task("", total=len(jobs))
        for inp, out in jobs:
            bar.update(task, description=inp.name)
            try:
                pic = read_picture(inp)
            except Exception as e:  # noqa: BLE001 - any decoder failure: skip the file, report it
                result.failed.append((inp, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
            else:
                try:
                    upscaled, side = upscale_fitting(model, info, pic, device=dev, dtype=dtype, tile=side, notes=result.notes)
                except AutosrRuntimeError as e:
                    result.failed.append((inp, str(e)))
                else:
                    write_picture(out, upscaled)
                    result.done.append(out)
            bar.advance(task)
    return result, info
