"""The architecture registry: a traiNNer-style `network_g` mapping → nn.Module.

Imports torch; only commands that build networks import this package.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from autosr.archs.paragonsr2 import VARIANTS, ParagonSR2, ParagonSR2ConfigError
from autosr.errors import AutosrError, did_you_mean

ARCH_PREFIX = "paragonsr2_"
ARCH_NAMES: tuple[str, ...] = tuple(ARCH_PREFIX + v for v in VARIANTS)
# Every keyword the constructor takes: the only keys network_g may carry besides `type`.
NETWORK_KEYS: tuple[str, ...] = tuple(inspect.signature(ParagonSR2).parameters)


def build_network(opts: Mapping[str, Any]) -> nn.Module:
    """`{"type": "paragonsr2_nano", "scale": 2, "num_feat": 16}` → the module; the variant's
    table values are the defaults, other keys override them."""
    args = dict(opts)
    name = args.pop("type", None)
    if name is None:
        raise AutosrError("network_g.type is missing", "set it to one of " + ", ".join(ARCH_NAMES))
    key = str(name).strip().lower()
    if key not in ARCH_NAMES:
        raise AutosrError(
            f"unknown network_g.type '{name}'{did_you_mean(key, ARCH_NAMES)}",
            "choose one of " + ", ".join(ARCH_NAMES),
        )
    for unknown in sorted(set(args) - set(NETWORK_KEYS)):
        raise AutosrError(
            f"unknown key network_g.{unknown}{did_you_mean(str(unknown), NETWORK_KEYS)}",
            f"{key} accepts " + ", ".join(NETWORK_KEYS),
        )
    if "scale" not in args:
        raise AutosrError("network_g.scale is missing", "set it to the dataset's scale: 2, 3 or 4")
    try:
        return ParagonSR2(**{**VARIANTS[key[len(ARCH_PREFIX):]], **args})
    except ParagonSR2ConfigError as e:
        raise AutosrError(e.message, e.hint) from None


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the frozen base path has none)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
