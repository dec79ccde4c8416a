"""Fidelity training: one generator, its pixel/structure losses, AdamW, EMA — the first objective."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autosr.archs import build_network, count_parameters
from autosr.train.data import Batch
from autosr.train.ema import build_ema
from autosr.train.losses import LossTerm, build_losses, total_loss
from autosr.train.objective import StepContext, StepOutput, clip_gradients, step_unless_nonfinite
from autosr.train.pretrained import load_pretrained
from autosr.train.settings import Settings
from autosr.train.setup import DistInfo, Note, Precision, build_optimizer


class FidelityObjective:
    name = "fidelity"

    def __init__(self, s: Settings, device: torch.device, precision: Precision, dist: DistInfo) -> None:
        self.device, self.precision, self.autocast = device, precision, precision.autocast(device)
        self.notes: list[Note] = []
        self._model = build_network(s.network).to(device)
        if s.runtime.channels_last:
            # torch's stubs lack Module.to's memory_format keyword (documented, and it works)
            self._model = self._model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.notes.append(Note("network_g", s.network["type"], f"{count_parameters(self._model):,} trainable parameters"))
        if s.pretrain.path:
            loaded = load_pretrained(self._model, Path(s.pretrain.path), param_key=s.pretrain.param_key, strict=s.pretrain.strict)
            self.notes.append(Note("path.pretrain_network_g", "loaded", loaded))
        self.ema = build_ema(self._model, s.ema_decay, s.ema_power)
        if self.ema is None:
            self.notes.append(Note("train.ema_decay", 0.0,
                                   "no EMA (traiNNer's meaning of 0): validation and models use the trained weights"))
        self.params = [p for p in self._model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, s.optimizer, device)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        self.terms: list[LossTerm] = build_losses(list(s.losses))
        # Loss weights live on the device: the scheduler changes them with no host sync per step.
        self.loss_weights = torch.tensor([t.weight for t in self.terms], dtype=torch.float32, device=device)
        self.step_model: Any = self._model  # what the step calls: compiled and/or DDP-wrapped
        if s.runtime.use_compile:
            self.step_model = self._compile(s.runtime.compile_mode)
        if dist.world_size > 1:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                self.step_model, device_ids=[dist.local_rank] if device.type == "cuda" else None)
        self._settings = s

    def _compile(self, mode: str) -> Any:
        if self.device.type != "cuda":
            self.notes.append(Note("use_compile", False, "torch.compile skipped on the CPU: slow to build, rarely faster"))
            return self._model
        # The SSIM window comes from an lru_cache'd builder; tracing through it is safe (pure).
        warnings.filterwarnings("ignore", message=".*functools.lru_cache.*", category=UserWarning)
        for term in self.terms:
            # The loss maths (SSIM's many fp32 elementwise passes) fuses well; weights stay outside
            # the compiled function so that changing them never recompiles.
            term.fn = torch.compile(term.fn)
        self.notes.append(Note("use_compile", mode, "model and losses compiled on the first step (its time shows in the first log line)"))
        return torch.compile(self._model, mode=mode)

    @property
    def model(self) -> nn.Module:
        return self._model

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self._model

    def step(self, next_batch: Callable[[], Batch], ctx: StepContext) -> StepOutput:
        parts_sum: dict[str, Tensor] = {}
        total_sum: Tensor | None = None
        for micro in range(ctx.accum):
            lq, gt = next_batch()
            sync = ctx.world_size == 1 or micro == ctx.accum - 1
            with (self.step_model.no_sync() if not sync else _null()), self.autocast():
                sr = self.step_model(lq)
                total, parts = total_loss(self.terms, sr.float(), gt, self.loss_weights)
            self.scaler.scale(total / ctx.accum if ctx.accum > 1 else total).backward()
            if ctx.accum == 1:  # the common case: no averaging kernels (a small model is launch-bound)
                total_sum, parts_sum = total.detach(), parts
                continue
            share = total.detach() / ctx.accum
            total_sum = share if total_sum is None else total_sum + share
            for name, value in parts.items():
                parts_sum[name] = parts_sum[name] + value / ctx.accum if name in parts_sum else value / ctx.accum
        self.scaler.unscale_(self.optimizer)
        grad_norm, clipped = clip_gradients(self.params, ctx.clip_threshold, self.device)
        finite = torch.isfinite(grad_norm)
        step_unless_nonfinite(self.optimizer, self.scaler, finite, use_scaler=self.precision.use_scaler)
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self._model)
        assert total_sum is not None  # accum ≥ 1
        return StepOutput(total=total_sum, losses=parts_sum, grad_norm=grad_norm, clipped=clipped, finite=finite)

    def set_lr(self, factor: float) -> float:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def trained_modules(self) -> list[nn.Module]:
        return [self._model]

    def weights(self) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None]:
        return self._model.state_dict(), self.ema.module.state_dict() if self.ema is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self._model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on for a run that trained without: start it from the weights
                self.ema.module.load_state_dict(self._model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])

    def summary(self) -> dict[str, Any]:
        s = self._settings
        return {"optimizer": s.optimizer.type, "lr": s.optimizer.lr, "ema_decay": s.ema_decay,
                "losses": [{"type": t.type, "loss_weight": t.weight} for t in self.terms]}


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
