"""GAN losses (ganloss incl. r3gan's R1/R2, featurematchingloss, ldlloss) and the per-loss schedule.

Expected values are traiNNer-redux's formulas (upstream traiNNer/losses/gan_loss.py and ldl_loss.py; the
ParagonSR2 fork's r3gan_loss.py, feature_matching_loss.py, iterative_loss_wrapper.py) re-stated by hand
in NumPy, never by calling the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from autosr.archs.discriminators import DySample, SelfAttention, build_discriminator, double_backward_safe
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.train.gan_losses import (
    FeatureMatchingLoss,
    GANLoss,
    LDLLoss,
    LossSchedule,
    gradient_penalty,
)
from autosr.train.losses import OPTIONS, build_losses, total_loss

# ----------------------------------------------------------------------------- logits and their numpy maths
REAL = np.array([0.3, -1.2, 2.5, 0.8, -0.1, 1.4, 0.05, -2.0]).reshape(2, 1, 2, 2)
FAKE = np.array([-0.4, 1.7, -2.2, 0.1, 0.9, -0.7, 0.35, -1.1]).reshape(2, 1, 2, 2)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def bce(x: np.ndarray, target: float) -> float:
    """nn.BCEWithLogitsLoss: mean of −t·log σ(x) − (1 − t)·log(1 − σ(x))."""
    s = 1 / (1 + np.exp(-x))
    return float(np.mean(-target * np.log(s) - (1 - target) * np.log(1 - s)))


def np_terms(kind: str, r: np.ndarray, f: np.ndarray, rl: float = 1.0, fl: float = 0.0) -> tuple[float, float, float]:
    """(D real term, D fake term, G term) as traiNNer computes them."""
    if kind == "vanilla":
        return bce(r, rl), bce(f, fl), bce(f, rl)
    if kind == "lsgan":
        return float(np.mean((r - rl) ** 2)), float(np.mean((f - fl) ** 2)), float(np.mean((f - rl) ** 2))
    if kind == "wgan":
        return -r.mean(), f.mean(), -f.mean()
    if kind == "wgan_softplus":
        return float(softplus(-r).mean()), float(softplus(f).mean()), float(softplus(-f).mean())
    if kind == "hinge":
        return float(relu(1 - r).mean()), float(relu(1 + f).mean()), -f.mean()
    # r3gan (the fork's R3GANLoss): relativistic average hinge, ½ each
    d_real = 0.5 * relu(1 - (r - f.mean())).mean()
    d_fake = 0.5 * relu(1 + (f - r.mean())).mean()
    g = 0.5 * (relu(1 + (r - f.mean())).mean() + relu(1 - (f - r.mean())).mean())
    return float(d_real), float(d_fake), float(g)


def t(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32, requires_grad=grad)


@pytest.mark.parametrize("kind", ["vanilla", "lsgan", "wgan", "wgan_softplus", "hinge", "r3gan"])
@pytest.mark.parametrize("labels", [(1.0, 0.0), (0.9, 0.1)])
def test_d_and_g_terms_equal_traiNNer_formulas(kind: str, labels: tuple[float, float]) -> None:
    rl, fl = labels
    gan = GANLoss(gan_type=kind, real_label_val=rl, fake_label_val=fl)
    want_real, want_fake, want_g = np_terms(kind, REAL, FAKE, rl, fl)
    d_real, d_fake = gan.discriminator_terms(t(REAL), t(FAKE))
    assert d_real.item() == pytest.approx(want_real, rel=1e-6, abs=1e-7)
    assert d_fake.item() == pytest.approx(want_fake, rel=1e-6, abs=1e-7)
    assert gan.generator_loss(t(FAKE), t(REAL)).item() == pytest.approx(want_g, rel=1e-6, abs=1e-7)


def test_r3gan_generator_gradient_flows_through_the_fake_mean() -> None:
    """G's r3gan term reads mean(D(fake)) inside the real half too (not detached, as the fork): its
    gradient w.r.t. the fake logits is the numpy central difference of the formula."""
    fake = t(FAKE, grad=True)
    GANLoss(gan_type="r3gan").generator_loss(fake, t(REAL)).backward()
    eps, want = 1e-6, np.zeros_like(FAKE)
    for i in np.ndindex(FAKE.shape):
        up, down = FAKE.copy(), FAKE.copy()
        up[i] += eps
        down[i] -= eps
        want[i] = (np_terms("r3gan", REAL, up)[2] - np_terms("r3gan", REAL, down)[2]) / (2 * eps)
    assert fake.grad is not None
    assert np.allclose(fake.grad.numpy(), want, atol=1e-5)
    # the D terms detach the other side's mean: the real term has no gradient w.r.t. the fake logits
    fake.grad = None
    d_real, _ = GANLoss(gan_type="r3gan").discriminator_terms(t(REAL), fake)
    assert not d_real.requires_grad


def test_r3gan_generator_needs_the_real_logits() -> None:
    with pytest.raises(AutosrRuntimeError, match="D\\(real\\)"):
        GANLoss(gan_type="r3gan").generator_loss(t(FAKE))
    assert GANLoss(gan_type="r3gan").needs_real_for_generator and not GANLoss().needs_real_for_generator


class LinearD(nn.Module):
    """D(x) = w·x + b per pixel: ∇ₓ Σ D = w at every pixel, so E‖∇‖² = H·W·‖w‖² exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.5, -0.3, 0.2]).view(1, 3, 1, 1))
            self.conv.bias.fill_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_r1_r2_penalty_by_hand_on_a_linear_discriminator() -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(2, 3, 4, 5, generator=g), torch.rand(2, 3, 4, 5, generator=g)
    net = LinearD()
    w2 = 0.5**2 + 0.3**2 + 0.2**2
    loss, stats = GANLoss(gan_type="r3gan", r1_weight=3.0, r2_weight=1.5).discriminator_loss(net, real, fake)
    assert stats["r1_penalty"].item() == pytest.approx(3.0 * 20 * w2, rel=1e-6)
    assert stats["r2_penalty"].item() == pytest.approx(1.5 * 20 * w2, rel=1e-6)
    # D's loss = relativistic hinge + ½(r1 + r2): the hinge from numpy on D's logits
    r, f = (net(x).detach().double().numpy() for x in (real, fake))
    d_real, d_fake, _ = np_terms("r3gan", r, f)
    assert loss.item() == pytest.approx(d_real + d_fake + 0.5 * (3.0 + 1.5) * 20 * w2, rel=1e-6)
    # the penalty reaches D's weights: ∂/∂w ½(3 + 1.5)·H·W·‖w‖² = 4.5·20·w
    loss.backward()
    with_penalty = net.conv.weight.grad.clone()
    net.zero_grad()
    GANLoss(gan_type="r3gan", r1_weight=0.0, r2_weight=0.0).discriminator_loss(net, real, fake)[0].backward()
    assert torch.allclose(with_penalty - net.conv.weight.grad, 4.5 * 20 * net.conv.weight.detach(), rtol=1e-5)
    assert "r1_penalty" not in GANLoss(gan_type="hinge").discriminator_loss(net, real, fake)[1]


