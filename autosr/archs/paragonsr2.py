"""ParagonSR2, the dual-path nano…xl family (shared/specs/paragonsr2.md), written for the GPU.

    SR = MagicKernelSharp(LR)                                   frozen base path
       + conv_out(shuffle(body(conv_in(LR)))) · content_gain(LR)  learned detail path

Everything heavy runs in LR space. Forward has no host syncs, no data-dependent control flow and
no Python loops over pixels or windows, so it runs under autocast, channels_last and torch.compile.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

# The variant table of the spec. The constructor defaults are nano's.
VARIANTS: dict[str, dict[str, int | float | bool]] = {
    name: {
        "num_feat": c, "num_groups": g, "num_blocks": b, "ffn_ratio": r, "band_kernel": k,
        "upsampler_alpha": alpha, "detail_gain": gain, "use_attention": attn,
        "use_channel_mod": cmod, "use_content_aware": True,
    }
    for name, c, g, b, r, k, alpha, gain, attn, cmod in (
        ("nano", 12, 1, 1, 1.2, 7, 0.40, 0.05, False, False),
        ("micro", 16, 1, 2, 1.5, 7, 0.45, 0.08, False, True),
        ("tiny", 24, 2, 2, 1.5, 9, 0.50, 0.10, False, True),
        ("xs", 32, 2, 3, 1.8, 11, 0.50, 0.10, False, True),
        ("s", 48, 3, 4, 2.0, 11, 0.50, 0.10, True, True),
        ("m", 64, 4, 6, 2.0, 11, 0.50, 0.10, True, True),
        ("l", 96, 6, 8, 2.0, 13, 0.55, 0.10, True, True),
        ("xl", 128, 8, 10, 2.0, 15, 0.60, 0.10, True, True),
    )
}

SCALES = (2, 3, 4)
WINDOW = 8  # attention window side, in LR pixels
HEAD_DIM = 32  # target width of one attention head (s: 1×48, m: 2×32, xl: 4×32)
LAYER_SCALE_INIT = 1e-5
SHARPEN_TAPS = (-1.0, 0.0, 9.0, 16.0, 9.0, 0.0, -1.0)  # /32: MagicKernelSharp 2021 sharpening
BSPLINE_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)  # /16: the Magic Kernel (quadratic B-spline) blur


# ---------------------------------------------------------------- base path (frozen)


def _separable_kernels(taps: tuple[float, ...], norm: float, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise (channels, 1, 1, k) and (channels, 1, k, 1) weights of a 1-D kernel."""
    k = torch.tensor(taps, dtype=torch.float32) / norm
    return k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)


