"""The architecture registry: a traiNNer-style `network_g` mapping → nn.Module.

Two incompatible ParagonSR2 families share the `paragonsr2_` prefix: autosr's dual-path nano…xl
(`paragonsr2.py`) and the fork's realtime…pro (`paragonsr2_v2.py`). Each registered name checks
network_g against its own constructor. Imports torch; only commands that build networks import this
package.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from autosr.archs.paragonsr2 import VARIANTS, ParagonSR2, ParagonSR2ConfigError
from autosr.archs.paragonsr2_v2 import FACTORIES, ParagonSR2V2ConfigError
from autosr.errors import AutosrError, did_you_mean

ARCH_PREFIX = "paragonsr2_"
# family → its variants, smallest first. The family name is the `arch` of a model file's metadata.
FAMILIES: dict[str, tuple[str, ...]] = {"paragonsr2": tuple(VARIANTS), "paragonsr2_v2": tuple(FACTORIES)}
ARCH_NAMES: tuple[str, ...] = tuple(ARCH_PREFIX + v for variants in FAMILIES.values() for v in variants)


def family_of(name: str) -> str:
    """'paragonsr2_nano' → 'paragonsr2', 'paragonsr2_photo' → 'paragonsr2_v2' (a registered name)."""
    variant = name[len(ARCH_PREFIX):]
    return next(family for family, variants in FAMILIES.items() if variant in variants)


def _constructor(name: str) -> Any:
    variant = name[len(ARCH_PREFIX):]
    return FACTORIES[variant] if family_of(name) == "paragonsr2_v2" else ParagonSR2


# Per registered name, every keyword its constructor takes: the only keys network_g may carry besides
# `type` (nano…xl may override any table value; realtime…pro only what the fork's factories let through).
NETWORK_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(inspect.signature(_constructor(name)).parameters) for name in ARCH_NAMES
}


def network_defaults(name: str) -> dict[str, Any]:
    """Every constructor value a registered name builds with when network_g sets only `scale`."""
    defaults = {k: p.default for k, p in inspect.signature(_constructor(name)).parameters.items()
                if p.default is not inspect.Parameter.empty}
    if family_of(name) == "paragonsr2":
        defaults.update(VARIANTS[name[len(ARCH_PREFIX):]])
    return defaults


def build_network(opts: Mapping[str, Any]) -> nn.Module:
    """`{"type": "paragonsr2_nano", "scale": 2, "num_feat": 16}` → the module; the variant's
    defaults apply to every key not given."""
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
    accepted = NETWORK_KEYS[key]
    for unknown in sorted(set(args) - set(accepted)):
        raise AutosrError(
            f"unknown key network_g.{unknown}{did_you_mean(str(unknown), accepted)}",
            f"{key} accepts " + ", ".join(accepted),
        )
    if "scale" not in args:
        raise AutosrError("network_g.scale is missing", "set it to the dataset's scale: 2, 3 or 4")
    try:
        if family_of(key) == "paragonsr2_v2":
            return FACTORIES[key[len(ARCH_PREFIX):]](**args)
        return ParagonSR2(**{**VARIANTS[key[len(ARCH_PREFIX):]], **args})
    except (ParagonSR2ConfigError, ParagonSR2V2ConfigError) as e:
        raise AutosrError(e.message, e.hint) from None


def count_parameters(model: nn.Module, *, include_frozen: bool = False) -> int:
    """Trainable parameters; with include_frozen, every parameter, as the published tables count them
    (realtime…pro keep 72 frozen base-path values as parameters; nano…xl's base path has none)."""
    return sum(p.numel() for p in model.parameters() if include_frozen or p.requires_grad)
