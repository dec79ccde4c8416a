"""Training losses built from traiNNer's ``train.losses`` list, with traiNNer-redux's maths.

Each entry is a traiNNer mapping such as ``{type: l1loss, loss_weight: 1.0}``. Types are matched
case-insensitively (traiNNer accepts ``L1Loss`` and ``l1loss``); every other key is checked against
the options autosr implements for that type, and an unknown key is an error, never ignored.

A type that traiNNer-redux also has computes what traiNNer-redux's class of that name computes
(``traiNNer/losses/basic_loss.py``, ``mssim_loss.py``, ``cosim_loss.py``), with the same options
and defaults, so a ``loss_weight`` means the same in both trainers. One deliberate exception:
``ssimloss`` is 1 − SSIM here; traiNNer's ``SSIMLoss`` returns SSIM itself (a vector that crashes
upstream's trainer, and a scalar that the ParagonSR2 fork then *minimises*). docs/losses.md has the
formulas, the defaults and the comparison table.

Every loss is computed in float32 with autocast switched off, so bf16/fp16 training gets the same
loss values as fp32 (SSIM's variances and the FFT lose too much precision in half types).

Types and their options (defaults in brackets):
- ``l1loss``, ``mseloss``: ``reduction`` [mean] | sum.
- ``charbonnierloss``: ``reduction``, ``eps`` [1e-12] — sqrt((sr-gt)² + eps), reduced.
- ``fftloss``: ``reduction`` — L1 between the real and imaginary parts of the unnormalised
  ``rfft2`` of sr and gt (traiNNer's FFTLoss; its scale grows with the patch area).
- ``ssimloss``: 1 − SSIM. ``test_y_channel`` [true] (luma of ``color_space`` [yiq] | ycbcr | lhm),
  ``downsample`` [false], ``crop_border`` [0], ``channels`` [3] (unused, as in traiNNer).
- ``mssimloss``: 1 − MS-SSIM over 5 scales, as traiNNer's MSSIMLoss: ``test_y_channel`` [true],
  ``color_space`` [yiq], ``is_prod`` [true], ``include_luminance`` [false], ``downsample``
  [false], ``channels`` [3] (unused). No cosine term: that is the separate ``cosimloss``.
- ``cosimloss``: ``cosim_lambda`` [5.0] · (1 − mean cosine similarity of the RGB vectors).
- ``fftmagloss`` (autosr only, traiNNer has no such type): L1 between the magnitudes of
  ``rfft2(·, norm="ortho")`` — the old autosr ``fftloss``; phase-blind, patch-size independent.
- ``perceptualloss`` (VGG19), ``convnextperceptualloss``, ``distsloss``: pretrained networks,
  in ``autosr/train/perceptual.py`` (weights from the torch hub cache, never downloaded);
  ``hsluvloss``, ``consistencyloss``, ``ffloss``, ``hfenloss``, ``laplacianpyramidloss``,
  ``adaptiveblocktvloss``: in ``autosr/train/pixel_losses.py``. Their options are declared there
  (``SPECS``) and checked by ``autosr/train/loss_specs.py``.
- ``ganloss``, ``featurematchingloss``, ``ldlloss``: GAN terms (autosr/train/gan_losses.py). They need
  more than (sr, gt) — D's logits, D's features, the EMA generator's output — so their terms have
  ``kind`` "adversarial", "feature_matching", "ema" and are computed by the GAN objective through
  ``term.loss``; ``total_loss`` refuses them.
- On every type, the ParagonSR2 fork's schedule keys ``start_iter``, ``target_iter``, ``target_weight``,
  ``disable_after``, ``schedule_type`` (``term.schedule``: the weight at an iteration, applied once).

Entries with ``loss_weight: 0`` are validated but not built (as traiNNer skips them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from autosr.errors import AutosrError, AutosrRuntimeError, did_you_mean
from autosr.train import gan_losses, perceptual, pixel_losses
from autosr.train.gan_losses import FeatureMatchingLoss, GANLoss, LDLLoss, LossSchedule
from autosr.train.loss_specs import check_option as _check_declared
from autosr.train.metrics import filter_valid, gaussian_window_1d

LossFn = Callable[[Tensor, Tensor], Tensor]

# SSIM constants as traiNNer's mssim_loss.py fixes them (not options there, so not options here).
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = 0.01**2  # (k1 · data_range)², data_range 1
SSIM_C2 = 0.03**2
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, always all 5 scales
# Luma weights of traiNNer's to_y_channel, per color_space: (offset, r, g, b) on [0, 1] RGB.
LUMA: dict[str, tuple[float, float, float, float]] = {
    "yiq": (0.0, 0.299, 0.587, 0.114),
    "ycbcr": (16.0 / 255.0, 65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0),
    "lhm": (0.0, 0.2989, 0.587, 0.114),
}

_SSIM_COMMON: dict[str, Any] = {"channels": 3, "downsample": False, "test_y_channel": True, "color_space": "yiq"}
OPTIONS: dict[str, dict[str, Any]] = {
    "l1loss": {"reduction": "mean"},
    "mseloss": {"reduction": "mean"},
    "charbonnierloss": {"reduction": "mean", "eps": 1e-12},
    "fftloss": {"reduction": "mean"},
    "ssimloss": {**_SSIM_COMMON, "crop_border": 0},
    "mssimloss": {**_SSIM_COMMON, "is_prod": True, "include_luminance": False},
    "cosimloss": {"cosim_lambda": 5.0},
    "fftmagloss": {},
    **gan_losses.OPTIONS,  # ganloss, featurematchingloss, ldlloss
}
# Types whose options are declared beside their code (pixel_losses.py, perceptual.py).
_DECLARED = {**pixel_losses.SPECS, **perceptual.SPECS}
OPTIONS.update({kind: {k: opt.default for k, opt in spec.items()} for kind, spec in _DECLARED.items()})
# Keys that older autosr or older traiNNer versions took, and where they went.
_MOVED: dict[str, str] = {
    "cosim": "traiNNer-redux's MSSIMLoss no longer has a cosine term: add a separate "
             "{type: cosimloss, loss_weight: …} entry instead",
    "cosim_lambda": "the cosine term is its own loss now: {type: cosimloss, cosim_lambda: 5.0, loss_weight: …}",
    "window_size": "traiNNer-redux fixes the SSIM window (11×11 gaussian, σ 1.5); remove the key",
    "sigma": "traiNNer-redux fixes the SSIM window (11×11 gaussian, σ 1.5); remove the key",
    "k1": "traiNNer-redux fixes SSIM's constants (k1 0.01, k2 0.03); remove the key",
    "k2": "traiNNer-redux fixes SSIM's constants (k1 0.01, k2 0.03); remove the key",
}


# What a term is computed from: "pixel" (sr, gt) by calling the term; the others through ``term.loss``:
# "adversarial" (GANLoss: D's logits on sr, and on gt for r3gan; it also owns D's loss), "feature_matching"
# (FeatureMatchingLoss: D's features of gt and sr), "ema" (LDLLoss: sr, the EMA generator's sr, gt).
TermKind = Literal["pixel", "adversarial", "feature_matching", "ema"]


@dataclass
class LossTerm:
    """One weighted loss. ``weight`` is mutable: the runtime scheduler changes it between steps."""

    name: str  # metric / TensorBoard key, e.g. "l1" (traiNNer's label without "l_g_")
    weight: float
    type: str  # the traiNNer type name, lower case, e.g. "l1loss"
    fn: LossFn = field(repr=False)
    kind: TermKind = "pixel"
    loss: GANLoss | FeatureMatchingLoss | LDLLoss | None = field(default=None, repr=False)  # non-pixel kinds
    schedule: LossSchedule | None = None  # the fork's start_iter … keys; None: the weight is constant

    def __call__(self, sr: Tensor, gt: Tensor) -> Tensor:
        """The unweighted loss, a float32 scalar tensor."""
        if self.kind != "pixel":
            raise AutosrRuntimeError(f"the {self.type} term is not a function of (sr, gt)",
                                     f"compute it through term.loss (kind {self.kind})")
        with torch.autocast(device_type=sr.device.type, enabled=False):
            return self.fn(sr.float(), gt.float())


def total_loss(terms: Sequence[LossTerm], sr: Tensor, gt: Tensor,
               weights: Tensor | None = None, iteration: int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ weight·loss over the terms, and each unweighted loss (detached).

    ``weights`` (one per term, on the device) replaces the terms' own weights: the runtime
    scheduler changes it between steps without a host sync. Returns tensors only (no ``.item()``),
    so a training step never waits on the device here.

    Pixel terms only: a GAN term (``kind`` other than "pixel") raises, it is never silently left out.
    A term with a schedule is weighted × ``schedule.factor(iteration)``, so it needs ``iteration``.
    """
    others = [t.name for t in terms if t.kind != "pixel"]
    if others:
        raise AutosrRuntimeError(f"total_loss computes pixel losses only, not {', '.join(others)}",
                                 "the GAN objective computes those terms through term.loss")
    values: dict[str, Tensor] = {}
    parts = []
    for i, term in enumerate(terms):
        value = term(sr, gt)
        values[term.name] = value.detach()
        weight = weights[i] if weights is not None else term.weight
        if term.schedule is not None:
            if iteration is None:
                raise AutosrRuntimeError(f"the {term.name} loss has a schedule (start_iter …): total_loss "
                                         "needs the iteration", "pass iteration=")
            weight = weight * term.schedule.factor(iteration)
        parts.append(value * weight)
    if not parts:
        raise AutosrRuntimeError("no loss to train on", "at least one loss needs a weight above 0")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total, values


