"""Fidelity training: one generator and its pixel, structure and perceptual losses (and ldlloss, with the
EMA generator) — the first objective."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from autosr.train.data import Batch
from autosr.train.generator import Generator, NoSync, check_terms, generator_loss
from autosr.train.losses import LossTerm, build_losses
from autosr.train.objective import StepContext, StepOutput
from autosr.train.settings import Settings
from autosr.train.setup import DistInfo, Note, Precision


class FidelityObjective:
    name = "fidelity"
    final_is_result = False

    def __init__(self, s: Settings, device: torch.device, precision: Precision, dist: DistInfo) -> None:
        self.terms: list[LossTerm] = build_losses(list(s.losses))
        check_terms(self.terms, s.source, has_ema=s.ema_decay > 0, has_d=False)
        self.g = Generator(s, device, precision, dist, self.terms)
        self.autocast = precision.autocast(device)
        self.notes: list[Note] = self.g.notes
        # Loss weights live on the device: the scheduler changes them with no host sync per step.
        self.loss_weights = torch.tensor([t.weight for t in self.terms], dtype=torch.float32, device=device)
        self.knobs: dict[str, float] = {}  # nothing to turn but what the loop owns
        self._settings = s

    @property
    def model(self) -> nn.Module:
        return self.g.model

    @property
    def eval_model(self) -> nn.Module:
        return self.g.eval_model

    def step(self, next_batch: Callable[[], Batch], ctx: StepContext) -> StepOutput:
        parts_sum: dict[str, Tensor] = {}
        total_sum: Tensor | None = None
        step_model = self.g.step_model
        for micro in range(ctx.accum):
            lq, gt = next_batch()
            sync = ctx.world_size == 1 or micro == ctx.accum - 1
            with (step_model.no_sync() if not sync else NoSync()), self.autocast():
                sr = step_model(lq)
                total, parts = generator_loss(self.terms, self.loss_weights, ctx.iteration, sr, lq, gt,
                                              ema_model=self.g.ema.module if self.g.ema is not None else None)
            self.g.scaler.scale(total / ctx.accum if ctx.accum > 1 else total).backward()
            if ctx.accum == 1:  # the common case: no averaging kernels (a small model is launch-bound)
                total_sum, parts_sum = total.detach(), parts
                continue
            share = total.detach() / ctx.accum
            total_sum = share if total_sum is None else total_sum + share
            for name, value in parts.items():
                parts_sum[name] = parts_sum[name] + value / ctx.accum if name in parts_sum else value / ctx.accum
        grad_norm, clipped, finite = self.g.update(ctx.clip_threshold)
        assert total_sum is not None  # accum ≥ 1
        return StepOutput(total=total_sum, losses=parts_sum, grad_norm=grad_norm, clipped=clipped, finite=finite)

    def set_lr(self, factor: float) -> float:
        return self.g.set_lr(factor)

    def set_knob(self, name: str, value: float) -> float:
        raise KeyError(name)

    def zero_grad(self) -> None:
        self.g.optimizer.zero_grad(set_to_none=True)

    def trained_modules(self) -> list[nn.Module]:
        return [self.g.model]

    def weights(self) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None]:
        return self.g.weights()

    def state_dict(self) -> dict[str, Any]:
        return self.g.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.g.load_state_dict(state)

    def summary(self) -> dict[str, Any]:
        s = self._settings
        return {"optimizer": s.optimizer.type, "lr": s.optimizer.lr, "ema_decay": s.ema_decay,
                "losses": [{"type": t.type, "loss_weight": t.weight} for t in self.terms]}