def test_d_loss_is_never_weighted_and_stats_are_traiNNer_s() -> None:
    """Upstream: loss_weight is for G only. Two entries with different weights give the same D loss."""
    net, g = LinearD(), torch.Generator().manual_seed(1)
    real, fake = torch.rand(1, 3, 4, 4, generator=g), torch.rand(1, 3, 4, 4, generator=g, requires_grad=True)
    (a,), (b,) = (build_losses([{"type": "ganloss", "loss_weight": w, "gan_type": "hinge"}]) for w in (0.1, 1.0))
    assert isinstance(a.loss, GANLoss) and isinstance(b.loss, GANLoss)
    la, stats = a.loss.discriminator_loss(net, real, fake)
    lb, _ = b.loss.discriminator_loss(net, real, fake)
    assert la.item() == lb.item()
    want_real, want_fake, _ = np_terms("hinge", net(real).detach().double().numpy(), net(fake).detach().double().numpy())
    assert la.item() == pytest.approx(want_real + want_fake, rel=1e-6)
    assert set(stats) == {"l_d_real", "l_d_fake", "out_d_real", "out_d_fake"}
    la.backward()
    assert fake.grad is None  # D's step never reaches G: the fake batch is detached


# ----------------------------------------------------------------------------- R1/R2 on the real discriminators
# munet with two levels: a 16 px input keeps a 4 × 4 bottleneck, so its attention has 16 tokens to weigh
SMALL = {"dunet": {"num_feat": 4}, "unetdiscriminatorsn": {"num_feat": 8}, "munet": {"num_feat": 8, "ch_mult": [1, 2]}}
# Parameters the input-gradient cannot depend on: the logit convolution's bias; a bias followed only by
# piecewise-linear layers (LeakyReLU: ∇ₓ depends on it through the activation pattern alone, which is
# locally constant — dunet's Mish is smooth); munet's key bias (a constant added to every key shifts each
# query's scores equally: softmax ignores it).
UNTOUCHED = {"dunet": {"end_conv.4.bias"}, "unetdiscriminatorsn": {"conv0.bias", "conv9.bias"},
             "munet": {"out_conv.bias", "self_attn.key.bias"}}


