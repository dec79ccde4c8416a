"""Training losses built from traiNNer's ``train.losses`` list.

Each entry is a traiNNer mapping such as ``{type: l1loss, loss_weight: 1.0}``. Types are matched
case-insensitively (traiNNer accepts ``L1Loss`` and ``l1loss``); every other key is checked against
the options autosr implements for that type, and an unknown key is an error, never ignored.

Every loss is computed in float32 with autocast switched off, so bf16/fp16 training gets the same
loss values as fp32 (SSIM's variances and the FFT lose too much precision in half types).

Types and their options (defaults in brackets):
- ``l1loss``, ``mseloss``: ``reduction`` [mean] | sum.
- ``charbonnierloss``: ``reduction``, ``eps`` [1e-12] — mean of sqrt((sr-gt)² + eps), as traiNNer.
- ``ssimloss``: 1 − SSIM on [0,1] images, gaussian window ``window_size`` [11] σ ``sigma`` [1.5],
  C1 = ``k1``² [0.01], C2 = ``k2``² [0.03], 'valid' filtering, per channel (depthwise conv).
  Needs patches of at least ``window_size`` pixels.
- ``mssimloss``: 1 − MS-SSIM, same options plus ``cosim`` [false] and ``cosim_lambda`` [5.0]; see
  :func:`ms_ssim` for the scales. traiNNer's MSSIMLoss defaults to ``cosim: true``; autosr writes the
  key explicitly when it wants the two trainers to agree.
- ``fftloss``: L1 between the magnitudes of ``rfft2(·, norm="ortho")`` of sr and gt. Magnitudes
  ignore phase on purpose: the pixel loss already pins positions; this term penalises missing
  high-frequency energy (blur). "ortho" keeps its scale independent of the patch size.
- ``perceptualloss``, ``ganloss``: known but not trainable by autosr (see the error messages).

Entries with ``loss_weight: 0`` are validated but not built (as traiNNer skips them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError, did_you_mean
from autosr.train.metrics import gaussian_window_1d, ssim_maps

LossFn = Callable[[Tensor, Tensor], Tensor]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003

_SSIM_OPTIONS: dict[str, Any] = {"window_size": 11, "sigma": 1.5, "k1": 0.01, "k2": 0.03}
OPTIONS: dict[str, dict[str, Any]] = {
    "l1loss": {"reduction": "mean"},
    "mseloss": {"reduction": "mean"},
    "charbonnierloss": {"reduction": "mean", "eps": 1e-12},
    "ssimloss": dict(_SSIM_OPTIONS),
    "mssimloss": {**_SSIM_OPTIONS, "cosim": False, "cosim_lambda": 5.0},
    "fftloss": {},
}
UNAVAILABLE: dict[str, tuple[str, str]] = {
    "perceptualloss": (
        "perceptualloss needs pretrained VGG19 weights, which autosr cannot download here and its "
        "trainer does not load",
        "remove the entry or set its loss_weight to 0 (traiNNer-redux itself fetches VGG19 on first use)",
    ),
    "ganloss": (
        "ganloss needs a discriminator (network_d) and its optimizer (optim_d), which autosr's "
        "trainer does not train yet",
        "remove the entry or set its loss_weight to 0, or run the GAN stage with traiNNer-redux",
    ),
}


@dataclass
class LossTerm:
    """One weighted loss. ``weight`` is mutable: the runtime scheduler changes it between steps."""

    name: str  # metric / TensorBoard key, e.g. "l1" (traiNNer's label without "l_g_")
    weight: float
    type: str  # the traiNNer type name, lower case, e.g. "l1loss"
    fn: LossFn = field(repr=False)

    def __call__(self, sr: Tensor, gt: Tensor) -> Tensor:
        """The unweighted loss, a float32 scalar tensor."""
        with torch.autocast(device_type=sr.device.type, enabled=False):
            return self.fn(sr.float(), gt.float())


def total_loss(terms: Sequence[LossTerm], sr: Tensor, gt: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ weight·loss over the terms whose weight is not zero, and each unweighted loss (detached).

    Returns tensors only (no ``.item()``), so a training step never waits on the device here.
    """
    total: Tensor | None = None
    values: dict[str, Tensor] = {}
    for term in terms:
        if term.weight == 0:
            continue  # not computed at all
        value = term(sr, gt)
        values[term.name] = value.detach()
        total = value * term.weight if total is None else total + value * term.weight
    if total is None:
        raise AutosrRuntimeError("every loss weight is zero at this step", "at least one loss must be active")
    return total, values