# ----------------------------------------------------------------------------- loss functions
def _reduce(x: Tensor, reduction: str) -> Tensor:
    return x.mean() if reduction == "mean" else x.sum()


def fft_loss(sr: Tensor, gt: Tensor, reduction: str = "mean") -> Tensor:
    """traiNNer's FFTLoss: L1 over the real and imaginary parts of the unnormalised ``rfft2``.

    The transform is linear, so one FFT of the difference gives rfft2(sr) − rfft2(gt) (equal up
    to float rounding) for half the work. ``mean`` divides by 2·N·C·H·(W//2+1) — the element count
    of traiNNer's stacked (real, imag) tensor.
    """
    return _reduce(torch.view_as_real(torch.fft.rfft2(sr - gt)).abs(), reduction)


def fft_magnitude_loss(sr: Tensor, gt: Tensor) -> Tensor:
    """autosr's ``fftmagloss``: mean |‖rfft2(sr)‖ − ‖rfft2(gt)‖| with the orthonormal FFT.

    Phase-blind on purpose (the pixel loss already pins positions; this term penalises missing
    high-frequency energy, i.e. blur), and "ortho" keeps its scale independent of the patch size.
    """
    return (torch.fft.rfft2(sr, norm="ortho").abs() - torch.fft.rfft2(gt, norm="ortho").abs()).abs().mean()


