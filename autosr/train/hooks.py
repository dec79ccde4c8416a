"""Hook points for run-time automations (the runtime scheduler plugs in here).

An automation sees the same statistics after every step and validation and at phase changes,
and acts only through `Controls`: every change it makes is applied by the trainer and written
to the decision journal — nothing can change silently, and nothing can only log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

PHASES = ("warmup", "early", "middle", "late")


def phase_of(iteration: int, total_iter: int, warmup_iter: int) -> str:
    """runtime-scheduler.md: warmup while the LR ramps, then early < 10% ≤ middle < 80% ≤ late."""
    if iteration < warmup_iter:
        return "warmup"
    progress = iteration / max(1, total_iter)
    return "early" if progress < 0.10 else ("middle" if progress < 0.80 else "late")


@dataclass
class StepStats:
    """What one optimiser step produced. Tensors stay on the device: read them (a host sync)
    only when an automation needs the number."""

    iteration: int
    losses: dict[str, torch.Tensor]  # unweighted value per loss term
    total: torch.Tensor  # weighted sum that was back-propagated
    grad_norm: torch.Tensor  # before clipping
    batch_size: int
    step_seconds: float
    peak_memory_bytes: int | None
    phase: str


@dataclass
class ValStats:
    iteration: int
    metrics: dict[str, float]  # e.g. {"psnr": 31.2, "ssim": 0.91}
    best: dict[str, tuple[float, int]] = field(default_factory=dict)  # metric → (value, iter)


class Controls(Protocol):
    """What an automation may change. Each call takes effect from the next step and is journaled."""

    def set_loss_weight(self, name: str, weight: float, reason: str) -> None: ...
    def scale_lr(self, factor: float, reason: str) -> None: ...
    def set_clip_threshold(self, max_norm: float, reason: str) -> None: ...
    def set_batch_size(self, batch_size: int, reason: str) -> None: ...
    def set_val_freq(self, val_freq: int, reason: str) -> None: ...
    def stop(self, reason: str) -> None: ...


class Automation:
    """Base class: override what you need. `name` is the config key (e.g. "AdaptiveGradientClipping")."""

    name = "automation"

    def on_start(self, controls: Controls, run: dict[str, Any]) -> None:
        """Once before the first step; `run` holds total_iter, hardware tier, arch, loss names…"""

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        """After every optimiser step."""

    def after_validation(self, stats: ValStats, controls: Controls) -> None:
        """After every validation."""

    def on_phase(self, phase: str, iteration: int, controls: Controls) -> None:
        """When the run enters a new phase (PHASES)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned (resume must be exact)."""
