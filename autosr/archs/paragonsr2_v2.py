"""ParagonSR2 realtime / stream / photo / pro: the fork's second design (shared/specs/paragonsr2.md,
"The family the fork trains today"), beside autosr's nano…xl, which it does not replace.

    SR = MagicKernelSharp2021(LR)                                             frozen base path
       + conv_out(shuffle(conv_up(conv_mid(body(conv_in(LR)))))) · detail_gain  learned detail path

State-dict names and shapes are those of traiNNer-redux's (delafer fork) `traiNNer/archs/paragonsr2_arch.py`
at b676e3a for every variant and scale, so a model trained in either loads in the other
(tests/data/paragonsr2_v2_fork_keys.json records the fork's). With the fork's weights loaded, the fp32
output was bitwise equal to the fork module's for every variant (checked once against its file).
Where this file departs from the fork, it does so on purpose:

- Constructors are keyword-only, without **kwargs; a value that cannot build is refused by name
  (ParagonSR2V2ConfigError). The variant factories take the keys the fork's factories let through.
- The base path runs with autocast off, in the input's dtype: under mixed precision the base (most of
  the output's value) keeps full precision and only the small detail carries bf16/fp16 error.
- `attention_mode="flex"` uses torch's flex_attention only while torch.compile traces the model on a
  CUDA device. Elsewhere (eager, the CPU, ONNX export) flex runs unfused or not at all, so the same
  maths (softmax(q·kᵀ/√d)·v, no mask) goes through scaled_dot_product_attention instead.
- `use_checkpointing` checkpoints each block only while training with gradients on.
- The fork's forward takes video-mode extras (feature_tap, prev_feat); this one takes only the image.

Imports nothing from autosr, so spandrel can vendor it as it is.
"""

from __future__ import annotations

from typing import Any, TypedDict, TypeGuard

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils import checkpoint

SCALES = (2, 3, 4)
BLOCK_KINDS = ("realtime", "stream", "photo", "pro")  # the fork's `variant` values; one block type each
ATTENTION_MODES = ("sdpa", "flex")  # or None: no window attention
EXPANSION = 2  # hidden width of every block: 2F
HEADS = 4  # window attention heads
SE_REDUCTION = 16  # pro's squeeze-excitation: F → F/16 → F
NUM_TOKENS = 64  # pro's learned token dictionary
TOKEN_DIM = 16  # width of its queries and keys
LAYER_SCALE_INIT = 1e-5
RMS_EPS = 1e-6
FP16_MAX = 65504.0
SHARPEN_TAPS = (-1.0, 0.0, 9.0, 16.0, 9.0, 0.0, -1.0)  # /32: MagicKernelSharp 2021 sharpening
BSPLINE_TAPS = (1.0, 4.0, 6.0, 4.0, 1.0)  # /16: the Magic Kernel (quadratic B-spline) blur


class Body(TypedDict):
    num_feat: int
    num_groups: int
    num_blocks: int


# The body's shape each variant fixes (its factory below holds the defaults of everything else).
BODIES: dict[str, Body] = {
    "realtime": Body(num_feat=16, num_groups=1, num_blocks=3),
    "stream": Body(num_feat=32, num_groups=2, num_blocks=3),
    "photo": Body(num_feat=64, num_groups=4, num_blocks=4),
    "pro": Body(num_feat=64, num_groups=6, num_blocks=6),
}


# ---------------------------------------------------------------- base path (frozen)


