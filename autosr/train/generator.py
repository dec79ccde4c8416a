"""The generator's side of a step, shared by every objective: the network (pretrained weights
loaded), its EMA, optimiser and scaler, compiled and/or DDP-wrapped for the step, and its update."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autosr.archs import build_network, count_parameters
from autosr.errors import AutosrError, AutosrRuntimeError
from autosr.train.ema import build_ema
from autosr.train.gan_losses import FeatureMatchingLoss, GANLoss, LDLLoss
from autosr.train.losses import LossTerm
from autosr.train.objective import clip_gradients, step_unless_nonfinite
from autosr.train.pretrained import load_pretrained
from autosr.train.settings import Settings
from autosr.train.setup import DistInfo, Note, Precision, build_optimizer


class Generator:
    def __init__(self, s: Settings, device: torch.device, precision: Precision, dist: DistInfo,
                 terms: Sequence[LossTerm]) -> None:
        self.device, self.precision = device, precision
        self.notes: list[Note] = []
        self.model = build_network(s.network).to(device)
        if s.runtime.channels_last:
            # torch's stubs lack Module.to's memory_format keyword (documented, and it works)
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.notes.append(Note("network_g", s.network["type"], f"{count_parameters(self.model):,} trainable parameters"))
        if s.pretrain.path:
            loaded = load_pretrained(self.model, Path(s.pretrain.path), param_key=s.pretrain.param_key, strict=s.pretrain.strict)
            self.notes.append(Note("path.pretrain_network_g", "loaded", loaded))
        self.ema = build_ema(self.model, s.ema_decay, s.ema_power)
        if self.ema is None:
            self.notes.append(Note("train.ema_decay", 0.0,
                                   "no EMA (traiNNer's meaning of 0): validation and models use the trained weights"))
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, s.optimizer, device)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        self.step_model: Any = self.model  # what the step calls: compiled and/or DDP-wrapped
        if s.runtime.use_compile:
            self.step_model = self._compile(s.runtime.compile_mode, terms)
        if dist.world_size > 1:
            self.step_model = torch.nn.parallel.DistributedDataParallel(
                self.step_model, device_ids=[dist.local_rank] if device.type == "cuda" else None)

    def _compile(self, mode: str, terms: Sequence[LossTerm]) -> Any:
        if self.device.type != "cuda":
            self.notes.append(Note("use_compile", False, "torch.compile skipped on the CPU: slow to build, rarely faster"))
            return self.model
        # The SSIM window comes from an lru_cache'd builder; tracing through it is safe (pure).
        warnings.filterwarnings("ignore", message=".*functools.lru_cache.*", category=UserWarning)
        for term in terms:
            if term.kind == "pixel":
                # The loss maths (SSIM's many fp32 elementwise passes) fuses well; weights stay outside
                # the compiled function so that changing them never recompiles.
                term.fn = torch.compile(term.fn)
        self.notes.append(Note("use_compile", mode, "model and losses compiled on the first step (its time shows in the first log line)"))
        return torch.compile(self.model, mode=mode)

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def update(self, clip_threshold: float | None) -> tuple[Tensor, Tensor, Tensor]:
        """After the backward: unscale, clip, step unless non-finite, clear the gradients, update the EMA.
        Returns (grad norm before clipping, clipped, finite)."""
        self.scaler.unscale_(self.optimizer)
        grad_norm, clipped = clip_gradients(self.params, clip_threshold, self.device)
        finite = torch.isfinite(grad_norm)
        step_unless_nonfinite(self.optimizer, self.scaler, finite, use_scaler=self.precision.use_scaler)
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        return grad_norm, clipped, finite

    def set_lr(self, factor: float) -> float:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        return self.base_lrs[0] * factor

    def weights(self) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None]:
        return self.model.state_dict(), self.ema.module.state_dict() if self.ema is not None else None

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint keys every autosr run has written since the first version."""
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            else:  # EMA switched on for a run that trained without: start it from the weights
                self.ema.module.load_state_dict(self.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


def generator_loss(terms: Sequence[LossTerm], weights: Tensor, iteration: int, sr: Tensor, lq: Tensor, gt: Tensor, *,
                   ema_model: nn.Module | None = None, net_d: nn.Module | None = None,
                   gan_loss: GANLoss | None = None, adversarial_scale: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Σ weight × schedule factor × term over the terms that are on at `iteration` (a scheduled term at
    factor 0 is not computed), and each unweighted term (detached). Pixel and perceptual terms read
    (sr, gt); ldlloss also the EMA generator's output; the adversarial and feature-matching terms D's
    logits and features (D frozen by the caller: the gradient reaches the generator through sr);
    `adversarial_scale` (the GAN balance automation's, after a rollback) multiplies those two."""
    factors = [(t.schedule.factor(iteration) if t.schedule is not None else 1.0)
               * (adversarial_scale if t.kind in ("adversarial", "feature_matching") else 1.0) for t in terms]
    active = [i for i, f in enumerate(factors) if f > 0]
    kinds = {terms[i].kind for i in active}
    sr32 = sr.float()
    fake: Any = None
    real: Any = None
    if kinds & {"adversarial", "feature_matching"}:
        assert net_d is not None and gan_loss is not None  # the objective checked it at start
        features = "feature_matching" in kinds
        fake = net_d(sr, return_features=features)
        if features or gan_loss.needs_real_for_generator:
            with torch.no_grad():
                real = net_d(gt, return_features=features)
    sr_ema = None
    if "ema" in kinds:
        assert ema_model is not None  # checked at start
        with torch.no_grad():
            sr_ema = ema_model(lq).float()
    values: dict[str, Tensor] = {}
    total: Tensor | None = None
    for i in active:
        term = terms[i]
        if term.kind == "pixel":
            value = term(sr32, gt)
        elif isinstance(term.loss, GANLoss):
            value = term.loss.generator_loss(fake[0] if isinstance(fake, tuple) else fake,
                                             real[0] if isinstance(real, tuple) else real)
        elif isinstance(term.loss, FeatureMatchingLoss):
            value = term.loss(real[1], fake[1])
        else:
            assert isinstance(term.loss, LDLLoss) and sr_ema is not None
            value = term.loss(sr32, sr_ema, gt.float())
        values[term.name] = value.detach()
        part = value * (weights[i] * factors[i] if factors[i] != 1.0 else weights[i])
        total = part if total is None else total + part
    if total is None:
        raise AutosrRuntimeError(f"no loss is on at iteration {iteration}",
                                 "every loss has a schedule that starts later (start_iter): let one start at 0")
    return total, values


def check_terms(terms: Sequence[LossTerm], source: str, *, has_ema: bool, has_d: bool) -> None:
    """What the terms need is there: a discriminator for the GAN terms, the EMA generator for ldlloss."""
    gan = [t.type for t in terms if t.kind in ("adversarial", "feature_matching")]
    if gan and not has_d:
        raise AutosrError(f"{source}: train.losses has {', '.join(gan)}, which train(s) against a discriminator, "
                          "but the config has no network_d", "add network_d (e.g. {type: munet}) and train.optim_d, "
                          "or remove those losses")
    if not has_ema and any(t.kind == "ema" for t in terms):
        raise AutosrError(f"{source}: ldlloss compares the output with the EMA generator's, but train.ema_decay is 0",
                          "set train.ema_decay (e.g. 0.999), or remove ldlloss")


class NoSync:
    """What DDP's no_sync() stands for where gradients are synchronised at every backward."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
