"""Losses and metrics that run a pretrained network: perceptualloss (VGG19), convnextperceptualloss,
distsloss / DISTS and LPIPS.

Each computes what traiNNer-redux's (or, for ConvNeXt, the ParagonSR2 fork's) class computes, with
the same options and defaults, without ``loss_weight`` (autosr's ``LossTerm`` multiplies by it once):
upstream ``traiNNer/losses/perceptual_fp16_loss.py`` (PerceptualLoss is its fp32 subclass),
``dists_loss.py``, ``archs/lpips_arch.py`` and ``metrics/{lpips,dists}.py``; the fork's
``convnext_perceptual_loss.py``. The networks come from :mod:`autosr.train.backbones` (no
torchvision, no timm, no download). docs/losses.md compares them with traiNNer's.

A loss network is built once, when the loss is built; it stays frozen and in eval mode (``train()``
cannot switch it back), moves to the device of the images it is given, and computes in float32
(``LossTerm`` switches autocast off and casts the inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Self

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from autosr.errors import AutosrError
from autosr.train import backbones as bb
from autosr.train.loss_specs import Opt

LossFn = Callable[[Tensor, Tensor], Tensor]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FrozenNetLoss(nn.Module):
    """A loss around frozen networks: always in eval mode, and on the device of its inputs."""

    mean: Tensor
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> Self:  # noqa: ARG002 - eval whatever is asked
        return super().train(False)

    def forward(self, sr: Tensor, gt: Tensor) -> Tensor:
        self._follow(sr.device)
        return self.compute(sr, gt)

    def _follow(self, device: torch.device) -> None:
        """Move to ``device`` when the images are elsewhere (once; an explicit ``.to()`` is respected).

        No ``torch.compiler.disable`` here: it imports dynamo (6 s) at import time. Under torch.compile
        the move is a graph break taken at most once.
        """
        if self.mean.device != device:
            self.to(device)

    def compute(self, sr: Tensor, gt: Tensor) -> Tensor:
        raise NotImplementedError


# ----------------------------------------------------------------------------- perceptualloss (VGG19)
VGG19_LAYERS = bb.vgg_layer_names(19)
CONV_LAYER_WEIGHTS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
RELU_LAYER_WEIGHTS = {"relu1_2": 0.1, "relu2_2": 0.1, "relu3_4": 1.0, "relu4_4": 1.0, "relu5_4": 1.0}
CONV_CRITERIA = ("l1", "charbonnier", "pd+l1", "fd+l1")
RELU_CRITERIA = ("pd", "fd", "pd+l1", "fd+l1")


def _l1(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).abs().mean()


def _charbonnier(a: Tensor, b: Tensor) -> Tensor:
    return torch.sqrt((a - b) ** 2 + 1e-12).mean()


def profile_distance(a: Tensor, b: Tensor) -> Tensor:
    """traiNNer's ``pd``: each channel's map made a distribution (÷ its sum + 1e-14); the L1 distance
    of the cumulative sums over the flattened map; mean over images and channels."""
    a = a / (a.sum(dim=(2, 3), keepdim=True) + 1e-14)
    b = b / (b.sum(dim=(2, 3), keepdim=True) + 1e-14)
    cdf = torch.cumsum(a.flatten(2), dim=-1) - torch.cumsum(b.flatten(2), dim=-1)
    return cdf.abs().sum(dim=-1).mean()


def _sliced(a: Tensor, b: Tensor, projections: Tensor, stride: int) -> Tensor:
    pa = F.conv2d(a, projections, stride=stride).flatten(2).sort(dim=-1).values
    pb = F.conv2d(b, projections, stride=stride).flatten(2).sort(dim=-1).values
    return (pa - pb).abs().mean(dim=(1, 2))


def fourier_distance(a: Tensor, b: Tensor, projections: Tensor, stride: int, phase_weight: float) -> Tensor:
    """traiNNer's ``fd``: sliced Wasserstein distance (random 5×5 projections, sorted) between the
    2-D FFT magnitudes, plus phase_weight × the same between the phases; mean over images."""
    fa, fb = torch.fft.fftn(a, dim=(-2, -1)), torch.fft.fftn(b, dim=(-2, -1))
    amplitude = _sliced(fa.abs(), fb.abs(), projections, stride)
    phase = _sliced(torch.angle(fa), torch.angle(fb), projections, stride)
    return (amplitude + phase * phase_weight).mean()


class PerceptualLoss(FrozenNetLoss):
    """traiNNer's ``perceptualloss``: distances between VGG19 features of sr and gt, weighted per layer.

    Features: torchvision VGG19 on ImageNet-normalised input, conv1_1 padded by replication (as
    traiNNer), ReLUs not in place, so ``convX_Y`` are pre-activation. Per layer k (in network order):
    ``(crit1(k)·(1 − αₖ) if αₖ < 1) + (crit2(k)·αₖ·w_lambda if αₖ > 0)``, times ``layer_weights[k]``;
    summed and clamped below at ``clip_min``. crit1: L1 (charbonnier for ``charbonnier``), crit2:
    ``pd`` or ``fd``. Default α: 0 for conv layers, 1 for the rest.
    """

    def __init__(self, *, layer_weights: Mapping[str, float] | None = None, w_lambda: float = 0.01,
                 alpha: Sequence[float] | None = None, criterion: str = "charbonnier", num_proj_fd: int = 256,
                 phase_weight_fd: float = 1.0, stride_fd: int = 1, clip_min: float = 0.0) -> None:
        super().__init__()
        if layer_weights is None:
            layer_weights = {**(CONV_LAYER_WEIGHTS if criterion in CONV_CRITERIA else {}),
                             **(RELU_LAYER_WEIGHTS if criterion in RELU_CRITERIA else {})}
        unknown = [k for k in layer_weights if k not in VGG19_LAYERS]
        if unknown:
            raise AutosrError(f"layer_weights: {unknown[0]!r} is not a VGG19 layer",
                              "names are conv1_1, relu1_1, …, conv5_4, relu5_4, pool1 … pool5")
        self.names = sorted(layer_weights, key=VGG19_LAYERS.index)
        self.layer_weights = [float(layer_weights[k]) for k in self.names]
        self.alpha = [0.0 if k.startswith("conv") else 1.0 for k in self.names] if alpha is None else list(alpha)
        if len(self.alpha) != len(self.names):
            raise AutosrError(f"alpha: {len(self.alpha)} values for {len(self.names)} layers ({', '.join(self.names)})",
                              "give one α per layer, in network order")
        if any(not 0 <= a <= 1 for a in self.alpha):
            raise AutosrError(f"alpha: every value must be in [0, 1], got {self.alpha}")
        if any(a < 1 for a in self.alpha) and criterion not in CONV_CRITERIA:
            raise AutosrError(f"criterion {criterion} has no feature distance for layers with α < 1 (conv layers)",
                              "use l1, charbonnier, pd+l1 or fd+l1, or α 1 for every layer")
        if any(a > 0 for a in self.alpha) and criterion not in RELU_CRITERIA:
            raise AutosrError(f"criterion {criterion} has no distribution distance for layers with α > 0 (relu/pool layers)",
                              "use pd, fd, pd+l1 or fd+l1, or conv layers only (α 0)")
        self.crit1 = _charbonnier if criterion == "charbonnier" else _l1
        self.fd = "fd" in criterion
        self.w_lambda, self.phase_weight_fd, self.stride_fd, self.clip_min = w_lambda, phase_weight_fd, stride_fd, clip_min
        self.taps = [VGG19_LAYERS.index(k) for k in self.names]
        self.vgg = bb.load_vgg(19, upto=max(self.taps), first_padding="replicate")
        self.projections: list[str] = []
        if self.fd:  # random unit-norm 5×5 projections per compared layer, drawn once, as traiNNer
            for j, tap in enumerate(t for t, a in zip(self.taps, self.alpha, strict=True) if a > 0):
                channels = [m.out_channels for m in list(self.vgg.features)[: tap + 1] if isinstance(m, nn.Conv2d)][-1]
                rand = torch.randn(num_proj_fd, channels, 5, 5)
                self.register_buffer(f"rand_{j}", rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1), persistent=False)
                self.projections.append(f"rand_{j}")

    def features(self, x: Tensor) -> list[Tensor]:
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.vgg.features):
            h = layer(h)
            if i in self.taps:
                out.append(h)
        return out

    def compute(self, sr: Tensor, gt: Tensor) -> Tensor:
        fx = self.features(sr)
        with torch.no_grad():
            fy = self.features(gt)
        total = sr.new_zeros(())
        j = 0
        for a, w, x, y in zip(self.alpha, self.layer_weights, fx, fy, strict=True):
            layer = sr.new_zeros(())
            if a < 1:
                layer = layer + self.crit1(x, y) * (1 - a)
            if a > 0:
                if self.fd:
                    d = fourier_distance(x, y, getattr(self, self.projections[j]), self.stride_fd, self.phase_weight_fd)
                else:
                    d = profile_distance(x, y)
                layer = layer + d * a * self.w_lambda
                j += 1
            total = total + layer * w
        return total.clamp(min=self.clip_min)


# ----------------------------------------------------------------------------- convnextperceptualloss
class ConvNeXtPerceptualLoss(FrozenNetLoss):
    """The fork's ``convnextperceptualloss``: Σ wᵢ·mean|fᵢ(sr) − fᵢ(gt)| / Σ wᵢ over ConvNeXt-Tiny stages.

    fᵢ: output of stage ``layers[i]`` of timm's convnext_tiny (fb_in22k_ft_in1k) on
    (clamp(x, 0, 1) − ImageNet mean) / (std + eps). Unlike the fork, the gradient reaches sr (the
    fork extracts both feature sets under no_grad, so its loss trains nothing) and loss_weight is
    applied once (the fork multiplies by it twice).
    """

    def __init__(self, *, layers: Sequence[int] = (1, 2), layer_weights: Sequence[float] | None = None,
                 eps: float = 1e-6) -> None:
        super().__init__()
        self.layers = [int(i) for i in layers]
        if any(not 0 <= i <= 3 for i in self.layers):
            raise AutosrError(f"layers: ConvNeXt-Tiny has stages 0–3, got {self.layers}", "e.g. [1, 2]")
        if layer_weights is None:
            layer_weights = (1.0, 0.5) if len(self.layers) == 2 else (1.0,) * len(self.layers)
        if len(layer_weights) != len(self.layers):
            raise AutosrError(f"layer_weights: {len(layer_weights)} values for {len(self.layers)} layers",
                              "give one weight per entry of layers")
        self.layer_weights = [float(w) for w in layer_weights]
        self.eps = eps
        self.backbone = bb.load_convnext_tiny(stages=max(self.layers) + 1)

    def features(self, x: Tensor) -> list[Tensor]:
        out = self.backbone((x.clamp(0.0, 1.0) - self.mean) / (self.std + self.eps))
        return [out[i] for i in self.layers]

    def compute(self, sr: Tensor, gt: Tensor) -> Tensor:
        fx = self.features(sr)
        with torch.no_grad():
            fy = self.features(gt)
        loss = sr.new_zeros(())
        for w, x, y in zip(self.layer_weights, fx, fy, strict=True):
            loss = loss + w * (x - y).abs().mean()
        total = sum(self.layer_weights)
        return loss / total if total > 0 else loss


# ----------------------------------------------------------------------------- DISTS
DISTS_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16
DISTS_POOLS = (4, 9, 16, 23)  # VGG16's max pools, replaced by L2 pooling


class DISTS(FrozenNetLoss):
    """DISTS (Ding et al. 2020) as traiNNer's DISTSLoss: VGG16 with L2 pooling, structure and texture
    similarities of channel means, variances and covariances, weighted by the learned alpha/beta.

    ``distances`` gives 1 − similarity per image (the metric); as a loss, the batch mean clamped below
    at ``clip_min``. Features: the raw input and the five ReLU stages of VGG16 on ImageNet-normalised
    input (``use_input_norm``).
    """

    l2_window: Tensor

    def __init__(self, *, load_weights: bool = True, use_input_norm: bool = True, clip_min: float = 0.0) -> None:
        super().__init__()
        self.use_input_norm, self.clip_min = use_input_norm, clip_min
        self.vgg = bb.load_vgg(16, upto=DISTS_TAPS[-1])
        if load_weights:
            self.heads = bb.load_dists_heads()
        else:  # traiNNer's load_weights false: alpha, beta ~ N(0.1, 0.01)
            self.heads = bb.DISTSHeads()
            with torch.no_grad():
                self.heads.alpha.normal_(0.1, 0.01)
                self.heads.beta.normal_(0.1, 0.01)
            bb.freeze(self.heads)
        taps = torch.tensor([0.5, 1.0, 0.5])  # np.hanning(5)[1:-1]
        window = taps.view(-1, 1) * taps.view(1, -1)
        self.register_buffer("l2_window", (window / window.sum()).view(1, 1, 3, 3), persistent=False)

    def _l2pool(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        return torch.sqrt(F.conv2d(x * x, self.l2_window.expand(c, 1, 3, 3), stride=2, padding=1, groups=c) + 1e-12)

    def features(self, x: Tensor) -> list[Tensor]:
        h = (x - self.mean) / self.std if self.use_input_norm else x
        out = [x]
        for i, layer in enumerate(self.vgg.features):
            h = self._l2pool(h) if i in DISTS_POOLS else layer(h)
            if i in DISTS_TAPS:
                out.append(h)
        return out

    def distances(self, x: Tensor, y: Tensor) -> Tensor:
        """1 − DISTS similarity, one value per image (N,)."""
        c1 = c2 = 1e-6
        w_sum = self.heads.alpha.sum() + self.heads.beta.sum()
        alphas = torch.split(self.heads.alpha / w_sum, list(bb.DISTS_CHANNELS), dim=1)
        betas = torch.split(self.heads.beta / w_sum, list(bb.DISTS_CHANNELS), dim=1)
        structure = texture = x.new_zeros(x.shape[0], 1, 1, 1)
        for a, b, fx, fy in zip(alphas, betas, self.features(x), self.features(y), strict=True):
            mx, my = fx.mean(dim=(2, 3), keepdim=True), fy.mean(dim=(2, 3), keepdim=True)
            s1 = (2 * mx * my + c1) / (mx * mx + my * my + c1)
            vx, vy = ((fx - mx) ** 2).mean(dim=(2, 3), keepdim=True), ((fy - my) ** 2).mean(dim=(2, 3), keepdim=True)
            cov = (fx * fy).mean(dim=(2, 3), keepdim=True) - mx * my
            s2 = (2 * cov + c2) / (vx + vy + c2)
            structure = structure + (a * s1).sum(1, keepdim=True)
            texture = texture + (b * s2).sum(1, keepdim=True)
        return 1 - (structure + texture).flatten()

    def compute(self, sr: Tensor, gt: Tensor) -> Tensor:
        return self.distances(sr, gt).mean().clamp(min=self.clip_min)


# ----------------------------------------------------------------------------- LPIPS
LPIPS_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}  # the five ReLU outputs LPIPS compares


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018) as traiNNer's ``calculate_lpips``: trunk features of both images,
    unit-normalised along channels, squared differences weighted per channel by the learned 1×1 heads,
    averaged over the map and summed over the five layers. Inputs on [0, 1] (scaled to [−1, 1], then
    LPIPS's shift/scale); returns one distance per image (N,)."""

    shift: Tensor
    scale: Tensor

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in LPIPS_TAPS:
            raise AutosrError(f"net: autosr's LPIPS takes alex or vgg, got {net!r}", "traiNNer's squeeze is not available")
        self.taps = LPIPS_TAPS[net]
        self.trunk: bb.AlexNetTrunk | bb.VGGTrunk = bb.load_alexnet() if net == "alex" else bb.load_vgg(16, upto=self.taps[-1])
        self.heads = bb.load_lpips_heads(net)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def features(self, x: Tensor) -> list[Tensor]:
        h = (2 * x - 1 - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.trunk.features):
            h = layer(h)
            if i in self.taps:
                out.append(h / (torch.sqrt((h * h).sum(dim=1, keepdim=True)) + 1e-10))
            if i == self.taps[-1]:
                break
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.heads.layers(), self.features(x), self.features(y), strict=True):
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