def small_d(kind: str) -> nn.Module:
    torch.manual_seed(0)
    net = build_discriminator({"type": kind, **SMALL[kind]}).double()
    with torch.no_grad():
        for _ in range(10):  # power iterations: the old-style spectral norm starts from random u, v
            net(torch.rand(1, 3, 16, 16, dtype=torch.float64))
    net.eval()  # spectral norm's u, v fixed from here
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, DySample):
                m.scope.weight.normal_(0, 0.5)  # zero at init: let the learned scope act
        for name, p in net.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)  # munet's attention starts switched off (γ = 0)
    return net


def penalty_grads(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """∇θ E‖∇ₓD(x)‖² for every trainable parameter (zeros where autograd has none)."""
    net.zero_grad()
    inputs = x.clone().requires_grad_(True)
    with double_backward_safe(net):
        gradient_penalty(net(inputs), inputs).backward()
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for n, p in net.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("kind", ["dunet", "unetdiscriminatorsn", "munet"])
def test_r1_r2_change_every_discriminator_parameter_they_can(kind: str) -> None:
    net = small_d(kind)
    g = torch.Generator().manual_seed(2)
    real = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    fake = torch.rand(1, 3, 16, 16, generator=g, dtype=torch.float64)
    pen_real, pen_fake = penalty_grads(net, real), penalty_grads(net, fake)
    scale = max(float(v.abs().max()) for v in pen_real.values())
    untouched = {n for n, v in pen_real.items() if float(v.abs().max()) <= 1e-9 * scale}
    assert untouched == UNTOUCHED[kind]

    def d_grads(gan: GANLoss) -> dict[str, torch.Tensor]:
        net.zero_grad()
        gan.discriminator_loss(net, real, fake)[0].backward()
        return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}

    with_pen = d_grads(GANLoss(gan_type="r3gan"))  # r1_weight = r2_weight = 3 (the fork's defaults)
    without = d_grads(GANLoss(gan_type="r3gan", r1_weight=0.0, r2_weight=0.0))
    for name, base in without.items():  # D's gradient moves by exactly ½(3·∇R1 + 3·∇R2)
        want = 1.5 * (pen_real[name] + pen_fake[name])
        assert torch.allclose(with_pen[name] - base, want, atol=1e-6 * scale, rtol=1e-4), name


def attention_d() -> nn.Module:
    """munet's attention block between two convolutions, float64 throughout. (The whole munet's penalty
    is dominated by its FFT branch, which runs in float32 as the fork's does: too noisy for finite
    differences of the attention's small share.)"""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.Mish(), SelfAttention(channels=16),
                        nn.Conv2d(16, 1, 3, padding=1)).double().eval()
    with torch.no_grad():
        net[2].gamma.fill_(0.5)
    return net


