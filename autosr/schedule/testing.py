"""Test helpers: a Controls that records every call, a RunInfo builder, scripted statistics.

For unit tests of automations without a Trainer (tests/test_schedule_*.py), and usable by the
trainer's own tests. Torch is imported only where tensors are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from autosr.train.hooks import LossInfo, RunInfo, StepStats, TierInfo, ValStats

if TYPE_CHECKING:
    import torch

TIERS: dict[str, TierInfo] = {
    "budget": TierInfo("budget", 0.75, 0.15, 800, 0.8, 1500, 4 * 2**30),
    "mid_range": TierInfo("mid_range", 0.85, 0.05, 1000, 1.0, 2000, 8 * 2**30),
    "high_end": TierInfo("high_end", 0.90, 0.03, 1200, 1.2, 2500, 24 * 2**30),
    "workstation": TierInfo("workstation", 0.93, 0.02, 1500, 1.5, 3000, 80 * 2**30),
    "cpu": TierInfo("cpu", 0.75, 0.15, 800, 0.8, 1500, None),
}


@dataclass
class Call:
    method: str
    args: tuple[Any, ...]
    reason: str


@dataclass
class FakeControls:
    """Implements hooks.Controls; records each call (and applies the trainer's bounds)."""

    calls: list[Call] = field(default_factory=list)
    lr_scale: float = 1.0
    clip_threshold: float | None = None
    batch_size: int = 0
    val_freq: int = 0
    stopped: str | None = None
    weights: Any = None
    knobs: dict[str, float] = field(default_factory=dict)

    def set_loss_weights(self, weights: torch.Tensor, reason: str) -> None:
        self.weights = weights
        self.calls.append(Call("set_loss_weights", (weights,), reason))

    def scale_lr(self, factor: float, reason: str) -> None:
        self.lr_scale = min(2.0, max(0.1, self.lr_scale * factor))
        self.calls.append(Call("scale_lr", (factor,), reason))

    def set_clip_threshold(self, max_norm: float, reason: str) -> None:
        self.clip_threshold = min(10.0, max(0.1, float(max_norm)))
        self.calls.append(Call("set_clip_threshold", (max_norm,), reason))

    def set_batch_size(self, batch_size: int, reason: str) -> None:
        self.batch_size = batch_size
        self.calls.append(Call("set_batch_size", (batch_size,), reason))

    def set_val_freq(self, val_freq: int, reason: str) -> None:
        self.val_freq = val_freq
        self.calls.append(Call("set_val_freq", (val_freq,), reason))

    def set_knob(self, name: str, value: float, reason: str) -> None:
        self.knobs[name] = value
        self.calls.append(Call("set_knob", (name, value), reason))

    def roll_back(self, requester: str, reason: str) -> None:
        self.calls.append(Call("roll_back", (requester,), reason))

    def stop(self, reason: str) -> None:
        self.stopped = reason
        self.calls.append(Call("stop", (), reason))

    def note(self, key: str, old: Any, new: Any, reason: str) -> None:
        self.calls.append(Call("note", (key, old, new), reason))

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def notes(self, key_prefix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == "note" and str(c.args[0]).startswith(key_prefix)]


def make_run(**changes: Any) -> RunInfo:
    """A plausible RunInfo (nano, two losses, high_end tier, 40k iterations); override any field.
    `tier="cpu"` (a name) picks a row of TIERS."""
    tier = changes.pop("tier", "high_end")
    run = RunInfo(
        total_iter=40_000, warmup_iter=0, arch="paragonsr2_nano", variant="nano", scale=2,
        losses=(LossInfo("l1", "l1loss", 1.0), LossInfo("ssim", "ssimloss", 0.05)), has_gan=False,
        tier=TIERS[tier] if isinstance(tier, str) else tier, complexity=0.5, world_size=1, batch_size=16, accum_iter=1,
        lq_size=64, val_freq=1600, val_metric="psnr", print_freq=100, resumed=False, start_iter=0, time_budget_s=None,
    )
    return replace(run, **changes)


def step_stats(iteration: int, losses: dict[str, float], *, grad_norm: float = 1.0, clip_threshold: float | None = None,
               batch_size: int = 16, peak_memory_bytes: int | None = None, lr_scale: float = 1.0,
               weights: list[float] | None = None, phase: str = "middle", extras: dict[str, float] | None = None) -> StepStats:
    """One step's statistics as small CPU tensors."""
    import torch

    values = {k: torch.tensor(float(v)) for k, v in losses.items()}
    total = torch.stack(list(values.values())).sum() if values else torch.tensor(0.0)
    g = torch.tensor(float(grad_norm))
    limit = clip_threshold if clip_threshold is not None else float("inf")
    return StepStats(
        iteration=iteration, losses=values, total=total, grad_norm=g, clipped=g > limit,
        weights=torch.tensor(weights if weights is not None else [1.0] * max(1, len(values))),
        batch_size=batch_size, step_seconds=0.01, peak_memory_bytes=peak_memory_bytes, phase=phase,
        lr=1e-4 * lr_scale, lr_scale=lr_scale, clip_threshold=clip_threshold,
        extras={k: torch.tensor(float(v)) for k, v in (extras or {}).items()},
    )


def val_stats(iteration: int, psnr: float, *, best: tuple[float, int] | None = None, improved: bool = False) -> ValStats:
    return ValStats(
        iteration=iteration, metrics={"psnr": psnr}, best={"psnr": best} if best else {},
        higher_is_better={"psnr": True}, improved=("psnr",) if improved else (), primary="psnr",
    )
