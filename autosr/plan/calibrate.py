"""Measure on this machine what the planner would otherwise guess: the training speed and the memory of
a plan.

Both probes run real forward + backward + optimizer steps of the planned network, patch, precision,
layout and losses on random data (speed and memory do not depend on pixel content):
`measure_speed` times them (iterations per second at the planned batch, bounded in time);
`measure_memory` reads the peak memory at two batch sizes on a CUDA GPU and splits it into a fixed
part (weights, gradients, optimizer state, workspace) and a part per sample, from which the batch that
fits the tier's share of the card follows. Any failure falls back: the caller gets `None` values and
the reason, never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ALL_ON = 10**9  # an iteration past every scheduled loss's start_iter


@dataclass(frozen=True)
class SpeedProbe:
    it_per_s: float | None
    steps: int
    seconds: float
    peak_mib: float | None
    note: str  # what was measured, or why not


@dataclass(frozen=True)
class MemoryProbe:
    fixed_mib: float | None
    per_sample_mib: float | None
    note: str  # what was measured, or why not

    def batch_for(self, budget_mib: float) -> int | None:
        """The largest batch whose measured peak stays within `budget_mib` (0 when not even one fits)."""
        if self.fixed_mib is None or not self.per_sample_mib:
            return None
        return max(0, int((budget_mib - self.fixed_mib) // self.per_sample_mib))


class _Steps:
    """The plan's training step on random data, built once; `run(batch, n)` takes n steps at a batch."""

    def __init__(self, network: dict[str, Any], *, lq_size: int, scale: int, precision: str, channels_last: bool,
                 losses: list[dict[str, Any]]) -> None:
        import torch

        from autosr.archs import build_network
        from autosr.train.losses import build_losses, total_loss

        self.torch, self.total_loss = torch, total_loss
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if self.device.type == "cuda" else None
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.lq_size, self.scale = lq_size, scale
        # torch's stubs leave out Module.to's documented memory_format keyword
        self.model = build_network(network).to(self.device, memory_format=self.fmt)  # type: ignore[call-overload]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        # the generator's step: a GAN plan's D-side terms are left out (train re-fits the length to the speed it
        # measures), every scheduled term on (the iteration is past every start)
        self.terms = [term for term in build_losses(losses) if term.kind == "pixel"]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype is torch.float16)

    def run(self, batch: int, count: int, keep_going: Callable[[int], bool] | None = None) -> int:
        """`count` steps (or while `keep_going(steps)`), then a sync. Returns the steps taken."""
        torch = self.torch
        lq = torch.rand(batch, 3, self.lq_size, self.lq_size, device=self.device).contiguous(memory_format=self.fmt)
        side = self.lq_size * self.scale
        gt = torch.rand(batch, 3, side, side, device=self.device).contiguous(memory_format=self.fmt)
        steps = 0
        while steps < count or (keep_going is not None and keep_going(steps)):
            with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                loss, _ = self.total_loss(self.terms, self.model(lq).float(), gt, iteration=ALL_ON)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            steps += 1
            if steps % 5 == 0:
                self.sync()  # the clock must see finished work
        self.sync()
        return steps

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def where(self) -> str:
        return self.torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "the CPU"

    def release(self) -> None:
        if self.device.type == "cuda":
            del self.model, self.optimizer
            self.torch.cuda.empty_cache()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__


def measure_speed(network: dict[str, Any], *, batch: int, lq_size: int, scale: int, precision: str,
                  channels_last: bool, losses: list[dict[str, Any]], seconds: float) -> SpeedProbe:
    """Time training steps for about `seconds` (after 3 warm-up steps) on the best device here."""
    try:
        steps_ = _Steps(network, lq_size=lq_size, scale=scale, precision=precision, channels_last=channels_last, losses=losses)
    except ImportError as exc:  # torch missing: plan without a measurement
        return SpeedProbe(None, 0, 0.0, None, f"torch unavailable ({exc})")
    except (RuntimeError, ValueError) as exc:
        return SpeedProbe(None, 0, 0.0, None, f"the speed probe failed ({_first_line(exc)})")
    torch = steps_.torch
    try:
        if steps_.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(steps_.device)
        steps_.run(batch, 3)
        started = time.perf_counter()
        steps = steps_.run(batch, 3, keep_going=lambda _n: time.perf_counter() - started < seconds)
        spent = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(steps_.device) / 2**20 if steps_.device.type == "cuda" else None
    except (RuntimeError, ValueError) as exc:  # out of memory, an unsupported op on this device
        return SpeedProbe(None, 0, 0.0, None, f"the speed probe failed ({_first_line(exc)})")
    finally:
        steps_.release()
    return SpeedProbe(steps / spent, steps, spent, peak,
                      f"measured on {steps_.where()}: {steps} steps of batch {batch} in {spent:.1f} s")


def measure_memory(network: dict[str, Any], *, batch: int, lq_size: int, scale: int, precision: str,
                   channels_last: bool, losses: list[dict[str, Any]]) -> MemoryProbe:
    """Peak memory of two steps at `batch` and at half of it (CUDA only); a batch that runs out of memory
    is halved until two sizes have run. Fixed part and per-sample part from the two peaks."""
    try:
        import torch
    except ImportError as exc:
        return MemoryProbe(None, None, f"torch unavailable ({exc})")
    if not torch.cuda.is_available():
        return MemoryProbe(None, None, "no CUDA GPU: the estimate")
    try:
        steps_ = _Steps(network, lq_size=lq_size, scale=scale, precision=precision, channels_last=channels_last, losses=losses)
    except (RuntimeError, ValueError) as exc:
        return MemoryProbe(None, None, f"the memory probe failed ({_first_line(exc)}): the estimate")
    peaks: dict[int, float] = {}
    size, oom = max(2, batch), []
    try:
        while len(peaks) < 2 and size >= 1:
            torch.cuda.reset_peak_memory_stats(steps_.device)
            try:
                steps_.run(size, 2)  # the second step holds the optimizer state too
                peaks[size] = torch.cuda.max_memory_allocated(steps_.device) / 2**20
            except torch.cuda.OutOfMemoryError:
                oom.append(str(size))
                steps_.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
            size //= 2
    except (RuntimeError, ValueError) as exc:
        return MemoryProbe(None, None, f"the memory probe failed ({_first_line(exc)}): the estimate")
    finally:
        steps_.release()
    ran_out = f"batch {', '.join(oom)} ran out of memory; " if oom else ""
    if len(peaks) < 2:
        return MemoryProbe(None, None, f"{ran_out}too few batch sizes ran to measure: the estimate")
    (small, p_small), (big, p_big) = sorted(peaks.items())
    per_sample = max(1e-3, (p_big - p_small) / (big - small))
    fixed = max(0.0, p_small - per_sample * small)
    return MemoryProbe(fixed, per_sample, f"{ran_out}measured on {steps_.where()}: peak {p_small:.0f} MiB at batch {small}, "
                                          f"{p_big:.0f} MiB at batch {big}")