# ----------------------------------------------------------------------------- loss functions
def _reduce(x: Tensor, reduction: str) -> Tensor:
    return x.mean() if reduction == "mean" else x.sum()


def _window(size: int, sigma: float, like: Tensor) -> Tensor:
    return gaussian_window_1d(size, sigma, like.dtype, like.device)


def _check_patch(x: Tensor, window_size: int, what: str) -> None:
    if min(x.shape[-2:]) < window_size:
        raise AutosrRuntimeError(
            f"{what} needs patches of at least {window_size}×{window_size}, got {tuple(x.shape[-2:])}",
            "raise the patch size (gt_size / lq_size) or lower window_size",
        )


def ssim(x: Tensor, y: Tensor, *, window_size: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> Tensor:
    """Mean SSIM of two [0,1] batches (valid filtering, per channel), differentiable."""
    _check_patch(x, window_size, "ssimloss")
    s, _ = ssim_maps(x, y, _window(window_size, sigma, x), k1 * k1, k2 * k2)
    return s.mean()


def ms_scales(size: int, window_size: int, max_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """How many dyadic scales keep ``size`` ≥ ``window_size`` (0 when even the first does not)."""
    n = 0
    while n < max_scales and size // (2**n) >= window_size:
        n += 1
    return n


def ms_ssim(x: Tensor, y: Tensor, *, window_size: int = 11, sigma: float = 1.5, k1: float = 0.01,
            k2: float = 0.03) -> Tensor:
    """MS-SSIM of two [0,1] batches with the standard 5 scales and weights (Wang et al. 2003).

    Scales are 2×2 average-pooled. With 'valid' filtering an 11-pixel window fits 5 scales only
    from 176 pixels up; smaller patches use as many scales as fit (128 → 4, 64 → 3, 11..21 → 1),
    with the first weights renormalised to sum to 1, so one scale is plain SSIM. Contrast-structure
    terms are clamped at 1e-6 before the fractional powers (a negative base has no real power).
    """
    n = ms_scales(min(x.shape[-2:]), window_size)
    if n == 0:
        _check_patch(x, window_size, "mssimloss")
    weights = MS_SSIM_WEIGHTS[:n]
    weights = [w / sum(weights) for w in weights]
    window = _window(window_size, sigma, x)
    result: Tensor | None = None
    for i, w in enumerate(weights):
        s, cs = ssim_maps(x, y, window, k1 * k1, k2 * k2)
        last = i == n - 1
        part = (s if last else cs).mean(dim=(2, 3)).clamp_min(1e-6) ** w  # per image and channel
        result = part if result is None else result * part
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    assert result is not None
    return result.mean()


def _cosine_penalty(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """1 − mean cosine similarity of the per-pixel colour vectors (0 for identical, black included)."""
    dot = (x * y).sum(dim=1)
    norms = (x * x).sum(dim=1).sqrt() * (y * y).sum(dim=1).sqrt()
    return 1 - ((dot + eps) / (norms + eps)).mean()


def _fft_magnitude_l1(sr: Tensor, gt: Tensor) -> Tensor:
    return (torch.fft.rfft2(sr, norm="ortho").abs() - torch.fft.rfft2(gt, norm="ortho").abs()).abs().mean()


def _make_fn(kind: str, opts: dict[str, Any]) -> LossFn:
    if kind == "l1loss":
        return lambda sr, gt: _reduce((sr - gt).abs(), opts["reduction"])
    if kind == "mseloss":
        return lambda sr, gt: _reduce((sr - gt) ** 2, opts["reduction"])
    if kind == "charbonnierloss":
        return lambda sr, gt: _reduce(((sr - gt) ** 2 + opts["eps"]).sqrt(), opts["reduction"])
    ssim_opts = {k: opts[k] for k in _SSIM_OPTIONS if k in opts}
    if kind == "ssimloss":
        return lambda sr, gt: 1 - ssim(sr, gt, **ssim_opts)
    if kind == "mssimloss":
        if opts["cosim"]:
            lam = opts["cosim_lambda"]
            return lambda sr, gt: 1 - ms_ssim(sr, gt, **ssim_opts) + lam * _cosine_penalty(sr, gt)
        return lambda sr, gt: 1 - ms_ssim(sr, gt, **ssim_opts)
    if kind == "fftloss":
        return _fft_magnitude_l1
    raise AssertionError(kind)  # OPTIONS and this function list the same types


# ----------------------------------------------------------------------------- validation
def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_option(where: str, key: str, value: Any) -> Any:
    """Type and range of one option; returns the value normalised (ints → floats where floats)."""
    if key == "reduction":
        if value not in ("mean", "sum"):
            raise AutosrError(f"{where}: must be 'mean' or 'sum', got {value!r}")
        return value
    if key == "window_size":
        if isinstance(value, bool) or not isinstance(value, int) or value < 3 or value % 2 == 0:
            raise AutosrError(f"{where}: must be an odd integer ≥ 3, got {value!r}")
        return value
    if key == "cosim":
        if not isinstance(value, bool):
            raise AutosrError(f"{where}: must be true or false, got {value!r}")
        return value
    # the rest are positive (cosim_lambda: non-negative) floats
    if not _is_number(value):
        hint = "write floats so YAML reads them as numbers, e.g. 1.0e-12 (PyYAML reads 1e-12 as a string)"
        raise AutosrError(f"{where}: must be a number, got {value!r}", hint)
    if value < 0 or (value == 0 and key != "cosim_lambda"):
        raise AutosrError(f"{where}: must be {'≥' if key == 'cosim_lambda' else '>'} 0, got {value!r}")
    return float(value)


def _entry_type(i: int, entry: object) -> tuple[str, Mapping[str, Any]]:
    where = f"train.losses[{i}]"
    if not isinstance(entry, Mapping):
        raise AutosrError(f"{where}: each loss must be a mapping like {{type: l1loss, loss_weight: 1.0}}, "
                          f"got {entry!r}")
    kind = entry.get("type")
    if not isinstance(kind, str):
        raise AutosrError(f"{where}.type: missing or not a string", "e.g. type: l1loss")
    known = [*OPTIONS, *UNAVAILABLE]
    if kind.lower() not in known:
        raise AutosrError(f"{where}.type: unknown loss {kind!r}{did_you_mean(kind.lower(), known)}",
                          f"autosr knows: {', '.join(known)}")
    return kind.lower(), entry


def _entry_weight(i: int, entry: Mapping[str, Any]) -> float:
    where = f"train.losses[{i}].loss_weight"
    if "loss_weight" not in entry:
        raise AutosrError(f"{where}: missing", "every loss needs a loss_weight (0 disables it)")
    weight = entry["loss_weight"]
    if not _is_number(weight):
        raise AutosrError(f"{where}: must be a number, got {weight!r}",
                          "write floats so YAML reads them as numbers, e.g. 5.0e-4")
    if weight < 0:
        raise AutosrError(f"{where}: must be ≥ 0, got {weight!r}")
    return float(weight)


def _entry_options(i: int, kind: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    allowed = OPTIONS.get(kind, {})
    opts = dict(allowed)
    for key, value in entry.items():
        if key in ("type", "loss_weight"):
            continue
        where = f"train.losses[{i}].{key}"
        if key not in allowed:
            choices = ["type", "loss_weight", *allowed]
            raise AutosrError(f"{where}: unknown key for {kind}{did_you_mean(str(key), choices)}",
                              f"{kind} takes: {', '.join(choices)}")
        opts[key] = _check_option(where, key, value)
    return opts


def _unique_name(kind: str, taken: set[str]) -> str:
    base = kind.replace("loss", "")  # traiNNer's label, l_g_<base>
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def build_losses(entries: Sequence[Mapping[str, Any]]) -> list[LossTerm]:
    """Validate ``train.losses`` and build the active terms (weight > 0), in the config's order."""
    if not isinstance(entries, Sequence) or isinstance(entries, str) or not entries:
        raise AutosrError("train.losses: needs a list with at least one loss",
                          "e.g. losses: [{type: l1loss, loss_weight: 1.0}]")
    terms: list[LossTerm] = []
    taken: set[str] = set()
    for i, raw in enumerate(entries):
        kind, entry = _entry_type(i, raw)
        weight = _entry_weight(i, entry)
        opts = _entry_options(i, kind, entry)
        if weight == 0:
            continue
        if kind in UNAVAILABLE:
            message, hint = UNAVAILABLE[kind]
            raise AutosrError(f"train.losses[{i}]: {message}", hint)
        name = _unique_name(kind, taken)
        taken.add(name)
        terms.append(LossTerm(name=name, weight=weight, type=kind, fn=_make_fn(kind, opts)))
    if not terms:
        raise AutosrError("train.losses: every loss_weight is 0", "give at least one loss a weight > 0")
    return terms