@pytest.mark.parametrize(("kind", "name", "index"), [
    ("dunet", "up1.0.offset.weight", (3, 5, 0, 0)),  # inside DySample: the sampling positions
    ("dunet", "up2.0.scope.weight", (1, 2, 0, 0)),
    ("attention", "2.query.parametrizations.weight.original", (0, 1, 0, 0)),  # munet's attention
    ("attention", "2.key.parametrizations.weight.original", (1, 3, 0, 0)),
    ("unetdiscriminatorsn", "conv4.weight_orig", (1, 2, 1, 1)),
])
def test_penalty_gradient_equals_finite_differences(kind: str, name: str, index: tuple[int, ...]) -> None:
    """The second-order path is computed, not silently dropped (torch's fallback for an op without a
    double backward can leave a zero or a partial gradient)."""
    net = attention_d() if kind == "attention" else small_d(kind)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    param = dict(net.named_parameters())[name]
    want_grad = penalty_grads(net, x)[name][index].item()

    def penalty() -> float:
        inputs = x.clone().requires_grad_(True)
        with double_backward_safe(net):
            return gradient_penalty(net(inputs), inputs).item()

    eps = 1e-6
    with torch.no_grad():
        param[index] += eps
    up = penalty()
    with torch.no_grad():
        param[index] -= 2 * eps
    down = penalty()
    assert want_grad == pytest.approx((up - down) / (2 * eps), rel=1e-4)
    assert abs(want_grad) > 1e-6


def test_penalty_runs_in_float32_under_autocast() -> None:
    net = LinearD()
    real, fake = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = GANLoss(gan_type="r3gan").discriminator_loss(net, real, fake)
    assert loss.dtype == torch.float32
    assert stats["r1_penalty"].item() == pytest.approx(3.0 * 64 * (0.5**2 + 0.3**2 + 0.2**2), rel=1e-6)


# ----------------------------------------------------------------------------- featurematchingloss
def feats(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 1, 8, 8, generator=g)]


def np_fm(real: list[torch.Tensor], fake: list[torch.Tensor], idx: list[int], criterion: str, reduction: str,
          eps: float = 1e-6) -> float:
    parts = []
    for i in idx:
        d = real[i].double().numpy() - fake[i].double().numpy()
        parts.append({"l1": np.abs(d).mean(), "l2": (d * d).mean(), "charbonnier": np.sqrt(d * d + eps).mean()}[criterion])
    return float(np.mean(parts) if reduction == "mean" else np.sum(parts))


