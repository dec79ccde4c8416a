"""Measure on this machine what the planner would otherwise guess: the training speed of a plan.

`measure_speed` runs real forward + backward + optimizer steps of the planned network, batch,
patch, precision and layout on random data (speed does not depend on pixel content), bounded in
time, and returns iterations per second with what it measured. Any failure falls back: the
caller gets `None` and the reason, never an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SpeedProbe:
    it_per_s: float | None
    steps: int
    seconds: float
    peak_mib: float | None
    note: str  # what was measured, or why not


def measure_speed(network: dict[str, Any], *, batch: int, lq_size: int, scale: int, precision: str,
                  channels_last: bool, losses: list[dict[str, Any]], seconds: float) -> SpeedProbe:
    """Time training steps for about `seconds` (after 3 warm-up steps) on the best device here."""
    try:
        import torch

        from autosr.archs import build_network
        from autosr.train.losses import build_losses, total_loss
    except ImportError as exc:  # torch missing: plan without a measurement
        return SpeedProbe(None, 0, 0.0, None, f"torch unavailable ({exc})")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision) if device.type == "cuda" else None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    try:
        # torch's stubs leave out Module.to's documented memory_format keyword
        model = build_network(network).to(device, memory_format=fmt)  # type: ignore[call-overload]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        terms = build_losses(losses)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
        lq = torch.rand(batch, 3, lq_size, lq_size, device=device).contiguous(memory_format=fmt)
        gt = torch.rand(batch, 3, lq_size * scale, lq_size * scale, device=device).contiguous(memory_format=fmt)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

        def step() -> None:
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss, _ = total_loss(terms, model(lq).float(), gt)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        for _ in range(3):
            step()
        sync()
        started, steps = time.perf_counter(), 0
        while steps < 3 or time.perf_counter() - started < seconds:
            step()
            steps += 1
            if steps % 5 == 0:
                sync()
        sync()
        spent = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    except (RuntimeError, ValueError) as exc:  # out of memory, an unsupported op on this device
        return SpeedProbe(None, 0, 0.0, None, f"the speed probe failed ({str(exc).splitlines()[0][:100]})")
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    rate = steps / spent
    return SpeedProbe(rate, steps, spent, peak, f"measured on {where}: {steps} steps of batch {batch} in {spent:.1f} s")
