"""GAN building blocks: ``ganloss``, ``featurematchingloss``, ``ldlloss`` and the fork's per-loss schedule.

Each type computes what traiNNer-redux's class of that name computes, with its options and defaults:
upstream (the-database) ``traiNNer/losses/gan_loss.py`` and ``ldl_loss.py``; the ParagonSR2 fork (delafer)
``traiNNer/losses/r3gan_loss.py`` (``gan_type: r3gan``), ``feature_matching_loss.py`` and
``iterative_loss_wrapper.py`` (``start_iter`` … ``schedule_type``). docs/losses.md has the formulas.

The weights mean what upstream's mean, once:

- ``loss_weight`` multiplies the generator's term only. The discriminator's loss is never weighted
  (upstream: "loss_weight is always 1.0 for discriminators"). The fork differs: it multiplies the D loss
  of the classic types by the scheduled weight (but not r3gan's).
- A schedule gives the weight at an iteration, in ``loss_weight`` units (:class:`LossSchedule`): the
  term is ``raw × weight(iteration)``, or ``raw × runtime weight × factor(iteration)`` when a runtime
  scheduler owns the weight. The fork multiplies twice (``raw × weight(iteration) × loss_weight``), so
  its ``target_weight: 0.03`` on ``loss_weight: 1.0e-4`` trains at 3e-6; the configs plainly mean 0.03.

How a training objective uses them (per step, G first with D frozen, then D, as traiNNer):

    G step  fake_pred, fake_feats = net_d(sr, return_features=True)          # grads reach G through sr
            with torch.no_grad(): real_pred, real_feats = net_d(gt, return_features=True)  # r3gan / FM only
            g = gan.generator_loss(fake_pred, real_pred)                     # × term weight (× schedule)
              + fm(real_feats, fake_feats)                                   # × its weight
              + ldl(sr, sr_ema, gt)                                          # sr_ema: EMA generator, no grad
    D step  d_loss, stats = gan.discriminator_loss(net_d, gt, sr)            # sr detached inside; unweighted

Every loss is computed in float32 with autocast off, like autosr's pixel losses; the R1/R2 penalty
also runs D's forward in float32 (the fork does the same: fp16/bf16 second derivatives saturate).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from autosr.archs.discriminators import double_backward_safe
from autosr.errors import AutosrError, AutosrRuntimeError

GAN_TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge", "r3gan")
CRITERIA = ("l1", "l2", "charbonnier")
# The fork's names for featurematchingloss layers. Its "mid" is index -1: the LAST feature (munet's fused
# map), not the bottleneck its name suggests.
LAYER_NAMES = {"down1": 1, "down2": 2, "mid": -1}
SCHEDULE_TYPES = ("linear", "cosine", "step")

# Options and defaults, merged into autosr.train.losses.OPTIONS.
OPTIONS: dict[str, dict[str, Any]] = {
    "ganloss": {"gan_type": "vanilla", "real_label_val": 1.0, "fake_label_val": 0.0,
                "r1_weight": 3.0, "r2_weight": 3.0, "use_relu": False},
    "featurematchingloss": {"reduction": "mean", "layers": None, "criterion": "l1", "eps": 1e-6},
    "ldlloss": {"criterion": "l1"},
}
R3GAN_ONLY = ("r1_weight", "r2_weight", "use_relu")  # R3GANLoss's; upstream's GANLoss refuses them
# The fork's per-loss schedule keys, accepted on every loss entry (None: "as the fork defaults", below).
SCHEDULE_DEFAULTS: dict[str, Any] = {"start_iter": 0, "target_iter": None, "target_weight": None,
                                     "disable_after": None, "schedule_type": "linear"}
KEYS = frozenset({*(k for opts in OPTIONS.values() for k in opts), *SCHEDULE_DEFAULTS} - {"reduction", "eps"})


# ----------------------------------------------------------------------------- ganloss
def gradient_penalty(pred: Tensor, inputs: Tensor) -> Tensor:
    """E over the batch of ‖∇ₓ Σ D(x)‖² (R1 on real inputs, R2 on fake ones), differentiable w.r.t. D.

    ``pred`` must come from ``inputs`` (requires_grad) through D. The fork writes ‖∇‖₂²  as
    ``norm(2)**2``, whose derivative is NaN where the gradient is 0; the sum of squares is the same value.
    """
    (grad,) = torch.autograd.grad(pred.sum(), inputs, create_graph=True)
    return grad.to(torch.promote_types(grad.dtype, torch.float32)).pow(2).flatten(1).sum(1).mean()


def _logits(out: Any) -> Tensor:
    if not isinstance(out, Tensor):
        raise AutosrRuntimeError("the discriminator returned features besides its logits",
                                 "call it without return_features for the GAN loss")
    return out.float()


@dataclass(frozen=True)
class GANLoss:
    """traiNNer's ``ganloss``: upstream's GANLoss, or the fork's R3GANLoss when ``gan_type`` is r3gan.

    D and G terms (p = D's logits, r/f on real/fake, mean over every logit):

    ========== ============================================== ==========================================
    gan_type   D loss (real + fake)                           G term
    ========== ============================================== ==========================================
    vanilla    BCE(p_r, real_label) + BCE(p_f, fake_label)    BCE(p_f, real_label)
    lsgan      mean (p_r − real_label)² + mean (p_f − fake)²  mean (p_f − real_label)²
    wgan       −mean p_r + mean p_f                           −mean p_f
    wgan_soft… mean softplus(−p_r) + mean softplus(p_f)       mean softplus(−p_f)
    hinge      mean relu(1 − p_r) + mean relu(1 + p_f)        −mean p_f
    r3gan      ½ mean relu(1 − (p_r − m_f)) + ½ mean relu(1 + (p_f − m_r))   (m: batch means, detached)
               + ½ (r1_weight · E‖∇D(real)‖² + r2_weight · E‖∇D(fake)‖²)
               G: ½ mean relu(1 + (p_r − m_f)) + ½ mean relu(1 − (p_f − m_r))   (m not detached)
    ========== ============================================== ==========================================
    """

    gan_type: str = "vanilla"
    real_label_val: float = 1.0
    fake_label_val: float = 0.0
    r1_weight: float = 3.0
    r2_weight: float = 3.0

    @property
    def needs_real_for_generator(self) -> bool:
        """r3gan's G term also reads D(real) (computed without gradients: it does not depend on G)."""
        return self.gan_type == "r3gan"

    def generator_loss(self, fake_pred: Tensor, real_pred: Tensor | None = None) -> Tensor:
        """The generator's adversarial term, unweighted. ``fake_pred`` = D(sr) with the graph to G."""
        with torch.autocast(device_type=fake_pred.device.type, enabled=False):
            f = fake_pred.float()
            if self.gan_type == "vanilla":
                return F.binary_cross_entropy_with_logits(f, torch.full_like(f, self.real_label_val))
            if self.gan_type == "lsgan":
                return F.mse_loss(f, torch.full_like(f, self.real_label_val))
            if self.gan_type in ("wgan", "hinge"):
                return -f.mean()
            if self.gan_type == "wgan_softplus":
                return F.softplus(-f).mean()
            if real_pred is None:
                raise AutosrRuntimeError("r3gan's generator term needs D(real) too",
                                         "pass real_pred = net_d(gt) (no gradients needed)")
            r = real_pred.float()
            return 0.5 * (F.relu(1 + (r - f.mean())).mean() + F.relu(1 - (f - r.mean())).mean())

    def discriminator_terms(self, real_pred: Tensor, fake_pred: Tensor) -> tuple[Tensor, Tensor]:
        """D's adversarial loss on real and on fake logits, unweighted; D's loss is their sum (plus
        r3gan's penalties, which need the images: :meth:`discriminator_loss`)."""
        with torch.autocast(device_type=real_pred.device.type, enabled=False):
            r, f = real_pred.float(), fake_pred.float()
            if self.gan_type == "vanilla":
                return (F.binary_cross_entropy_with_logits(r, torch.full_like(r, self.real_label_val)),
                        F.binary_cross_entropy_with_logits(f, torch.full_like(f, self.fake_label_val)))
            if self.gan_type == "lsgan":
                return (F.mse_loss(r, torch.full_like(r, self.real_label_val)),
                        F.mse_loss(f, torch.full_like(f, self.fake_label_val)))
            if self.gan_type == "wgan":
                return -r.mean(), f.mean()
            if self.gan_type == "wgan_softplus":
                return F.softplus(-r).mean(), F.softplus(f).mean()
            if self.gan_type == "hinge":
                return F.relu(1 - r).mean(), F.relu(1 + f).mean()
            m_r, m_f = r.detach().mean(), f.detach().mean()
            return 0.5 * F.relu(1 - (r - m_f)).mean(), 0.5 * F.relu(1 + (f - m_r)).mean()

    def discriminator_loss(self, net_d: nn.Module, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """D's whole loss on one batch, unweighted: D on ``real`` and on ``fake`` (detached here), plus
        r3gan's R1/R2 penalties. Returns the loss and detached statistics: ``l_d_real``, ``l_d_fake``,
        ``out_d_real``, ``out_d_fake`` (traiNNer's log names) and, for r3gan, ``r1_penalty`` and
        ``r2_penalty`` (weight · E‖∇‖², as the fork logs them).

        With a penalty, both forwards run in float32 with autocast off and inside
        :func:`double_backward_safe`, on inputs that require grad; the same forward serves the adversarial
        term and the penalty (the fork runs D twice more for the penalties, on the same images).
        """
        fake = fake.detach()
        penalised = self.gan_type == "r3gan" and (self.r1_weight > 0 or self.r2_weight > 0)
        stats: dict[str, Tensor] = {}
        if penalised:
            dtype = torch.promote_types(real.dtype, torch.float32)  # half types → float32
            real_in = real.detach().to(dtype).requires_grad_(self.r1_weight > 0)
            fake_in = fake.to(dtype).requires_grad_(self.r2_weight > 0)
            with torch.autocast(device_type=real.device.type, enabled=False), double_backward_safe(net_d):
                real_pred, fake_pred = _logits(net_d(real_in)), _logits(net_d(fake_in))
                zero = real_pred.new_zeros(())
                r1 = self.r1_weight * gradient_penalty(real_pred, real_in) if self.r1_weight > 0 else zero
                r2 = self.r2_weight * gradient_penalty(fake_pred, fake_in) if self.r2_weight > 0 else zero
            penalty = 0.5 * (r1 + r2)
            stats |= {"r1_penalty": r1.detach(), "r2_penalty": r2.detach()}
        else:
            real_pred, fake_pred = _logits(net_d(real)), _logits(net_d(fake))
            penalty = None
        l_real, l_fake = self.discriminator_terms(real_pred, fake_pred)
        loss = l_real + l_fake if penalty is None else l_real + l_fake + penalty
        stats |= {"l_d_real": l_real.detach(), "l_d_fake": l_fake.detach(),
                  "out_d_real": real_pred.detach().mean(), "out_d_fake": fake_pred.detach().mean()}
        return loss, stats


# ----------------------------------------------------------------------------- featurematchingloss
def _criterion(diff: Tensor, criterion: str, eps: float) -> Tensor:
    if criterion == "l1":
        return diff.abs().mean()
    if criterion == "l2":
        return (diff * diff).mean()
    return torch.sqrt(diff * diff + eps).mean()


@dataclass(frozen=True)
class FeatureMatchingLoss:
    """The fork's ``featurematchingloss``: per selected layer, the criterion's mean over the elements of
    D(real)'s features (detached) − D(sr)'s; then their mean (``reduction: mean``) or sum over layers.

    ``layers``: indices into D's feature list (negative from the end) or the fork's names ``down1`` (1),
    ``down2`` (2), ``mid`` (−1, the last feature); ``None`` uses every feature.
    """

    reduction: str = "mean"
    layers: tuple[int | str, ...] | None = None
    criterion: str = "l1"
    eps: float = 1e-6

    def __call__(self, real_feats: Sequence[Tensor], fake_feats: Sequence[Tensor]) -> Tensor:
        if len(real_feats) != len(fake_feats) or not real_feats:
            raise AutosrRuntimeError(f"featurematchingloss got {len(real_feats)} real and {len(fake_feats)} fake "
                                     "features", "call the discriminator with return_features=True on both")
        n = len(real_feats)
        indices = list(range(n))
        if self.layers is not None:
            indices = [LAYER_NAMES[layer] if isinstance(layer, str) else layer for layer in self.layers]
            for layer, i in zip(self.layers, indices, strict=True):
                if not -n <= i < n:
                    raise AutosrRuntimeError(f"featurematchingloss layer {layer!r} is out of range: the "
                                             f"discriminator returns {n} features", f"use indices 0 … {n - 1}")
        with torch.autocast(device_type=fake_feats[0].device.type, enabled=False):
            parts = []
            for i in indices:
                real, fake = real_feats[i], fake_feats[i]
                if real.shape != fake.shape:
                    raise AutosrRuntimeError(f"featurematchingloss: feature {i} has shape {tuple(real.shape)} on "
                                             f"real and {tuple(fake.shape)} on fake", "give D equal-sized images")
                parts.append(_criterion(real.detach().float() - fake.float(), self.criterion, self.eps))
            total = torch.stack(parts).sum()
            return total / len(parts) if self.reduction == "mean" else total


# ----------------------------------------------------------------------------- ldlloss
def _local_variance(x: Tensor, ksize: int) -> Tensor:
    """Unbiased variance over each ksize × ksize window (reflect-padded), one value per pixel.

    traiNNer unfolds the windows (ksize² copies of the map); the moments here are box filters in float64,
    which keeps E[x²] − E[x]² exact to float32 precision without the copies.
    """
    pad = (ksize - 1) // 2
    x64 = F.pad(x.double(), (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(x64, ksize, stride=1)
    mean_sq = F.avg_pool2d(x64 * x64, ksize, stride=1)
    n = ksize * ksize
    return ((mean_sq - mean * mean) * (n / (n - 1))).clamp_min(0).to(x.dtype)


def artifact_map(gt: Tensor, sr: Tensor, sr_ema: Tensor, ksize: int = 7) -> Tensor:
    """LDL's refined artifact map (Liang et al., CVPR 2022; traiNNer's get_refined_artifact_map), (N, 1, H, W):

        r = Σ_c |gt − sr|,  r_ema = Σ_c |gt − sr_ema|
        map = var(r over C, H, W; unbiased)^(1/5) · local 7×7 unbiased variance of r,  0 where r < r_ema

    Gradients flow through ``sr`` into the map, as in traiNNer. The patch variance is floored at 1e-20
    before the 5th root: traiNNer's gradient there is inf × 0 = NaN when r is constant (its value is 0
    either way, since the local variances are then 0 too).
    """
    residual_ema = (gt - sr_ema.detach()).abs().sum(1, keepdim=True)
    residual = (gt - sr).abs().sum(1, keepdim=True)
    patch = torch.var(residual, dim=(1, 2, 3), keepdim=True).clamp_min(1e-20) ** 0.2
    weight = patch * _local_variance(residual, ksize)
    return torch.where(residual < residual_ema, torch.zeros_like(weight), weight)


@dataclass(frozen=True)
class LDLLoss:
    """traiNNer's ``ldlloss``: criterion(map · sr, map · gt) with :func:`artifact_map`; the criterion's
    mean is over every element (charbonnier: eps 1e-12, as traiNNer's charbonnier_loss)."""

    criterion: str = "l1"

    def __call__(self, sr: Tensor, sr_ema: Tensor, gt: Tensor) -> Tensor:
        with torch.autocast(device_type=sr.device.type, enabled=False):
            sr, sr_ema, gt = sr.float(), sr_ema.float(), gt.float()
            weight = artifact_map(gt, sr, sr_ema)
            return _criterion(weight * sr - weight * gt, self.criterion, 1e-12)


# ----------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class LossSchedule:
    """The fork's per-loss schedule (IterativeLossWrapper), as the weight at an iteration:

    - 0 before ``start_iter`` and from ``disable_after`` on;
    - ``target_weight`` from ``start_iter`` on when ``target_iter`` ≤ ``start_iter``;
    - otherwise from ``loss_weight`` at ``start_iter`` to ``target_weight`` at ``target_iter`` — ``linear``,
      ``cosine`` (½(1 − cos πp) easing) or ``step`` (``loss_weight`` until ``target_iter``, then the
      target) — and ``target_weight`` after.

    ``iteration`` is traiNNer's ``current_iter``: the first training step is 1. Defaults as the fork's:
    ``target_iter`` = ``start_iter``, ``target_weight`` = ``loss_weight``, never disabled.
    """

    loss_weight: float
    start_iter: int = 0
    target_iter: int | None = None
    target_weight: float | None = None
    disable_after: int | None = None
    schedule_type: str = "linear"

    def weight(self, iteration: int) -> float:
        """The term's weight at ``iteration``, in loss_weight units (the fork's effective weight)."""
        start = self.start_iter
        target_iter = start if self.target_iter is None else self.target_iter
        target = self.loss_weight if self.target_weight is None else self.target_weight
        if (self.disable_after is not None and iteration >= self.disable_after) or iteration < start:
            return 0.0
        if target_iter <= start:
            return target
        if self.schedule_type == "step":
            return target if iteration >= target_iter else self.loss_weight
        p = min(1.0, (iteration - start) / (target_iter - start))
        if self.schedule_type == "cosine":
            p = 0.5 * (1 - math.cos(math.pi * p))
        return self.loss_weight + (target - self.loss_weight) * p

    def factor(self, iteration: int) -> float:
        """weight(iteration) / loss_weight: the multiplier for a weight the runtime scheduler may have moved."""
        return self.weight(iteration) / self.loss_weight


# ----------------------------------------------------------------------------- config
def _integer(where: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer() or value < minimum:
        raise AutosrError(f"{where}: must be an integer ≥ {minimum}, got {value!r}",
                          "write iterations as plain integers, e.g. 10000 (PyYAML reads 1e4 as a string)")
    return int(value)


def check_option(where: str, key: str, value: Any) -> Any:
    """Type and range of one option of the GAN types or of a schedule key (those in ``KEYS``)."""
    if key in ("gan_type", "criterion", "schedule_type"):
        choices = {"gan_type": GAN_TYPES, "criterion": CRITERIA, "schedule_type": SCHEDULE_TYPES}[key]
        if not isinstance(value, str) or value.lower() not in choices:
            raise AutosrError(f"{where}: must be one of {', '.join(choices)}, got {value!r}")
        return value.lower()
    if key == "use_relu":
        if not isinstance(value, bool):
            raise AutosrError(f"{where}: must be true or false, got {value!r}")
        return value
    if key == "layers":
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise AutosrError(f"{where}: must be a list of feature indices or names, e.g. [1, 2, mid], got {value!r}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | str) or (isinstance(item, str) and item not in LAYER_NAMES):
                raise AutosrError(f"{where}: {item!r} is neither an integer index nor one of {', '.join(LAYER_NAMES)}")
        return tuple(value)
    if key in ("start_iter", "target_iter", "disable_after"):
        return None if value is None else _integer(where, value, 0 if key == "start_iter" else 1)
    if key == "target_weight" and value is None:
        return None
    # real_label_val, fake_label_val: any number; r1_weight, r2_weight, target_weight: ≥ 0
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AutosrError(f"{where}: must be a number, got {value!r}",
                          "write floats so YAML reads them as numbers, e.g. 3.0e-2")
    if key not in ("real_label_val", "fake_label_val") and value < 0:
        raise AutosrError(f"{where}: must be ≥ 0, got {value!r}")
    return float(value)


def schedule_from(where: str, kind: str, loss_weight: float, opts: Mapping[str, Any],
                  given: Sequence[str]) -> LossSchedule | None:
    """The entry's schedule (``None`` when it sets no schedule key), its keys checked against each other."""
    if not any(k in SCHEDULE_DEFAULTS for k in given):
        return None
    s = LossSchedule(loss_weight=loss_weight, **{k: opts[k] for k in SCHEDULE_DEFAULTS})
    if s.target_iter is not None and s.target_iter < s.start_iter:
        raise AutosrError(f"{where}.target_iter: {s.target_iter} is before start_iter {s.start_iter}")
    if s.disable_after is not None and s.disable_after <= s.start_iter:
        raise AutosrError(f"{where}.disable_after: {s.disable_after} ≤ start_iter {s.start_iter}: the {kind} "
                          "entry would never be active", "remove the entry, or disable it later")
    if loss_weight == 0 and s.target_weight:
        raise AutosrError(f"{where}.loss_weight: 0 disables the entry (as in traiNNer), so its target_weight "
                          f"{s.target_weight} would never apply",
                          "set loss_weight to the weight wanted at start_iter, e.g. 1.0e-4")
    return s


def check_entry(where: str, kind: str, opts: Mapping[str, Any], given: Sequence[str]) -> None:
    """Checks between a GAN entry's options (after each one's own check)."""
    if kind == "ganloss" and opts["gan_type"] != "r3gan":
        for key in R3GAN_ONLY:
            if key in given:
                raise AutosrError(f"{where}.{key}: only gan_type r3gan takes it (traiNNer's GANLoss refuses "
                                  f"it too), got gan_type {opts['gan_type']}", f"remove {key} or set gan_type: r3gan")


def build(kind: str, opts: Mapping[str, Any]) -> tuple[Literal["adversarial", "feature_matching", "ema"],
                                                       GANLoss | FeatureMatchingLoss | LDLLoss]:
    """(what the term needs, the loss object) for a GAN type of ``OPTIONS``."""
    if kind == "ganloss":
        return "adversarial", GANLoss(gan_type=opts["gan_type"], real_label_val=opts["real_label_val"],
                                      fake_label_val=opts["fake_label_val"], r1_weight=opts["r1_weight"],
                                      r2_weight=opts["r2_weight"])
    if kind == "featurematchingloss":
        return "feature_matching", FeatureMatchingLoss(reduction=opts["reduction"], layers=opts["layers"],
                                                       criterion=opts["criterion"], eps=opts["eps"])
    if kind == "ldlloss":
        return "ema", LDLLoss(criterion=opts["criterion"])
    raise AssertionError(kind)
