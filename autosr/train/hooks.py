"""The hook contract between the trainer and run-time automations (the runtime scheduler).

An automation sees a frozen description of the run at start, the same statistics after every
step and validation, phase changes, batch-size changes and the end of the run. It acts only
through `Controls`: the trainer applies every change in one place, journals it and writes it to
TensorBoard — nothing changes silently, and nothing can only log.

Torch-free at import (statistics hold tensors, but this module only names their type), so the
scheduler package that depends on it imports without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

PHASES = ("warmup", "early", "middle", "late")


def phase_of(iteration: int, total_iter: int, warmup_iter: int) -> str:
    """runtime-scheduler.md: warmup while the LR ramps, then early < 10% ≤ middle < 80% ≤ late."""
    if iteration < warmup_iter:
        return "warmup"
    progress = iteration / max(1, total_iter)
    return "early" if progress < 0.10 else ("middle" if progress < 0.80 else "late")


@dataclass(frozen=True)
class LossInfo:
    name: str  # the term's name in statistics and controls ("l1", "ssim")
    type: str  # traiNNer type name, lower case ("l1loss")
    base_weight: float  # the configured loss_weight
    starts_late: bool = False  # a scheduled term (start_iter) that is not computed at first: absent from stats until then


@dataclass(frozen=True)
class TierInfo:
    """The hardware tier and its settings (runtime-scheduler.md's table)."""

    name: str  # budget | mid_range | high_end | workstation | cpu
    vram_target: float
    safety_margin: float
    lr_patience: int
    clip_start: float
    early_stop_patience: int
    vram_total_bytes: int | None  # of one GPU of the run; None on the CPU


@dataclass(frozen=True)
class RunInfo:
    """What every automation knows about the run, fixed at start."""

    total_iter: int
    warmup_iter: int  # 0 when there is no warm-up
    arch: str  # "paragonsr2_nano"
    variant: str  # "nano"
    scale: int
    losses: tuple[LossInfo, ...]
    has_gan: bool
    tier: TierInfo
    complexity: float  # 0..1, measured on the first training batch (runtime-scheduler.md formula)
    world_size: int
    batch_size: int  # per GPU, at start
    accum_iter: int
    lq_size: int
    val_freq: int  # 0 when there is no validation
    val_metric: str | None  # the metric that picks the best model ("psnr"), None without validation
    print_freq: int
    resumed: bool
    start_iter: int  # the iteration the run (re)starts at
    time_budget_s: float | None  # the run's wall-clock budget, when one is set


@dataclass
class StepStats:
    """What one optimiser step produced. Tensors stay on the device (under DDP: averaged over the
    ranks, so every rank sees the same numbers); read them (a host sync) only when needed."""

    iteration: int  # the step's number, counted from 1 after it ran
    losses: dict[str, torch.Tensor]  # unweighted value per active loss term
    total: torch.Tensor  # the weighted sum that was back-propagated
    grad_norm: torch.Tensor  # before clipping
    clipped: torch.Tensor  # bool: the norm was above the threshold and gradients were scaled down
    weights: torch.Tensor  # the loss weights used, in RunInfo.losses order (a device tensor)
    batch_size: int
    step_seconds: float
    peak_memory_bytes: int | None
    phase: str
    lr: float  # the learning rate this step used (first param group)
    lr_scale: float  # the automations' factor inside it
    clip_threshold: float | None  # None when clipping is off
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # objective-specific (a GAN's D loss, logits)


@dataclass
class ValStats:
    iteration: int
    metrics: dict[str, float]  # e.g. {"psnr": 31.2, "ssim": 0.91}
    best: dict[str, tuple[float, int]] = field(default_factory=dict)  # metric → (value, iteration)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    improved: tuple[str, ...] = ()  # metrics that reached a new best at this validation
    primary: str | None = None  # the metric that picks the best model
    val_freq: int = 0  # the validation interval in force (with a time budget: the spacing of the ones left)
    total_iter: int = 0  # the run's length now (a time budget re-fits it)


class Controls(Protocol):
    """What an automation may change. Each call takes effect from the next step and is journaled."""

    def set_loss_weights(self, weights: torch.Tensor, reason: str) -> None:
        """New weights for every loss (RunInfo.losses order), as a device tensor: no host sync.
        Journaled at phase changes and every print_freq, not on every step."""

    def scale_lr(self, factor: float, reason: str) -> None:
        """Multiply the automations' LR factor (bounded to [0.1, 2] of the configured schedule)."""

    def set_clip_threshold(self, max_norm: float, reason: str) -> None:
        """Clip gradients to this norm from the next step (bounded to [0.1, 10]; turns clipping on)."""

    def set_batch_size(self, batch_size: int, reason: str) -> None:
        """Change the per-GPU batch size from the next step."""

    def set_val_freq(self, val_freq: int, reason: str) -> None:
        """Validate every val_freq iterations from now on."""

    def set_knob(self, name: str, value: float, reason: str) -> None:
        """Turn one of the objective's own knobs (a GAN's d_lr_scale, d_every), bounded by it."""

    def roll_back(self, requester: str, reason: str) -> None:
        """From a validation: back to the checkpoint of the best validation (else the latest before now),
        after this validation. `requester` (the automation's name) keeps its own state across it."""

    def stop(self, reason: str) -> None:
        """End the run after this step (checkpoint and best model kept)."""

    def note(self, key: str, old: Any, new: Any, reason: str) -> None:
        """Journal a decision that changes no knob (a calibration, a skipped action and why)."""


class Automation:
    """Base class: override what you need. `name` is the config key (e.g. "AdaptiveGradientClipping")
    and the key of its state in checkpoints (unique per run)."""

    name = "automation"
    # after_step runs on iterations that are multiples of this (the trainer may raise it: on a
    # fast GPU step every small kernel of an automation's maths costs time); an automation's
    # per-observation constants then stand for `step_interval` iterations.
    step_interval = 1

    def on_start(self, run: RunInfo, controls: Controls) -> None:
        """Once before the first step of this process (also after a resume: see run.resumed)."""

    def after_step(self, stats: StepStats, controls: Controls) -> None:
        """After every optimiser step."""

    def after_validation(self, stats: ValStats, controls: Controls) -> None:
        """After every validation (on every rank under DDP: rank 0 decides, its decisions are
        broadcast by the trainer)."""

    def on_phase(self, phase: str, iteration: int, controls: Controls) -> None:
        """When the run enters a new phase (PHASES). Not repeated after a resume."""

    def on_batch_size(self, old: int, new: int, reason: str, controls: Controls) -> None:
        """After the batch size changed (an out-of-memory back-off, or an automation's request)."""

    def on_end(self, iteration: int, controls: Controls) -> None:
        """Once when the run ends (finished, stopped or interrupted), before the last save."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned (resume must be exact)."""