# ----------------------------------------------------------------------------- metric models
def metric_files(kind: str, net: str = "alex") -> list[bb.WeightFile]:
    """The weight files an LPIPS (``kind`` "lpips", trunk ``net``) or DISTS metric needs."""
    if kind == "dists":
        return [bb.VGG16, bb.DISTS_HEAD]
    return [bb.ALEXNET if net == "alex" else bb.VGG16, bb.LPIPS_HEADS[net]]


def missing_weights(files: Sequence[bb.WeightFile]) -> str:
    """'' when every file is there, else the one-line message and hint for the first missing one."""
    for file in files:
        if file.find() is None:
            message, hint = file.missing()
            return f"{message} — {hint}"
    return ""


@lru_cache(maxsize=4)
def _metric_model(kind: str, net: str, device: torch.device, files: tuple[tuple[str, float], ...]) -> nn.Module:
    """Built once per (metric, device, weight files and their times): validation calls it per image."""
    del files  # part of the cache key only: another TORCH_HOME or a replaced file builds afresh
    model: nn.Module = DISTS() if kind == "dists" else LPIPS(net)
    return model.to(device).eval()


def metric_model(kind: str, net: str, device: torch.device) -> nn.Module:
    found = []
    for file in metric_files(kind, net):
        path = file.require()
        found.append((str(path), path.stat().st_mtime))
    return _metric_model(kind, net, device, tuple(found))