@pytest.mark.parametrize("criterion", ["l1", "l2", "charbonnier"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_feature_matching_equals_the_fork_s_formula(criterion: str, reduction: str) -> None:
    real, fake = feats(0), feats(1)
    fm = FeatureMatchingLoss(criterion=criterion, reduction=reduction)
    assert fm(real, fake).item() == pytest.approx(np_fm(real, fake, [0, 1, 2], criterion, reduction), rel=1e-6)
    # layers: the fork's names (down1 = 1, mid = −1: the last feature) and indices
    fm = FeatureMatchingLoss(criterion=criterion, reduction=reduction, layers=("down1", "mid", 0))
    assert fm(real, fake).item() == pytest.approx(np_fm(real, fake, [1, 2, 0], criterion, reduction), rel=1e-6)


def test_feature_matching_detaches_real_and_checks_layers() -> None:
    real = [f.requires_grad_(True) for f in feats(0)]
    fake = [f.requires_grad_(True) for f in feats(1)]
    FeatureMatchingLoss()(real, fake).backward()
    assert all(r.grad is None for r in real) and all(f.grad is not None for f in fake)
    with pytest.raises(AutosrRuntimeError, match="out of range"):
        FeatureMatchingLoss(layers=(3,))(feats(0), feats(1))
    with pytest.raises(AutosrRuntimeError, match="return_features"):
        FeatureMatchingLoss()(feats(0), feats(1)[:2])


# ----------------------------------------------------------------------------- ldlloss
def np_ldl(sr: np.ndarray, ema: np.ndarray, gt: np.ndarray, criterion: str) -> float:
    """traiNNer's get_refined_artifact_map + LDLLoss: torch.var is unbiased; reflect padding."""
    r_ema = np.abs(gt - ema).sum(1, keepdims=True)
    r = np.abs(gt - sr).sum(1, keepdims=True)
    patch = r.reshape(r.shape[0], -1).var(axis=1, ddof=1).reshape(-1, 1, 1, 1) ** 0.2
    padded = np.pad(r, ((0, 0), (0, 0), (3, 3), (3, 3)), mode="reflect")
    windows = sliding_window_view(padded, (7, 7), axis=(2, 3))
    local = windows.reshape(*windows.shape[:4], 49).var(axis=-1, ddof=1)
    weight = patch * local
    weight[r < r_ema] = 0
    d = weight * sr - weight * gt
    return float({"l1": np.abs(d).mean(), "l2": (d * d).mean(), "charbonnier": np.sqrt(d * d + 1e-12).mean()}[criterion])


@pytest.mark.parametrize("criterion", ["l1", "l2", "charbonnier"])
def test_ldl_equals_traiNNer_formula(criterion: str) -> None:
    g = torch.Generator().manual_seed(5)
    gt = torch.rand(2, 3, 12, 10, generator=g)
    sr = (gt + 0.15 * torch.randn(gt.shape, generator=g)).requires_grad_(True)
    ema = gt + 0.1 * torch.randn(gt.shape, generator=g)
    value = LDLLoss(criterion=criterion)(sr, ema, gt)
    want = np_ldl(*(x.detach().double().numpy() for x in (sr, ema, gt)), criterion)
    assert want > 1e-8 and value.item() > 1e-8
    assert value.item() == pytest.approx(want, rel=1e-5)
    value.backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0


def test_ldl_is_zero_where_the_ema_is_worse_and_finite_on_flat_residuals() -> None:
    gt = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(6))
    sr = (gt + 0.05).requires_grad_(True)
    assert LDLLoss()(sr, gt + 0.2, gt).item() == 0.0  # every pixel closer than the EMA: no artefact
    value = LDLLoss()(sr, gt, gt)  # constant residual: variance 0 (traiNNer's gradient is NaN here)
    value.backward()
    assert value.item() < 1e-12 and sr.grad is not None and torch.isfinite(sr.grad).all()


# ----------------------------------------------------------------------------- schedule
@pytest.mark.parametrize(("schedule", "table"), [
    # the fork's ParagonSR2 GAN entry: 1e-4 from 10k ramping to 0.03 at 25k (here /1000)
    (LossSchedule(loss_weight=1e-4, start_iter=10, target_iter=25, target_weight=0.03),
     {0: 0.0, 9: 0.0, 10: 1e-4, 16: 1e-4 + (0.03 - 1e-4) * 6 / 15, 25: 0.03, 10_000: 0.03}),
    (LossSchedule(loss_weight=0.8, target_iter=20, target_weight=0.1, schedule_type="cosine"),
     {1: 0.8 + (0.1 - 0.8) * 0.5 * (1 - math.cos(math.pi / 20)), 10: 0.45, 20: 0.1, 21: 0.1}),
    (LossSchedule(loss_weight=0.5, start_iter=5, target_iter=8, target_weight=0.2, schedule_type="step"),
     {4: 0.0, 5: 0.5, 7: 0.5, 8: 0.2}),
    (LossSchedule(loss_weight=0.5, disable_after=50), {1: 0.5, 49: 0.5, 50: 0.0, 51: 0.0}),
    (LossSchedule(loss_weight=0.5, start_iter=20, target_weight=0.08), {19: 0.0, 20: 0.08, 99: 0.08}),  # no ramp
    (LossSchedule(loss_weight=0.5, start_iter=3, target_iter=7, target_weight=0.7, disable_after=6),
     {2: 0.0, 3: 0.5, 5: 0.6, 6: 0.0}),
])
def test_schedule_weight_at_boundaries(schedule: LossSchedule, table: dict[int, float]) -> None:
    for iteration, weight in table.items():
        assert schedule.weight(iteration) == pytest.approx(weight, abs=1e-12), iteration
        assert schedule.factor(iteration) == pytest.approx(weight / schedule.loss_weight, abs=1e-12)


def test_schedule_applies_once_in_total_loss() -> None:
    """raw × weight(iteration): the fork's raw × weight(iteration) × loss_weight is not repeated."""
    g = torch.Generator().manual_seed(7)
    gt = torch.rand(1, 3, 8, 8, generator=g)
    sr = gt + 0.1 * torch.randn(gt.shape, generator=g)
    (term,) = build_losses([{"type": "l1loss", "loss_weight": 0.5, "start_iter": 10, "target_iter": 20,
                             "target_weight": 1.5}])
    assert term.schedule == LossSchedule(loss_weight=0.5, start_iter=10, target_iter=20, target_weight=1.5)
    raw = float(np.abs(sr.numpy() - gt.numpy()).mean())
    for iteration, weight in ((5, 0.0), (10, 0.5), (15, 1.0), (30, 1.5)):
        total, values = total_loss([term], sr, gt, iteration=iteration)
        assert total.item() == pytest.approx(raw * weight, rel=1e-6)
        assert values["l1"].item() == pytest.approx(raw, rel=1e-6)
    # a runtime weight (the scheduler's tensor) is multiplied by the factor, weight / loss_weight
    total, _ = total_loss([term], sr, gt, weights=torch.tensor([2.0]), iteration=15)
    assert total.item() == pytest.approx(raw * 2.0 * 2.0, rel=1e-6)
    with pytest.raises(AutosrRuntimeError, match="iteration"):
        total_loss([term], sr, gt)
    (plain,) = build_losses([{"type": "l1loss", "loss_weight": 0.5}])
    assert plain.schedule is None and plain.kind == "pixel"


# ----------------------------------------------------------------------------- config
def test_gan_types_build_with_the_fork_s_defaults() -> None:
    assert OPTIONS["ganloss"] == {"gan_type": "vanilla", "real_label_val": 1.0, "fake_label_val": 0.0,
                                  "r1_weight": 3.0, "r2_weight": 3.0, "use_relu": False}
    assert OPTIONS["featurematchingloss"] == {"reduction": "mean", "layers": None, "criterion": "l1", "eps": 1e-6}
    assert OPTIONS["ldlloss"] == {"criterion": "l1"}
    terms = build_losses([
        {"type": "L1Loss", "loss_weight": 1.0},
        {"type": "GANLoss", "loss_weight": 0.05, "gan_type": "R3GAN", "r1_weight": 1.0, "r2_weight": 0.0,
         "start_iter": 10000, "target_iter": 25000, "target_weight": 0.08},
        {"type": "featurematchingloss", "loss_weight": 0.1, "layers": ["down1", "down2", 5], "criterion": "charbonnier"},
        {"type": "ldlloss", "loss_weight": 1.0},
    ])
    assert [(t.name, t.kind) for t in terms] == [("l1", "pixel"), ("gan", "adversarial"),
                                                 ("featurematching", "feature_matching"), ("ldl", "ema")]
    assert terms[1].loss == GANLoss(gan_type="r3gan", r1_weight=1.0, r2_weight=0.0)
    assert terms[1].schedule is not None and terms[1].schedule.weight(25000) == 0.08
    assert terms[2].loss == FeatureMatchingLoss(layers=("down1", "down2", 5), criterion="charbonnier")
    assert terms[3].loss == LDLLoss()
    gt = torch.rand(1, 3, 8, 8)
    with pytest.raises(AutosrRuntimeError, match="pixel losses only"):  # never silently left out
        total_loss(terms, gt, gt, iteration=1)
    with pytest.raises(AutosrRuntimeError, match="term.loss"):
        terms[1](gt, gt)


@pytest.mark.parametrize(("entries", "words"), [
    ([{"type": "ganloss", "loss_weight": 0.1, "gan_type": "vanila"}], ["gan_type", "vanilla, lsgan"]),
    ([{"type": "ganloss", "loss_weight": 0.1, "r2_weight": 1.0}], ["r2_weight", "only gan_type r3gan"]),
    ([{"type": "ganloss", "loss_weight": 0.1, "gan_type": "r3gan", "r1_weight": -1.0}], ["r1_weight", "≥ 0"]),
    ([{"type": "ganloss", "loss_weight": 0.1, "r1_wieght": 1.0}], ["did you mean 'r1_weight'"]),
    ([{"type": "ganloss", "loss_weight": 0.1}, {"type": "ganloss", "loss_weight": 0.1}], ["more than one ganloss"]),
    ([{"type": "featurematchingloss", "loss_weight": 0.1}], ["needs a ganloss"]),
    ([{"type": "featurematchingloss", "loss_weight": 0.1, "layers": ["down3"]}], ["layers", "down1, down2, mid"]),
    ([{"type": "ldlloss", "loss_weight": 1.0, "criterion": "l3"}], ["criterion", "l1, l2, charbonnier"]),
    ([{"type": "l1loss", "loss_weight": 1.0, "start_iter": "1e4"}], ["start_iter", "integer"]),
    ([{"type": "l1loss", "loss_weight": 1.0, "start_iter": 10, "target_iter": 5}], ["target_iter", "before"]),
    ([{"type": "l1loss", "loss_weight": 1.0, "start_iter": 10, "disable_after": 10}], ["never be active"]),
    ([{"type": "l1loss", "loss_weight": 1.0, "schedule_type": "exp"}], ["schedule_type", "linear, cosine, step"]),
    ([{"type": "l1loss", "loss_weight": 1.0}, {"type": "ganloss", "loss_weight": 0.0, "start_iter": 20000,
                                              "target_weight": 0.08, "schedule_type": "step"}],
     ["loss_weight: 0 disables", "target_weight"]),
    ([{"type": "l1loss", "loss_weight": 1.0, "start_itr": 5}], ["did you mean 'start_iter'"]),
])
def test_bad_gan_configs_raise_autosr_error(entries: list, words: list[str]) -> None:
    with pytest.raises(AutosrError) as info:
        build_losses(entries)
    for word in words:
        assert word in str(info.value), str(info.value)


# ----------------------------------------------------------------------------- one GAN step, as documented
def test_a_gan_step_as_the_module_docstring_describes() -> None:
    torch.manual_seed(0)
    net_g, net_d = nn.Conv2d(3, 3, 3, padding=1), build_discriminator({"type": "munet", "num_feat": 4})
    ema_g = nn.Conv2d(3, 3, 3, padding=1)
    ema_g.load_state_dict(net_g.state_dict())
    terms = {t.name: t for t in build_losses([
        {"type": "l1loss", "loss_weight": 1.0},
        {"type": "ganloss", "loss_weight": 0.05, "gan_type": "r3gan"},
        {"type": "featurematchingloss", "loss_weight": 0.1},
        {"type": "ldlloss", "loss_weight": 1.0},
    ])}
    gan, fm, ldl = terms["gan"].loss, terms["featurematching"].loss, terms["ldl"].loss
    assert isinstance(gan, GANLoss) and isinstance(fm, FeatureMatchingLoss) and isinstance(ldl, LDLLoss)
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    # G step, D frozen
    net_d.requires_grad_(False)
    sr = net_g(lq)
    fake_pred, fake_feats = net_d(sr, return_features=True)
    with torch.no_grad():
        real_pred, real_feats = net_d(gt, return_features=True)
        sr_ema = ema_g(lq)
    g_loss = (terms["l1"](sr, gt) + 0.05 * gan.generator_loss(fake_pred, real_pred)
              + 0.1 * fm(real_feats, fake_feats) + ldl(sr, sr_ema, gt))
    g_loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net_g.parameters())
    assert all(p.grad is None for p in net_d.parameters())
    # D step
    net_d.requires_grad_(True)
    for p in net_d.modules():  # the frozen upsampling filters stay frozen
        if type(p).__name__ == "SeparableConv":
            p.requires_grad_(False)
    d_loss, stats = gan.discriminator_loss(net_d, gt, sr)
    d_loss.backward()
    assert torch.isfinite(d_loss) and {"r1_penalty", "r2_penalty", "l_d_real", "l_d_fake"} <= set(stats)
    assert all(p.grad is not None for p in net_d.parameters() if p.requires_grad)
