"""What one optimisation step computes, behind one small interface: the loop never asks which.

An objective owns the networks, optimisers, scalers, EMA and losses of a kind of training
(fidelity today; GAN next) and does one step on the batches the loop hands it: forward, losses,
backward, clipping, the optimiser(s), EMA. The loop owns everything around it — time, validation,
checkpoints, automations, the journal and the agreement between processes — and reads back only
what this interface gives: the step's statistics, the model to validate and save, its state.
Lightning's LightningModule/Trainer split and traiNNer's model classes vs `train.py` are the anchors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from autosr.train.data import Batch
from autosr.train.losses import LossTerm
from autosr.train.setup import Note


@dataclass(frozen=True)
class StepContext:
    """What the loop decides for the coming step."""

    iteration: int  # the step's number, counted from 1 (what scheduled loss weights are a function of)
    accum: int  # micro-batches per step (gradient accumulation)
    clip_threshold: float | None  # clip the gradient norm to this; None: clipping is off
    world_size: int


@dataclass
class StepOutput:
    """What one step computed, as device tensors (reading them is a host sync: the loop reads them
    at log points only). Under DDP these are this rank's; the loop averages them over the ranks."""

    total: Tensor  # the weighted loss that was back-propagated (of the generator)
    losses: dict[str, Tensor]  # each unweighted loss term, by name
    grad_norm: Tensor  # the generator's total gradient norm, before clipping
    clipped: Tensor  # bool
    finite: Tensor  # bool: the step's gradients were finite and the weights were updated
    extras: dict[str, Tensor] = field(default_factory=dict)  # objective-specific statistics (a GAN's D side)


class Objective(Protocol):
    """One kind of training. `loss_weights` (a device tensor, in `terms` order) is what the runtime
    scheduler balances; the loop writes it in place."""

    name: str
    loss_weights: Tensor
    notes: list[Note]
    knobs: dict[str, float]  # what the runtime scheduler may turn besides the loop's (a GAN's D side); may be empty
    # the run's result is its final model, not its best-PSNR one (a GAN trades PSNR for detail: the PSNR-best
    # model would be the fidelity phase's)
    final_is_result: bool

    @property
    def terms(self) -> Sequence[LossTerm]:
        """The generator's loss terms, in the order of loss_weights."""

    @property
    def model(self) -> nn.Module:
        """The generator being trained (its weights are net_g)."""

    @property
    def eval_model(self) -> nn.Module:
        """What validation and the 'best' model use (the EMA weights where there is EMA)."""

    def step(self, next_batch: Callable[[], Batch], ctx: StepContext) -> StepOutput:
        """One optimisation step over `ctx.accum` batches from `next_batch`."""

    def set_lr(self, factor: float) -> float:
        """Every optimiser's learning rate = its configured one × factor; returns the generator's."""

    def set_knob(self, name: str, value: float) -> float:
        """Turn one of `knobs` (bounded); returns the value taken. KeyError for a name it does not have."""

    def zero_grad(self) -> None:
        """Drop the gradients of a step cut short (out of memory, lost data)."""

    def trained_modules(self) -> list[nn.Module]:
        """Every network whose weights train: the processes of a run must agree on them."""

    def weights(self) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None]:
        """(net_g, net_g_ema or None): the state dicts saved as model files."""

    def state_dict(self) -> dict[str, Any]:
        """Its part of a checkpoint (top-level keys, beside the loop's)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def summary(self) -> dict[str, Any]:
        """Its hyperparameters, stored in every model file."""


# ---- parts every objective's step uses ----------------------------------------------------------

def clip_gradients(params: Sequence[nn.Parameter], threshold: float | None, device: torch.device) -> tuple[Tensor, Tensor]:
    """Total grad norm (before clipping) and whether it was clipped; clip to `threshold`; a
    non-finite norm zeroes the gradients instead of poisoning the weights. No host sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        zero = torch.zeros((), device=device)
        return zero, zero.bool()
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    limit = math.inf if threshold is None else threshold
    coef = torch.clamp(limit / (norm + 1e-6), max=1.0)
    coef = torch.where(torch.isfinite(norm), coef, torch.zeros_like(coef))
    torch._foreach_mul_(grads, coef)
    return norm, norm > limit


def step_unless_nonfinite(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, finite: Tensor,
                          *, use_scaler: bool) -> None:
    """Update the weights unless the gradients are not finite. No host sync on a GPU: GradScaler and
    the fused AdamW skip on the device; the CPU reads the flag (free there)."""
    if use_scaler:
        scaler.step(optimizer)  # GradScaler skips non-finite steps itself
    elif optimizer.defaults.get("fused"):
        optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]  # fused AdamW skips on the device
        optimizer.step()
    elif bool(finite):
        optimizer.step()
    scaler.update()
