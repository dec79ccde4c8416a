"""LR made on the fly from HR crops, batched on the training device (issue 22: train from HR alone).

Three kinds behind one interface (`Degrader`: `degrade(hr, counter) -> lq`, `describe()`, `notes`):

- ``bicubic``: Pillow's ``Image.resize(size, Image.Resampling.BICUBIC)`` reproduced exactly — the
  downscale autosr's synthetic sets and benchmarks/photos.py use for their LR folders (Keys cubic,
  a = -0.5, widened by the scale factor: an antialiased bicubic; two 8-bit passes, horizontal then
  vertical, with Pillow's 22-bit fixed-point weights). Done here in float64 on integer values, it
  is bit-identical to Pillow on the same crop. (torch's ``F.interpolate(mode="bicubic",
  antialias=True)`` is the same kernel in one float pass without the intermediate rounding: off by up
  to 3 levels on ~15% of values; traiNNer-redux's ``lq_resize_mode: bicubic`` is that.)
- ``realesrgan``: traiNNer-redux's high-order degradation model (``realesrgandataset`` +
  ``RealESRGANModel.feed_data``), its keys, meanings and defaults, with every random choice drawn
  per sample (traiNNer draws most per batch). See docs/degradations.md for the key table and for
  where autosr's batched version differs.
- ``paragon``: the ParagonSR2 fork's own pipeline for the same ``high_order_degradation: true``
  (``ParagonOTF``: lens distortion, chromatic aberration, motion and defocus blur, demosaicing,
  sensor noise, rolling shutter, exposure, colour temperature, oversharpening, aliasing, the resize
  to the LR size + sinc, JPEG/WebP/AVIF/HEIF compression and recompression, editing), its keys,
  meanings, defaults and order, every choice per sample; WebP/AVIF/HEIF through Pillow per sample
  on the CPU (the only host work on pixels). `otf_kind(flavor)` says which of the two a config's
  ``high_order_degradation`` selects.

Determinism: sample b of a call ``degrade(hr, counter)`` draws everything from
(seed, counter + b) alone — its parameters from a host RNG keyed so, its noise fields from a
counter-based hash of (key, channel, row, column) — so a batch does not depend on how the stream
was split into batches, on other samples, on worker counts or on the device, and a resumed run
that restores the counter continues the exact LR stream.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import PIL
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from autosr.errors import AutosrError, did_you_mean
from autosr.schema import ROOT

__all__ = [
    "CODECS",
    "DATASET_KEYS",
    "KINDS",
    "PARAGON_DATASET_KEYS",
    "PARAGON_ROOT_KEYS",
    "ROOT_KEYS",
    "BicubicDegrader",
    "Degrader",
    "ParagonDegrader",
    "Param",
    "RealESRGANDegrader",
    "codec_problem",
    "jpeg",
    "otf_kind",
    "pil_bicubic_downscale",
]

KINDS = ("bicubic", "realesrgan", "paragon")
RESIZE_MODES = ("bilinear", "bicubic", "nearest-exact", "lanczos", "area")
KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
_SINC = len(KERNEL_TYPES)  # kernel type code of a sinc (circular low-pass) kernel
_KEEP = -1  # resize mode code of "no resize"
_KMAX = 21  # traiNNer pads every blur kernel to 21×21

_MASK64 = (1 << 64) - 1
_U32 = 0xFFFFFFFF


def _mix(*values: int) -> int:
    """A 63-bit key from integers (splitmix64 rounds; the same mixer as autosr.train.data)."""
    h = 0x9E3779B97F4A7C15
    for value in values:
        h = ((h ^ (value & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h >> 1


class Param(NamedTuple):
    """One line of `describe()`: a key, its value, what it does (traiNNer's meaning)."""

    key: str
    value: Any
    meaning: str


class Degrader:
    """Makes the LR side of a batch of HR crops: ``degrade(hr [B,3,H,W] float in [0,1], counter)``
    returns ``[B,3,H/scale,W/scale]`` float in [0,1] (uint8 levels) on hr's device."""

    kind: str = ""
    scale: int = 1
    seed: int = 0  # sample c of a stream draws from (seed, c); a crop source sets it from the run's seed
    margin: int = 0  # LR px of context on each side that `crop` is given and cuts away (its default)
    notes: tuple[str, ...] = ()  # what the caller should journal once (paragon: codecs missing here, keys without effect)

    @staticmethod
    def from_options(kind: str, opts: Mapping[str, Any] | None, scale: int, seed: int) -> Degrader:
        """A degrader of `kind` ("bicubic", "realesrgan" or "paragon") with traiNNer-redux option keys
        (root and train-dataset keys in one flat mapping; missing keys take traiNNer's defaults, the
        fork's for paragon). Unknown keys, wrong types and out-of-range values raise AutosrError naming
        the key."""
        if kind not in KINDS:
            raise AutosrError(f"unknown degradation kind '{kind}'{did_you_mean(kind, KINDS)}", f"use one of {', '.join(KINDS)}")
        if scale < 1:
            raise AutosrError(f"scale must be ≥ 1, got {scale}")
        if kind == "bicubic":
            _refuse_unknown(opts or {}, {}, "bicubic")
            return BicubicDegrader(scale, seed)
        if kind == "paragon":
            return ParagonDegrader(*_validate_paragon(opts or {}), scale, seed)
        return RealESRGANDegrader(_validate(opts or {}), scale, seed)

    def degrade(self, hr: Tensor, counter: int, transposed: Tensor | None = None) -> Tensor:
        """LR of the batch; sample b draws from (seed, counter + b). transposed: bool [B] (host), the
        samples that are transposed views of their stored crop (use_rot): a degradation that is not
        symmetric under transposition (Pillow's two 8-bit passes) takes them in the stored order, so
        that the LR is the offline LR of the stored crop, transposed."""
        return self.crop(hr, counter, 0, transposed)[0]

    def crop(self, hr: Tensor, counter: int, margin: int, transposed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(lq, gt) from HR crops with `margin` LR px of context on each side: the LR of the whole
        crop, then a window of it (side H/scale - 2·margin) and the GT under that window."""
        raise NotImplementedError

    def describe(self) -> list[Param]:
        raise NotImplementedError


# ─── bicubic: Pillow's resize, exactly ────────────────────────────────────────────────────────

_PIL_BITS = 22  # Pillow's PRECISION_BITS for 8-bit images (32 - 8 - 2)


def _pil_cubic(x: float) -> float:
    a = -0.5  # Pillow's bicubic_filter
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _pil_weights(in_size: int, out_size: int) -> list[list[float]]:
    """Pillow's fixed-point bicubic weights as a dense [out, in] matrix of integers
    (Resample.c precompute_coeffs + normalize_coeffs_8bpc, step for step)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    rows = []
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        w = [_pil_cubic((x + xmin - center + 0.5) / filterscale) for x in range(xmax - xmin)]
        total = sum(w)
        row = [0.0] * in_size
        for x, wx in enumerate(w):
            k = wx / total if total != 0.0 else wx
            row[x + xmin] = float(int(k * (1 << _PIL_BITS) + (-0.5 if k < 0 else 0.5)))
        rows.append(row)
    return rows


_WEIGHTS: dict[tuple[int, int, str], Tensor] = {}


def _pil_matrix(in_size: int, out_size: int, device: torch.device) -> Tensor:
    key = (in_size, out_size, str(device))
    if key not in _WEIGHTS:
        _WEIGHTS[key] = torch.tensor(_pil_weights(in_size, out_size), dtype=torch.float64, device=device)
    return _WEIGHTS[key]


def _pil_pass(levels: Tensor, weights: Tensor) -> Tensor:
    """One 8-bit pass along the last axis: Σ level·k + ½ in 22-bit fixed point, shifted, clipped.
    float64 holds every partial sum exactly (< 2^40), so this is Pillow's integer arithmetic."""
    acc = levels @ weights.T + float(1 << (_PIL_BITS - 1))
    return torch.floor(acc * (1.0 / (1 << _PIL_BITS))).clamp_(0.0, 255.0)


def pil_bicubic_downscale(hr: Tensor, size: tuple[int, int]) -> Tensor:
    """[..., H, W] float in [0,1] → [..., h, w]: Pillow's BICUBIC resize of the uint8 image, exactly
    (horizontal pass, rounding to 8 bits, vertical pass, rounding)."""
    h, w = size
    levels = torch.floor(hr.double().clamp(0, 1) * 255.0 + 0.5)
    across = _pil_pass(levels, _pil_matrix(hr.shape[-1], w, hr.device))
    down = _pil_pass(across.transpose(-1, -2), _pil_matrix(hr.shape[-2], h, hr.device)).transpose(-1, -2)
    # as the crop sources turn uint8 into floats (level · float32(1/255)): bit-identical to a paired LR
    return down.float() * (1.0 / 255.0)


class BicubicDegrader(Degrader):
    """The paired-set recipe: Pillow's antialiased bicubic ×1/scale, no randomness."""

    kind = "bicubic"
    margin = 2  # Pillow's bicubic reaches 2 LR px (2·scale HR px): with this much context the LR
    # window is what the offline LR of the whole image holds there

    def __init__(self, scale: int, seed: int = 0) -> None:
        self.scale, self.seed = scale, seed

    def crop(self, hr: Tensor, counter: int, margin: int, transposed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The centre window (context on every side: the result does not depend on the margin)."""
        _check_batch(hr, self.scale)
        fmt = _memory_format(hr)
        size = (hr.shape[-2] // self.scale, hr.shape[-1] // self.scale)
        lq = pil_bicubic_downscale(hr, size)
        if transposed is not None and bool(transposed.any()):
            idx = torch.nonzero(transposed.cpu()).flatten().to(hr.device)
            lq[idx] = pil_bicubic_downscale(hr[idx].transpose(-1, -2), size[::-1]).transpose(-1, -2)
        m, s = margin, self.scale
        if m:
            lq = lq[..., m:-m, m:-m]
            hr = hr[..., m * s : -m * s, m * s : -m * s]
        return lq.contiguous(memory_format=fmt), hr.contiguous(memory_format=fmt)

    def describe(self) -> list[Param]:
        return [
            Param("kind", "bicubic", "LR = HR downscaled, nothing else (the usual paired-set recipe)"),
            Param("scale", self.scale, "LR side = HR side / scale"),
            Param("kernel", "Pillow BICUBIC", "Keys cubic a = -0.5 widened ×scale (antialiased), two 8-bit passes, "
                  "22-bit fixed point: bit-identical to Image.resize(..., BICUBIC) of the same crop"),
        ]


def _check_batch(hr: Tensor, scale: int) -> None:
    if hr.dim() != 4 or hr.shape[1] != 3:
        raise ValueError(f"expected an HR batch [B, 3, H, W], got {tuple(hr.shape)}")
    if hr.shape[-1] % scale or hr.shape[-2] % scale:
        raise ValueError(f"HR crop {hr.shape[-2]}×{hr.shape[-1]} is not a multiple of scale {scale}")


def _memory_format(t: Tensor) -> torch.memory_format:
    cl = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


# ─── options: traiNNer-redux's keys, meanings and defaults ───────────────────────────────────


@dataclass(frozen=True)
class _Key:
    default: Any
    check: Callable[[str, Any], Any]
    where: str  # "root" or "dataset" (datasets.train) in a traiNNer config
    meaning: str


def _number(name: str, v: Any, *, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not float(v).is_integer()):
        raise AutosrError(f"{name}: expected {'an integer' if integer else 'a number'}, got {v!r}")
    if not math.isfinite(v):
        raise AutosrError(f"{name}: expected a finite number, got {v!r}")
    return int(v) if integer else float(v)


def _prob(name: str, v: Any) -> float:
    p = _number(name, v)
    if not 0.0 <= p <= 1.0:
        raise AutosrError(f"{name}: a probability must lie in [0, 1], got {v!r}")
    return p


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise AutosrError(f"{name}: expected true or false, got {v!r}")
    return v


def _list(name: str, v: Any, n: int | None = None) -> list[Any]:
    if not isinstance(v, list | tuple) or not v or (n is not None and len(v) != n):
        want = f"a list of {n}" if n is not None else "a non-empty list"
        raise AutosrError(f"{name}: expected {want}, got {v!r}")
    return list(v)


def _span(lo: float, hi: float, *, integer: bool = False, odd: bool = False) -> Callable[[str, Any], Any]:
    """[a, b] with lo ≤ a ≤ b ≤ hi."""

    def check(name: str, v: Any) -> tuple[Any, Any]:
        a, b = (_number(name, x, integer=integer) for x in _list(name, v, 2))
        if not lo <= a <= b <= hi:
            raise AutosrError(f"{name}: expected [min, max] with {lo} ≤ min ≤ max ≤ {hi}, got {list(v)}")
        if odd and (a % 2 == 0 or b % 2 == 0):
            raise AutosrError(f"{name}: kernel sizes must be odd, got {list(v)}")
        return a, b

    return check


def _weights(name: str, v: Any) -> list[float]:
    w = [_number(name, x) for x in _list(name, v)]
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise AutosrError(f"{name}: expected weights ≥ 0 with a positive sum, got {list(v)}")
    return w


def _three(name: str, v: Any) -> list[float]:
    _list(name, v, 3)
    return _weights(name, v)


def _names(allowed: Sequence[str]) -> Callable[[str, Any], list[str]]:
    def check(name: str, v: Any) -> list[str]:
        items = _list(name, v)
        for item in items:
            if item not in allowed:
                raise AutosrError(f"{name}: unknown entry {item!r}{did_you_mean(str(item), allowed)}",
                                  f"allowed: {', '.join(allowed)}")
        return [str(x) for x in items]

    return check


def _count(lo: int) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        n = int(_number(name, v, integer=True))
        if n < lo:
            raise AutosrError(f"{name}: expected an integer ≥ {lo}, got {v!r}")
        return n

    return check


_MODES4 = ["bilinear", "bicubic", "nearest-exact", "lanczos"]
_QUARTERS = [0.25, 0.25, 0.25, 0.25]
_KERNEL_PROB = [0.45, 0.25, 0.12, 0.03, 0.12, 0.03]
_SCALE_SPAN = _span(0.01, 16.0)
_NOISE_SPAN = _span(0.0, 255.0)
_POISSON_SPAN = _span(0.0, 100.0)
_JPEG_SPAN = _span(1.0, 100.0)
_SIGMA_SPAN = _span(0.01, 100.0)
_BETA_SPAN = _span(0.01, 100.0)
_KSIZE_SPAN = _span(1, _KMAX, integer=True, odd=True)


def _kernel_keys(n: str, sigma: tuple[float, float], order: str) -> dict[str, _Key]:
    """One order's blur-kernel keys (train-dataset keys in traiNNer; n = "" or "2")."""

    def key(default: Any, check: Callable[[str, Any], Any], meaning: str) -> _Key:
        return _Key(default, check, "dataset", f"{order} blur: {meaning}")

    return {
        f"blur_kernel_size{n}": key(12, _count(1), f"read by traiNNer but unused (kernel_range{n} sets the sizes)"),
        f"kernel_list{n}": key(list(KERNEL_TYPES), _names(KERNEL_TYPES), "kernel shapes to choose from"),
        f"kernel_prob{n}": key(list(_KERNEL_PROB), _weights, f"weight of each shape in kernel_list{n}"),
        f"kernel_range{n}": key((5, 17), _KSIZE_SPAN, "kernel size, an odd number drawn from [min, max]"),
        f"sinc_prob{n}": key(0.0, _prob, "probability that the kernel is a sinc (circular low-pass, ringing) instead"),
        f"blur_sigma{n}": key(sigma, _SIGMA_SPAN, "Gaussian sigma range (both axes of anisotropic kernels)"),
        f"betag_range{n}": key((0.5, 4.0), _BETA_SPAN, "shape beta of generalized Gaussian kernels"),
        f"betap_range{n}": key((1.0, 2.0), _BETA_SPAN, "shape beta of plateau kernels"),
    }


def _order_keys(n: str, resize_prob: list[float], resize_range: tuple[float, float], order: str) -> dict[str, _Key]:
    """One order's blur, resize, noise and JPEG keys (root keys in traiNNer; n = "" or "2")."""

    def key(default: Any, check: Callable[[str, Any], Any], meaning: str) -> _Key:
        return _Key(default, check, "root", f"{order} degradation: {meaning}")

    relative = " relative to the LR size" if n else ""
    return {
        f"blur_prob{n}": key(0.0, _prob, "probability of the blur"),
        f"resize_prob{n}": key(resize_prob, _three, "weights of [up, down, keep] for the resize"),
        f"resize_mode_list{n}": key(list(_MODES4), _names(RESIZE_MODES), "resize filters to choose from"),
        f"resize_mode_prob{n}": key(list(_QUARTERS), _weights, f"weight of each filter in resize_mode_list{n}"),
        f"resize_range{n}": key(resize_range, _SCALE_SPAN, f"resize factor range [min, max]{relative} (down: [min, 1], up: [1, max])"),
        f"gaussian_noise_prob{n}": key(0.0, _prob, "probability of Gaussian noise (else Poisson noise)"),
        f"noise_range{n}": key((0.0, 0.0), _NOISE_SPAN, "Gaussian noise sigma range, in 8-bit levels"),
        f"poisson_scale_range{n}": key((0.0, 0.0), _POISSON_SPAN, "Poisson noise scale range"),
        f"gray_noise_prob{n}": key(0.0, _prob, "probability that the noise is gray (same on R, G, B)"),
        f"jpeg_prob{n}": key(1.0, _prob, "probability of the JPEG compression"),
        f"jpeg_range{n}": key((75.0, 95.0), _JPEG_SPAN, "JPEG quality range"),
    }


# Every key, in traiNNer-redux's order, with its default there (the-database/traiNNer-redux
# traiNNer/utils/redux_options.py; the ParagonSR2 fork has the same keys and defaults).
_KEYS: dict[str, _Key] = {
    "lq_usm": _Key(False, _flag, "root", "unsharp mask on the HR before the degradations"),
    "lq_usm_radius_range": _Key((1, 25), _span(1, 51, integer=True), "root", "unsharp mask: kernel size drawn from [min, max] (even → +1)"),
    "thicklines_prob": _Key(0.0, _prob, "root", "probability of ThickLines: x·3/4 + min3×3(x)·1/4 (darker, thicker lines)"),
    **_order_keys("", [0.2, 0.7, 0.1], (0.4, 1.5), "first"),
    **_order_keys("2", [0.3, 0.4, 0.3], (0.6, 1.2), "second"),
    "resize_mode_list3": _Key(list(_MODES4), _names(RESIZE_MODES), "root", "final resize to the LR size: filters to choose from"),
    "resize_mode_prob3": _Key(list(_QUARTERS), _weights, "root", "final resize: weight of each filter in resize_mode_list3"),
    "queue_size": _Key(120, _count(1), "root", "traiNNer's training-pair pool (shuffles LR across batches); accepted, unused by "
                       "autosr: every sample draws its own degradation"),
    **_kernel_keys("", (0.2, 2.0), "first"),
    **_kernel_keys("2", (0.2, 1.0), "second"),
    "final_sinc_prob": _Key(0.0, _prob, "dataset", "probability of a sinc filter after the final resize"),
    "final_kernel_range": _Key((5, 17), _KSIZE_SPAN, "dataset", "final sinc filter: kernel size drawn from [min, max] (odd)"),
}
_KEYS["jpeg_range2"] = _Key([75.0, 95.0], _JPEG_SPAN, "root", _KEYS["jpeg_range2"].meaning)  # a list upstream

ROOT_KEYS = tuple(k for k, spec in _KEYS.items() if spec.where == "root")
DATASET_KEYS = tuple(k for k, spec in _KEYS.items() if spec.where == "dataset")

# traiNNer keys autosr knows but does not implement, and why.
_NOT_IMPLEMENTED = {
    "dataroot_lq_prob": "mixing paired LR with on-the-fly LR (RealESRGANPairedModel) is not implemented",
    "high_order_degradations_debug": "autosr does not write LR tiles to debug/otf",
    "high_order_degradations_debug_limit": "autosr does not write LR tiles to debug/otf",
    "lq_resize_mode": "use the bicubic kind (Pillow's bicubic, exactly) for a plain downscale",
}

_PAIRED = (("resize_mode_list", "resize_mode_prob"), ("resize_mode_list2", "resize_mode_prob2"),
           ("resize_mode_list3", "resize_mode_prob3"), ("kernel_list", "kernel_prob"), ("kernel_list2", "kernel_prob2"))


def _refuse_unknown(opts: Mapping[str, Any], known: Mapping[str, Any], kind: str) -> None:
    for key in opts:
        if key in known:
            continue
        if key in _NOT_IMPLEMENTED:
            raise AutosrError(f"degradation option {key}: {_NOT_IMPLEMENTED[key]}", "remove it")
        owners = [name for name, keys in (("realesrgan", _KEYS), ("paragon", {**_P_READ, **_P_UNREAD})) if key in keys]
        if owners:
            raise AutosrError(f"degradation option {key} belongs to the {' and '.join(owners)} degradations, not {kind}",
                              f"remove it, or use the {owners[0]} kind")
        raise AutosrError(f"unknown degradation option '{key}'{did_you_mean(str(key), list(known or _KEYS))}",
                          "see docs/degradations.md for the keys")


def _validate(opts: Mapping[str, Any]) -> dict[str, Any]:
    _refuse_unknown(opts, _KEYS, "realesrgan")
    values = {key: spec.check(key, opts[key]) if key in opts else spec.default for key, spec in _KEYS.items()}
    for names, weights in _PAIRED:
        if len(values[names]) != len(values[weights]):
            raise AutosrError(f"{names} has {len(values[names])} entries but {weights} has {len(values[weights])}",
                              "give one weight per entry")
    return values


# ─── realesrgan: every random choice, drawn on the host for a whole batch at once ────────────

_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix(z: np.ndarray) -> np.ndarray:
    """splitmix64's output function on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def sample_keys(seed: int, counter: int, n: int) -> np.ndarray:
    """uint64 [n]: `_mix(seed, counter + b)` for b < n (the key every draw of sample b derives from)."""
    h = ((_GOLDEN ^ (seed & _MASK64)) + _GOLDEN) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    h ^= h >> 31
    with np.errstate(over="ignore"):
        c = np.uint64(counter & _MASK64) + np.arange(n, dtype=np.uint64)
        z = (np.uint64(h) ^ c) + np.uint64(_GOLDEN)
    return _splitmix(z) >> np.uint64(1)


# The uniforms of one sample, in a fixed order: the j-th is splitmix64's j-th output for the
# sample's key, so each draw depends on (seed, sample) alone and adding a draw never moves another.
_KERNEL_DRAWS = ("on", "size", "sinc", "omega", "shape", "sx", "sy", "theta", "bg_side", "bg", "bp_side", "bp")
_DRAWS = (
    "usm", "thick",
    *(f"{k}_{d}" for k in ("k1", "k2") for d in _KERNEL_DRAWS),
    *(f"{r}_{d}" for r in ("r1", "r2") for d in ("updown", "factor", "mode")),
    *(f"{n}_{d}" for n in ("n1", "n2") for d in ("gauss", "sigma", "poisson", "gray")),
    "j1_on", "j1_q", "j2_on", "j2_q", "f_mode", "f_order", "ks_on", "ks_size", "ks_omega",
    "nk1", "nk2", "nk3", "nk4", "win_y", "win_x",
)
_D = {name: i for i, name in enumerate(_DRAWS)}

# The parameter table: one row per sample, float64 (sizes, codes and 32-bit keys are exact).
# Kernels: type code, size, sigmas and angle as drawn, then what the device needs: the inverse
# covariance (a, b, d: q = a·x² + 2b·xy + d·y²), the shape beta and the sinc cut-off omega.
_KERNEL_COLS = ("on", "size", "type", "sx", "sy", "theta", "a", "b", "d", "beta", "omega")
_COLUMNS = (
    "usm", "thick",
    *(f"{k}_{c}" for k in ("k1", "k2", "ks") for c in _KERNEL_COLS),
    *(f"{r}_{c}" for r in ("r1", "r2") for c in ("h", "w", "hh", "wh")),  # sizes after each resize, and halves (rounded up)
    *(f"{r}_{c}" for r in ("r1", "r2", "f") for c in ("mode", "lut", "aa", "area")),  # mode and how the matrix is built
    *(f"{n}_{c}" for n in ("n1", "n2") for c in ("gauss", "sigma", "poisson", "gray")),
    "j1_on", "j1_q", "j2_on", "j2_q", "f_sinc_first", "j2_early", "j2_late",
    "nk1", "nk2", "nk3", "nk4",  # hash keys of the noise fields: n1 Gaussian, n1 Poisson, n2 Gaussian, n2 Poisson
    "win_y", "win_x",  # the LR window's offset in the degraded crop (0 … 2·margin), traiNNer's paired_random_crop
)
_COL = {name: i for i, name in enumerate(_COLUMNS)}


def _choose(u: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Index drawn with the given weights (random.choices' rule: cumulative weights, bisect right)."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64))
    return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1)


def _between(u: np.ndarray, span: Sequence[float]) -> np.ndarray:
    return span[0] + (span[1] - span[0]) * u


def _odd_size(u: np.ndarray, span: Sequence[int]) -> np.ndarray:
    sizes = np.arange(span[0], span[1] + 1, 2)
    return sizes[np.minimum((u * len(sizes)).astype(np.int64), len(sizes) - 1)]


def _put_mode(t: np.ndarray, r: str, mode: np.ndarray, col: Mapping[str, int] = _COL) -> None:
    """A resize's mode code, and for its matrix: the filter's row in the lookup table (AA modes),
    whether the mode is an AA filter, and whether its interval is area's (else nearest's).
    col: the table's column map (the realesrgan table's by default)."""
    t[:, col[f"{r}_mode"]] = mode
    t[:, col[f"{r}_lut"]] = np.select([mode == 0, mode == 1, mode == 3], [0, 1, 2], 0) * _LUT_LEN
    t[:, col[f"{r}_aa"]] = np.isin(mode, (0, 1, 3))
    t[:, col[f"{r}_area"]] = mode == 4


def _quant_tables(quality: np.ndarray) -> np.ndarray:
    """IJG jpeg_set_quality(q, force_baseline=TRUE) for each quality: [N, 2, 8, 8] luma, chroma tables."""
    q = np.clip(np.rint(quality), 1, 100)[:, None, None, None]
    factor = np.where(q < 50, np.floor(5000.0 / q), 200.0 - 2.0 * q)
    base = np.array((_LUMA_Q, _CHROMA_Q), dtype=np.float64).reshape(1, 2, 8, 8)
    return np.asarray(np.clip(np.floor((base * factor + 50.0) / 100.0), 1, 255))


def _kernel_choice(o: Mapping[str, Any], suffix: str, draw: Callable[[str], np.ndarray],
                   put: Callable[[str, Any], None]) -> None:
    """traiNNer's blur-kernel choice (realesrgan_dataset + random_mixed_kernels) for every sample:
    draw(name) gives the uniforms of one of _KERNEL_DRAWS, put(name, value) fills one of _KERNEL_COLS."""
    size = _odd_size(draw("size"), o[f"kernel_range{suffix}"])
    sinc = draw("sinc") < o[f"sinc_prob{suffix}"]
    omega = np.where(size < 13, _between(draw("omega"), (math.pi / 3, math.pi)), _between(draw("omega"), (math.pi / 5, math.pi)))
    shapes = np.array([KERNEL_TYPES.index(s) for s in o[f"kernel_list{suffix}"]])
    shape = shapes[_choose(draw("shape"), o[f"kernel_prob{suffix}"])]
    sigma = o[f"blur_sigma{suffix}"]
    iso = shape % 2 == 0  # iso, generalized_iso, plateau_iso
    sx = _between(draw("sx"), sigma)
    sy = np.where(iso, sx, _between(draw("sy"), sigma))
    theta = np.where(iso, 0.0, _between(draw("theta"), (-math.pi, math.pi)))
    lo_g, hi_g = o[f"betag_range{suffix}"]
    lo_p, hi_p = o[f"betap_range{suffix}"]
    # traiNNer: half the time below 1, half above
    beta_g = np.where(draw("bg_side") < 0.5, _between(draw("bg"), (lo_g, 1.0)), _between(draw("bg"), (1.0, hi_g)))
    beta_p = np.where(draw("bp_side") < 0.5, _between(draw("bp"), (lo_p, 1.0)), _between(draw("bp"), (1.0, hi_p)))
    cos, sin = np.cos(theta), np.sin(theta)
    put("on", draw("on") < o[f"blur_prob{suffix}"])
    put("size", size)
    put("type", np.where(sinc, _SINC, shape))
    put("sx", sx)
    put("sy", sy)
    put("theta", theta)
    put("a", cos**2 / sx**2 + sin**2 / sy**2)  # the inverse of R·diag(sx², sy²)·Rᵀ
    put("b", cos * sin * (1 / sx**2 - 1 / sy**2))
    put("d", sin**2 / sx**2 + cos**2 / sy**2)
    put("beta", np.where(shape >= 4, beta_p, np.where(shape >= 2, beta_g, 1.0)))
    put("omega", omega)


@dataclass(frozen=True)
class _Plan:
    """What a degrader does, fixed by its options and the crop size (so a batch's device work has
    static shapes and no host decisions: a CUDA graph can replay it). Stages whose probability or
    strength is zero are left out; the canvases are the largest any sample can need."""

    n: int
    h: int
    w: int
    lq: tuple[int, int]  # the LR of the whole crop
    margin: int  # LR px cut from each side (the window is lq - 2·margin)
    canvas1: tuple[int, int]  # after the first resize
    canvas2: tuple[int, int]  # after the second resize
    stages: frozenset[str]
    shapes: dict[str, frozenset[int]]  # kernel type codes per blur ("k1", "k2", "ks")
    modes: dict[str, frozenset[int]]  # resize mode codes per resize ("r1", "r2", "f")
    usm_size: int  # USM kernels' side (the largest radius), 0 without USM
    gray: dict[str, tuple[bool, bool]]  # per noise: (any colour noise, any gray noise)

    @property
    def layout(self) -> dict[str, tuple[int, ...]]:
        """The packed per-batch buffer: parameter table, JPEG tables, USM kernels."""
        out: dict[str, tuple[int, ...]] = {"table": (self.n, len(_COLUMNS)), "q1": (self.n, 2, 8, 8), "q2": (self.n, 2, 8, 8)}
        if self.usm_size:
            out["usm"] = (self.n, self.usm_size, self.usm_size)
        return out


class _DeviceDegrader(Degrader):
    """What the realesrgan and paragon kinds share: per-sample parameter tables drawn on the host,
    the device work on them (cached constants, per-sample kernels, resizes, noise bits, JPEG, the
    LR window), and CUDA graphs of that work, one per batch shape (set `cuda_graph = False` to run
    eagerly; `graph_note` says why a capture was given up, if it was)."""

    def __init__(self, opts: dict[str, Any], scale: int, seed: int) -> None:
        self.opts, self.scale, self.seed = opts, scale, seed
        self.margin = 16 // scale  # traiNNer degrades a crop of gt_size + 32 HR px, then crops gt_size
        self.cuda_graph = True
        self.graph_note = ""
        self._graphs: dict[tuple[Any, ...], _Replay] = {}
        self._const: dict[tuple[str, str], Tensor] = {}

    def _graph(self, key: tuple[Any, ...], fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], hr: Tensor,
               host: Tensor) -> _Replay | None:
        """The CUDA graph of fn for this batch shape (captured on first use), or None once a capture failed."""
        if key not in self._graphs:
            if len(self._graphs) >= _GRAPHS_KEPT:  # batch-size changes: keep the newest few (each holds its memory)
                del self._graphs[next(iter(self._graphs))]
            try:
                self._graphs[key] = _Replay(fn, hr, host)
            except Exception as exc:  # noqa: BLE001 - any capture failure: run eagerly, say why
                self.cuda_graph = False
                self.graph_note = f"CUDA graph capture failed, degrading eagerly: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                return None
        return self._graphs[key]

    def _window(self, t: Tensor, oy: Tensor, ox: Tensor, size: tuple[int, int], unit: int) -> Tensor:
        """Each sample's size·unit window at (oy, ox)·unit."""
        n, c = t.shape[:2]
        ys = oy[:, None] * unit + self._arange(0, size[0] * unit, t.device)
        xs = ox[:, None] * unit + self._arange(0, size[1] * unit, t.device)
        rows = t.gather(2, ys[:, None, :, None].expand(n, c, ys.shape[1], t.shape[3]))
        return rows.gather(3, xs[:, None, None, :].expand(n, c, ys.shape[1], xs.shape[1]))

    def _const_of(self, name: str, device: torch.device, build: Callable[[], Tensor]) -> Tensor:
        """A constant tensor, built once per device (before a CUDA graph capture: in its warm-up)."""
        key = (name, str(device))
        if key not in self._const:
            self._const[key] = build().to(device)
        return self._const[key]

    def _arange(self, start: int, end: int, device: torch.device, dtype: torch.dtype = torch.int64) -> Tensor:
        return self._const_of(f"arange{start}:{end}:{dtype}", device, lambda: torch.arange(start, end, dtype=dtype))

    def _resize(self, x: Tensor, src: _Sizes, dst: _Sizes, p: Tensor, r: str, codes: frozenset[int], canvas: tuple[int, int],
                col: Mapping[str, int] = _COL) -> Tensor:
        """Every sample from its src size to its dst size on a canvas (h, w), clamped to [0, 1]."""
        if codes == {_KEEP} and x.shape[2:] == canvas:
            return x
        lut = self._const_of("lut", x.device, _filter_lut)

        def matrix(n_in: Tensor, n_out: Tensor, size_in: int, size_out: int) -> Tensor:
            o = self._arange(0, size_out, x.device, torch.float32)[None, :, None]
            i = self._arange(0, size_in, x.device, torch.float32)[None, None, :]
            return _resize_matrix(n_in, n_out, p, r, codes, o, i, lut, col)

        ry = matrix(src.h, dst.h, x.shape[2], canvas[0])
        same = src.h is src.w and dst.h is dst.w and x.shape[2] == x.shape[3] and canvas[0] == canvas[1]
        rx = ry if same else matrix(src.w, dst.w, x.shape[3], canvas[1])
        return torch.matmul(torch.matmul(ry[:, None], x), rx.transpose(1, 2)[:, None]).clamp_(0, 1)

    def _valid(self, sizes: _Sizes, shape: torch.Size) -> Tensor:
        """[N, 1, H, W] bool: inside each sample's valid area."""
        ys = self._arange(0, shape[2], sizes.h.device, torch.float32)[:, None]
        xs = self._arange(0, shape[3], sizes.h.device, torch.float32)
        return (ys < sizes.h[:, None, None, None]) & (xs < sizes.w[:, None, None, None])

    def _bits(self, keys: Tensor, shape: torch.Size) -> Tensor:
        """[N, C, H, W] int64 of 32 random bits: a hash of (the sample's key, channel, row, column) only,
        so a pixel of a sample gets the same bits in any batch, on any device."""
        _, c, h, w = shape
        name = f"coords{c}x{h}x{w}"
        if (name, str(keys.device)) not in self._const:
            dev = keys.device
            coords = ((torch.arange(c, device=dev)[:, None, None] << (2 * _STRIDE))
                      | (torch.arange(h, device=dev)[:, None] << _STRIDE) | torch.arange(w, device=dev))
            self._const[(name, str(dev))] = coords
        return _hash32(self._const[(name, str(keys.device))][None] ^ keys.long()[:, None, None, None])

    def _const_table(self, name: str, device: torch.device) -> Tensor:
        return self._const_of(name, device, lambda: _shared_table(name, str(device)))

    def _kernels(self, p: Tensor, name: str, shapes: frozenset[int], col: Mapping[str, int] = _COL) -> Tensor:
        return _kernels(p, name, shapes, self._const_of("grids", p.device, _kernel_grids), col)

    def _jpeg(self, x: Tensor, tables: Tensor, sizes: _Sizes) -> Tensor:
        consts = {name: self._const_of(f"jpeg_{name}", x.device, functools.partial(_jpeg_constant, name))
                  for name in ("dct", "ycc", "ycc_offset", "rgb")}
        wp = -(-x.shape[3] // 16) * 16
        consts["bias"] = self._const_of(f"jpeg_bias{wp}", x.device, lambda: _chroma_bias(wp))
        return jpeg(x, tables.float(), sizes, consts)


class RealESRGANDegrader(_DeviceDegrader):
    """traiNNer-redux's two-order degradation (blur, resize, noise, JPEG ×2, final resize + sinc),
    every choice per sample. On a CUDA device the batch's device work is captured once per batch
    shape as a CUDA graph and replayed (set `cuda_graph = False` to run it eagerly); `graph_note`
    says why a capture was given up, if it was."""

    kind = "realesrgan"

    # ── host: the draws ──

    def draws(self, counter: int, n: int, h: int, w: int, margin: int = 0) -> np.ndarray:
        """The parameter table [n, len(_COLUMNS)] of samples counter … counter+n-1 (host, float64),
        for HR crops of h×w carrying `margin` LR px of context on each side."""
        o = self.opts
        keys = sample_keys(self.seed, counter, n)
        with np.errstate(over="ignore"):
            steps = np.arange(1, len(_DRAWS) + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
            raw = _splitmix(keys[:, None] + steps[None, :])
        u = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
        t = np.zeros((n, len(_COLUMNS)))

        def draw(name: str) -> np.ndarray:
            return u[:, _D[name]]

        def put(name: str, value: Any) -> None:
            t[:, _COL[name]] = value

        lo, hi = o["lq_usm_radius_range"]
        radius = lo + np.minimum((draw("usm") * (hi - lo + 1)).astype(np.int64), hi - lo)
        put("usm", (radius | 1) if o["lq_usm"] else 0)
        put("thick", draw("thick") < o["thicklines_prob"])
        for k, suffix in (("k1", ""), ("k2", "2")):
            self._kernel_draws(u, t, k, suffix)
        sizes: dict[str, list[np.ndarray]] = {}
        for r, suffix in (("r1", ""), ("r2", "2")):
            updown = _choose(draw(f"{r}_updown"), o[f"resize_prob{suffix}"])
            lo_f, hi_f = o[f"resize_range{suffix}"]
            f = draw(f"{r}_factor")
            factor = np.where(updown == 0, 1.0 + (hi_f - 1.0) * f, np.where(updown == 1, lo_f + (1.0 - lo_f) * f, 1.0))
            keep = factor == 1.0
            modes = np.array([RESIZE_MODES.index(m) for m in o[f"resize_mode_list{suffix}"]])
            mode = modes[_choose(draw(f"{r}_mode"), o[f"resize_mode_prob{suffix}"])]
            if r == "r1":  # traiNNer: scale_factor, i.e. round(size · factor)
                new = [np.where(keep, side, np.maximum(1, np.rint(side * factor))) for side in (h, w)]
            else:  # traiNNer: size = (int(ori_h / scale · factor), …): relative to the LR size
                new = [np.where(keep, prev, np.maximum(1, np.floor(side / self.scale * factor)))
                       for side, prev in zip((h, w), sizes["r1"], strict=True)]
            sizes[r] = new
            put(f"{r}_h", new[0])
            put(f"{r}_w", new[1])
            put(f"{r}_hh", np.floor((new[0] + 1) / 2))
            put(f"{r}_wh", np.floor((new[1] + 1) / 2))
            _put_mode(t, r, np.where(keep, _KEEP, mode))
        for nz, suffix in (("n1", ""), ("n2", "2")):
            gauss = draw(f"{nz}_gauss") < o[f"gaussian_noise_prob{suffix}"]
            put(f"{nz}_gauss", gauss)
            put(f"{nz}_sigma", np.where(gauss, _between(draw(f"{nz}_sigma"), o[f"noise_range{suffix}"]), 0.0))
            put(f"{nz}_poisson", np.where(gauss, 0.0, _between(draw(f"{nz}_poisson"), o[f"poisson_scale_range{suffix}"])))
            put(f"{nz}_gray", draw(f"{nz}_gray") < o[f"gray_noise_prob{suffix}"])
        for j, suffix in (("j1", ""), ("j2", "2")):
            put(f"{j}_on", draw(f"{j}_on") < o[f"jpeg_prob{suffix}"])
            put(f"{j}_q", np.clip(np.rint(_between(draw(f"{j}_q"), o[f"jpeg_range{suffix}"])), 1, 100))
        modes3 = np.array([RESIZE_MODES.index(m) for m in o["resize_mode_list3"]])
        _put_mode(t, "f", modes3[_choose(draw("f_mode"), o["resize_mode_prob3"])])
        sinc_first = draw("f_order") < 0.5
        put("f_sinc_first", sinc_first)
        put("j2_early", (t[:, _COL["j2_on"]] > 0) & ~sinc_first)
        put("j2_late", (t[:, _COL["j2_on"]] > 0) & sinc_first)
        put("ks_on", draw("ks_on") < o["final_sinc_prob"])
        put("ks_size", _odd_size(draw("ks_size"), o["final_kernel_range"]))
        put("ks_type", _SINC)
        put("ks_omega", _between(draw("ks_omega"), (math.pi / 3, math.pi)))
        for key in ("nk1", "nk2", "nk3", "nk4"):
            put(key, (raw[:, _D[key]] & np.uint64(_U32)).astype(np.float64))
        for key in ("win_y", "win_x"):
            put(key, np.minimum(np.floor(draw(key) * (2 * margin + 1)), 2 * margin))
        return t

    def _kernel_draws(self, u: np.ndarray, t: np.ndarray, k: str, suffix: str) -> None:
        """traiNNer's kernel choice (realesrgan_dataset + random_mixed_kernels), per sample."""

        def put(name: str, value: Any) -> None:
            t[:, _COL[f"{k}_{name}"]] = value

        _kernel_choice(self.opts, suffix, lambda name: u[:, _D[f"{k}_{name}"]], put)

    def plan(self, n: int, h: int, w: int, margin: int = 0) -> _Plan:
        """The static shape of the work for a batch of n crops of h×w (see `_Plan`)."""
        o, s = self.opts, self.scale

        # the largest factor any draw can give (a "down" range above 1 is allowed, if odd)
        f1, f2 = (max(1.0, *o[key]) for key in ("resize_range", "resize_range2"))
        c1 = (max(h, int(math.floor(h * f1 + 0.5))), max(w, int(math.floor(w * f1 + 0.5))))
        c2 = (max(c1[0], int(h / s * f2)), max(c1[1], int(w / s * f2)))
        stages = set()
        if o["thicklines_prob"] > 0:
            stages.add("thick")
        for key, stage in (("blur_prob", "k1"), ("blur_prob2", "k2"), ("final_sinc_prob", "ks"), ("jpeg_prob", "j1"), ("jpeg_prob2", "j2")):
            if o[key] > 0:
                stages.add(stage)
        gray = {}
        for name, n_ in (("n1", ""), ("n2", "2")):
            p_gauss = o[f"gaussian_noise_prob{n_}"]
            if p_gauss > 0 and o[f"noise_range{n_}"][1] > 0:
                stages.add(f"{name}g")
            if p_gauss < 1 and o[f"poisson_scale_range{n_}"][1] > 0:
                stages.add(f"{name}p")
            gray[name] = (o[f"gray_noise_prob{n_}"] < 1, o[f"gray_noise_prob{n_}"] > 0)
        shapes = {}
        for k, n_, sinc in (("k1", "", "sinc_prob"), ("k2", "2", "sinc_prob2")):
            codes = {KERNEL_TYPES.index(t) for t, p in zip(o[f"kernel_list{n_}"], o[f"kernel_prob{n_}"], strict=True) if p > 0}
            shapes[k] = frozenset(codes | ({_SINC} if o[sinc] > 0 else set())) if o[sinc] < 1 else frozenset({_SINC})
        shapes["ks"] = frozenset({_SINC})
        modes = {}
        for r, n_ in (("r1", ""), ("r2", "2"), ("f", "3")):
            codes = {RESIZE_MODES.index(m) for m, p in zip(o[f"resize_mode_list{n_}"], o[f"resize_mode_prob{n_}"], strict=True) if p > 0}
            keep = r != "f" and (o[f"resize_prob{n_}"][2] > 0 or o[f"resize_range{n_}"][0] >= 1 or o[f"resize_range{n_}"][1] <= 1)
            modes[r] = frozenset(codes | ({_KEEP} if keep else set()))
        usm = int(max(r | 1 for r in range(o["lq_usm_radius_range"][0], o["lq_usm_radius_range"][1] + 1))) if o["lq_usm"] else 0
        return _Plan(n, h, w, (h // s, w // s), margin, c1, c2, frozenset(stages), shapes, modes, usm, gray)

    def pack(self, table: np.ndarray, plan: _Plan) -> np.ndarray:
        """The batch's host buffer (float64): table, JPEG tables, USM kernels, in `plan.layout` order."""
        parts = [table.ravel(), _quant_tables(table[:, _COL["j1_q"]]).ravel(), _quant_tables(table[:, _COL["j2_q"]]).ravel()]
        if plan.usm_size:
            parts.append(_usm_kernels(table[:, _COL["usm"]].astype(np.int64), plan.usm_size).ravel())
        return np.concatenate(parts)

    # ── device: the pipeline ──

    def crop(self, hr: Tensor, counter: int, margin: int, transposed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A window at a random offset per sample (traiNNer's paired_random_crop after degrading a
        crop 32 HR px larger than gt_size). `transposed` does not matter: every kernel angle is
        equally likely."""
        _check_batch(hr, self.scale)
        n, _, h, w = hr.shape
        if not 0 <= 2 * margin < min(h, w) // self.scale:
            raise ValueError(f"margin {margin} leaves no window in a {h}×{w} crop at scale {self.scale}")
        plan = self.plan(n, h, w, margin)
        host = torch.from_numpy(self.pack(self.draws(counter, n, h, w, margin), plan))
        fmt = _memory_format(hr)
        with _exact_float32():
            out = self._replay(hr, host, plan) if hr.device.type == "cuda" and self.cuda_graph else None
            if out is None:
                buf = (host.pin_memory() if hr.device.type == "cuda" else host).to(hr.device, non_blocking=True)
                out = self._run(hr, buf, plan)
        return out[0].contiguous(memory_format=fmt), out[1].contiguous(memory_format=fmt)

    def _replay(self, hr: Tensor, host: Tensor, plan: _Plan) -> tuple[Tensor, Tensor] | None:
        graph = self._graph((plan.n, plan.h, plan.w, plan.margin, str(hr.device)), lambda x, b: self._run(x, b, plan), hr, host)
        return None if graph is None else graph.run(hr, host)

    def _run(self, hr: Tensor, buf: Tensor, plan: _Plan) -> tuple[Tensor, Tensor]:
        """The device work for one batch: hr [N, 3, H, W], buf the packed parameters on the device;
        (LR window, GT window)."""
        n = plan.n
        parts, at = {}, 0
        for name, shape in plan.layout.items():
            size = math.prod(shape)
            parts[name] = buf[at : at + size].view(shape)
            at += size
        p = parts["table"]  # float64: exact 32-bit noise keys; kernels are built in float64 too
        pf = p.float()  # everything else

        def on(name: str) -> Tensor:
            return (pf[:, _COL[name]] > 0)[:, None, None, None]

        square = plan.h == plan.w  # then every size is square too: one tensor serves both sides

        def fixed(h: int, w: int) -> _Sizes:
            hs = pf.new_full((n,), float(h))
            ws = hs if square else pf.new_full((n,), float(w))
            hh = pf.new_full((n,), float((h + 1) // 2))
            return _Sizes(hs, ws, True, hh, hh if square else pf.new_full((n,), float((w + 1) // 2)))

        def drawn(r: str) -> _Sizes:
            hs, hh = pf[:, _COL[f"{r}_h"]], pf[:, _COL[f"{r}_hh"]]
            return _Sizes(hs, hs if square else pf[:, _COL[f"{r}_w"]], False, hh, hh if square else pf[:, _COL[f"{r}_wh"]])

        full, size1, size2, small = fixed(plan.h, plan.w), drawn("r1"), drawn("r2"), fixed(*plan.lq)
        x = hr.float().contiguous()

        # first degradation, on the HR crop: unsharp mask, thick lines, blur, resize, noise, JPEG
        if plan.usm_size:
            x = _usm(x, parts["usm"].float(), full)
        if "thick" in plan.stages:
            x = torch.where(on("thick"), _thicklines(x), x)
        if "k1" in plan.stages:
            x = torch.where(on("k1_on"), _filter(x, self._kernels(p, "k1", plan.shapes["k1"]), full), x)
        x = self._resize(x, full, size1, pf, "r1", plan.modes["r1"], plan.canvas1)
        x = self._noise(x, p, pf, "n1", size1, plan)
        if "j1" in plan.stages:
            x = torch.where(on("j1_on"), self._jpeg(x, parts["q1"], size1), x)

        # second degradation: blur, resize (relative to the LR size), noise
        if "k2" in plan.stages:
            x = torch.where(on("k2_on"), _filter(x, self._kernels(p, "k2", plan.shapes["k2"]), size1), x)
        x = self._resize(x, size1, size2, pf, "r2", plan.modes["r2"], plan.canvas2)
        x = self._noise(x, p, pf, "n2", size2, plan)

        # final: [resize to LR + sinc] then JPEG, or JPEG then [resize + sinc], half the samples each
        if "j2" in plan.stages:
            x = torch.where(on("j2_early"), self._jpeg(x, parts["q2"], size2), x)
        x = self._resize(x, size2, small, pf, "f", plan.modes["f"], plan.lq)
        if "ks" in plan.stages:
            x = torch.where(on("ks_on"), _filter(x, self._kernels(p, "ks", plan.shapes["ks"]), small), x)
        if "j2" in plan.stages:
            x = torch.where(on("j2_late"), self._jpeg(x, parts["q2"], small), x)
        lq = torch.clamp(torch.round(x * 255.0), 0, 255) * (1.0 / 255.0)  # as the sources scale uint8
        gt = hr.float().contiguous()
        if not plan.margin:
            return lq, gt
        oy, ox = pf[:, _COL["win_y"]].long(), pf[:, _COL["win_x"]].long()
        window = (plan.lq[0] - 2 * plan.margin, plan.lq[1] - 2 * plan.margin)
        return self._window(lq, oy, ox, window, 1), self._window(gt, oy, ox, window, self.scale)

    def _noise(self, x: Tensor, p: Tensor, pf: Tensor, name: str, sizes: _Sizes, plan: _Plan) -> Tensor:
        colour, gray = plan.gray[name]
        gray_on = (pf[:, _COL[f"{name}_gray"]] > 0)[:, None, None, None]
        key_g, key_p = ("nk1", "nk2") if name == "n1" else ("nk3", "nk4")
        if f"{name}g" in plan.stages:
            sigma = (pf[:, _COL[f"{name}_sigma"]] / 255.0)[:, None, None, None]
            noise = self._const_table("normal", x.device)[self._bits(p[:, _COL[key_g]], x.shape) >> 16]
            if gray:
                noise = torch.where(gray_on, noise[:, :1], noise) if colour else noise[:, :1].expand_as(noise)
            x = torch.clamp(x + noise * sigma, 0, 1)
        if f"{name}p" in plan.stages:
            scale = pf[:, _COL[f"{name}_poisson"]][:, None, None, None]
            bits = self._bits(p[:, _COL[key_p]], x.shape)
            table = self._const_table("poisson", x.device)
            valid = None if sizes.uniform else self._valid(sizes, x.shape)
            color = _poisson_noise(x, bits, table, valid) if colour else None
            if gray:
                luma = 0.2989 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]  # torchvision's rgb_to_grayscale
                mono = _poisson_noise(luma, bits[:, :1], table, valid)
                color = torch.where(gray_on, mono, color) if color is not None else mono.expand_as(x)
            assert color is not None
            x = torch.clamp(x + color * scale, 0, 1)
        return x

    def describe(self) -> list[Param]:
        head = [
            Param("kind", "realesrgan", "traiNNer-redux high_order_degradation + realesrgandataset"),
            Param("scale", self.scale, "LR side = HR side / scale"),
        ]
        return head + [Param(k, self.opts[k], spec.meaning) for k, spec in _KEYS.items()]


_GRAPHS_KEPT = 3


class _Replay:
    """One batch shape's device work captured as a CUDA graph: static input, buffer and output
    tensors; a run copies the crops and the packed parameters in and replays."""

    def __init__(self, fn: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]], hr: Tensor, host: Tensor) -> None:
        self.hr = torch.empty_like(hr, dtype=torch.float32, memory_format=torch.contiguous_format)
        self.buf = torch.empty(host.shape, dtype=host.dtype, device=hr.device)
        self.hr.copy_(hr)
        self.buf.copy_(host.pin_memory(), non_blocking=True)
        side = torch.cuda.Stream(device=hr.device)
        side.wait_stream(torch.cuda.current_stream(hr.device))
        with torch.cuda.stream(side):  # warm-up: cuBLAS/cuDNN handles, constant tables
            for _ in range(2):
                fn(self.hr, self.buf)
        torch.cuda.current_stream(hr.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = fn(self.hr, self.buf)

    def run(self, hr: Tensor, host: Tensor) -> tuple[Tensor, Tensor]:
        self.hr.copy_(hr)
        self.buf.copy_(host.pin_memory(), non_blocking=True)
        self.graph.replay()
        return self.out[0].clone(), self.out[1].clone()


@contextmanager
def _exact_float32() -> Iterator[None]:
    """float32 matmuls and convolutions without TF32 while degrading (a run with fast_matmul turns it
    on; the resize, colour and DCT arithmetic relies on full float32)."""
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]


# ─── batched operations on a canvas of per-sample sizes ──────────────────────────────────────


@dataclass(frozen=True)
class _Sizes:
    """Each sample's valid height and width on a shared canvas (device tensors, float); `uniform`:
    every sample fills the whole canvas (known from the plan, never from the data); hh, wh: the
    halves rounded up (a 4:2:0 chroma plane's real size), when known."""

    h: Tensor
    w: Tensor
    uniform: bool
    hh: Tensor | None = None
    wh: Tensor | None = None


def _extend(x: Tensor, sizes: _Sizes, top: int, bottom: int, left: int, right: int, mode: str) -> Tensor:
    """The canvas grown by the margins, every pixel outside a sample's valid area filled from it:
    "reflect" (mirror without repeating the edge, as torch's reflect padding) or "replicate"."""
    n, c, hc, wc = x.shape
    dev = x.device
    iy = _fold(torch.arange(-top, hc + bottom, device=dev), sizes.h.long()[:, None], mode)
    ix = _fold(torch.arange(-left, wc + right, device=dev), sizes.w.long()[:, None], mode)
    rows = x.gather(2, iy[:, None, :, None].expand(n, c, iy.shape[1], wc))
    return rows.gather(3, ix[:, None, None, :].expand(n, c, iy.shape[1], ix.shape[1]))


def _fold(i: Tensor, size: Tensor, mode: str) -> Tensor:
    if mode == "replicate":
        return torch.minimum(i.clamp(min=0)[None, :], size - 1)
    period = (2 * size - 2).clamp(min=1)
    m = torch.remainder(i[None, :], period)
    return torch.minimum(m, period - m)


def _filter(x: Tensor, kernels: Tensor, sizes: _Sizes) -> Tensor:
    """traiNNer's filter2d per sample: reflect padding, correlation with each sample's k×k kernel."""
    n, c, hc, wc = x.shape
    pad = kernels.shape[-1] // 2
    if sizes.uniform and pad < min(hc, wc):
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    else:
        padded = _extend(x, sizes, pad, pad, pad, pad, "reflect")
    weight = kernels.repeat_interleave(c, dim=0)[:, None]
    return F.conv2d(padded.reshape(1, n * c, *padded.shape[2:]), weight, groups=n * c).view(n, c, hc, wc)


def _kernels(p: Tensor, name: str, shapes: frozenset[int], grids: Tensor, col: Mapping[str, int] = _COL) -> Tensor:
    """[N, 21, 21] blur kernels from the parameter rows (traiNNer pads every kernel to 21):
    Gaussian, generalized Gaussian or plateau (iso/aniso), or sinc (circular low-pass), each
    normalised to sum 1 within its size. `shapes`: the type codes that can occur (others are not
    built); `grids`: see `_kernel_grids`; `col`: the table's column map."""

    def c(field: str) -> Tensor:
        return p[:, col[f"{name}_{field}"]][:, None, None]

    kind = c("type")
    kern: Tensor | None = None
    if shapes - {_SINC}:
        # beta is 1 for Gaussian kernels, so exp(-q^beta / 2) covers both Gaussian families
        qb = (c("a") * grids[0] + c("b") * grids[1] + c("d") * grids[2]) ** c("beta")
        if shapes & {0, 1, 2, 3}:
            kern = torch.exp(-0.5 * qb)
        if shapes & {4, 5}:
            plateau = 1.0 / (qb + 1.0)
            kern = plateau if kern is None else torch.where(kind >= 4, plateau, kern)
    if _SINC in shapes:
        omega = c("omega")
        sinc = torch.special.bessel_j1(omega * grids[3]) * (omega * grids[4])  # ω·J1(ωr) / (2πr)
        sinc = torch.where(grids[5] > 0, omega * omega / (4 * math.pi), sinc)  # its limit at r = 0
        kern = sinc if kern is None else torch.where(kind == _SINC, sinc, kern)
    assert kern is not None
    kern = torch.where(grids[6] <= (c("size") - 1) / 2, kern, 0.0)
    return (kern / kern.sum(dim=(1, 2), keepdim=True)).float()


def _kernel_grids() -> Tensor:
    """Over the 21×21 grid: x², 2xy, y², r, 1/(2πr) (0 at the centre), the centre, max(|x|, |y|)."""
    r = _KMAX // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    yy, xx = ax[:, None].expand(_KMAX, _KMAX), ax[None, :].expand(_KMAX, _KMAX)
    rad = torch.sqrt(xx * xx + yy * yy)
    inv = torch.where(rad > 0, 1.0 / (2 * math.pi * torch.where(rad > 0, rad, 1.0)), 0.0)
    return torch.stack([xx * xx, 2 * xx * yy, yy * yy, rad, inv, (rad == 0).double(), torch.maximum(xx.abs(), yy.abs())])


def _cv2_gaussian(size: int) -> np.ndarray:
    """cv2.getGaussianKernel(size, 0): OpenCV's fixed tables up to 7, else sigma = 0.3·((size-1)/2 - 1) + 0.8."""
    fixed = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
             7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}
    if size in fixed:
        return np.array(fixed[size])
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    g = np.exp(-((np.arange(size) - (size - 1) / 2) ** 2) / (2 * sigma * sigma))
    return np.asarray(g / g.sum())


def _usm_kernels(radii: np.ndarray, k: int) -> np.ndarray:
    """[N, k, k] of traiNNer's USMSharp kernels (cv2 Gaussian of size = radius, outer product), centred."""
    out = np.zeros((len(radii), k, k))
    for i, r in enumerate(radii.tolist()):
        g = np.pad(_cv2_gaussian(r), (k - r) // 2)
        out[i] = np.outer(g, g)
    return out


def _usm(x: Tensor, kernels: Tensor, sizes: _Sizes) -> Tensor:
    """traiNNer's USMSharp (weight 0.5, threshold 10) with each sample's radius."""
    blur = _filter(x, kernels, sizes)
    residual = x - blur
    soft = _filter((residual.abs() * 255 > 10).float(), kernels, sizes)
    sharp = torch.clamp(x + 0.5 * residual, 0, 1)
    return soft * sharp + (1 - soft) * x


def _thicklines(x: Tensor) -> Tensor:
    """traiNNer's ThickLines: x·3/4 + (3×3 minimum of x)·1/4."""
    return x * 0.75 - F.max_pool2d(-x, 3, stride=1, padding=1) * 0.25


# ── resize: one dense matrix per sample and axis ──


def _aa_weights(code: int, t: Tensor) -> Tensor:
    """Pillow's (and torch's antialias=True) filters: triangle, Keys cubic a = -0.5, Lanczos-3."""
    at = t.abs()
    if code == 0:
        return (1 - at).clamp(min=0)
    if code == 1:
        near = (1.5 * at - 2.5) * at * at + 1
        far = -0.5 * (((at - 5) * at + 8) * at - 4)
        return torch.where(at < 1, near, torch.where(at < 2, far, 0.0))
    pt = math.pi * torch.where(t == 0, 1.0, t)
    lanczos = torch.where(t == 0, 1.0, 3.0 * torch.sin(pt) * torch.sin(pt / 3) / (pt * pt))
    return torch.where(at < 3, lanczos, 0.0)


_LUT_STEPS = 1024  # filter samples per pixel in the lookup table
_LUT_LEN = 6 * _LUT_STEPS + 2  # t in [-3, 3], and one more for the interpolation


def _filter_lut() -> Tensor:
    """[3 · _LUT_LEN] float32: triangle, Keys cubic and Lanczos-3 at t = -3 … 3 in steps of 1/1024,
    linearly interpolated by `_resize_matrix` (error ~1e-6, against float32 weights)."""
    t = torch.arange(_LUT_LEN, dtype=torch.float64) / _LUT_STEPS - 3.0
    return torch.cat([_aa_weights(code, t) for code in (0, 1, 2)]).float()


def _resize_matrix(n_in: Tensor, n_out: Tensor, p: Tensor, r: str, codes: frozenset[int], o: Tensor, i: Tensor, lut: Tensor,
                   col: Mapping[str, int] = _COL) -> Tensor:
    """[N, O, I]: row o holds output pixel o's weights over the input pixels, per sample (its own
    sizes and mode from the parameter rows; zero outside the sizes). bilinear and bicubic follow
    torch's F.interpolate(antialias=True), i.e. Pillow's resampling, lanczos is Pillow's Lanczos-3
    (filters from the lookup table); nearest-exact and area follow F.interpolate; mode -1 (keep) is
    the identity. p, n_in, n_out: float32; o: [1, O, 1] and i: [1, 1, I] float32 pixel indices;
    only `codes` are built; `col`: the table's column map."""

    def column(name: str) -> Tensor:
        return p[:, col[f"{r}_{name}"]][:, None, None]

    n_in, n_out = n_in[:, None, None], n_out[:, None, None]
    scale = n_in / n_out
    w_aa = w_box = None
    if codes & {0, 1, 3}:
        u = (i + 0.5 - scale * (o + 0.5)) * (_LUT_STEPS / scale.clamp(min=1.0)) + 3 * _LUT_STEPS
        u = u.clamp_(0, 6 * _LUT_STEPS)
        base = torch.floor(u)
        index = base.long() + column("lut").long()
        w_aa = torch.lerp(lut[index], lut[index + 1], u - base)
    if codes & {2, 4, _KEEP}:
        lo = torch.minimum(torch.floor((o + 0.5) * scale), n_in - 1)  # nearest-exact (and keep: scale 1)
        hi = lo + 1
        if 4 in codes:  # area: adaptive average pooling's [floor(o·in/out), ceil((o+1)·in/out))
            area = column("area") > 0
            lo = torch.where(area, torch.floor(o * n_in / n_out), lo)
            hi = torch.where(area, torch.ceil((o + 1) * n_in / n_out), hi)
        w_box = ((i >= lo) & (i < hi)).float()
    if w_aa is None or w_box is None:
        w = w_aa if w_box is None else w_box
        assert w is not None
    else:
        w = torch.where(column("aa") > 0, w_aa, w_box)
    w = w * ((o < n_out) & (i < n_in))
    return w / w.sum(dim=2, keepdim=True).clamp(min=1e-12)


# ── noise: counter-based random fields ──

_STRIDE = 13  # coordinates pack as (channel << 26) | (row << 13) | column: canvases up to 8192 px
_NORMAL_STEPS = 1 << 16  # quantiles of the standard normal table (tails at ±4.3 sigma)
_POISSON_STEPS = 1 << 12  # quantiles per (vals, level) in the Poisson table
_POISSON_MAX = 400  # largest count tabulated (λ ≤ 256: its 1 - 1/8192 quantile is ~315)


def _hash32(x: Tensor) -> Tensor:
    """An avalanche hash of int64 values in [0, 2^32) (31-bit odd multipliers: no int64 overflow)."""
    x = x & _U32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & _U32
    x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _U32
    x = ((x ^ (x >> 16)) * 0x297A2D39) & _U32
    return x ^ (x >> 15)


@functools.cache
def _shared_table(name: str, device: str) -> Tensor:
    """The normal or Poisson quantile table on a device, built once per process."""
    if device != "cpu":
        return _shared_table(name, "cpu").to(device)
    return _normal_table() if name == "normal" else _poisson_table()


def _normal_table() -> Tensor:
    """The standard normal at the midpoints of 2^16 equal-probability bins: 16 random bits → a normal."""
    u = (torch.arange(_NORMAL_STEPS, dtype=torch.float64) + 0.5) / _NORMAL_STEPS
    return torch.special.ndtri(u).float()


def _poisson_table() -> Tensor:
    """[9 · 256 · STEPS] int16: Poisson(level/255 · 2^v)'s quantile at (j + ½)/STEPS, for v = 0 … 8
    (traiNNer's vals = 2^ceil(log2(distinct levels))) and every 8-bit level."""
    lam = (torch.arange(256, dtype=torch.float64) / 255.0)[None, :] * (2.0 ** torch.arange(9, dtype=torch.float64))[:, None]
    lam = lam.reshape(-1, 1)
    k = torch.arange(_POISSON_MAX + 1, dtype=torch.float64)[None, :]
    logp = k * torch.log(lam.clamp(min=1e-300)) - lam - torch.lgamma(k + 1)
    cdf = torch.cumsum(torch.where(lam > 0, torch.exp(logp), (k == 0).double()), dim=1)
    u = ((torch.arange(_POISSON_STEPS, dtype=torch.float64) + 0.5) / _POISSON_STEPS).expand(cdf.shape[0], -1).contiguous()
    return torch.searchsorted(cdf, u).clamp(max=_POISSON_MAX).to(torch.int16).reshape(-1)


def _poisson_noise(img: Tensor, bits: Tensor, table: Tensor, valid: Tensor | None) -> Tensor:
    """traiNNer's generate_poisson_noise_pt (scale 1): Poisson counts of the 8-bit levels at
    vals = 2^ceil(log2(distinct levels in the sample's valid area)), minus the levels."""
    n = img.shape[0]
    levels = torch.clamp(torch.round(img * 255.0), 0, 255)
    marks = levels if valid is None else torch.where(valid, levels, 256.0)
    seen = torch.zeros(n, 257, device=img.device).scatter_(1, marks.long().reshape(n, -1), 1.0)[:, :256].sum(1)
    v = torch.ceil(torch.log2(seen)).clamp_(0, 8)
    index = ((v[:, None, None, None] * 256 + levels) * _POISSON_STEPS).long() + (bits & (_POISSON_STEPS - 1))
    return table[index].float() / torch.exp2(v)[:, None, None, None] - levels / 255.0


# ─── JPEG: libjpeg's baseline 4:2:0 codec, batched ──────────────────────────────────────────

# ITU T.81 Annex K tables (what IJG's quality setting scales), row-major.
_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA_Q = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)  # fmt: skip
# jccolor.c / jdcolor.c, 16-bit fixed point: FIX(0.29900) = 19595, …
_RGB_TO_YCC = ((19595, 38470, 7471), (-11059, -21709, 32768), (32768, -27439, -5329))
_YCC_OFFSET = (32768, (128 << 16) + 32767, (128 << 16) + 32767)
_CBCR_TO_RGB = ((0, 91881), (-22554, -46802), (116130, 0))


def _jpeg_constant(name: str) -> Tensor:
    return _jpeg_constants()[name]


@functools.cache
def _jpeg_constants() -> dict[str, Tensor]:
    """The codec's constant tensors (host): orthonormal 8-point DCT-II, the colour matrices."""
    k = torch.arange(8, dtype=torch.float64)
    dct = torch.cos((2 * k[None, :] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    dct[0] /= math.sqrt(2)
    return {
        "dct": dct.float(),
        "ycc": torch.tensor(_RGB_TO_YCC, dtype=torch.float32).view(1, 3, 3, 1, 1),
        "ycc_offset": torch.tensor(_YCC_OFFSET, dtype=torch.float32).view(1, 3, 1, 1),
        "rgb": torch.tensor(_CBCR_TO_RGB, dtype=torch.float32).view(1, 3, 2, 1, 1),
    }


def _chroma_bias(width: int) -> Tensor:
    """jcsample.c h2v2_downsample's rounding bias along a row of `width` full-size pixels: 1, 2, 1, 2, …"""
    return (torch.arange(width // 2) % 2 + 1).float()


def _to_blocks(plane: Tensor) -> Tensor:
    n, h, w = plane.shape
    return plane.view(n, h // 8, 8, w // 8, 8).transpose(2, 3).reshape(n, -1, 8, 8)


def _from_blocks(blocks: Tensor, h: int, w: int) -> Tensor:
    n = blocks.shape[0]
    return blocks.view(n, h // 8, w // 8, 8, 8).transpose(2, 3).reshape(n, h, w)


def jpeg(x: Tensor, quality: Tensor, sizes: _Sizes | None = None, constants: dict[str, Tensor] | None = None) -> Tensor:
    """Baseline JPEG of [N, 3, H, W] in [0, 1] as libjpeg-turbo with its defaults (and so Pillow's
    save/load) does it: 8-bit input, fixed-point YCbCr, 4:2:0 chroma (2×2 sums with libjpeg's 1,2
    rounding bias), edges replicated to the 16-px MCU, IJG-scaled Annex K tables, quantisation
    rounding half away from zero, 'fancy' (triangle) chroma upsampling over the component's real
    size, fixed-point RGB. Only the DCTs differ: exact here, 13-bit integer ('islow') in libjpeg,
    which now and then puts a coefficient on the other side of a rounding step.
    quality: [N] integer qualities (1–100), or [N, 2, 8, 8] quantisation tables (luma, chroma).
    sizes: each sample's valid area of a canvas (default: all of it); the rest of the output is undefined."""
    n, _, h, w = x.shape
    dev = x.device
    if quality.dim() == 1:
        quality = torch.from_numpy(_quant_tables(quality.double().cpu().numpy())).float().to(dev)
    if sizes is None:
        sizes = _Sizes(torch.full((n,), float(h), device=dev), torch.full((n,), float(w), device=dev), True)
    hp, wp = -(-h // 16) * 16, -(-w // 16) * 16
    c = constants or {**{k: v.to(dev) for k, v in _jpeg_constants().items()}, "bias": _chroma_bias(wp).to(dev)}
    if (hp, wp) != (h, w) or not sizes.uniform:
        x = _extend(x, sizes, 0, hp - h, 0, wp - w, "replicate")
    v = torch.floor(x.clamp(0, 1) * 255.0 + 0.5)
    # every partial sum below is an integer under 2^24: exact in float32
    ycc = torch.floor(((c["ycc"] * v[:, None]).sum(2) + c["ycc_offset"]) * (1.0 / 65536))
    chroma = torch.floor((ycc[:, 1:].reshape(n, 2, hp // 2, 2, wp // 2, 2).sum((3, 5)) + c["bias"]) * 0.25)
    hh = sizes.hh if sizes.hh is not None else torch.floor((sizes.h + 1) / 2)
    wh = sizes.wh if sizes.wh is not None else torch.floor((sizes.w + 1) / 2)
    if hp != h or not sizes.uniform:
        # jcprepct.c pads the bottom of each *downsampled* component with its last row (the right
        # edge, by contrast, was padded at full size before downsampling, as above)
        rows = torch.minimum(torch.arange(hp // 2, device=dev)[None, :], hh.long()[:, None] - 1)
        chroma = chroma.gather(2, rows[:, None, :, None].expand_as(chroma))
    blocks = torch.cat([_to_blocks(ycc[:, 0]), _to_blocks(chroma.reshape(n, hp, wp // 2))], 1)  # luma, then Cb/Cr stacked
    luma_blocks = (hp // 8) * (wp // 8)
    q = torch.cat([quality[:, :1].expand(n, luma_blocks, 8, 8), quality[:, 1:].expand(n, blocks.shape[1] - luma_blocks, 8, 8)], 1)
    dct = c["dct"]
    coef = (dct @ (blocks - 128.0) @ dct.T) / q
    coef = torch.trunc(coef + 0.5 * torch.sign(coef)) * q
    rec = torch.floor(dct.T @ coef @ dct + 128.5).clamp_(0, 255)
    y = _from_blocks(rec[:, :luma_blocks], hp, wp)
    cc = _from_blocks(rec[:, luma_blocks:], hp, wp // 2).view(n, 2, hp // 2, wp // 2)
    # jdsample.c h2v2_fancy_upsample over the component's real size (ceil(h/2) × ceil(w/2)), edges replicated
    if sizes.uniform and (hp, wp) == (h, w):
        cp = F.pad(cc, (1, 1, 1, 1), mode="replicate")
    else:
        cp = _extend(cc, _Sizes(hh, wh, False), 1, 1, 1, 1, "replicate")
    near = 3 * cp[:, :, 1:-1]
    rows = torch.stack([near + cp[:, :, :-2], near + cp[:, :, 2:]], 3).reshape(n, 2, hp, wp // 2 + 2)
    this = 3 * rows[..., 1:-1]
    up = torch.stack([this + rows[..., :-2] + 8, this + rows[..., 2:] + 7], 4).reshape(n, 2, hp, wp)
    up = torch.floor(up * (1.0 / 16)) - 128.0
    # jdcolor.c ycc_rgb_convert: y + per-term rounded offsets
    rgb = y[:, None] + torch.floor(((c["rgb"] * up[:, None]).sum(2) + 32768) * (1.0 / 65536))
    return (rgb.clamp_(0, 255) * (1.0 / 255.0))[:, :, :h, :w]


# ─── paragon: the ParagonSR2 fork's pipeline (ParagonOTF), every choice per sample ───────────
#
# Facts from delafer/traiNNer-redux b676e3a5 (traiNNer/models/realesrgan_model.py feed_data,
# traiNNer/models/paragon_otf_degradations.py, traiNNer/data/realesrgan_dataset.py,
# traiNNer/utils/redux_options.py); their code was read, not copied. docs/degradations.md says
# where autosr's version differs and why.

CODECS = ("jpeg", "webp", "avif", "heif")
_CODEC_PIL = {"webp": "WEBP", "avif": "AVIF", "heif": "HEIF"}
# The plugins the fork imports for AVIF and HEIF (module, pip name); Pillow ≥ 11.2 built with
# libavif encodes AVIF itself.
_CODEC_PLUGIN = {"avif": ("pillow_avif", "pillow-avif-plugin"), "heif": ("pillow_heif.HeifImagePlugin", "pillow-heif")}
_CODEC_THREADS = min(8, os.cpu_count() or 1)  # Pillow's encoders release the GIL
_MOTION_MAX = 41  # the largest motion-blur kernel accepted


@functools.cache
def codec_problem(fmt: str) -> str:
    """Why this process cannot encode `fmt` ("" when it can). JPEG is autosr's batched codec; WebP,
    AVIF and HEIF go through Pillow (with the plugin the fork imports, where Pillow lacks the
    format), each tried once on a small image."""
    if fmt == "jpeg":
        return ""
    name = _CODEC_PIL[fmt]
    Image.init()
    if name not in Image.SAVE and fmt in _CODEC_PLUGIN:
        with contextlib.suppress(Exception):  # an optional plugin: absent or broken, the format is unavailable
            importlib.import_module(_CODEC_PLUGIN[fmt][0])
    if name not in Image.SAVE:
        hint = f" (pip install {_CODEC_PLUGIN[fmt][1]} adds one)" if fmt in _CODEC_PLUGIN else ""
        return f"this Pillow ({PIL.__version__}) has no {name} encoder{hint}"
    try:
        _pil_roundtrip(np.tile((np.arange(16, dtype=np.uint8) * 16)[:, None, None], (1, 16, 3)), fmt, 80)
    except Exception as exc:  # noqa: BLE001 - whatever the encoder raises, the format is unavailable: say why
        return f"Pillow's {name} encoder fails on a test image: {type(exc).__name__}: {str(exc)[:120]}"
    return ""


def _pil_roundtrip(img: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    """[H, W, 3] uint8 saved by Pillow as `fmt` at `quality` (its other settings at their defaults,
    as the fork saves) and read back."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=_CODEC_PIL[fmt], quality=quality)
    buf.seek(0)
    with Image.open(buf) as out:
        return np.asarray(out.convert("RGB"))


def _codec_job(job: tuple[np.ndarray, str, int]) -> np.ndarray:
    img, fmt, quality = job
    try:
        return _pil_roundtrip(img, fmt, quality)
    except Exception as exc:  # noqa: BLE001 - the probe passed, so this is news: one line, not a traceback
        raise AutosrError(f"{fmt.upper()} compression failed on a {img.shape[1]}×{img.shape[0]} LR crop at quality {quality}: "
                          f"{type(exc).__name__}: {str(exc)[:160]}",
                          f"drop {fmt} from compression_formats / recompression_formats") from exc


def otf_kind(flavor: str) -> str:
    """The kind a traiNNer config with `high_order_degradation: true` runs (and `dataroot_lq_prob`
    0): the ParagonSR2 fork's RealESRGANModel runs ParagonOTF ("paragon"), upstream traiNNer-redux's
    runs the Real-ESRGAN model ("realesrgan"). flavor: "fork" or "upstream"."""
    if flavor not in ("fork", "upstream"):
        raise AutosrError(f"unknown traiNNer flavour '{flavor}'{did_you_mean(flavor, ('fork', 'upstream'))}", "use fork or upstream")
    return "paragon" if flavor == "fork" else "realesrgan"


def _pkey(default: Any, check: Callable[[str, Any], Any], meaning: str) -> _Key:
    return _Key(default, check, "root", meaning)


_FACTOR_SPAN = _span(0.0, 16.0)
_SIGNED_SPAN = _span(-1.0, 1.0)

# Every key the fork's pipeline reads, in the order it runs them, with the fork's defaults
# (redux_options.py; the kernel keys are datasets.train keys read by realesrgandataset).
_P_READ: dict[str, _Key] = {
    "p_clean": _pkey(0.0, _prob, "probability of a clean sample: no degradation at all, the LR is the final resize of the "
                     "HR (the fork hands the GT itself on as LR, which its crop refuses at scale > 1)"),
    "lens_distort_prob": _pkey(0.0, _prob, "optics: probability of lens distortion"),
    "lens_distort_strength_range": _pkey((-0.3, 0.3), _SIGNED_SPAN, "lens distortion: k uniform in [min, max]; the pixel at "
                                         "(x, y) (-1 … 1 across the crop, context included) takes the crop at (x, y)·(1 + k·r²), "
                                         "bilinear, reflected at the borders (k > 0 barrel, k < 0 pincushion)"),
    "chromatic_aberration_prob": _pkey(0.0, _prob, "optics: probability of chromatic aberration: red scaled ×1.001 and blue "
                                       "×0.999 about the crop centre (bilinear), green kept"),
    "motion_blur_prob": _pkey(0.0, _prob, "optics: probability of motion blur"),
    "motion_blur_kernel_size": _pkey((5, 15), _span(1, _MOTION_MAX, integer=True), "motion blur: kernel size, an integer "
                                     "drawn from [min, max] (even sizes too)"),
    "motion_blur_angle_range": _pkey((0.0, 360.0), _span(-3600.0, 3600.0), "motion blur: angle in degrees, uniform in [min, "
                                     "max]; the kernel is the pixels within ½ px of the line through its centre at that angle "
                                     "(0° horizontal), averaged"),
    "blur_prob": _pkey(0.0, _prob, "optics: probability of the defocus blur (kernel 1, from the datasets.train kernel keys)"),
    **_kernel_keys("", (0.2, 2.0), "defocus"),
    "demosaic_prob": _pkey(0.0, _prob, "sensor: probability of demosaicing: the 8-bit image sampled on a Bayer mosaic (B at "
                           "even rows and columns, R at odd, G between) and interpolated back bilinearly (OpenCV's demosaicing)"),
    "sensor_noise_prob": _pkey(0.0, _prob, "sensor: probability of sensor noise"),
    "sensor_noise_std_range": _pkey((0.01, 0.1), _span(0.0, 1.0), "sensor noise: Gaussian, std uniform in [min, max] in "
                                    "[0, 1] units (0.01 = 2.55 levels), each pixel and channel its own, clipped"),
    "rolling_shutter_prob": _pkey(0.0, _prob, "sensor: probability of rolling shutter"),
    "rolling_shutter_strength_range": _pkey((-0.1, 0.1), _SIGNED_SPAN, "rolling shutter: s uniform in [min, max]; a horizontal "
                                            "shear, the row y px below the crop centre shifted s·y px (bilinear, reflected)"),
    "exposure_prob": _pkey(0.0, _prob, "camera ISP: probability of an exposure error"),
    "exposure_factor_range": _pkey((0.5, 2.0), _FACTOR_SPAN, "exposure: the image times a factor uniform in [min, max], clipped"),
    "color_temp_prob": _pkey(0.0, _prob, "camera ISP: probability of a colour temperature shift"),
    "color_temp_shift_range": _pkey((-0.2, 0.2), _SIGNED_SPAN, "colour temperature: s uniform in [min, max]; s > 0 warmer, "
                                    "R ×(1 + 0.3s) and G ×(1 + 0.1s); s < 0 cooler, B ×(1 - 0.3s) and G ×(1 - 0.1s); clipped"),
    "oversharpen_prob": _pkey(0.0, _prob, "camera ISP: probability of oversharpening"),
    "oversharpen_strength": _pkey((1.0, 2.0), _FACTOR_SPAN, "oversharpening: x + s·(x - 5×5 box blur of x), s uniform in "
                                  "[min, max], clipped"),
    "aliasing_prob": _pkey(0.0, _prob, "camera ISP: probability of aliasing"),
    "aliasing_scale_range": _pkey((0.6, 0.9), _span(0.01, 1.0), "aliasing: nearest-neighbour down to int(side·s), s uniform "
                                  "in [min, max], and back up (F.interpolate mode nearest)"),
    "resize_mode_list3": _pkey(list(_MODES4), _names(RESIZE_MODES), "the resize to the LR size: filters to choose from"),
    "resize_mode_prob3": _pkey(list(_QUARTERS), _weights, "the resize to the LR size: weight of each filter in resize_mode_list3"),
    "final_sinc_prob": _KEYS["final_sinc_prob"],
    "final_kernel_range": _KEYS["final_kernel_range"],
    "compression_formats": _pkey(list(CODECS), _names(CODECS), "compression, every sample once: formats to choose one from"),
    "compression_weights": _pkey([0.60, 0.25, 0.10, 0.05], _weights, "compression: weight of each format in compression_formats"),
    "compression_jpeg_range": _pkey((45.0, 95.0), _span(1.0, 100.0), "JPEG quality: int() of a uniform draw in [min, max] "
                                    "(both compressions)"),
    "compression_webp_range": _pkey((60.0, 85.0), _span(0.0, 100.0), "WebP quality, drawn as JPEG's (both compressions)"),
    "compression_avif_range": _pkey((65.0, 90.0), _span(0.0, 100.0), "AVIF quality, drawn as JPEG's (both compressions)"),
    "compression_heif_range": _pkey((70.0, 90.0), _span(0.0, 100.0), "HEIF quality, drawn as JPEG's (both compressions)"),
    "recompression_prob": _pkey(0.0, _prob, "probability of a second compression (platform recompression), right after the first"),
    "recompression_formats": _pkey(list(CODECS), _names(CODECS), "recompression: formats to choose one from"),
    "recompression_weights": _pkey([0.50, 0.35, 0.10, 0.05], _weights, "recompression: weight of each format in recompression_formats"),
    "editing_prob": _pkey(0.0, _prob, "probability that a sample is edited after its compressions"),
    "editing_exposure_prob": _pkey(0.0, _prob, "editing: probability (within an edited sample) of an exposure change"),
    "editing_exposure_range": _pkey((0.9, 1.1), _FACTOR_SPAN, "editing exposure: the image times a factor uniform in [min, max], clipped"),
    "editing_oversharpen_prob": _pkey(0.0, _prob, "editing: probability (within an edited sample) of sharpening"),
    "editing_oversharpen_strength": _pkey((1.0, 1.3), _FACTOR_SPAN, "editing sharpening: as oversharpening, s uniform in [min, "
                                          "max] (the fork draws the range and stops: autosr applies it, see docs)"),
    "queue_size": _KEYS["queue_size"],
    "enable_sequences": _pkey(False, _flag, "the fork's degradation sequences; true is refused (its model names a "
                              "SequenceController it never imports)"),
}

# Keys a fork config may carry that its pipeline does not read: accepted as written (not checked),
# listed by `describe()` and in `notes` as having no effect.
_UPSTREAM_ONLY = "upstream's Real-ESRGAN model reads it; the fork's pipeline does not"
_P_UNREAD: dict[str, tuple[str, str]] = {
    **{key: (spec.where, _UPSTREAM_ONLY) for key, spec in _KEYS.items() if key not in _P_READ},
    **{key: ("root", "the fork's older per-format compression, unreachable: its compression_formats pipeline runs instead")
       for key in ("webp_prob", "webp_range", "avif_prob", "avif_range", "heif_prob", "heif_range")},
    **{key: ("root", "in the fork's schema, read by nothing") for key in ("sequence_probability", "predefined_sequences")},
}
PARAGON_ROOT_KEYS = tuple(k for k, s in _P_READ.items() if s.where == "root") + tuple(k for k, (w, _) in _P_UNREAD.items() if w == "root")
PARAGON_DATASET_KEYS = tuple(k for k, s in _P_READ.items() if s.where == "dataset") + tuple(
    k for k, (w, _) in _P_UNREAD.items() if w == "dataset")
_P_PAIRED = (("resize_mode_list3", "resize_mode_prob3"), ("kernel_list", "kernel_prob"),
             ("compression_formats", "compression_weights"), ("recompression_formats", "recompression_weights"))


def _validate_paragon(opts: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(every key the pipeline reads → its checked value or default, the unread keys given → their values)."""
    _refuse_unknown(opts, {**_P_READ, **_P_UNREAD}, "paragon")
    values = {key: spec.check(key, opts[key]) if key in opts else spec.default for key, spec in _P_READ.items()}
    if values["enable_sequences"]:
        raise AutosrError("enable_sequences: true is not implemented: the fork's RealESRGANModel builds a SequenceController "
                          "it never imports (a NameError when training starts), so no sequence ever ran there",
                          "remove it, or set it to false")
    for names, weights in _P_PAIRED:
        if len(values[names]) != len(values[weights]):
            raise AutosrError(f"{names} has {len(values[names])} entries but {weights} has {len(values[weights])}",
                              "give one weight per entry")
    return values, {key: opts[key] for key in opts if key in _P_UNREAD}


# The uniforms of one sample, in a fixed order (see _DRAWS), and the parameter table's columns.
_P_DRAWS = (
    "clean", "lens_on", "lens_k", "ca_on", "mb_on", "mb_size", "mb_angle", *(f"k1_{d}" for d in _KERNEL_DRAWS),
    "dm_on", "sn_on", "sn_std", "rs_on", "rs_k", "ex_on", "ex_f", "ct_on", "ct_s", "os_on", "os_s", "al_on", "al_s",
    "f_mode", "ks_on", "ks_size", "ks_omega", "c1_fmt", "c1_q", "c2_on", "c2_fmt", "c2_q",
    "ed_on", "ed_ex_on", "ed_ex_f", "ed_os_on", "ed_os_s", "nk", "win_y", "win_x",
)
_PD = {name: i for i, name in enumerate(_P_DRAWS)}
_P_COLUMNS = (
    "clean", "lens_on", "lens_k", "ca_on", "mb_on", "mb_size", "mb_angle", "mb_cos", "mb_sin",
    *(f"{k}_{c}" for k in ("k1", "ks") for c in _KERNEL_COLS),
    "dm_on", "sn_on", "sn_std", "rs_on", "rs_k", "ex_on", "ex_f", "ct_on", "ct_s", "ct_r", "ct_g", "ct_b",
    "os_on", "os_s", "al_on", "al_s", "al_h", "al_w", "f_mode", "f_lut", "f_aa", "f_area",
    "c1_fmt", "c1_q", "c2_on", "c2_fmt", "c2_q",  # formats: index in CODECS, -1 none
    "ed_on", "ed_ex_on", "ed_ex_f", "ed_os_on", "ed_os_s",
    "nk",  # hash key of the sensor noise field
    "win_y", "win_x",
)
_PC = {name: i for i, name in enumerate(_P_COLUMNS)}
# What a clean sample (p_clean) turns off.
_P_FLAGS = ("lens_on", "ca_on", "mb_on", "k1_on", "dm_on", "sn_on", "rs_on", "ex_on", "ct_on", "os_on", "al_on", "ks_on",
            "c2_on", "ed_on", "ed_ex_on", "ed_os_on")


@dataclass(frozen=True)
class _ParagonPlan:
    """The static shape of a batch's work (see `_Plan`): every sample keeps the HR crop's size until
    the resize to the LR size, so no stage needs per-sample sizes."""

    n: int
    h: int
    w: int
    lq: tuple[int, int]
    margin: int
    stages: frozenset[str]
    shapes: frozenset[int]  # kernel 1's type codes
    modes: frozenset[int]  # the LR resize's mode codes
    motion: int  # the motion kernels' side (odd), 0 without motion blur
    codecs: tuple[frozenset[str], frozenset[str]]  # the formats each compression can draw

    @property
    def layout(self) -> dict[str, tuple[int, ...]]:
        return {"table": (self.n, len(_P_COLUMNS)), "c1": (self.n, 2, 8, 8), "c2": (self.n, 2, 8, 8)}


def _unpack(buf: Tensor, layout: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    parts, at = {}, 0
    for name, shape in layout.items():
        size = math.prod(shape)
        parts[name] = buf[at : at + size].view(shape)
        at += size
    return parts


class ParagonDegrader(_DeviceDegrader):
    """The ParagonSR2 fork's pipeline (`high_order_degradation: true` there): optics (lens
    distortion, chromatic aberration, motion blur, defocus blur), sensor (demosaicing, noise,
    rolling shutter), camera ISP (exposure, colour temperature, oversharpening, aliasing), the
    resize to the LR size and a sinc filter, one or two compressions (JPEG, WebP, AVIF or HEIF),
    editing; every choice per sample. Everything runs batched on the device except WebP, AVIF and
    HEIF: Pillow's encoders, per sample on the CPU (in threads). On CUDA, the work up to the
    compressions is captured as a CUDA graph per batch shape.

    `notes`: what the caller should journal once (formats this Pillow cannot encode and where their
    weight went; keys given that the fork's pipeline does not read)."""

    kind = "paragon"

    def __init__(self, opts: dict[str, Any], unread: dict[str, Any], scale: int, seed: int) -> None:
        super().__init__(opts, scale, seed)
        self.unread = unread
        self.weights: dict[str, list[float]] = {}  # per stage, one weight per entry of CODECS, unavailable ones 0
        lost: dict[str, list[str]] = {}
        for stage in ("compression", "recompression"):
            listed = [0.0] * len(CODECS)
            for fmt, weight in zip(opts[f"{stage}_formats"], opts[f"{stage}_weights"], strict=True):
                listed[CODECS.index(fmt)] += float(weight)
            usable = [0.0 if codec_problem(fmt) else weight for fmt, weight in zip(CODECS, listed, strict=True)]
            runs = stage == "compression" or opts["recompression_prob"] > 0
            if runs and sum(usable) <= 0:
                problems = "; ".join(f"{fmt}: {codec_problem(fmt)}" for fmt, w in zip(CODECS, listed, strict=True) if w > 0)
                raise AutosrError(f"{stage}_formats: no format with a weight can be encoded here ({problems})",
                                  f"add jpeg (always available) to {stage}_formats with a weight")
            self.weights[stage] = usable
            for fmt, weight, ok in zip(CODECS, listed, usable, strict=True):
                if runs and weight > 0 and not ok:
                    lost.setdefault(fmt, []).append(f"{stage}_weights {weight:g}")
        notes = []
        for fmt, where in lost.items():
            shares = "; ".join(f"{stage} " + ", ".join(f"{f} {w / sum(ws):.3g}" for f, w in zip(CODECS, ws, strict=True) if w > 0)
                               for stage, ws in self.weights.items() if stage == "compression" or opts["recompression_prob"] > 0)
            notes.append(f"{fmt.upper()} compression unavailable: {codec_problem(fmt)}; its weight ({', '.join(where)}) goes to "
                         f"the other formats in proportion ({shares})")
        if unread:
            notes.append("not read by the fork's ParagonOTF pipeline, so without effect: " + ", ".join(sorted(unread)))
        self.notes: tuple[str, ...] = tuple(notes)

    # ── host: the draws ──

    def draws(self, counter: int, n: int, h: int, w: int, margin: int = 0) -> np.ndarray:
        """The parameter table [n, len(_P_COLUMNS)] of samples counter … counter+n-1 (host, float64)."""
        o = self.opts
        keys = sample_keys(self.seed, counter, n)
        with np.errstate(over="ignore"):
            steps = np.arange(1, len(_P_DRAWS) + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
            raw = _splitmix(keys[:, None] + steps[None, :])
        u = (raw >> np.uint64(11)).astype(np.float64) * 2.0**-53
        t = np.zeros((n, len(_P_COLUMNS)))

        def draw(name: str) -> np.ndarray:
            return u[:, _PD[name]]

        def put(name: str, value: Any) -> None:
            t[:, _PC[name]] = value

        def maybe(stage: str, prob_key: str, value: str = "", range_key: str = "") -> np.ndarray:
            put(f"{stage}_on", draw(f"{stage}_on") < o[prob_key])
            if not value:
                return np.zeros(n)
            drawn = _between(draw(f"{stage}_{value}"), o[range_key])
            put(f"{stage}_{value}", drawn)
            return drawn

        # optics
        maybe("lens", "lens_distort_prob", "k", "lens_distort_strength_range")
        maybe("ca", "chromatic_aberration_prob")
        maybe("mb", "motion_blur_prob")
        lo, hi = o["motion_blur_kernel_size"]
        put("mb_size", lo + np.minimum(np.floor(draw("mb_size") * (hi - lo + 1)), hi - lo))  # random.randint(lo, hi)
        angle = _between(draw("mb_angle"), o["motion_blur_angle_range"])
        put("mb_angle", angle)
        put("mb_cos", np.cos(np.radians(angle)))
        put("mb_sin", np.sin(np.radians(angle)))
        _kernel_choice(o, "", lambda name: draw(f"k1_{name}"), lambda name, value: put(f"k1_{name}", value))
        # sensor
        maybe("dm", "demosaic_prob")
        maybe("sn", "sensor_noise_prob", "std", "sensor_noise_std_range")
        maybe("rs", "rolling_shutter_prob", "k", "rolling_shutter_strength_range")
        # camera ISP
        maybe("ex", "exposure_prob", "f", "exposure_factor_range")
        shift = maybe("ct", "color_temp_prob", "s", "color_temp_shift_range")
        put("ct_r", 1 + 0.3 * np.maximum(shift, 0))
        put("ct_g", 1 + 0.1 * np.abs(shift))
        put("ct_b", 1 + 0.3 * np.maximum(-shift, 0))
        maybe("os", "oversharpen_prob", "s", "oversharpen_strength")
        factor = maybe("al", "aliasing_prob", "s", "aliasing_scale_range")
        put("al_h", np.maximum(1, np.floor(h * factor)))  # int(h · scale)
        put("al_w", np.maximum(1, np.floor(w * factor)))
        # the resize to the LR size and the sinc filter
        modes = np.array([RESIZE_MODES.index(m) for m in o["resize_mode_list3"]])
        _put_mode(t, "f", modes[_choose(draw("f_mode"), o["resize_mode_prob3"])], _PC)
        put("ks_on", draw("ks_on") < o["final_sinc_prob"])
        put("ks_size", _odd_size(draw("ks_size"), o["final_kernel_range"]))
        put("ks_type", _SINC)
        put("ks_omega", _between(draw("ks_omega"), (math.pi / 3, math.pi)))
        # compression, recompression (formats drawn over the encodable ones)
        first = _choose(draw("c1_fmt"), self.weights["compression"])
        put("c1_fmt", first)
        put("c1_q", self._quality(first, draw("c1_q")))
        again = draw("c2_on") < o["recompression_prob"]
        second = _choose(draw("c2_fmt"), self.weights["recompression"])
        put("c2_on", again)
        put("c2_fmt", np.where(again, second, -1))
        put("c2_q", self._quality(second, draw("c2_q")))
        # editing
        edited = draw("ed_on") < o["editing_prob"]
        put("ed_on", edited)
        put("ed_ex_on", edited & (draw("ed_ex_on") < o["editing_exposure_prob"]))
        put("ed_ex_f", _between(draw("ed_ex_f"), o["editing_exposure_range"]))
        put("ed_os_on", edited & (draw("ed_os_on") < o["editing_oversharpen_prob"]))
        put("ed_os_s", _between(draw("ed_os_s"), o["editing_oversharpen_strength"]))
        put("nk", (raw[:, _PD["nk"]] & np.uint64(_U32)).astype(np.float64))
        for key in ("win_y", "win_x"):
            put(key, np.minimum(np.floor(draw(key) * (2 * margin + 1)), 2 * margin))
        clean = draw("clean") < o["p_clean"]
        put("clean", clean)
        if clean.any():  # nothing but the resize to the LR size
            t[np.ix_(np.flatnonzero(clean), np.array([_PC[f] for f in _P_FLAGS]))] = 0
            t[clean, _PC["c1_fmt"]] = -1
            t[clean, _PC["c2_fmt"]] = -1
        return t

    def _quality(self, fmt: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The fork's int(uniform(lo, hi)) with the format's compression_<fmt>_range."""
        spans = np.array([self.opts[f"compression_{c}_range"] for c in CODECS], dtype=np.float64)
        lo, hi = spans[fmt, 0], spans[fmt, 1]
        return np.floor(lo + (hi - lo) * u)

    def plan(self, n: int, h: int, w: int, margin: int = 0) -> _ParagonPlan:
        o = self.opts
        stages = {stage for stage, key in (
            ("lens", "lens_distort_prob"), ("ca", "chromatic_aberration_prob"), ("mb", "motion_blur_prob"), ("k1", "blur_prob"),
            ("dm", "demosaic_prob"), ("sn", "sensor_noise_prob"), ("rs", "rolling_shutter_prob"), ("ex", "exposure_prob"),
            ("ct", "color_temp_prob"), ("os", "oversharpen_prob"), ("al", "aliasing_prob"), ("ks", "final_sinc_prob"),
        ) if o[key] > 0}
        if o["editing_prob"] > 0:
            stages |= {s for s, key in (("edx", "editing_exposure_prob"), ("eds", "editing_oversharpen_prob")) if o[key] > 0}
        codes = {KERNEL_TYPES.index(t) for t, p in zip(o["kernel_list"], o["kernel_prob"], strict=True) if p > 0}
        sinc = o["sinc_prob"]
        shapes = frozenset({_SINC}) if sinc >= 1 else frozenset(codes | ({_SINC} if sinc > 0 else set()))
        modes = frozenset(RESIZE_MODES.index(m) for m, p in zip(o["resize_mode_list3"], o["resize_mode_prob3"], strict=True) if p > 0)
        motion = 2 * (o["motion_blur_kernel_size"][1] // 2) + 1 if "mb" in stages else 0

        def drawable(stage: str) -> frozenset[str]:
            return frozenset(fmt for fmt, weight in zip(CODECS, self.weights[stage], strict=True) if weight > 0)

        codecs = (drawable("compression"), drawable("recompression") if o["recompression_prob"] > 0 else frozenset())
        return _ParagonPlan(n, h, w, (h // self.scale, w // self.scale), margin, frozenset(stages), shapes, modes, motion, codecs)

    def pack(self, table: np.ndarray, plan: _ParagonPlan) -> np.ndarray:
        """The batch's host buffer (float64): table, then the JPEG tables of both compressions."""
        return np.concatenate([table.ravel(), _quant_tables(table[:, _PC["c1_q"]]).ravel(),
                               _quant_tables(table[:, _PC["c2_q"]]).ravel()])

    # ── the pipeline ──

    def crop(self, hr: Tensor, counter: int, margin: int, transposed: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A window at a random offset per sample, as the realesrgan kind (the fork degrades a crop of
        gt_size + 32 and takes paired_random_crop's window too). `transposed` does not matter: the fork
        also degrades the augmented crop."""
        _check_batch(hr, self.scale)
        n, _, h, w = hr.shape
        if not 0 <= 2 * margin < min(h, w) // self.scale:
            raise ValueError(f"margin {margin} leaves no window in a {h}×{w} crop at scale {self.scale}")
        plan = self.plan(n, h, w, margin)
        table = self.draws(counter, n, h, w, margin)
        host = torch.from_numpy(self.pack(table, plan))
        fmt = _memory_format(hr)
        with _exact_float32():
            graph = None
            if hr.device.type == "cuda" and self.cuda_graph:
                graph = self._graph((plan.n, plan.h, plan.w, plan.margin, str(hr.device)), lambda x, b: self._front(x, b, plan), hr, host)
            if graph is not None:
                x, gt = graph.run(hr, host)
                buf = graph.buf
            else:
                buf = (host.pin_memory() if hr.device.type == "cuda" else host).to(hr.device, non_blocking=True)
                x, gt = self._front(hr, buf, plan)
            lq, gt = self._back(x, gt, buf, table, plan)
        return lq.contiguous(memory_format=fmt), gt.contiguous(memory_format=fmt)

    def _front(self, hr: Tensor, buf: Tensor, plan: _ParagonPlan) -> tuple[Tensor, Tensor]:
        """Device work up to the compressions, static shapes (CUDA-graph safe): (LR canvas float, GT)."""
        parts = _unpack(buf, plan.layout)
        p = parts["table"]  # float64: the kernels are built in float64
        pf = p.float()
        st = plan.stages

        def on(name: str) -> Tensor:
            return (pf[:, _PC[name]] > 0)[:, None, None, None]

        def val(name: str) -> Tensor:
            return pf[:, _PC[name]][:, None, None, None]

        full, small = self._fixed(pf, plan.h, plan.w), self._fixed(pf, *plan.lq)
        x = hr.float().contiguous()
        gt = x

        # optics: lens distortion, chromatic aberration, motion blur, defocus blur
        if "lens" in st:
            x = torch.where(on("lens_on"), self._warp(x, val("lens_k"), "lens"), x)
        if "ca" in st:
            x = torch.where(on("ca_on"), self._chromatic(x), x)
        if "mb" in st:
            x = torch.where(on("mb_on"), _filter(x, _motion_kernels(p, plan.motion), full), x)
        if "k1" in st:
            x = torch.where(on("k1_on"), _filter(x, self._kernels(p, "k1", plan.shapes, _PC), full), x)

        # sensor: demosaicing, noise, rolling shutter
        if "dm" in st:
            bayer = self._const_of(f"bayer{plan.h}x{plan.w}", x.device, lambda: _bayer(plan.h, plan.w))
            x = torch.where(on("dm_on"), _demosaic(x, bayer), x)
        if "sn" in st:
            noise = self._const_table("normal", x.device)[self._bits(p[:, _PC["nk"]], x.shape) >> 16]
            x = torch.where(on("sn_on"), torch.clamp(x + noise * val("sn_std"), 0, 1), x)
        if "rs" in st:
            x = torch.where(on("rs_on"), self._warp(x, val("rs_k"), "shear"), x)

        # camera ISP: exposure, colour temperature, oversharpening, aliasing
        if "ex" in st:
            x = torch.where(on("ex_on"), torch.clamp(x * val("ex_f"), 0, 1), x)
        if "ct" in st:
            gains = torch.cat([val("ct_r"), val("ct_g"), val("ct_b")], 1)
            x = torch.where(on("ct_on"), torch.clamp(x * gains, 0, 1), x)
        if "os" in st:
            x = torch.where(on("os_on"), _oversharpen(x, val("os_s")), x)
        if "al" in st:
            x = torch.where(on("al_on"), self._alias(x, pf), x)

        # the resize to the LR size, the sinc filter
        x = self._resize(x, full, small, pf, "f", plan.modes, plan.lq, _PC)
        if "ks" in st:
            x = torch.where(on("ks_on"), _filter(x, self._kernels(p, "ks", frozenset({_SINC}), _PC), small), x)
        return x, gt

    def _back(self, x: Tensor, gt: Tensor, buf: Tensor, table: np.ndarray, plan: _ParagonPlan) -> tuple[Tensor, Tensor]:
        """Compressions (JPEG batched on the device, WebP/AVIF/HEIF per sample through Pillow on the
        CPU), editing, 8-bit rounding, the window: (LR window, GT window)."""
        parts = _unpack(buf, plan.layout)
        pf = parts["table"].float()

        def on(name: str) -> Tensor:
            return (pf[:, _PC[name]] > 0)[:, None, None, None]

        def val(name: str) -> Tensor:
            return pf[:, _PC[name]][:, None, None, None]

        small = self._fixed(pf, *plan.lq)
        for r, formats in zip(("c1", "c2"), plan.codecs, strict=True):
            if "jpeg" in formats:
                x = torch.where((pf[:, _PC[f"{r}_fmt"]] == 0)[:, None, None, None], self._jpeg(x, parts[r], small), x)
            if formats - {"jpeg"}:
                x = _pillow_codecs(x, table[:, _PC[f"{r}_fmt"]].astype(np.int64), table[:, _PC[f"{r}_q"]].astype(np.int64))
        if "edx" in plan.stages:
            x = torch.where(on("ed_ex_on"), torch.clamp(x * val("ed_ex_f"), 0, 1), x)
        if "eds" in plan.stages:
            x = torch.where(on("ed_os_on"), _oversharpen(x, val("ed_os_s")), x)
        lq = torch.clamp(torch.round(x * 255.0), 0, 255) * (1.0 / 255.0)
        if not plan.margin:
            return lq, gt
        oy, ox = pf[:, _PC["win_y"]].long(), pf[:, _PC["win_x"]].long()
        window = (plan.lq[0] - 2 * plan.margin, plan.lq[1] - 2 * plan.margin)
        return self._window(lq, oy, ox, window, 1), self._window(gt, oy, ox, window, self.scale)

    def _fixed(self, pf: Tensor, h: int, w: int) -> _Sizes:
        """Every sample h×w (one tensor for both sides when square: one resize matrix serves both)."""
        hs = pf.new_full((pf.shape[0],), float(h))
        return _Sizes(hs, hs if h == w else pf.new_full((pf.shape[0],), float(w)), True)

    def _grid(self, h: int, w: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Pixel centres in grid_sample's coordinates (align_corners=False): u [1, 1, W], v [1, H, 1]."""
        def centres(size: int) -> Tensor:
            return self._const_of(f"centres{size}", device, lambda: ((torch.arange(size, dtype=torch.float64) * 2 + 1) / size - 1).float())

        return centres(w).view(1, 1, w), centres(h).view(1, h, 1)

    def _warp(self, x: Tensor, k: Tensor, how: str) -> Tensor:
        """Lens distortion ((u, v)·(1 + k·r²)) or rolling shutter (u + k·v·H/W: k px per px below the
        centre), per sample k; bilinear, reflected at the borders."""
        n, _, h, w = x.shape
        u, v = self._grid(h, w, x.device)
        k = k.view(n, 1, 1)
        if how == "lens":
            f = 1 + k * (u * u + v * v)
            gx, gy = u * f, v * f
        else:
            gx, gy = u + k * v * (h / w), v.expand(n, h, w)
        grid = torch.stack([gx.expand(n, h, w), gy.expand(n, h, w)], dim=-1)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def _chromatic(self, x: Tensor) -> Tensor:
        """Red scaled ×1.001 and blue ×0.999 about the centre (the fork's affine_grid), green kept, clipped."""
        n, _, h, w = x.shape
        u, v = self._grid(h, w, x.device)

        def scaled(channel: int, s: float) -> Tensor:
            grid = torch.stack([(u * s).expand(1, h, w), (v * s).expand(1, h, w)], dim=-1).expand(n, h, w, 2)
            return F.grid_sample(x[:, channel : channel + 1], grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        return torch.cat([scaled(0, 1.001), x[:, 1:2], scaled(2, 0.999)], 1).clamp(0, 1)

    def _alias(self, x: Tensor, pf: Tensor) -> Tensor:
        """Nearest-neighbour down to each sample's (al_h, al_w) and back up (index gathers)."""
        n, c, h, w = x.shape
        ih = _nearest_there_and_back(h, pf[:, _PC["al_h"]])
        iw = _nearest_there_and_back(w, pf[:, _PC["al_w"]])
        rows = x.gather(2, ih[:, None, :, None].expand(n, c, h, w))
        return rows.gather(3, iw[:, None, None, :].expand(n, c, h, w))

    def describe(self) -> list[Param]:
        codecs = {fmt: codec_problem(fmt) or ("batched on the device" if fmt == "jpeg" else "Pillow, CPU") for fmt in CODECS}
        head = [
            Param("kind", "paragon", "the ParagonSR2 fork's high_order_degradation pipeline (ParagonOTF): optics, sensor, camera "
                  "ISP, resize to the LR size + sinc, compression(s), editing"),
            Param("scale", self.scale, "LR side = HR side / scale"),
            Param("codecs", codecs, "how each compression format runs here (an unavailable one's weight goes to the others)"),
        ]
        read = [Param(key, self.opts[key], spec.meaning) for key, spec in _P_READ.items()]
        unread = [Param(key, value, f"no effect: {_P_UNREAD[key][1]}") for key, value in self.unread.items()]
        return head + read + unread


def _motion_kernels(p: Tensor, side: int) -> Tensor:
    """[N, side, side] float32: the fork's motion kernels, each sample's size and angle; tap (dy, dx)
    from the centre is on where |dy·cos + dx·sin| < ½ and -⌊k/2⌋ ≤ dy, dx ≤ k - 1 - ⌊k/2⌋ (an even
    size sits as the fork's does); normalised."""
    ax = torch.arange(side, dtype=torch.float64, device=p.device) - side // 2
    dy, dx = ax[None, :, None], ax[None, None, :]
    size = p[:, _PC["mb_size"]][:, None, None]
    lo = -torch.floor(size / 2)
    hi = size - 1 + lo
    cos, sin = p[:, _PC["mb_cos"]][:, None, None], p[:, _PC["mb_sin"]][:, None, None]
    line = (dy * cos + dx * sin).abs() < 0.5
    inside = (dy >= lo) & (dy <= hi) & (dx >= lo) & (dx <= hi)
    kern = (line & inside).double()
    return (kern / kern.sum(dim=(1, 2), keepdim=True)).float()


def _bayer(h: int, w: int) -> Tensor:
    """[2, 3, max(h, w, 3), max(h, w, 3)] (host): the fork's mosaic as masks of R, G, B (plane 0, top
    left), then the bilinear interpolation weights of R/B and G (plane 1, top-left 3×3 of each)."""
    side = max(h, w, 3)
    rows, cols = torch.arange(side)[:, None] % 2, torch.arange(side)[None, :] % 2
    blue, red = (rows == 0) & (cols == 0), (rows == 1) & (cols == 1)
    out = torch.zeros(2, 3, side, side)
    out[0] = torch.stack([red, ~(red | blue), blue]).float()
    rb = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4
    g = torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4
    out[1, :, :3, :3] = torch.stack([rb, g, rb])
    return out


def _demosaic(x: Tensor, bayer: Tensor | None = None) -> Tensor:
    """The 8-bit image on the fork's Bayer mosaic (B at even rows and columns, R at odd ones, G
    between), interpolated back bilinearly with 8-bit rounding (OpenCV's Bayer → RGB; reflected
    borders here). bayer: `_bayer(h, w)` on x's device (built here if not given)."""
    _, _, h, w = x.shape
    if bayer is None:
        bayer = _bayer(h, w).to(x.device)
    v = torch.floor(x.clamp(0, 1) * 255 + 0.5)
    full = F.conv2d(F.pad(v * bayer[0, :, :h, :w], (1, 1, 1, 1), mode="reflect"), bayer[1, :, None, :3, :3], groups=3)
    return torch.floor(full + 0.5) * (1.0 / 255.0)


def _oversharpen(x: Tensor, s: Tensor) -> Tensor:
    """The fork's oversharpening: x + s·(x - 5×5 box blur of x), clipped (reflected borders here)."""
    box = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    return torch.clamp(x + (x - box) * s, 0, 1)


def _nearest_there_and_back(size: int, down: Tensor) -> Tensor:
    """[N, size] int64: the source pixel of each output pixel after F.interpolate(mode="nearest") to
    `down` px and back to `size` (torch's rule: src = min(floor(dst · in/out), in - 1), in float32)."""
    i = torch.arange(size, device=down.device, dtype=torch.float32)[None, :]
    d = down.float()[:, None]
    full = torch.full_like(d, float(size))
    j = torch.minimum(torch.floor(i * (d / full)), d - 1)
    return torch.minimum(torch.floor(j * (full / d)), full - 1).long()


def _pillow_codecs(x: Tensor, fmt: np.ndarray, quality: np.ndarray) -> Tensor:
    """The samples whose format (index in CODECS) is WebP, AVIF or HEIF, each saved and read back by
    Pillow at its quality on the CPU (8-bit, rounded), in threads; the others as they are."""
    rows = np.flatnonzero(fmt >= 1)
    if not len(rows):
        return x
    index = torch.from_numpy(rows).to(x.device)
    levels = torch.floor(x.index_select(0, index).clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    jobs = [(levels[j], CODECS[int(fmt[i])], int(quality[i])) for j, i in enumerate(rows)]
    if len(jobs) > 1 and _CODEC_THREADS > 1:
        with ThreadPoolExecutor(max_workers=min(len(jobs), _CODEC_THREADS)) as pool:
            out = list(pool.map(_codec_job, jobs))
    else:
        out = [_codec_job(job) for job in jobs]
    back = torch.from_numpy(np.stack(out)).to(x.device).permute(0, 3, 1, 2).float() * (1.0 / 255.0)
    return x.index_copy(0, index, back)


# Keys that only the fork's ParagonOTF reads: a config that has one is a fork config.
_PARAGON_ONLY = frozenset(k for k in _P_READ if k not in _KEYS)
# Keys that select the pipeline rather than set it: read by kind_for_config, not passed on.
SELECTORS = ("high_order_degradation", "type", "dataroot_gt", "dataroot_lq", "meta_info", "name")


def kind_for_config(tree: Mapping[str, Any]) -> str | None:
    """How a (validated) config's training LR is made: None for paired folders; "bicubic" for a
    dataset without dataroot_lq; for a realesrgandataset or `high_order_degradation: true`,
    "paragon" when the config uses the fork's ParagonOTF keys (the fork's pipeline) and "realesrgan"
    otherwise (upstream traiNNer-redux's model)."""
    train = (tree.get("datasets") or {}).get("train") or {}
    otf = str(train.get("type", "")).lower() == "realesrgandataset" or tree.get("high_order_degradation") is True
    if not otf:
        return None if "dataroot_lq" in train else "bicubic"
    keys = set(tree) | set(train)
    return "paragon" if keys & _PARAGON_ONLY else "realesrgan"


def options_of(tree: Mapping[str, Any]) -> dict[str, Any]:
    """The degradation options of a config: every root and train-dataset key the schema does not list
    (config.validate let them through for their owner), so that from_options refuses a misspelt one."""
    train = (tree.get("datasets") or {}).get("train") or {}
    dataset_keys = ROOT.keys["datasets"].spec_for("train").keys
    opts = {k: v for k, v in tree.items() if k not in ROOT.keys and k not in SELECTORS}
    return opts | {k: v for k, v in train.items() if k not in dataset_keys and k not in SELECTORS}