class FixedSeparable(nn.Module):
    """A 1-D kernel applied depthwise, horizontally then vertically, zero padding. The taps (`kernel`) and
    the two conv weights built from them are stored, as the fork stores them, but never train."""

    kernel: torch.Tensor

    def __init__(self, channels: int, taps: tuple[float, ...], norm: float) -> None:
        super().__init__()
        kernel = torch.tensor(taps, dtype=torch.float32) / norm
        k = kernel.numel()
        self.register_buffer("kernel", kernel)
        self.h = nn.Conv2d(channels, channels, (1, k), padding=(0, k // 2), groups=channels, bias=False)
        self.v = nn.Conv2d(channels, channels, (k, 1), padding=(k // 2, 0), groups=channels, bias=False)
        with torch.no_grad():
            self.h.weight.copy_(kernel.view(1, 1, 1, k).expand(channels, 1, 1, k))
            self.v.weight.copy_(kernel.view(1, 1, k, 1).expand(channels, 1, k, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Cast to the input's dtype: the base path runs in the input's precision whatever the model's dtype.
        c = x.shape[1]
        x = F.conv2d(x, self.h.weight.to(x.dtype), padding=self.h.padding, groups=c)
        return F.conv2d(x, self.v.weight.to(x.dtype), padding=self.v.padding, groups=c)


class MagicKernelSharp2021(nn.Module):
    """Sharpen (x + alpha·(sharp − x), skipped at alpha 0) → nearest ×scale → B-spline blur.

    alpha is a plain number, not stored: files from the fork do not carry it, so it comes from the
    constructor (the variant's default unless set)."""

    def __init__(self, in_chans: int, scale: int, alpha: float) -> None:
        super().__init__()
        self.scale = scale
        self.alpha = float(alpha)
        self.sharp = FixedSeparable(in_chans, SHARPEN_TAPS, 32.0)
        self.blur = FixedSeparable(in_chans, BSPLINE_TAPS, 16.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            if self.alpha > 0:
                x = x + self.alpha * (self.sharp(x) - x)
            x = F.interpolate(x, scale_factor=self.scale, mode="nearest")
            return self.blur(x)


# ---------------------------------------------------------------- shared parts


class RMSNorm(nn.Module):
    """Per-pixel RMS over the channels (the mean square in fp32), then a learnable scale and bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.sqrt(x.float().pow(2).mean(dim=1, keepdim=True) + RMS_EPS).to(x.dtype)
        return self.scale * x / rms + self.bias


class LayerScale(nn.Module):
    """Per-channel γ started tiny, so every block begins as (almost) the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((1, dim, 1, 1), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mode: str) -> torch.Tensor:
    """softmax(q·kᵀ/√d)·v over the last two dims; flex where it runs fused (see the module notes)."""
    if mode == "flex" and q.is_cuda and torch.compiler.is_compiling():
        from torch.nn.attention.flex_attention import flex_attention

        out = flex_attention(q, k, v)
        assert isinstance(out, torch.Tensor)  # without return_lse it is the output alone
        return out
    return F.scaled_dot_product_attention(q, k, v)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside window×window windows of a (B, C, H, W) map.

    The map is zero-padded to a multiple of the window (padded tokens take part, unmasked, as in the
    fork), rolled by half a window on shifted blocks (no shift mask), and split into windows by one
    reshape. q/k/v and the output projection are per pixel, so the projection runs after the windows are
    undone and the padding cropped."""

    def __init__(self, dim: int, *, window_size: int, shift_size: int, mode: str) -> None:
        super().__init__()
        self.window = window_size
        self.shift = shift_size
        self.mode = mode
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, s, heads = self.window, self.shift, HEADS
        d = c // heads
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C): free for a channels_last input
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        # An ONNX trace keeps the pad so the graph serves every input size, not only the traced one.
        if pad_h or pad_w or torch.onnx.is_in_onnx_export():
            t = F.pad(t, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if s:
            t = torch.roll(t, shifts=(-s, -s), dims=(1, 2))
        nh, nw = hp // ws, wp // ws
        # (B, nh, ws, nw, ws, 3, heads, d) → (3, B·nh·nw, heads, ws·ws, d)
        qkv = self.qkv(t).reshape(b, nh, ws, nw, ws, 3, heads, d).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = qkv.reshape(3, b * nh * nw, heads, ws * ws, d).unbind(0)
        o = _attend(q, k, v, self.mode)
        # (B, nh, nw, heads, ws, ws, d) → (B, Hp, Wp, C)
        o = o.reshape(b, nh, nw, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        if s:
            o = torch.roll(o, shifts=(s, s), dims=(1, 2))
        return self.proj(o[:, :h, :w]).permute(0, 3, 1, 2)


def _conv_mixer(dim: int) -> tuple[nn.Conv2d, nn.Conv2d, nn.Conv2d]:
    """1×1 F→2F, depthwise 3×3, 1×1 2F→F (GELU after the depthwise): the convolutional part of the
    realtime, photo and pro blocks. Three attributes of the block, not a submodule, so the keys stay
    `conv1`, `dw`, `conv2` as in the fork."""
    hidden = dim * EXPANSION
    return (nn.Conv2d(dim, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
            nn.Conv2d(hidden, dim, 1))


# ---------------------------------------------------------------- blocks


class NanoBlock(nn.Module):
    """realtime: x + LS(conv2(GELU(dw(conv1(x)))))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1, self.dw, self.conv2 = _conv_mixer(dim)
        self.scale = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale(self.conv2(F.gelu(self.dw(self.conv1(x)))))


class StreamBlock(nn.Module):
    """stream: (dw 3×3 ‖ dw 3×3 dilation 3) fused by 1×1, then a gated 1×1 F→4F, dw 3×3, a·b (in fp32,
    clamped to the fp16 range), 1×1 2F→F; x + LS(that)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = dim * EXPANSION
        self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.dw3 = nn.Conv2d(dim, dim, 3, padding=3, dilation=3, groups=dim)
        self.fuse = nn.Conv2d(2 * dim, dim, 1)
        self.proj = nn.Conv2d(dim, 2 * hidden, 1)
        self.gate = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden)
        self.out = nn.Conv2d(hidden, dim, 1)
        self.scale = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fuse(torch.cat((self.dw1(x), self.dw3(x)), dim=1))
        a, b = self.gate(self.proj(y)).chunk(2, dim=1)
        y = (a.float() * b.float()).clamp(-FP16_MAX, FP16_MAX).to(a.dtype)
        return x + self.scale(self.out(y))


class PhotoBlock(nn.Module):
    """photo: x + LS(convs(RMSNorm(x))); then, with attention, x + LS(WindowAttention(RMSNorm(x))) with the
    same LayerScale."""

    def __init__(self, dim: int, *, attention: str | None, window_size: int, shift_size: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.conv1, self.dw, self.conv2 = _conv_mixer(dim)
        self.scale = LayerScale(dim)
        self.attn_norm = RMSNorm(dim) if attention else None
        self.attn = WindowAttention(dim, window_size=window_size, shift_size=shift_size,
                                    mode=attention) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale(self.conv2(F.gelu(self.dw(self.conv1(self.norm(x))))))
        if self.attn is not None and self.attn_norm is not None:
            x = x + self.scale(self.attn(self.attn_norm(x)))
        return x


class ChannelAttention(nn.Module):
    """Squeeze-excitation: global mean → Linear F→F/16 → GELU → Linear → sigmoid, times x."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        inner = dim // SE_REDUCTION
        self.fc = nn.Sequential(nn.Linear(dim, inner, bias=False), nn.GELU(), nn.Linear(inner, dim, bias=False),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class TokenDictionaryCA(nn.Module):
    """Every pixel attends (one head, q and k in TOKEN_DIM dims) over NUM_TOKENS learned tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.token_dict = nn.Parameter(torch.randn(1, NUM_TOKENS, dim) * 0.02)
        self.q_proj = nn.Linear(dim, TOKEN_DIM)
        self.k_proj = nn.Linear(dim, TOKEN_DIM)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q_proj(x.permute(0, 2, 3, 1).reshape(b, h * w, c))  # (B, HW, 16)
        k, v = self.k_proj(self.token_dict), self.v_proj(self.token_dict)  # (1, 64, 16), (1, 64, C)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * TOKEN_DIM ** -0.5, dim=-1)
        return self.out_proj(attn @ v).reshape(b, h, w, c).permute(0, 3, 1, 2)


class ProBlock(nn.Module):
    """pro: x + LS1(convs(RMSNorm(x))); x + LS2(SE(x)); with attention x + LS3(WindowAttention(RMSNorm(x)));
    x + LS4(TokenDictionaryCA(RMSNorm(x)))."""

    def __init__(self, dim: int, *, attention: str | None, window_size: int, shift_size: int) -> None:
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.conv1, self.dw, self.conv2 = _conv_mixer(dim)
        self.scale1 = LayerScale(dim)
        self.channel_attn = ChannelAttention(dim)
        self.scale2 = LayerScale(dim)
        self.norm3 = RMSNorm(dim) if attention else None
        self.window_attn = WindowAttention(dim, window_size=window_size, shift_size=shift_size,
                                           mode=attention) if attention else None
        self.scale3 = LayerScale(dim) if attention else None
        self.norm4 = RMSNorm(dim)
        self.token_ca = TokenDictionaryCA(dim)
        self.scale4 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1(self.conv2(F.gelu(self.dw(self.conv1(self.norm1(x))))))
        x = x + self.scale2(self.channel_attn(x))
        if self.window_attn is not None and self.norm3 is not None and self.scale3 is not None:
            x = x + self.scale3(self.window_attn(self.norm3(x)))
        return x + self.scale4(self.token_ca(self.norm4(x)))


class BlockGroup(nn.Module):
    """A plain sequence of blocks (no residual around it), each optionally checkpointed while training."""

    def __init__(self, blocks: list[nn.Module], checkpointing: bool) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            for block in self.blocks:
                x = checkpoint.checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)


# ---------------------------------------------------------------- the network


class ParagonSR2V2ConfigError(ValueError):
    """A constructor value the network cannot build. A plain ValueError so this file stands alone;
    autosr turns it into its one-line error."""

    def __init__(self, key: str, value: object, what: str) -> None:
        super().__init__(f"network_g.{key} is {value!r} — ParagonSR2 needs {what}")
        self.message = f"network_g.{key} is {value!r}"
        self.hint = f"ParagonSR2 needs {what}"


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _validate(a: dict[str, Any]) -> None:
    """Refuse values that cannot build, with the key named, before a shape error deep in torch."""
    checks: list[tuple[str, bool, str]] = [
        ("scale", _is_int(a["scale"]) and a["scale"] in SCALES, "scale 2, 3 or 4"),
        ("in_chans", _is_int(a["in_chans"]) and a["in_chans"] >= 1, "an integer ≥ 1"),
        ("num_feat", _is_int(a["num_feat"]) and a["num_feat"] >= 1, "an integer ≥ 1"),
        ("num_groups", _is_int(a["num_groups"]) and a["num_groups"] >= 1, "an integer ≥ 1"),
        ("num_blocks", _is_int(a["num_blocks"]) and a["num_blocks"] >= 1, "an integer ≥ 1"),
        ("variant", a["variant"] in BLOCK_KINDS, "one of " + ", ".join(BLOCK_KINDS)),
        ("detail_gain", _is_number(a["detail_gain"]), "a number"),
        ("upsampler_alpha", _is_number(a["upsampler_alpha"]) and 0 <= a["upsampler_alpha"] <= 1, "a number from 0 to 1"),
        ("use_checkpointing", isinstance(a["use_checkpointing"], bool), "true or false"),
        ("attention_mode", a["attention_mode"] is None or a["attention_mode"] in ATTENTION_MODES,
         "sdpa, flex or null (no attention)"),
        ("export_safe", isinstance(a["export_safe"], bool), "true or false"),
        ("window_size", _is_int(a["window_size"]) and a["window_size"] >= 1, "an integer ≥ 1"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise ParagonSR2V2ConfigError(key, a[key], what)
    attention = a["variant"] in ("photo", "pro") and a["attention_mode"] is not None and not a["export_safe"]
    if attention and a["num_feat"] % HEADS:
        raise ParagonSR2V2ConfigError("num_feat", a["num_feat"], f"a multiple of {HEADS} (attention heads)")
    if a["variant"] == "pro" and a["num_feat"] < SE_REDUCTION:
        raise ParagonSR2V2ConfigError("num_feat", a["num_feat"], f"at least {SE_REDUCTION} for pro's squeeze-excitation")


def _block(kind: str, dim: int, *, attention: str | None, window_size: int, shift_size: int) -> nn.Module:
    if kind == "realtime":
        return NanoBlock(dim)
    if kind == "stream":
        return StreamBlock(dim)
    if kind == "photo":
        return PhotoBlock(dim, attention=attention, window_size=window_size, shift_size=shift_size)
    return ProBlock(dim, attention=attention, window_size=window_size, shift_size=shift_size)


class ParagonSR2V2(nn.Module):
    """LR (B, in_chans, H, W) → SR (B, in_chans, scale·H, scale·W), any H and W.

    The keywords and defaults are the fork's `ParagonSR2` class; the variant factories below fix the
    body's shape. `variant` picks the block; photo and pro add window attention unless
    `attention_mode` is None or `export_safe` is set (both drop the attention weights: a different
    network, not an export switch for a trained one). Odd-numbered blocks (counted over the whole body)
    shift their windows by half a window.
    """

    def __init__(
        self,
        *,
        scale: int = 4,
        in_chans: int = 3,
        num_feat: int = 64,
        num_groups: int = 4,
        num_blocks: int = 4,
        variant: str = "photo",
        detail_gain: float = 0.1,
        upsampler_alpha: float = 0.5,
        use_checkpointing: bool = False,
        attention_mode: str | None = "sdpa",
        export_safe: bool = False,
        window_size: int = 8,
    ) -> None:
        super().__init__()
        _validate(dict(locals()))
        self.scale = scale
        self.in_chans = in_chans
        self.variant = variant
        attention = attention_mode if variant in ("photo", "pro") and not export_safe else None
        self.base = MagicKernelSharp2021(in_chans, scale, upsampler_alpha)
        self.conv_in = nn.Conv2d(in_chans, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(
            BlockGroup([
                _block(variant, num_feat, attention=attention, window_size=window_size,
                       shift_size=window_size // 2 if (g * num_blocks + i) % 2 else 0)
                for i in range(num_blocks)
            ], use_checkpointing)
            for g in range(num_groups)
        ))
        self.conv_mid = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(num_feat, num_feat * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        self.conv_out = nn.Conv2d(num_feat, in_chans, 3, padding=1)
        self.detail_gain = nn.Parameter(torch.tensor(float(detail_gain)))

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        """The learned residual added to the base path, gain included."""
        return self.conv_out(self.up(self.conv_mid(self.body(self.conv_in(x))))) * self.detail_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.detail(x)


# ---------------------------------------------------------------- the registered variants
# What the fork's factories let a config set (the body's shape is fixed per variant); realtime and
# stream have no attention, so they take no attention keys.


def paragonsr2_realtime(*, scale: int = 4, in_chans: int = 3, detail_gain: float = 0.05, upsampler_alpha: float = 0.3,
                        use_checkpointing: bool = False) -> ParagonSR2V2:
    """16 features, 1 group × 3 Nano blocks, no attention."""
    return ParagonSR2V2(scale=scale, in_chans=in_chans, **BODIES["realtime"], variant="realtime",
                        detail_gain=detail_gain, upsampler_alpha=upsampler_alpha, use_checkpointing=use_checkpointing)


def paragonsr2_stream(*, scale: int = 4, in_chans: int = 3, detail_gain: float = 0.1, upsampler_alpha: float = 0.0,
                      use_checkpointing: bool = False) -> ParagonSR2V2:
    """32 features, 2 groups × 3 Stream blocks, no attention."""
    return ParagonSR2V2(scale=scale, in_chans=in_chans, **BODIES["stream"], variant="stream",
                        detail_gain=detail_gain, upsampler_alpha=upsampler_alpha, use_checkpointing=use_checkpointing)


def paragonsr2_photo(*, scale: int = 4, in_chans: int = 3, detail_gain: float = 0.1, upsampler_alpha: float = 0.4,
                     use_checkpointing: bool = False, attention_mode: str | None = "sdpa", export_safe: bool = False,
                     window_size: int = 16) -> ParagonSR2V2:
    """64 features, 4 groups × 4 Photo blocks, window attention (16×16, shifted every other block)."""
    return ParagonSR2V2(scale=scale, in_chans=in_chans, **BODIES["photo"], variant="photo",
                        detail_gain=detail_gain, upsampler_alpha=upsampler_alpha, use_checkpointing=use_checkpointing,
                        attention_mode=attention_mode, export_safe=export_safe, window_size=window_size)


def paragonsr2_pro(*, scale: int = 4, in_chans: int = 3, detail_gain: float = 0.1, upsampler_alpha: float = 0.4,
                   use_checkpointing: bool = False, attention_mode: str | None = "sdpa", export_safe: bool = False,
                   window_size: int = 16) -> ParagonSR2V2:
    """64 features, 6 groups × 6 Pro blocks: convolution, squeeze-excitation, window attention and a
    64-token dictionary."""
    return ParagonSR2V2(scale=scale, in_chans=in_chans, **BODIES["pro"], variant="pro",
                        detail_gain=detail_gain, upsampler_alpha=upsampler_alpha, use_checkpointing=use_checkpointing,
                        attention_mode=attention_mode, export_safe=export_safe, window_size=window_size)


FACTORIES = {
    "realtime": paragonsr2_realtime,
    "stream": paragonsr2_stream,
    "photo": paragonsr2_photo,
    "pro": paragonsr2_pro,
}