def _separable(x: torch.Tensor, kh: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """Horizontal then vertical depthwise pass, zero padding, same size out."""
    pad = kh.shape[-1] // 2
    # Buffers follow the input's dtype so a model fed fp16/bf16 without autocast still works.
    x = F.conv2d(x, kh.to(dtype=x.dtype), padding=(0, pad), groups=x.shape[1])
    return F.conv2d(x, kv.to(dtype=x.dtype), padding=(pad, 0), groups=x.shape[1])


class MagicKernelSharp(nn.Module):
    """Sharpen (blend with strength alpha) → nearest ×scale → B-spline blur. Nothing trains."""

    # The buffers registered in __init__ (declared for the type checker: nn.Module's __getattr__
    # says only "Tensor | Module").
    sharp_h: torch.Tensor
    sharp_v: torch.Tensor
    blur_h: torch.Tensor
    blur_v: torch.Tensor
    alpha: torch.Tensor

    def __init__(self, *, scale: int, in_chans: int, alpha: float) -> None:
        super().__init__()
        self.scale = scale
        # The sharpening strength is a persistent 0-dim buffer (state-dict key `base.alpha`), so that
        # a model file alone determines the network. Files written before it existed lack the key:
        # _load_from_state_dict then keeps the constructor's value (the variant's default).
        self.register_buffer("alpha", torch.tensor(float(min(max(alpha, 0.0), 1.0))), persistent=True)
        # The kernels are non-persistent buffers: they move with .to()/.half() but are constants of
        # the code, so checkpoints carry only what trains, plus alpha.
        for name, taps, norm in (("sharp", SHARPEN_TAPS, 32.0), ("blur", BSPLINE_TAPS, 16.0)):
            kh, kv = _separable_kernels(taps, norm, in_chans)
            self.register_buffer(f"{name}_h", kh, persistent=False)
            self.register_buffer(f"{name}_v", kv, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Autocast off: the base path is most of the output's value, so it stays in the input's
        # dtype (fp32 in mixed-precision training) and only the small detail carries bf16 error.
        with torch.autocast(device_type=x.device.type, enabled=False):
            sharp = _separable(x, self.sharp_h, self.sharp_v)
            x = torch.lerp(x, sharp, self.alpha.clamp(0.0, 1.0).to(dtype=x.dtype))  # x + alpha·(sharp − x)
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
            return _separable(x, self.blur_h, self.blur_v)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        key = prefix + "alpha"
        absent = key not in state_dict
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if absent and key in missing_keys:  # an older file: keep the constructor's alpha
            missing_keys.remove(key)
        elif not absent:
            with torch.no_grad():
                self.alpha.clamp_(0.0, 1.0)


# ---------------------------------------------------------------- detail path


class LayerScale(nn.Module):
    """Per-channel γ, started tiny so every block begins as (almost) the identity."""

    def __init__(self, dim: int, init: float = LAYER_SCALE_INIT) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((1, dim, 1, 1), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _dwconv(channels: int, kh: int, kw: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, (kh, kw), padding=(kh // 2, kw // 2), groups=channels)


class InceptionDW(nn.Module):
    """Square 3×3, wide 1×k and tall k×1 depthwise branches on g channels each; the rest pass."""

    def __init__(self, dim: int, band_kernel: int) -> None:
        super().__init__()
        g = max(1, dim // 8)
        self.square = _dwconv(g, 3, 3)
        self.wide = _dwconv(g, 1, band_kernel)
        self.tall = _dwconv(g, band_kernel, 1)
        self.splits = [g, g, g, dim - 3 * g]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b, c, rest = torch.split(x, self.splits, dim=1)
        return torch.cat((self.square(a), self.wide(b), self.tall(c), rest), dim=1)


class ChannelModulation(nn.Module):
    """Squeeze-excitation: a per-channel sigmoid gate from the globally pooled features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        inner = max(1, dim // 4)
        self.reduce = nn.Conv2d(dim, inner, 1)
        self.expand = nn.Conv2d(inner, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class FFN(nn.Module):
    """1×1 expand → depthwise 3×3 → LeakyReLU(0.1) → optional SE → 1×1 project."""

    def __init__(self, dim: int, ratio: float, use_channel_mod: bool) -> None:
        super().__init__()
        hidden = max(1, int(dim * ratio + 1e-6))  # ⌊C·r⌋; + ε so that 10·0.3 = 2.999… gives 3
        self.expand = nn.Conv2d(dim, hidden, 1)
        self.dw = _dwconv(hidden, 3, 3)
        self.channel_mod = ChannelModulation(hidden) if use_channel_mod else None
        self.project = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.dw(self.expand(x)), 0.1)
        if self.channel_mod is not None:
            x = self.channel_mod(x)
        return self.project(x)


def _heads_for(dim: int) -> int:
    """About HEAD_DIM channels per head, with a head count that divides dim."""
    heads = max(1, dim // HEAD_DIM)
    while dim % heads:
        heads -= 1
    return heads


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping WINDOW×WINDOW windows.

    The q/k/v and output projections are per-pixel, so they run on the (B, H, W, C) view —
    free for a channels_last input — and windowing is one reshape-copy of q/k/v into SDPA's
    layout and one back. The map is zero-padded up to a multiple of the window, cropped after.
    """

    def __init__(self, dim: int, window: int = WINDOW) -> None:
        super().__init__()
        self.window = window
        self.heads = _heads_for(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, heads = self.window, self.heads
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        qkv = self.qkv(x.permute(0, 2, 3, 1))  # (B, H, W, 3C)
        # Padding is skipped when not needed (a copy saved); an ONNX trace must keep it so the
        # exported graph works for every input size, not only the traced one.
        if pad_h or pad_w or torch.onnx.is_in_onnx_export():
            qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        nh, nw = hp // ws, wp // ws
        # (B, nh, ws, nw, ws, 3, heads, d) → (3, B·nh·nw, heads, ws·ws, d)
        qkv = qkv.reshape(b, nh, ws, nw, ws, 3, heads, c // heads).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = qkv.reshape(3, b * nh * nw, heads, ws * ws, c // heads).unbind(0)
        o = F.scaled_dot_product_attention(q, k, v)
        # (B, nh, nw, heads, ws, ws, d) → (B, Hp, Wp, C), crop, project
        o = o.reshape(b, nh, nw, heads, ws, ws, c // heads).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        return self.proj(o[:, :h, :w]).permute(0, 3, 1, 2)


class ParagonBlock(nn.Module):
    """x + LS(InceptionDW(x)); x + LS(FFN(x)); optionally x + gain·WindowAttention(x), gain from 0."""

    def __init__(self, dim: int, *, ffn_ratio: float, band_kernel: int, use_attention: bool,
                 use_channel_mod: bool) -> None:
        super().__init__()
        self.context = InceptionDW(dim, band_kernel)
        self.ls_context = LayerScale(dim)
        self.ffn = FFN(dim, ffn_ratio, use_channel_mod)
        self.ls_ffn = LayerScale(dim)
        self.attn = WindowAttention(dim) if use_attention else None
        self.attn_gain = nn.Parameter(torch.zeros(1)) if use_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls_context(self.context(x))
        x = x + self.ls_ffn(self.ffn(x))
        if self.attn is not None:
            x = x + self.attn_gain * self.attn(x)
        return x


class ResidualGroup(nn.Module):
    def __init__(self, dim: int, *, num_blocks: int, ffn_ratio: float, band_kernel: int,
                 use_attention: bool, use_channel_mod: bool) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(
            ParagonBlock(dim, ffn_ratio=ffn_ratio, band_kernel=band_kernel, use_attention=use_attention,
                         use_channel_mod=use_channel_mod)
            for _ in range(num_blocks)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The spec's `blocks(x) + x`, halved. The blocks are residual themselves (≈ x at init),
        # so the plain sum doubles the features per group: xl's 8 groups would start ×256, the
        # detail path would swamp the base path and attention logits would saturate. Halving
        # keeps the skip and the magnitude; it only halves each group's (learnable) residual.
        return (self.blocks(x) + x) * 0.5


class ICNRUpsampler(nn.Module):
    """3×3 conv to C·s² channels + PixelShuffle, ICNR-initialised: all s² sub-pixels start equal,
    so step 0 has no checkerboard."""

    def __init__(self, dim: int, scale: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        with torch.no_grad():
            sub = torch.empty(dim, dim, 3, 3)
            nn.init.kaiming_uniform_(sub, a=math.sqrt(5))  # PyTorch's default conv init
            # PixelShuffle reads output channel c's sub-pixel i from input channel c·s² + i.
            self.conv.weight.copy_(sub.repeat_interleave(scale * scale, dim=0))
            assert self.conv.bias is not None  # nn.Conv2d's default bias=True
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class ContentGain(nn.Module):
    """A scalar per image from the LR input: detail × (0.05 + 0.15·(1 − sigmoid(s)))."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        quarter, half = max(1, dim // 4), max(1, dim // 2)
        self.convs = nn.Sequential(
            nn.Conv2d(in_chans, quarter, 3, padding=1), nn.LeakyReLU(0.1),
            nn.Conv2d(quarter, half, 5, padding=2), nn.LeakyReLU(0.1),
            nn.Conv2d(half, half, 7, padding=3), nn.LeakyReLU(0.1),
        )
        self.head = nn.Conv2d(half, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.head(self.convs(x).mean(dim=(2, 3), keepdim=True))  # (B, 1, 1, 1)
        return 0.05 + 0.15 * torch.sigmoid(-s)  # 1 − sigmoid(s) = sigmoid(−s)


# ---------------------------------------------------------------- the network


class ParagonSR2ConfigError(ValueError):
    """A constructor value ParagonSR2 cannot build. A plain ValueError so this file stands alone (spandrel
    vendors architecture files as they are); autosr turns it into its one-line error."""

    def __init__(self, key: str, value: object, what: str) -> None:
        super().__init__(f"network_g.{key} is {value!r} — ParagonSR2 needs {what}")
        self.message = f"network_g.{key} is {value!r}"
        self.hint = f"ParagonSR2 needs {what}"


def _require(ok: bool, key: str, value: object, what: str) -> None:
    if not ok:
        raise ParagonSR2ConfigError(key, value, what)


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _validate(args: dict[str, object]) -> None:
    """Reject bad values up front with the key named, instead of a shape error deep in torch."""
    _require(args["scale"] in SCALES and _is_int(args["scale"]), "scale", args["scale"], "scale 2, 3 or 4")
    _require(_is_int(args["in_chans"]) and args["in_chans"] >= 1, "in_chans", args["in_chans"], "an integer ≥ 1")
    _require(_is_int(args["num_feat"]) and args["num_feat"] >= 4, "num_feat", args["num_feat"], "an integer ≥ 4")
    for key in ("num_groups", "num_blocks"):
        v = args[key]
        _require(_is_int(v) and v >= 1, key, v, "an integer ≥ 1")
    k = args["band_kernel"]
    _require(_is_int(k) and k >= 1 and k % 2 == 1, "band_kernel", k, "an odd integer ≥ 1 (size-preserving)")
    _require(_is_number(args["ffn_ratio"]) and args["ffn_ratio"] > 0, "ffn_ratio", args["ffn_ratio"], "a number > 0")
    for key in ("upsampler_alpha", "detail_gain"):
        _require(_is_number(args[key]), key, args[key], "a number")
    for key in ("use_attention", "use_channel_mod", "use_content_aware"):
        _require(isinstance(args[key], bool), key, args[key], "true or false")


class ParagonSR2(nn.Module):
    """LR (B, in_chans, H, W) → SR (B, in_chans, scale·H, scale·W), any H and W."""

    def __init__(
        self,
        *,
        scale: int,
        in_chans: int = 3,
        num_feat: int = 12,
        num_groups: int = 1,
        num_blocks: int = 1,
        ffn_ratio: float = 1.2,
        band_kernel: int = 7,
        upsampler_alpha: float = 0.4,
        detail_gain: float = 0.05,
        use_attention: bool = False,
        use_channel_mod: bool = False,
        use_content_aware: bool = True,
    ) -> None:
        super().__init__()
        _validate(dict(locals()))
        self.scale = scale
        self.in_chans = in_chans
        self.base = MagicKernelSharp(scale=scale, in_chans=in_chans, alpha=upsampler_alpha)
        self.conv_in = nn.Conv2d(in_chans, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(
            ResidualGroup(num_feat, num_blocks=num_blocks, ffn_ratio=ffn_ratio, band_kernel=band_kernel,
                          use_attention=use_attention, use_channel_mod=use_channel_mod)
            for _ in range(num_groups)
        ))
        self.conv_fuse = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.upsampler = ICNRUpsampler(num_feat, scale)
        self.conv_out = nn.Conv2d(num_feat, in_chans, 3, padding=1)
        with torch.no_grad():  # the base path dominates at the start of training
            self.conv_out.weight.mul_(detail_gain)
            assert self.conv_out.bias is not None  # nn.Conv2d's default bias=True
            self.conv_out.bias.zero_()
        self.content_gain = ContentGain(in_chans, num_feat) if use_content_aware else None

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        """The learned residual added to the base path, gain included."""
        f = self.body(self.conv_in(x))
        f = self.conv_fuse(f) + f
        d = self.conv_out(self.upsampler(f))
        if self.content_gain is not None:
            d = d * self.content_gain(x)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.detail(x)
