"""GAN training: the generator against a discriminator — the second objective.

One step, as traiNNer-redux's `sr_model.optimize_parameters` does it, per micro-batch: the generator's
forward, its losses (pixel and perceptual terms on (sr, gt); the adversarial term on D(sr) with D
frozen; feature matching on D's features of real and fake; LDL with the EMA generator's output),
backward; then D on the HR batch and on the detached output (plus r3gan's R1/R2 penalties), backward.
After the last micro-batch each network clips and steps on its own optimiser and scaler (fp16: one
GradScaler per network; bf16 and fp32: none). A non-finite gradient skips that network's update.

Terms whose scheduled weight (the fork's `start_iter` …) is 0 at this iteration are not computed; D
trains only while the adversarial or feature-matching term is on, so a config that switches the GAN on
at iteration N is a fidelity run until then (docs/realistic.md).

Under DDP, D is not wrapped: its gradients are averaged with one all-reduce before its step, which keeps
the R1/R2 penalty's double backward possible (DDP's reducer does not support it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autosr.archs.discriminators import build_discriminator
from autosr.errors import AutosrError
from autosr.train import distributed
from autosr.train.data import Batch
from autosr.train.gan_losses import GANLoss
from autosr.train.generator import Generator, NoSync, check_terms, generator_loss
from autosr.train.losses import LossTerm, build_losses
from autosr.train.objective import StepContext, StepOutput, clip_gradients, step_unless_nonfinite
from autosr.train.pretrained import load_pretrained
from autosr.train.settings import GanSettings, Settings
from autosr.train.setup import DistInfo, Note, Precision, build_optimizer

# The knobs the runtime scheduler may turn (Controls.set_knob), with their bounds.
# d_lr_scale: D's learning rate × this; d_every: D steps every k-th iteration; adv_scale: the adversarial
# and feature-matching weights × this (lowered after G degenerated and was rolled back).
KNOBS = {"d_lr_scale": (0.05, 1.0), "d_every": (1, 8), "adv_scale": (0.05, 1.0)}


class GANObjective:
    name = "gan"
    final_is_result = True

    def __init__(self, s: Settings, device: torch.device, precision: Precision, dist: DistInfo) -> None:
        assert s.gan is not None  # the composition root builds this objective for configs with network_d
        gan: GanSettings = s.gan
        self.terms: list[LossTerm] = build_losses(list(s.losses))
        adversarial = [i for i, t in enumerate(self.terms) if t.kind == "adversarial"]
        if not adversarial:
            raise AutosrError(f"{s.source}: network_d is set but train.losses has no ganloss to train against it",
                              "add {type: ganloss, gan_type: vanilla, loss_weight: 0.1} to train.losses, or remove network_d")
        self.gan_index = adversarial[0]
        gan_loss = self.terms[self.gan_index].loss
        assert isinstance(gan_loss, GANLoss)
        self.gan_loss = gan_loss
        check_terms(self.terms, s.source, has_ema=s.ema_decay > 0, has_d=True)
        self.g = Generator(s, device, precision, dist, self.terms)
        self.device, self.precision, self.world_size = device, precision, dist.world_size
        self.autocast = precision.autocast(device)
        self.notes: list[Note] = list(self.g.notes)
        self.d = build_discriminator(gan.network_d).to(device)
        if s.runtime.channels_last:
            self.d = self.d.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        d_params = sum(p.numel() for p in self.d.parameters() if p.requires_grad)
        self.notes.append(Note("network_d", gan.network_d["type"], f"{d_params:,} trainable parameters"))
        if gan.pretrain.path:
            loaded = load_pretrained(self.d, Path(gan.pretrain.path), param_key=gan.pretrain.param_key,
                                     strict=gan.pretrain.strict, net="d")
            self.notes.append(Note("path.pretrain_network_d", "loaded", loaded))
        if gan.optimizer_note:
            self.notes.append(Note("train.optim_d", gan.optimizer.lr, gan.optimizer_note))
        self.d_params = [p for p in self.d.parameters() if p.requires_grad]
        self.optimizer_d = build_optimizer(self.d_params, gan.optimizer, device)
        self.base_lrs_d = [g["lr"] for g in self.optimizer_d.param_groups]
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        self.loss_weights = torch.tensor([t.weight for t in self.terms], dtype=torch.float32, device=device)
        self.knobs: dict[str, float] = {"d_lr_scale": 1.0, "d_every": 1, "adv_scale": 1.0}
        self.adaptive = gan.adaptive_d, gan.adaptive_d_ema_decay, gan.adaptive_d_threshold
        self.g_gan_ema: float | None = None  # adaptive_d's smoothed adversarial loss (host: its decision skips work)
        self._lr_factor = 1.0
        self._settings = s

    @property
    def model(self) -> nn.Module:
        return self.g.model

    @property
    def eval_model(self) -> nn.Module:
        return self.g.eval_model

    # ---- one step --------------------------------------------------------------------------------

    def step(self, next_batch: Callable[[], Batch], ctx: StepContext) -> StepOutput:
        adversarial_on = any(t.kind in ("adversarial", "feature_matching") and (t.schedule is None or t.schedule.factor(ctx.iteration) > 0)
                             for t in self.terms)
        train_d = adversarial_on and ctx.iteration % int(self.knobs["d_every"]) == 0
        losses: dict[str, Tensor] = {}
        d_stats: dict[str, Tensor] = {}
        total_sum: Tensor | None = None
        step_model = self.g.step_model
        for micro in range(ctx.accum):
            lq, gt = next_batch()
            sync = ctx.world_size == 1 or micro == ctx.accum - 1
            self.d.requires_grad_(False)
            with (step_model.no_sync() if not sync else NoSync()), self.autocast():
                sr = step_model(lq)
                total, values = generator_loss(self.terms, self.loss_weights, ctx.iteration, sr, lq, gt,
                                               ema_model=self.g.ema.module if self.g.ema is not None else None,
                                               net_d=self.d, gan_loss=self.gan_loss,
                                               adversarial_scale=self.knobs["adv_scale"])
            self.g.scaler.scale(total / ctx.accum).backward()
            total_sum = total.detach() / ctx.accum if total_sum is None else total_sum + total.detach() / ctx.accum
            for name, value in values.items():
                losses[name] = losses.get(name, 0) + value / ctx.accum
            if train_d and self._adaptive_allows(values.get(self.terms[self.gan_index].name)):
                self.d.requires_grad_(True)
                with self.autocast():
                    d_loss, stats = self.gan_loss.discriminator_loss(self.d, gt, sr)
                self.scaler_d.scale(d_loss / ctx.accum).backward()
                for name, value in stats.items():
                    d_stats[name] = d_stats.get(name, 0) + value / ctx.accum
        grad_norm, clipped, finite = self.g.update(ctx.clip_threshold)
        if d_stats:
            d_finite = self._update_d(ctx.clip_threshold, d_stats)
            finite = finite & d_finite
        d_stats["d_updated"] = torch.tensor(1.0 if d_stats else 0.0, device=self.device)
        assert total_sum is not None  # accum ≥ 1
        return StepOutput(total=total_sum, losses=losses, grad_norm=grad_norm, clipped=clipped, finite=finite,
                          extras=d_stats)

    def _adaptive_allows(self, g_gan: Tensor | None) -> bool:
        """upstream's adaptive_d: skip D's update while the smoothed adversarial loss of G rises by more
        than the threshold (D overpowering G). Reads the loss on the host: one sync per step, only when on."""
        enabled, decay, threshold = self.adaptive
        if not enabled or g_gan is None:
            return True
        if self.world_size > 1:  # every rank takes the same decision: on the ranks' mean
            g_gan = distributed.average({"g": g_gan})["g"]
        value = float(g_gan)
        previous = self.g_gan_ema
        self.g_gan_ema = value if previous is None else decay * previous + (1 - decay) * value
        return previous is None or self.g_gan_ema <= previous * threshold

    def _update_d(self, clip_threshold: float | None, stats: dict[str, Tensor]) -> Tensor:
        if self.world_size > 1:
            grads = [p.grad for p in self.d_params if p.grad is not None]
            for grad, averaged in zip(grads, distributed.average({str(i): g for i, g in enumerate(grads)}).values(), strict=True):
                grad.copy_(averaged)
        self.scaler_d.unscale_(self.optimizer_d)
        norm, _ = clip_gradients(self.d_params, clip_threshold, self.device)
        finite = torch.isfinite(norm)
        step_unless_nonfinite(self.optimizer_d, self.scaler_d, finite, use_scaler=self.precision.use_scaler)
        self.optimizer_d.zero_grad(set_to_none=True)
        stats["grad_norm_d"] = norm
        return finite

    # ---- the rest of the interface ---------------------------------------------------------------

    def set_lr(self, factor: float) -> float:
        """The schedule (warm-up, decay) moves both learning rates, as traiNNer's scheduler does; D's
        is also scaled by the balance automation's d_lr_scale."""
        self._lr_factor = factor
        for group, base in zip(self.optimizer_d.param_groups, self.base_lrs_d, strict=True):
            group["lr"] = base * factor * self.knobs["d_lr_scale"]
        return self.g.set_lr(factor)

    def set_knob(self, name: str, value: float) -> float:
        """Set a D-side knob within its bounds; returns the value taken."""
        lo, hi = KNOBS[name]
        value = min(hi, max(lo, value))
        self.knobs[name] = int(value) if name == "d_every" else float(value)
        if name == "d_lr_scale":
            self.set_lr(self._lr_factor)
        return self.knobs[name]

    def zero_grad(self) -> None:
        self.g.optimizer.zero_grad(set_to_none=True)
        self.optimizer_d.zero_grad(set_to_none=True)

    def trained_modules(self) -> list[nn.Module]:
        return [self.g.model, self.d]

    def weights(self) -> tuple[Mapping[str, Tensor], Mapping[str, Tensor] | None]:
        return self.g.weights()

    def state_dict(self) -> dict[str, Any]:
        return {**self.g.state_dict(), "net_d": self.d.state_dict(), "optimizer_d": self.optimizer_d.state_dict(),
                "scaler_d": self.scaler_d.state_dict(), "gan_knobs": dict(self.knobs), "g_gan_ema": self.g_gan_ema}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.g.load_state_dict(state)
        if "net_d" not in state:  # a fidelity checkpoint: the GAN phase starts from it with a new D
            return
        self.d.load_state_dict(state["net_d"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        self.scaler_d.load_state_dict(state["scaler_d"])
        self.knobs.update(state.get("gan_knobs", {}))
        self.g_gan_ema = state.get("g_gan_ema")

    def summary(self) -> dict[str, Any]:
        s = self._settings
        assert s.gan is not None
        return {"optimizer": s.optimizer.type, "lr": s.optimizer.lr, "ema_decay": s.ema_decay,
                "losses": [{"type": t.type, "loss_weight": t.weight} for t in self.terms],
                "network_d": s.gan.network_d["type"], "lr_d": s.gan.optimizer.lr}