@torch.no_grad()
def lpips_distance(x: Tensor, y: Tensor, net: str = "alex") -> Tensor:
    """LPIPS per image of (N, 3, H, W) float32 images on [0, 1]."""
    model = metric_model("lpips", net, x.device)
    return model(x, y)


@torch.no_grad()
def dists_distance(x: Tensor, y: Tensor) -> Tensor:
    """DISTS (1 − similarity) per image of (N, 3, H, W) float32 images on [0, 1]."""
    model = metric_model("dists", "", x.device)
    assert isinstance(model, DISTS)
    return model.distances(x, y)


# ----------------------------------------------------------------------------- registry
SPECS: dict[str, dict[str, Opt]] = {
    "perceptualloss": {
        "layer_weights": Opt(None, "weights", low=None, none_ok=True), "w_lambda": Opt(0.01, "float"),
        "alpha": Opt(None, "floats", none_ok=True), "criterion": Opt("charbonnier", "choice", choices=CONV_CRITERIA[:2] + RELU_CRITERIA),
        "num_proj_fd": Opt(256, "int", low=1), "phase_weight_fd": Opt(1.0, "float"), "stride_fd": Opt(1, "int", low=1),
        "clip_min": Opt(0.0, "float", low=None), "antialiased": Opt(False, "bool"), "verbose_logging": Opt(False, "bool"),
    },
    "convnextperceptualloss": {
        "layers": Opt((1, 2), "ints"), "layer_weights": Opt(None, "floats", none_ok=True), "eps": Opt(1e-6, "float"),
    },
    "distsloss": {
        "as_loss": Opt(True, "bool"), "load_weights": Opt(True, "bool"), "use_input_norm": Opt(True, "bool"),
        "clip_min": Opt(0.0, "float", low=None),
    },
}


def make(kind: str, opts: dict[str, Any]) -> LossFn:
    """The loss module of one validated entry (``opts``: every option of ``SPECS[kind]``); loads its weights."""
    if kind == "perceptualloss":
        if opts["antialiased"]:
            raise AutosrError("antialiased: true needs antialiased_cnns' VGG19 weights, which autosr does not load",
                              "remove the key or set it to false")
        keys = ("layer_weights", "w_lambda", "alpha", "criterion", "num_proj_fd", "phase_weight_fd", "stride_fd", "clip_min")
        return PerceptualLoss(**{k: opts[k] for k in keys})
    if kind == "convnextperceptualloss":
        return ConvNeXtPerceptualLoss(layers=opts["layers"], layer_weights=opts["layer_weights"], eps=opts["eps"])
    if kind == "distsloss":
        if not opts["as_loss"]:
            raise AutosrError("as_loss: false is traiNNer's metric mode (no gradient, one value per image)",
                              "remove the key; for the metric use {type: calculate_dists} under val.metrics")
        return DISTS(load_weights=opts["load_weights"], use_input_norm=opts["use_input_norm"], clip_min=opts["clip_min"])
    raise AssertionError(kind)
