"""Reading a bare ParagonSR2 realtime…pro state dict: is it one, and which constructor values built it.

Needs no spandrel (autosr loads the fork's files with it) and imports only the network file, so
spandrel support (`spandrel_support.py`) and `autosr upscale` share one reading.

Read off the tensors: in_chans, num_feat, scale, groups, blocks, the block kind (`variant`), whether
window attention exists (else `export_safe`), and `detail_gain` (a stored parameter). Not in the weights,
so taken from the matching registered variant (else the class default): `upsampler_alpha` (the fork
keeps it as a plain number), `window_size` (the attention weights do not depend on it) and
`attention_mode` (sdpa and flex share the weights).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from autosr.archs.paragonsr2_v2 import BODIES, FACTORIES, ParagonSR2V2

# Keys every realtime…pro network has, and no nano…xl one: the stored frozen base path, the scalar
# gain and the convolutions around the body. (nano…xl has conv_fuse / upsampler.conv / base.alpha.)
REQUIRED = ("detail_gain", "base.sharp.kernel", "base.sharp.h.weight", "base.blur.h.weight", "conv_in.weight",
            "conv_mid.weight", "up.0.weight", "conv_out.weight")
# The first block's key that only its kind has; checked in this order (pro and photo have conv1 too).
_FIRST_BLOCK = "body.0.blocks.0."
_KIND_MARKERS = (("pro", "token_ca.token_dict"), ("photo", "norm.scale"), ("stream", "dw3.weight"),
                 ("realtime", "conv1.weight"))
_ATTENTION = {"photo": "attn.qkv.weight", "pro": "window_attn.qkv.weight"}


def block_kind(state: Mapping[str, object]) -> str | None:
    """realtime / stream / photo / pro from the first block's keys; None when none fits."""
    for kind, marker in _KIND_MARKERS:
        if _FIRST_BLOCK + marker in state:
            return kind
    return None


def is_paragonsr2_v2(state: Mapping[str, object]) -> bool:
    return all(k in state for k in REQUIRED) and block_kind(state) is not None


def _seq_len(state: Mapping[str, object], prefix: str) -> int:
    """1 + the largest i with a key `{prefix}.{i}.…` (0 if none)."""
    head = prefix + "."
    found = [int(rest.split(".", 1)[0]) for k in state if k.startswith(head)
             and (rest := k[len(head):]).split(".", 1)[0].isdigit()]
    return max(found, default=-1) + 1


def _defaults(fn: Any) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def registered_variant(hyper: Mapping[str, Any]) -> str | None:
    """The registered variant (paragonsr2_<name>) whose body these values are, if any."""
    for name, body in BODIES.items():
        if hyper["variant"] == name and all(hyper[k] == v for k, v in body.items()):
            return name
    return None


def hyperparameters(state: Mapping[str, Any]) -> dict[str, Any]:
    """Every ParagonSR2V2 constructor value; raises KeyError/ValueError on a state dict that is not one."""
    kind = block_kind(state)
    if kind is None or not all(k in state for k in REQUIRED):
        raise ValueError("not a ParagonSR2 realtime/stream/photo/pro state dict")
    num_feat, in_chans = (int(n) for n in state["conv_in.weight"].shape[:2])
    scale = math.isqrt(int(state["up.0.weight"].shape[0]) // num_feat)
    hyper: dict[str, Any] = {
        "scale": scale, "in_chans": in_chans, "num_feat": num_feat,
        "num_groups": _seq_len(state, "body"), "num_blocks": _seq_len(state, "body.0.blocks"), "variant": kind,
    }
    variant = registered_variant(hyper)
    defaults = {**_defaults(ParagonSR2V2), **(_defaults(FACTORIES[variant]) if variant else {})}
    has_attention = kind in _ATTENTION and _FIRST_BLOCK + _ATTENTION[kind] in state
    hyper.update(
        detail_gain=float(state["detail_gain"]),
        upsampler_alpha=defaults["upsampler_alpha"],
        use_checkpointing=False,
        attention_mode=defaults["attention_mode"],
        export_safe=kind in _ATTENTION and not has_attention,
        window_size=defaults["window_size"],
    )
    return hyper
