"""The whole fidelity step as one CUDA graph: forward under autocast, losses, backward, clipping,
AdamW, EMA — replayed with one launch instead of hundreds (a small model at batch 64 is launch-bound:
on an H200 nano's bare step ran 14,778 samples/s graphed vs 8,513 eager; performance.md).

What changes between steps lives in device tensors the graph reads, updated in place outside it: the
learning rate, the loss weights (the runtime scheduler's), the clip threshold, the EMA's weight. The
batch is copied into the graph's static input buffers. The first steps run eagerly (a warm-up the
capture needs: cuDNN and cuBLAS choose their kernels, the optimizer creates its state); the graph is
captured on the step after, then replayed. A new batch size, a loaded checkpoint or a step cut short
(out of memory, lost data) drop the graph; it is captured again. Where a graph cannot be used the
composition root keeps the eager step and says why (`graph_blocker`).

Graph outputs (losses, grad norm) are overwritten by the next replay: the loop reads them within the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from autosr.train.data import Batch
from autosr.train.fidelity import FidelityObjective
from autosr.train.generator import generator_loss
from autosr.train.objective import StepContext, StepOutput
from autosr.train.settings import Settings
from autosr.train.setup import Note, TorchSetup

WARMUP_STEPS = 3  # eager steps before a capture (on a side stream, as CUDA graph capture asks)


def graph_blocker(s: Settings, torch_setup: TorchSetup, world_size: int, source_kind: str) -> str | None:
    """Why the whole step cannot be one CUDA graph here, or None when it can."""
    if torch_setup.device.type != "cuda":
        return "not on a CUDA device"
    if torch_setup.precision.use_scaler:
        return "fp16 needs GradScaler, whose skip decision reads the device on the host"
    if s.gan is not None:
        return "GAN training (two networks, steps that change with the schedule)"
    if world_size > 1:
        return f"{world_size} processes (the all-reduce runs outside a graph here)"
    if s.data.accum_iter > 1:
        return "gradient accumulation"
    if s.runtime.use_compile:
        return "torch.compile (it brings its own kernels; autosr does not capture compiled code)"
    if source_kind == "loader":
        return "the data come from loader workers (batches are not on the GPU)"
    if any(e.get("start_iter") or e.get("target_iter") or e.get("disable_after") for e in s.losses):
        return "scheduled loss weights (start_iter …) change the step's shape"
    if any(str(e.get("type", "")).lower() == "ldlloss" for e in s.losses):
        return "ldlloss runs the EMA generator inside the step"
    return None


class GraphedFidelity:
    """A FidelityObjective whose step is one CUDA graph after a short eager warm-up."""

    def __init__(self, inner: FidelityObjective) -> None:
        self.inner = inner
        g = inner.g
        self.name, self.terms, self.loss_weights = inner.name, inner.terms, inner.loss_weights
        self.knobs = inner.knobs
        self.final_is_result = inner.final_is_result
        self.notes: list[Note] = [*inner.notes, Note("cuda_graph", True, "the whole step (forward, losses, backward, "
                                                     "clipping, AdamW, EMA) is one CUDA graph after a 3-step warm-up")]
        self.device = g.device
        # Device tensors the graph reads; changed in place between replays.
        self.lr = [torch.tensor(group["lr"], dtype=torch.float32, device=self.device) for group in g.optimizer.param_groups]
        for group, lr in zip(g.optimizer.param_groups, self.lr, strict=True):
            group["lr"], group["capturable"] = lr, True
        self.clip = torch.tensor(math.inf, device=self.device)
        self.ema_weight = torch.tensor(1.0, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0
        self.static: dict[str, Any] = {}
        self.captures = 0

    @property
    def model(self) -> nn.Module:
        return self.inner.model

    @property
    def eval_model(self) -> nn.Module:
        return self.inner.eval_model

    def step(self, next_batch: Callable[[], Batch], ctx: StepContext) -> StepOutput:
        lq, gt = next_batch()
        self.clip.fill_(math.inf if ctx.clip_threshold is None else ctx.clip_threshold)
        if self.graph is not None and lq.shape != self.static["lq"].shape:
            self.graph = None  # a new batch size: capture again
        if self.graph is None and self.eager_steps < WARMUP_STEPS:
            return self._eager(lq, gt, ctx)
        ema = self.inner.g.ema
        if ema is not None:
            self.ema_weight.fill_(1.0 - ema.decay_at(ema.step))
            ema.step += 1
        if self.graph is None:
            self._capture(lq, gt, ctx)
        self.static["lq"].copy_(lq)
        self.static["gt"].copy_(gt)
        assert self.graph is not None
        self.graph.replay()
        out: StepOutput = self.static["out"]
        return out

    def _eager(self, lq: Tensor, gt: Tensor, ctx: StepContext) -> StepOutput:
        """A warm-up step, on a side stream: the same maths as a replay, run eagerly."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            ema = self.inner.g.ema
            if ema is not None:
                self.ema_weight.fill_(1.0 - ema.decay_at(ema.step))
                ema.step += 1
            out = self._body(lq, gt, ctx)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.eager_steps += 1
        return out

    def _capture(self, lq: Tensor, gt: Tensor, ctx: StepContext) -> None:
        self.static = {"lq": lq.clone(), "gt": gt.clone()}
        g = self.inner.g
        g.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients it reuses
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static["out"] = self._body(self.static["lq"], self.static["gt"], ctx)
        self.graph = graph
        self.captures += 1

    def _body(self, lq: Tensor, gt: Tensor, ctx: StepContext) -> StepOutput:
        """One step with no host sync and no host-side values that change between steps."""
        g, inner = self.inner.g, self.inner
        with inner.autocast():
            sr = g.step_model(lq)
            total, parts = generator_loss(inner.terms, inner.loss_weights, ctx.iteration, sr, lq, gt)
        total.backward()
        norm, clipped = self._clip(g.params)
        finite = torch.isfinite(norm)
        g.optimizer.found_inf = (~finite).float()  # type: ignore[attr-defined]  # fused AdamW skips on the device
        g.optimizer.step()
        if g.ema is not None:
            g.ema.lerp_towards(g.model, self.ema_weight)
        return StepOutput(total=total.detach(), losses=parts, grad_norm=norm, clipped=clipped, finite=finite)

    def _clip(self, params: list[nn.Parameter]) -> tuple[Tensor, Tensor]:
        """objective.clip_gradients with the threshold as a device tensor (inf when clipping is off)."""
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        coef = torch.clamp(self.clip / (norm + 1e-6), max=1.0)
        coef = torch.where(torch.isfinite(norm), coef, torch.zeros_like(coef))
        torch._foreach_mul_(grads, coef)
        return norm, norm > self.clip

    def set_lr(self, factor: float) -> float:
        g = self.inner.g
        for lr, base in zip(self.lr, g.base_lrs, strict=True):
            lr.fill_(base * factor)
        return g.base_lrs[0] * factor

    def set_knob(self, name: str, value: float) -> float:
        return self.inner.set_knob(name, value)

    def zero_grad(self) -> None:
        self.inner.zero_grad()
        self.graph = None  # its gradients are gone: capture again

    def trained_modules(self) -> list[nn.Module]:
        return self.inner.trained_modules()

    def weights(self) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None]:
        return self.inner.weights()

    def state_dict(self) -> dict[str, Any]:
        """As the eager objective writes it: learning rates as numbers (a checkpoint resumes anywhere)."""
        state = self.inner.state_dict()
        for group in state["optimizer"]["param_groups"]:
            group["lr"] = float(group["lr"])
            group["capturable"] = False
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)
        g = self.inner.g
        for group, lr in zip(g.optimizer.param_groups, self.lr, strict=True):
            lr.fill_(float(group["lr"]))
            group["lr"], group["capturable"] = lr, True
        for per_param in g.optimizer.state.values():  # capturable AdamW keeps its step count on the device
            if isinstance(per_param.get("step"), Tensor):
                per_param["step"] = per_param["step"].to(self.device)
        self.graph = None  # new optimizer state tensors: capture again

    def summary(self) -> dict[str, Any]:
        return self.inner.summary()
