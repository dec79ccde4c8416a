"""Architecture presets (presets/*.yml) → Preset: the starting values the planner adapts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from autosr.errors import AutosrError, did_you_mean
from autosr.resources import data_dir

VARIANTS = ("nano", "micro", "tiny", "xs", "s", "m", "l", "xl")  # smallest to largest: what the planner picks from
# The fork's realtime…pro family (archs/paragonsr2_v2.py): planned when asked for (--arch), listed by `autosr presets`.
V2_VARIANTS = ("realtime", "stream", "photo", "pro")
ARCH_PREFIX = "paragonsr2_"
_REQUIRED = (
    "arch", "network", "lq_size", "effective_batch", "optimizer", "warmup_iter", "total_iter",
    "ema_decay", "losses", "dynamic_loss_scheduling", "memory",
)


@dataclass(frozen=True)
class Checkpointing:
    """What `use_checkpointing: true` does to a training step (benchmarks/checkpointing_cost.py)."""

    memory_share: float  # memory per sample with it ÷ without
    step_time: float  # step time with it ÷ without
    source: str


@dataclass(frozen=True)
class Preset:
    variant: str
    arch: str
    network: dict[str, Any]
    lq_size: int
    effective_batch: int
    optimizer: dict[str, Any]
    warmup_iter: int
    total_iter: int
    ema_decay: float
    losses: tuple[dict[str, Any], ...]
    dynamic_loss_scheduling: dict[str, float]
    per_sample_mib: float  # training memory per sample at lq 64, scale 2
    fixed_mib: float
    memory_source: str
    checkpointing: Checkpointing | None = None  # the network takes use_checkpointing (realtime…pro)

    @property
    def lr(self) -> float:
        return float(self.optimizer["lr"])

    def sample_mib(self, lq_size: int, scale: int, checkpointed: bool = False) -> float:
        """Memory per training sample: activations grow with the LR patch area; the HR-side
        tensors (output, target, loss maps) are a smaller share that grows with scale²."""
        area = (lq_size / 64) ** 2
        hr_share = 0.15 * ((scale / 2) ** 2 - 1)  # ~15% of the x2 figure is HR-sized
        share = self.checkpointing.memory_share if checkpointed and self.checkpointing else 1.0
        return self.per_sample_mib * share * area * max(0.5, 1.0 + hr_share)

    def batch_for(self, budget_mib: float, lq_size: int, scale: int, checkpointed: bool = False) -> int:
        """Largest batch whose estimated training memory fits `budget_mib` (at least 1)."""
        usable = budget_mib - self.fixed_mib
        return max(1, int(usable // self.sample_mib(lq_size, scale, checkpointed)))


def variant_of(arch: str) -> str:
    """'paragonsr2_nano' → 'nano'; an unknown name is an error with a suggestion."""
    name = arch.strip().lower()
    variant = name[len(ARCH_PREFIX):] if name.startswith(ARCH_PREFIX) else name
    if variant not in VARIANTS + V2_VARIANTS:
        known = [ARCH_PREFIX + v for v in VARIANTS + V2_VARIANTS]
        raise AutosrError(
            f"unknown architecture '{arch}'{did_you_mean(name, known)}",
            "choose one of " + ", ".join(known),
        )
    return variant


@cache
def load_preset(arch: str) -> Preset:
    variant = variant_of(arch)
    path = data_dir("presets") / f"{variant}.yml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise AutosrError(f"{path}: preset is missing {', '.join(missing)}", "restore it from the autosr repo")
    mem = raw["memory"]
    return Preset(
        variant=variant,
        arch=raw["arch"],
        network=dict(raw["network"]),
        lq_size=int(raw["lq_size"]),
        effective_batch=int(raw["effective_batch"]),
        optimizer=dict(raw["optimizer"]),
        warmup_iter=int(raw["warmup_iter"]),
        total_iter=int(raw["total_iter"]),
        ema_decay=float(raw["ema_decay"]),
        losses=tuple(dict(x) for x in raw["losses"]),
        dynamic_loss_scheduling={k: float(v) for k, v in raw["dynamic_loss_scheduling"].items()},
        per_sample_mib=float(mem["per_sample_mib"]),
        fixed_mib=float(mem["fixed_mib"]),
        memory_source=str(mem.get("source", "estimate")),
        checkpointing=_checkpointing(path, raw.get("checkpointing")),
    )


def _checkpointing(path: Any, raw: Any) -> Checkpointing | None:
    if raw is None:
        return None
    try:
        return Checkpointing(float(raw["memory_share"]), float(raw["step_time"]), str(raw.get("source", "estimate")))
    except (TypeError, KeyError, ValueError) as exc:
        raise AutosrError(f"{path}: checkpointing needs numbers memory_share and step_time ({exc})",
                          "restore it from the autosr repo") from None


def all_presets() -> list[Preset]:
    """nano…xl: the presets the planner chooses among."""
    return [load_preset(v) for v in VARIANTS]


def listed_presets() -> list[Preset]:
    """Every preset, nano…xl then realtime…pro (`autosr presets`)."""
    return all_presets() + [load_preset(v) for v in V2_VARIANTS]
