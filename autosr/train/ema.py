"""Exponential moving average of the generator's weights, with traiNNer-redux's warm-up.

traiNNer-redux wraps net_g in ema-pytorch's ``EMA(beta=ema_decay, power=ema_power,
update_after_step=ema_update_after_step, update_every=1)``; its defaults are ``ema_power: 10`` and
``ema_update_after_step: 0`` ("no warmup"). ema-pytorch's schedule, restated per update call:

    t = (number of earlier update calls) − update_after_step
    t ≤ 0: copy the online weights            (decay 0)
    t > 0: decay_t = min(ema_decay, 1 − (1 + t) ** −power)

So the first call copies, and with power 10 the second already reaches 1 − 2⁻¹⁰ ≈ 0.99902,
i.e. any ema_decay ≤ 0.999 applies at once; power 0.75 reaches 0.999 only after about 10k steps.
(ema-pytorch's ``inv_gamma`` and ``min_value`` stay at their defaults 1 and 0 in traiNNer.)
Buffers (e.g. BatchNorm statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from autosr.errors import AutosrError


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = inner
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


class ModelEMA:
    """A no-grad, eval-mode shadow copy of a model, updated with fused foreach ops."""

    def __init__(self, model: nn.Module, decay: float = 0.999, power: float = 10.0,
                 update_after_step: int = 0) -> None:
        if not 0 < decay < 1:
            raise AutosrError(f"train.ema_decay must be 0 (no EMA) or between 0 and 1, got {decay}",
                              "0.999 is usual; ema_decay: 0 turns EMA off")
        if power <= 0:
            raise AutosrError(f"train.ema_power must be > 0, got {power}", "10 means no warm-up")
        self.decay = float(decay)
        self.power = float(power)
        self.update_after_step = int(update_after_step)
        self.step = 0  # update() calls so far
        self.module = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)
        self._params: list[Tensor] = list(self.module.parameters())
        self._buffers: list[Tensor] = list(self.module.buffers())
        self._all_float = all(p.is_floating_point() for p in self._params)

    def decay_at(self, step: int) -> float:
        """The decay the update with ``step`` earlier updates uses (0 means copy)."""
        t = step - self.update_after_step
        if t <= 0:
            return 0.0
        return min(self.decay, 1.0 - (1.0 + t) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Fold the model's current weights in; returns the decay used."""
        source = unwrap_model(model)
        params: list[Tensor] = list(source.parameters())
        buffers: list[Tensor] = list(source.buffers())
        if len(params) != len(self._params) or len(buffers) != len(self._buffers):
            raise RuntimeError("ModelEMA.update: the model's structure differs from the EMA copy")
        decay = self.decay_at(self.step)
        if decay == 0.0:
            torch._foreach_copy_(self._params, params)
        elif self._all_float:
            # ema += (1 − decay)·(p − ema): one fused kernel per device/dtype group
            torch._foreach_lerp_(self._params, params, 1.0 - decay)
        else:  # rare: integer parameters are copied, float ones averaged
            for e, p in zip(self._params, params, strict=True):
                if e.is_floating_point():
                    e.lerp_(p, 1.0 - decay)
                else:
                    e.copy_(p)
        if self._buffers:
            torch._foreach_copy_(self._buffers, buffers)
        self.step += 1
        return decay

    @torch.no_grad()
    def lerp_towards(self, model: nn.Module, weight: Tensor) -> None:
        """update() with the weight 1 − decay as a device tensor (a CUDA graph captures this; the caller
        sets the weight and counts the step outside the graph). Float parameters only."""
        source = unwrap_model(model)
        params: list[Tensor] = list(source.parameters())
        weights: Any = [weight.expand_as(e) for e in self._params]  # the tensor-list overload (torch's stubs lack it)
        torch._foreach_lerp_(self._params, params, weights)
        if self._buffers:
            torch._foreach_copy_(self._buffers, list(source.buffers()))

    def state_dict(self) -> dict[str, Any]:
        """Weights plus the step counter (the warm-up resumes where it was)."""
        return {"module": self.module.state_dict(), "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore weights and step; decay/power/update_after_step stay as configured now."""
        self.module.load_state_dict(state["module"])
        self.step = int(state["step"])

    def __call__(self, *args: Tensor, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def build_ema(model: nn.Module, decay: float, power: float) -> ModelEMA | None:
    """traiNNer's rule: ema_decay 0 means no EMA (validation and export then use the model itself)."""
    if decay == 0:
        return None
    return ModelEMA(model, decay=decay, power=power)