def cosim_loss(sr: Tensor, gt: Tensor, cosim_lambda: float = 5.0) -> Tensor:
    """traiNNer's CosimLoss: λ · (1 − mean cosine similarity of the per-pixel colour vectors).

    Both images are clamped to [1e-12, 1] first (so black pixels have a direction), as traiNNer does.
    """
    sim = F.cosine_similarity(sr.clamp(1e-12, 1), gt.clamp(1e-12, 1), dim=1, eps=1e-20)
    return cosim_lambda * (1 - sim.mean())


def _prepare(x: Tensor, test_y_channel: bool, color_space: str) -> Tensor:
    """traiNNer's preprocess_rgb with data_range 1: clamp to [0, 1], then luma of 3-channel input."""
    x = x.clamp(0, 1)
    if test_y_channel and x.shape[1] == 3:
        offset, r, g, b = LUMA[color_space]
        x = r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]
        if offset:
            x = x + offset
    return x


def _ssim_parts(x: Tensor, y: Tensor, downsample: bool, include_luminance: bool) -> tuple[Tensor, Tensor]:
    """Per-image mean SSIM and mean contrast-structure, each (N,), as traiNNer's ``ssim()``.

    11×11 gaussian (σ 1.5) filtering, 'valid' unless the image is narrower than the window, then
    'same' with zero padding (traiNNer tests the width only and crashes when just the height is
    smaller; autosr pads then too). The cs map is clamped at 0 (traiNNer's relu) before the mean.
    """
    k = SSIM_WINDOW
    pad = min(x.shape[-2:]) < k  # decided before downsampling, as traiNNer does
    f = max(1, round(min(x.shape[-2:]) / 256))  # Python's round, as theirs
    if downsample and f > 1:
        x, y = F.avg_pool2d(x, kernel_size=f), F.avg_pool2d(y, kernel_size=f)
    if pad:
        lo, hi = (k - 1) // 2, k - 1 - (k - 1) // 2
        x, y = F.pad(x, (lo, hi, lo, hi)), F.pad(y, (lo, hi, lo, hi))
    c = x.shape[1]
    window = gaussian_window_1d(k, SSIM_SIGMA, x.dtype, x.device)
    moments = filter_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = moments.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    cs = F.relu((2 * (xy - mu_xy) + SSIM_C2) / ((xx - mu_xx) + (yy - mu_yy) + SSIM_C2))
    ssim_map = (2 * mu_xy + SSIM_C1) / (mu_xx + mu_yy + SSIM_C1) * cs if include_luminance else cs
    return ssim_map.mean(dim=(1, 2, 3)), cs.mean(dim=(1, 2, 3))


