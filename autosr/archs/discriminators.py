"""Discriminators (traiNNer's ``network_d``) for GAN training: ``dunet``, ``unetdiscriminatorsn``, ``munet``.

Each module has the constructor keys, the defaults and the **state-dict key names** of the traiNNer class
of that name, so a traiNNer ``net_d`` checkpoint loads into it and one saved here loads into traiNNer:

- ``dunet``: upstream traiNNer-redux's default D (``traiNNer/archs/dunet_arch.py``): a U-Net with
  spectral-normed convolutions, Mish, and DySample upsampling. 3.23 M parameters at the defaults.
- ``unetdiscriminatorsn``: Real-ESRGAN's U-Net D (``traiNNer/archs/discriminator_arch.py``), spectral norm
  in the old hook form (``weight_orig``/``weight_u``/``weight_v`` keys), bilinear upsampling. 4.38 M.
- ``munet``: the ParagonSR2 fork's multi-branch U-Net D (delafer/traiNNer-redux ``traiNNer/archs/munet_arch.py``):
  spatial U-Net, image-gradient, FFT-magnitude and bottleneck "patch" branches fused by a learned per-pixel
  softmax. 11.30 M parameters, 11.27 M of them trainable (the upsampling filters are frozen).

Differences from traiNNer, none of which changes a key or a shape:

- ``forward(x, return_features=True)`` also returns the intermediate activations (a list, in forward
  order) for the fork's ``featurematchingloss``; traiNNer's ``dunet``/``unetdiscriminatorsn`` have no
  such output and the fork's current ``munet`` lost its ``forward_with_features``.
- Activations are not in-place (same values; the returned features are not overwritten later).
- ``munet``'s attention is written as softmax(QKᵀ/√d)·V instead of ``scaled_dot_product_attention`` (same
  maths): the fused CUDA attention kernels have no double backward, which the R1/R2 gradient penalty needs.
- ``munet``'s frozen upsampling filters start as the MagicKernelSharp2021 filters the fork's code builds.
  The fork then overwrites them: its ``_init_weights`` (kaiming normal on every plain ``nn.Conv2d``)
  reaches only these frozen convolutions (the others are spectral-normed, where it has no effect), so a
  fresh fork munet upsamples with fixed random filters. A loaded fork checkpoint brings its own values.
- Inside :func:`double_backward_safe` (used by the R1/R2 penalty), ``dunet``'s DySample samples with a
  bilinear gather of its own instead of ``F.grid_sample``, whose second derivative older torch versions
  lack ("derivative for grid_sampler_2d_backward is not implemented"); same values, twice differentiable.

Unknown ``network_d`` keys are refused by name, as :func:`autosr.archs.build_network` does for ``network_g``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.nn.utils import spectral_norm as spectral_norm_hook  # the old form: weight_orig/weight_u/weight_v
from torch.nn.utils.parametrizations import spectral_norm

from autosr.errors import AutosrError, AutosrRuntimeError, did_you_mean

DOut = Tensor | tuple[Tensor, list[Tensor]]


def _out(logits: Tensor, features: list[Tensor], return_features: bool) -> DOut:
    return (logits, features) if return_features else logits


def _check_size(name: str, x: Tensor, multiple: int) -> None:
    if x.shape[-2] % multiple or x.shape[-1] % multiple:
        raise AutosrRuntimeError(
            f"{name} needs an input whose sides are multiples of {multiple}, got {tuple(x.shape[-2:])}",
            f"use a GT patch size divisible by {multiple} (lq_size × scale)")


# ----------------------------------------------------------------------------- dunet
def bilinear_sample_border(x: Tensor, grid: Tensor) -> Tensor:
    """``F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)`` from
    gathers and products, so it is differentiable twice (w.r.t. ``x`` and ``grid``) on any torch.

    x: (N, C, H, W); grid: (N, Ho, Wo, 2) with (x, y) in [-1, 1]. Returns (N, C, Ho, Wo).
    """
    n, c, h, w = x.shape
    _, ho, wo, _ = grid.shape
    # unnormalise (align_corners=False), then clip to the border as grid_sample's "border" does
    ix = (((grid[..., 0] + 1) * w - 1) / 2).clamp(0, w - 1)
    iy = (((grid[..., 1] + 1) * h - 1) / 2).clamp(0, h - 1)
    x0, y0 = ix.detach().floor(), iy.detach().floor()
    fx, fy = (ix - x0).unsqueeze(1), (iy - y0).unsqueeze(1)
    x0i, y0i = x0.long(), y0.long()
    x1i, y1i = (x0i + 1).clamp(max=w - 1), (y0i + 1).clamp(max=h - 1)  # weight 0 wherever clamped
    flat = x.reshape(n, c, h * w)

    def tap(yi: Tensor, xi: Tensor) -> Tensor:
        index = (yi * w + xi).reshape(n, 1, ho * wo).expand(n, c, ho * wo)
        return flat.gather(2, index).reshape(n, c, ho, wo)

    top = tap(y0i, x0i) * (1 - fx) + tap(y0i, x1i) * fx
    bottom = tap(y1i, x0i) * (1 - fx) + tap(y1i, x1i) * fx
    return top * (1 - fy) + bottom * fy


class DySample(nn.Module):
    """DySample ("Learning to Upsample by Learning to Sample", Liu et al. 2023) as traiNNer's dunet uses it
    (spandrel's ``DySample(dim, dim, 2, 4, end_convolution=False)``): each output pixel bilinearly samples
    the input at its own position plus a learned offset; ``groups`` channel groups get their own offsets."""

    def __init__(self, *, channels: int, scale: int = 2, groups: int = 4) -> None:
        super().__init__()
        if channels < groups or channels % groups:
            raise ValueError(f"DySample: {channels} channels do not split into {groups} groups")
        self.scale, self.groups = scale, groups
        n_offsets = 2 * groups * scale * scale
        self.offset = nn.Conv2d(channels, n_offsets, 1)
        self.scope = nn.Conv2d(channels, n_offsets, 1, bias=False)
        nn.init.trunc_normal_(self.offset.weight, std=0.02)
        nn.init.zeros_(self.scope.weight)
        # sub-pixel positions of the scale × scale outputs around each input pixel, x then y, per group
        h = (torch.arange(scale, dtype=torch.float32) - (scale - 1) / 2) / scale
        ys, xs = torch.meshgrid(h, h, indexing="ij")
        self.register_buffer("init_pos", torch.stack([xs, ys]).repeat(1, groups, 1).reshape(1, -1, 1, 1))
        self.double_backward = False  # set by double_backward_safe(): sample with bilinear_sample_border

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        s, g = self.scale, self.groups
        offset = self.offset(x) * self.scope(x).sigmoid() * 0.5 + self.init_pos
        offset = offset.view(b, 2, g * s * s, h, w)
        # pixel centres (x, y), then normalised to [-1, 1] as grid_sample reads them
        cy, cx = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
                                torch.arange(w, device=x.device, dtype=x.dtype) + 0.5, indexing="ij")
        centres = torch.stack([cx, cy]).view(1, 2, 1, h, w)
        size = torch.tensor([w, h], device=x.device, dtype=x.dtype).view(1, 2, 1, 1, 1)
        coords = 2 * (centres + offset) / size - 1
        coords = F.pixel_shuffle(coords.reshape(b, -1, h, w), s).view(b, 2, g, s * h, s * w)
        grid = coords.permute(0, 2, 3, 4, 1).reshape(b * g, s * h, s * w, 2)
        groups = x.reshape(b * g, -1, h, w)
        if self.double_backward:
            out = bilinear_sample_border(groups, grid)
        else:
            out = F.grid_sample(groups, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.view(b, -1, s * h, s * w)


class DUnet(nn.Module):
    """traiNNer-redux's ``DUnet``: three stride-2 encoder stages (×2 channels each), three DySample
    decoder stages with additive skips, then three convolutions to one logit per pixel.

    Features (``return_features``): the input projection, the three encoder outputs, the three decoder
    outputs (after the skip) and the two activations of the end convolutions — 9 maps.
    """

    SIZE_MULTIPLE = 8

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64) -> None:
        super().__init__()
        f = num_feat
        self.in_to_dim = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.e_x1 = nn.Sequential(spectral_norm(nn.Conv2d(f, f * 2, 3, 2, 1)), nn.Mish())
        self.e_x2 = nn.Sequential(spectral_norm(nn.Conv2d(f * 2, f * 4, 3, 2, 1)), nn.Mish())
        self.e_x3 = nn.Sequential(spectral_norm(nn.Conv2d(f * 4, f * 8, 3, 2, 1)), nn.Mish())
        self.up1 = nn.Sequential(DySample(channels=f * 8), spectral_norm(nn.Conv2d(f * 8, f * 4, 3, 1, 1)))
        self.up2 = nn.Sequential(DySample(channels=f * 4), spectral_norm(nn.Conv2d(f * 4, f * 2, 3, 1, 1)))
        self.up3 = nn.Sequential(DySample(channels=f * 2), spectral_norm(nn.Conv2d(f * 2, f, 3, 1, 1)))
        self.end_conv = nn.Sequential(
            spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False)), nn.Mish(),
            spectral_norm(nn.Conv2d(f, f, 3, 1, 1, bias=False)), nn.Mish(),
            nn.Conv2d(f, 1, 3, 1, 1),
        )

    def forward(self, x: Tensor, return_features: bool = False) -> DOut:
        _check_size("dunet", x, self.SIZE_MULTIPLE)
        x0 = self.in_to_dim(x)
        x1 = self.e_x1(x0)
        x2 = self.e_x2(x1)
        x3 = self.e_x3(x2)
        d1 = self.up1(x3) + x2
        d2 = self.up2(d1) + x1
        d3 = self.up3(d2) + x0
        end = self.end_conv
        e1 = end[1](end[0](d3))
        e2 = end[3](end[2](e1))
        return _out(end[4](e2), [x0, x1, x2, x3, d1, d2, d3, e1, e2], return_features)


# ----------------------------------------------------------------------------- unetdiscriminatorsn
class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (traiNNer's ``UNetDiscriminatorSN``):
    three stride-2 4×4 convolutions down, three bilinear ×2 upsamplings with optional additive skips,
    two more convolutions, one logit per pixel. LeakyReLU 0.2 throughout.

    Features: the outputs of conv0 … conv8 (every activation before the logit convolution) — 9 maps.
    """

    SIZE_MULTIPLE = 8

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True) -> None:
        super().__init__()
        f = num_feat
        self.skip_connection = skip_connection
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1)
        self.conv1 = spectral_norm_hook(nn.Conv2d(f, f * 2, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm_hook(nn.Conv2d(f * 2, f * 4, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm_hook(nn.Conv2d(f * 4, f * 8, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm_hook(nn.Conv2d(f * 8, f * 4, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm_hook(nn.Conv2d(f * 4, f * 2, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm_hook(nn.Conv2d(f * 2, f, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm_hook(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm_hook(nn.Conv2d(f, f, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1)

    def forward(self, x: Tensor, return_features: bool = False) -> DOut:
        _check_size("unetdiscriminatorsn", x, self.SIZE_MULTIPLE)

        def act(t: Tensor) -> Tensor:
            return F.leaky_relu(t, 0.2)

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        x7 = act(self.conv7(x6))
        x8 = act(self.conv8(x7))
        return _out(self.conv9(x8), [x0, x1, x2, x3, x4, x5, x6, x7, x8], return_features)


# ----------------------------------------------------------------------------- munet
MAGIC_KERNEL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)
MAGIC_SHARP_2021 = (-1 / 32, 0.0, 9 / 32, 16 / 32, 9 / 32, 0.0, -1 / 32)


class SeparableConv(nn.Module):
    """A fixed depthwise separable filter (horizontal, then vertical), zero padded; frozen parameters."""

    def __init__(self, *, channels: int, taps: tuple[float, ...]) -> None:
        super().__init__()
        k = len(taps)
        self.conv_h = nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2), groups=channels, bias=False)
        self.conv_v = nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0), groups=channels, bias=False)
        kernel = torch.tensor(taps)
        with torch.no_grad():
            self.conv_h.weight.copy_(kernel.view(1, 1, 1, k).expand(channels, 1, 1, k))
            self.conv_v.weight.copy_(kernel.view(1, 1, k, 1).expand(channels, 1, k, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_v(self.conv_h(x))


class MagicKernelUpsample(nn.Module):
    """The fork's MagicKernelSharp2021Upsample (alpha 1): sharpen, nearest-neighbour resize, blur."""

    def __init__(self, *, channels: int, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = min(max(alpha, 0.0), 1.0)
        self.sharpen = SeparableConv(channels=channels, taps=MAGIC_SHARP_2021)
        self.resample_conv = SeparableConv(channels=channels, taps=MAGIC_KERNEL)

    def forward(self, x: Tensor, scale: tuple[float, float]) -> Tensor:
        if self.alpha > 0:
            x = x + self.alpha * (self.sharpen(x) - x)
        return self.resample_conv(F.interpolate(x, scale_factor=scale, mode="nearest"))


class DownBlock(nn.Sequential):
    def __init__(self, *, in_feat: int, out_feat: int, slope: float) -> None:
        super().__init__(spectral_norm(nn.Conv2d(in_feat, out_feat, 4, 2, 1, bias=False)), nn.LeakyReLU(slope))


class UpBlock(nn.Module):
    """Upsample to the skip's size, project to its width, concatenate, fuse."""

    def __init__(self, *, in_feat: int, skip_feat: int, slope: float) -> None:
        super().__init__()
        self.magic_upsample = MagicKernelUpsample(channels=in_feat)
        self.post_upsample_conv = spectral_norm(nn.Conv2d(in_feat, skip_feat, 3, 1, 1, bias=False))
        self.fusion_conv = nn.Sequential(spectral_norm(nn.Conv2d(skip_feat * 2, skip_feat, 3, 1, 1, bias=False)),
                                         nn.LeakyReLU(slope))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        scale = (skip.shape[2] / x.shape[2], skip.shape[3] / x.shape[3])  # as the fork: the ratio of sizes
        x = self.post_upsample_conv(self.magic_upsample(x, scale))
        if x.shape[2:] != skip.shape[2:]:  # a nearest resize by a non-integer ratio can miss by a pixel
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        return self.fusion_conv(torch.cat([x, skip], dim=1))


class SelfAttention(nn.Module):
    """The fork's LocalWindowAttention, which attends over the whole map (its windowing is dead code):
    x + γ·softmax(QKᵀ/√d)·V with 1×1 spectral-normed projections, d = channels/8, γ starting at 0."""

    def __init__(self, *, channels: int, reduction: int = 8) -> None:
        super().__init__()
        reduced = max(1, channels // reduction)
        self.query = spectral_norm(nn.Conv2d(channels, reduced, 1))
        self.key = spectral_norm(nn.Conv2d(channels, reduced, 1))
        self.value = spectral_norm(nn.Conv2d(channels, channels, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, d)
        k = self.key(x).flatten(2)  # (B, d, HW)
        v = self.value(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        attn = torch.softmax(q @ k / math.sqrt(q.shape[-1]), dim=-1)
        return x + self.gamma * (attn @ v).transpose(1, 2).reshape(b, c, h, w)


class AttentionFusion(nn.Module):
    """Per-pixel softmax weights over the branches, their weighted sum, two convolutions."""

    def __init__(self, *, num_branches: int, num_feat: int, slope: float) -> None:
        super().__init__()
        self.attention_conv = nn.Sequential(
            spectral_norm(nn.Conv2d(num_feat * num_branches, num_feat, 1)), nn.LeakyReLU(slope),
            spectral_norm(nn.Conv2d(num_feat, num_branches, 1)),
        )
        self.fusion_conv = nn.Sequential(
            spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
            spectral_norm(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
        )

    def forward(self, branches: list[Tensor]) -> Tensor:
        weights = torch.softmax(self.attention_conv(torch.cat(branches, dim=1)), dim=1)
        fused = torch.zeros_like(branches[0])
        for i, branch in enumerate(branches):
            fused = fused + weights[:, i:i + 1] * branch
        return self.fusion_conv(fused)


def _luma(x: Tensor) -> Tensor:
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


class MUNet(nn.Module):
    """The ParagonSR2 fork's MUNet: a U-Net (encoder ``ch_mult`` stages, self-attention at the bottleneck,
    MagicKernel decoder) plus image-gradient, FFT log-magnitude and bottleneck "patch" branches, fused per
    pixel by softmax weights into one logit per pixel. The fork's readme suggests ``num_feat: 32,
    ch_mult: [1, 2, 2]`` (0.42 M) beside small generators.

    Features: the input projection and each encoder stage, the bottleneck after attention, the four
    branches (spatial, gradient, frequency, patch) and the fused map — 11 maps at the defaults, the
    order of the fork's former ``forward_with_features``.
    """

    SIZE_MULTIPLE = 1

    def __init__(self, *, num_in_ch: int = 3, num_feat: int = 64, ch_mult: tuple[int, ...] = (1, 2, 4, 8),
                 slope: float = 0.2) -> None:
        super().__init__()
        f = num_feat
        self.in_conv = spectral_norm(nn.Conv2d(num_in_ch, f, 3, 1, 1))
        widths = [f]
        self.down_blocks = nn.ModuleList()
        for mult in ch_mult:
            self.down_blocks.append(DownBlock(in_feat=widths[-1], out_feat=f * mult, slope=slope))
            widths.append(f * mult)
        mid = widths[-1]
        self.mid_conv = nn.Sequential(
            spectral_norm(nn.Conv2d(mid, mid, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
            spectral_norm(nn.Conv2d(mid, mid, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
        )
        self.self_attn = SelfAttention(channels=mid)
        self.up_blocks = nn.ModuleList()
        in_ch = mid
        for skip_ch in reversed(widths[:-1]):
            self.up_blocks.append(UpBlock(in_feat=in_ch, skip_feat=skip_ch, slope=slope))
            in_ch = skip_ch
        self.grad_conv = nn.Sequential(
            spectral_norm(nn.Conv2d(2, f // 2, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
            spectral_norm(nn.Conv2d(f // 2, f, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
        )
        self.freq_proc = nn.Sequential(
            spectral_norm(nn.Conv2d(1, f // 2, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
            spectral_norm(nn.Conv2d(f // 2, f, 3, 1, 1, bias=False)), nn.LeakyReLU(slope),
        )
        self.patch_reduce = nn.Sequential(spectral_norm(nn.Conv2d(mid, f, 1, 1, 0)), nn.LeakyReLU(slope))
        self.patch_upsample = nn.Sequential(spectral_norm(nn.Conv2d(f, f, 3, 1, 1)), nn.LeakyReLU(slope))
        self.attention_fusion = AttentionFusion(num_branches=4, num_feat=f, slope=slope)
        self.out_conv = spectral_norm(nn.Conv2d(f, 1, 3, 1, 1))

    def _gradients(self, x: Tensor) -> Tensor:
        gray = _luma(x)
        dy = F.pad(gray[:, :, 1:] - gray[:, :, :-1], (0, 0, 0, 1), mode="replicate")
        dx = F.pad(gray[:, :, :, 1:] - gray[:, :, :, :-1], (0, 1, 0, 0), mode="replicate")
        return self.grad_conv(torch.cat([dx, dy], dim=1))

    def _frequency(self, x: Tensor) -> Tensor:
        spectrum = torch.fft.fftshift(torch.fft.fft2(_luma(x).float(), norm="ortho"))  # FFT in float32
        return self.freq_proc(torch.log(spectrum.abs() + 1e-8).to(x.dtype))

    def forward(self, x: Tensor, return_features: bool = False) -> DOut:
        h = self.in_conv(x)
        skips = [h]
        for block in self.down_blocks:
            h = block(h)
            skips.append(h)
        bottleneck = self.self_attn(self.mid_conv(h))
        spatial = bottleneck
        for block, skip in zip(self.up_blocks, reversed(skips[:-1]), strict=True):
            spatial = block(spatial, skip)
        size = spatial.shape[2:]
        patch = self.patch_upsample(F.interpolate(self.patch_reduce(bottleneck), size=size, mode="nearest"))
        branches = [spatial, self._gradients(x), self._frequency(x), patch]
        branches = [b if b.shape[2:] == size else F.interpolate(b, size=size, mode="bilinear", align_corners=False)
                    for b in branches]
        fused = self.attention_fusion(branches)
        return _out(self.out_conv(fused), [*skips, bottleneck, *branches, fused], return_features)


# ----------------------------------------------------------------------------- registry
DISCRIMINATORS: dict[str, type[nn.Module]] = {
    "dunet": DUnet,
    "unetdiscriminatorsn": UNetDiscriminatorSN,
    "munet": MUNet,
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "dunet": {"num_in_ch": 3, "num_feat": 64},
    "unetdiscriminatorsn": {"num_in_ch": 3, "num_feat": 64, "skip_connection": True},
    "munet": {"num_in_ch": 3, "num_feat": 64, "ch_mult": (1, 2, 4, 8), "slope": 0.2},
}
# traiNNer has these too; autosr does not build them.
NOT_BUILT: tuple[str, ...] = ("metagan2", "vggstylediscriminator", "patchgandiscriminatorsn", "multiscalediscriminator")


def _positive_int(where: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise AutosrError(f"{where}: must be an integer ≥ {minimum}, got {value!r}")
    return value


def _check(kind: str, key: str, value: Any) -> Any:
    where = f"network_d.{key}"
    if key == "skip_connection":
        if not isinstance(value, bool):
            raise AutosrError(f"{where}: must be true or false, got {value!r}")
        return value
    if key == "slope":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise AutosrError(f"{where}: must be a number ≥ 0, got {value!r}")
        return float(value)
    if key == "ch_mult":
        if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
            raise AutosrError(f"{where}: must be a list of integers ≥ 1, e.g. [1, 2, 4, 8], got {value!r}")
        return tuple(_positive_int(f"{where}[{i}]", v) for i, v in enumerate(value))
    if key == "num_in_ch":
        return _positive_int(where, value, 3 if kind == "munet" else 1)  # munet takes the luma of channels 0-2
    # num_feat: dunet's DySample splits 2·num_feat channels into 4 groups; munet halves it
    feat = _positive_int(where, value, 2 if kind in ("dunet", "munet") else 1)
    if kind in ("dunet", "munet") and feat % 2:
        raise AutosrError(f"{where}: {kind} needs an even num_feat, got {feat}")
    return feat


def build_discriminator(opts: Mapping[str, Any]) -> nn.Module:
    """``{"type": "dunet", "num_feat": 32}`` → the module. The type is matched lower-case (traiNNer's
    registry does the same); other keys are the constructor's, with traiNNer's defaults."""
    args = dict(opts)
    name = args.pop("type", None)
    known = list(DISCRIMINATORS)
    if not isinstance(name, str):
        raise AutosrError("network_d.type is missing or not a string", "set it to one of " + ", ".join(known))
    kind = name.strip().lower()
    if kind in NOT_BUILT:
        raise AutosrError(f"network_d.type '{name}' is a traiNNer discriminator autosr does not build",
                          "use one of " + ", ".join(known))
    if kind not in DISCRIMINATORS:
        raise AutosrError(f"unknown network_d.type '{name}'{did_you_mean(kind, known)}",
                          "choose one of " + ", ".join(known))
    defaults = DEFAULTS[kind]
    for key in args:
        if key not in defaults:
            raise AutosrError(f"unknown key network_d.{key}{did_you_mean(str(key), defaults)}",
                              f"{kind} accepts: type, " + ", ".join(defaults))
    values = {**defaults, **{key: _check(kind, key, value) for key, value in args.items()}}
    return DISCRIMINATORS[kind](**values)


@contextmanager
def double_backward_safe(net: nn.Module) -> Iterator[None]:
    """Within the block, ``net``'s forward is twice differentiable with every torch version: dunet's
    DySample switches to :func:`bilinear_sample_border`. The R1/R2 gradient penalty runs D inside it."""
    samplers = [m for m in net.modules() if isinstance(m, DySample)]
    before = [m.double_backward for m in samplers]
    for m in samplers:
        m.double_backward = True
    try:
        yield
    finally:
        for m, flag in zip(samplers, before, strict=True):
            m.double_backward = flag
