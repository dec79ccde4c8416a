"""ParagonSR2 for spandrel (the model loader behind chaiNNer): detection from state-dict keys and every
constructor value deduced from tensor shapes, so that a bare state dict loads with no metadata.

Two architectures, one per family, whose keys never overlap: `ParagonSR2` (autosr's nano…xl) and
`ParagonSR2v2` (the fork's realtime…pro; its reading lives in `paragonsr2_v2_keys.py`).

Written in the shape of spandrel's own `architectures/<Name>/__init__.py` (an `Architecture` with a
key-based `detect` and a `load` that reads shapes), apart from the network files
(`autosr/archs/paragonsr2.py`, `paragonsr2_v2.py`, which import nothing from autosr), so that they can be
offered upstream as they are. Until then one call registers both:

    import autosr.archs.spandrel_support as paragon
    paragon.install()                       # adds ParagonSR2 and ParagonSR2v2 to spandrel.MAIN_REGISTRY
    spandrel.ModelLoader().load_from_file("2x_name_nano_40k.safetensors")

Importing this module imports spandrel (and through it torchvision); `autosr` itself never does.
"""

from __future__ import annotations

import math

import torch

try:
    from spandrel import (
        MAIN_REGISTRY,
        Architecture,
        ArchRegistry,
        ArchSupport,
        ImageModelDescriptor,
        StateDict,
    )
    from spandrel.util import KeyCondition, get_seq_len
except ImportError as exc:  # an optional extra: say which
    raise ImportError(f'autosr.archs.spandrel_support needs spandrel ({exc}): pip install "autosr[spandrel]"') from exc

from autosr.archs import paragonsr2_v2_keys as v2_keys
from autosr.archs.paragonsr2 import VARIANTS, ParagonSR2
from autosr.archs.paragonsr2_v2 import ParagonSR2V2

ARCH_ID = "ParagonSR2"
V2_ARCH_ID = "ParagonSR2v2"

# Keys only ParagonSR2 has together: the first block's three-branch depthwise context, its two
# layer scales and the fused/upsampled/out convolutions around the body. `base.alpha` is not among
# them: files written before it was a buffer lack it.
_DETECT = KeyCondition.has_all(
    "conv_in.weight",
    "body.0.blocks.0.context.square.weight",
    "body.0.blocks.0.context.wide.weight",
    "body.0.blocks.0.context.tall.weight",
    "body.0.blocks.0.ls_context.gamma",
    "body.0.blocks.0.ffn.expand.weight",
    "body.0.blocks.0.ffn.project.weight",
    "body.0.blocks.0.ls_ffn.gamma",
    "conv_fuse.weight",
    "upsampler.conv.weight",
    "conv_out.weight",
)


def _variant_of(hyper: dict[str, object]) -> str | None:
    """The table variant these values are, if any (a tag, and the sharpening default of old files)."""
    keys = ("num_feat", "num_groups", "num_blocks", "band_kernel", "use_attention", "use_channel_mod")
    for name, row in VARIANTS.items():
        if all(row[k] == hyper[k] for k in keys):
            return name
    return None


def hyperparameters(state_dict: StateDict) -> dict[str, object]:
    """Every constructor value that shapes the network, read off the tensors.

    `detail_gain` only scales conv_out at initialisation, so it does not matter for loading and
    keeps its default. `upsampler_alpha` is the `base.alpha` buffer; a file without it gets its
    variant's value (the only value such files were trained with)."""
    conv_in = state_dict["conv_in.weight"]
    num_feat, in_chans = int(conv_in.shape[0]), int(conv_in.shape[1])
    shuffle = int(state_dict["upsampler.conv.weight"].shape[0]) // num_feat
    scale = round(math.sqrt(shuffle))
    hidden = int(state_dict["body.0.blocks.0.ffn.expand.weight"].shape[0])
    hyper: dict[str, object] = {
        "scale": scale,
        "in_chans": in_chans,
        "num_feat": num_feat,
        "num_groups": get_seq_len(state_dict, "body"),
        "num_blocks": get_seq_len(state_dict, "body.0.blocks"),
        "ffn_ratio": hidden / num_feat,  # the network keeps ⌊C·r + ε⌋ = hidden channels
        "band_kernel": int(state_dict["body.0.blocks.0.context.wide.weight"].shape[-1]),
        "use_attention": any(".attn.qkv.weight" in k for k in state_dict),
        "use_channel_mod": any(".ffn.channel_mod." in k for k in state_dict),
        "use_content_aware": "content_gain.head.weight" in state_dict,
    }
    if "base.alpha" in state_dict:
        hyper["upsampler_alpha"] = float(state_dict["base.alpha"])
    else:
        variant = _variant_of(hyper)
        hyper["upsampler_alpha"] = float(VARIANTS[variant]["upsampler_alpha"]) if variant else 0.5
    return hyper


class ParagonSR2Arch(Architecture[ParagonSR2]):
    def __init__(self) -> None:
        super().__init__(id=ARCH_ID, name="ParagonSR2", detect=_DETECT)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[ParagonSR2]:
        hyper = hyperparameters(state_dict)
        if "base.alpha" not in state_dict:  # an older file: the buffer the network now keeps
            state_dict["base.alpha"] = torch.tensor(hyper["upsampler_alpha"], dtype=torch.float32)
        model = ParagonSR2(**hyper)  # type: ignore[arg-type]
        variant = _variant_of(hyper)
        tags = [variant] if variant else []
        tags.append(f"{hyper['num_feat']}nf")
        scale, channels = int(hyper["scale"]), int(hyper["in_chans"])  # type: ignore[call-overload]
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=tags,
            supports_half=True,  # written for autocast; its fixed-kernel buffers follow the input dtype
            supports_bfloat16=True,
            scale=scale,
            input_channels=channels,
            output_channels=channels,
        )


class ParagonSR2V2Arch(Architecture[ParagonSR2V2]):
    """The fork's realtime…pro. Detected by the keys no nano…xl file has (the stored frozen base path,
    `detail_gain`, `conv_mid`, `up.0`) plus the first block's kind. `upsampler_alpha` and `window_size`
    are not in the weights: the matching variant's defaults are used (see paragonsr2_v2_keys)."""

    def __init__(self) -> None:
        super().__init__(id=V2_ARCH_ID, name="ParagonSR2 (realtime…pro)", detect=v2_keys.is_paragonsr2_v2)

    def load(self, state_dict: StateDict) -> ImageModelDescriptor[ParagonSR2V2]:
        hyper = v2_keys.hyperparameters(state_dict)
        model = ParagonSR2V2(**hyper)
        variant = v2_keys.registered_variant(hyper)
        tags = [variant] if variant else [hyper["variant"], f"{hyper['num_feat']}nf"]
        if hyper["export_safe"]:
            tags.append("no attention")
        channels = int(hyper["in_chans"])
        return ImageModelDescriptor(
            model,
            state_dict,
            architecture=self,
            purpose="SR",
            tags=tags,
            supports_half=True,  # the stream gate multiplies in fp32 and clamps; RMSNorm's mean square is fp32
            supports_bfloat16=True,
            scale=int(hyper["scale"]),
            input_channels=channels,
            output_channels=channels,
        )


def install(registry: ArchRegistry | None = None) -> None:
    """Register both ParagonSR2 families with spandrel (its MAIN_REGISTRY unless another registry is
    given). Calling it again does nothing."""
    target = MAIN_REGISTRY if registry is None else registry
    for arch in (ParagonSR2Arch(), ParagonSR2V2Arch()):
        if arch.id not in target:
            target.add(ArchSupport.from_architecture(arch))