def ssim(x: Tensor, y: Tensor, *, test_y_channel: bool = True, color_space: str = "yiq",
         downsample: bool = False, crop_border: int = 0) -> Tensor:
    """Batch-mean SSIM as traiNNer's SSIMLoss computes it (its return value), differentiable."""
    if crop_border:
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        y = y[..., crop_border:-crop_border, crop_border:-crop_border]
    x, y = _prepare(x, test_y_channel, color_space), _prepare(y, test_y_channel, color_space)
    s, _ = _ssim_parts(x, y, downsample, include_luminance=True)
    return s.mean()


def ms_ssim(x: Tensor, y: Tensor, *, test_y_channel: bool = True, color_space: str = "yiq",
            downsample: bool = False, is_prod: bool = True, include_luminance: bool = False) -> Tensor:
    """Batch-mean MS-SSIM as traiNNer's MSSIMLoss computes it, clamped to [0, 1], differentiable.

    Always 5 scales with Wang et al.'s weights; between scales a 2×2 average pool that zero-pads an
    odd side by one pixel (count_include_pad), so small patches reach scales narrower than the
    window, which are filtered with zero padding. ``is_prod``: Π csᵢ^wᵢ (i < 5) · s₅^w₅ per image;
    otherwise Σ csᵢ·wᵢ + s₅·w₅ with the weights normalised. ``include_luminance`` false: s₅ = cs₅.
    """
    x, y = _prepare(x, test_y_channel, color_space), _prepare(y, test_y_channel, color_space)
    n = len(MS_SSIM_WEIGHTS)
    total = sum(MS_SSIM_WEIGHTS)
    score: Tensor | None = None
    for i, w in enumerate(MS_SSIM_WEIGHTS):
        s, cs = _ssim_parts(x, y, downsample, include_luminance)
        value = s if i == n - 1 else cs
        part = value**w if is_prod else value * (w / total)
        score = part if score is None else (score * part if is_prod else score + part)
        if i < n - 1:
            padding = (x.shape[2] % 2, x.shape[3] % 2)
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    assert score is not None
    return score.mean().clamp(0, 1)


def _make_fn(kind: str, opts: dict[str, Any]) -> LossFn:
    if kind == "l1loss":
        return lambda sr, gt: _reduce((sr - gt).abs(), opts["reduction"])
    if kind == "mseloss":
        return lambda sr, gt: _reduce((sr - gt) ** 2, opts["reduction"])
    if kind == "charbonnierloss":
        return lambda sr, gt: _reduce(((sr - gt) ** 2 + opts["eps"]).sqrt(), opts["reduction"])
    if kind == "fftloss":
        return lambda sr, gt: fft_loss(sr, gt, opts["reduction"])
    if kind == "ssimloss":
        ssim_opts = {k: opts[k] for k in ("test_y_channel", "color_space", "downsample", "crop_border")}
        return lambda sr, gt: 1 - ssim(sr, gt, **ssim_opts)
    if kind == "mssimloss":
        ms_opts = {k: opts[k] for k in ("test_y_channel", "color_space", "downsample", "is_prod",
                                        "include_luminance")}
        return lambda sr, gt: 1 - ms_ssim(sr, gt, **ms_opts)
    if kind == "cosimloss":
        return lambda sr, gt: cosim_loss(sr, gt, opts["cosim_lambda"])
    if kind == "fftmagloss":
        return fft_magnitude_loss
    if kind in pixel_losses.SPECS:
        return pixel_losses.make(kind, opts)
    if kind in perceptual.SPECS:
        return perceptual.make(kind, opts)
    raise AssertionError(kind)  # OPTIONS and this function list the same types


# ----------------------------------------------------------------------------- validation
def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_option(where: str, key: str, value: Any) -> Any:
    """Type and range of one option; returns the value normalised (ints → floats where floats)."""
    if key in gan_losses.KEYS:  # the GAN types' options and the schedule keys
        return gan_losses.check_option(where, key, value)
    if key == "reduction":
        if value not in ("mean", "sum"):
            hint = "traiNNer's 'none' gives a tensor, not a loss" if value == "none" else ""
            raise AutosrError(f"{where}: must be 'mean' or 'sum', got {value!r}", hint)
        return value
    if key in ("downsample", "test_y_channel", "is_prod", "include_luminance"):
        if not isinstance(value, bool):
            raise AutosrError(f"{where}: must be true or false, got {value!r}")
        return value
    if key == "color_space":
        if not isinstance(value, str) or value.lower() not in LUMA:
            raise AutosrError(f"{where}: must be one of {', '.join(LUMA)}, got {value!r}")
        return value.lower()
    if key in ("crop_border", "channels"):
        # traiNNer documents crop_border as 0.0: integral floats are accepted
        if not _is_number(value) or not float(value).is_integer() or value < (0 if key == "crop_border" else 1):
            raise AutosrError(f"{where}: must be an integer ≥ {0 if key == 'crop_border' else 1}, got {value!r}")
        return int(value)
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
    if kind.lower() == "r3ganloss":  # the fork registers R3GANLoss by that name too: ganloss with gan_type r3gan
        return "ganloss", {**entry, "gan_type": entry.get("gan_type", "r3gan")}
    known = list(OPTIONS)
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


# Keys the fork takes on any loss entry and then drops (traiNNer/losses/__init__.py pops them; its
# IterativeLossWrapper never receives loss_decay*, and warn_on_unused only logs): accepted, no effect.
INERT_KEYS = {
    "loss_decay": "the ParagonSR2 fork takes it from the loss entry and never applies it",
    "loss_decay_inflection": "the ParagonSR2 fork takes it from the loss entry and never applies it",
    "warn_on_unused": "the fork's log line when a scheduled weight reaches 0; autosr journals every weight change",
}


def inert_loss_keys(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(train.losses[i].key, why it has no effect) for every such key in the config."""
    return [(f"train.losses[{i}].{key}", why) for i, entry in enumerate(entries) if isinstance(entry, Mapping)
            for key, why in INERT_KEYS.items() if key in entry]


def _entry_options(i: int, kind: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {**OPTIONS.get(kind, {}), **gan_losses.SCHEDULE_DEFAULTS}
    opts = dict(allowed)
    for key, value in entry.items():
        if key in ("type", "loss_weight") or key in INERT_KEYS:
            continue
        where = f"train.losses[{i}].{key}"
        if key not in allowed:
            choices = ["type", "loss_weight", *allowed]
            hint = _MOVED.get(str(key), "") if kind in ("ssimloss", "mssimloss") else ""
            raise AutosrError(f"{where}: unknown key for {kind}{did_you_mean(str(key), choices)}",
                              hint or f"{kind} takes: {', '.join(choices)}")
        declared = _DECLARED.get(kind, {}).get(key)
        opts[key] = _check_declared(where, declared, value) if declared is not None else _check_option(where, key, value)
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
        given = [str(k) for k in entry]
        schedule = gan_losses.schedule_from(f"train.losses[{i}]", kind, weight, opts, given)
        if kind in gan_losses.OPTIONS:
            gan_losses.check_entry(f"train.losses[{i}]", kind, opts, given)
        if weight == 0:
            continue
        name = _unique_name(kind, taken)
        taken.add(name)
        if kind in gan_losses.OPTIONS:
            term_kind, loss = gan_losses.build(kind, opts)
            terms.append(LossTerm(name=name, weight=weight, type=kind, fn=_not_pixel, kind=term_kind, loss=loss,
                                  schedule=schedule))
            continue
        own = {k: v for k, v in opts.items() if k not in gan_losses.SCHEDULE_DEFAULTS}  # the loss's own options
        try:  # the network losses load their weights here: a missing file names the entry
            fn = _make_fn(kind, own)
        except AutosrError as exc:
            hint = f"{exc.hint}; or set its loss_weight to 0" if kind in perceptual.SPECS else exc.hint
            raise type(exc)(f"train.losses[{i}] ({kind}): {exc.message}", hint) from None
        terms.append(LossTerm(name=name, weight=weight, type=kind, fn=fn, schedule=schedule))
    if not terms:
        raise AutosrError("train.losses: every loss_weight is 0", "give at least one loss a weight > 0")
    _check_gan_entries(terms)
    return terms


def _not_pixel(sr: Tensor, gt: Tensor) -> Tensor:
    raise AssertionError("LossTerm.__call__ refuses non-pixel terms before calling fn")


def _check_gan_entries(terms: Sequence[LossTerm]) -> None:
    """One ganloss at most (traiNNer keys its losses by label: a second one replaces the first), and
    feature matching only beside one (the fork then builds a D that nothing trains)."""
    gans = [t for t in terms if t.kind == "adversarial"]
    if len(gans) > 1:
        raise AutosrError("train.losses: more than one ganloss", "keep one: the discriminator trains on one loss")
    if not gans and any(t.kind == "feature_matching" for t in terms):
        raise AutosrError("train.losses: featurematchingloss needs a ganloss entry with a weight > 0",
                          "the ganloss trains the discriminator whose features it matches")
