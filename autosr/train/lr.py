"""The learning-rate schedule: linear warm-up × the configured decay × the automation's scale.

A pure function of the iteration, so a resumed run sets exactly the LR a straight run would.
"""

from __future__ import annotations

import bisect
import math
from typing import Any


def schedule_factor(iteration: int, train: dict[str, Any]) -> float:
    """Multiplier of the base LR at `iteration` (0-based step about to run)."""
    factor = 1.0
    warmup = train.get("warmup_iter", -1)
    if warmup and warmup > 0 and iteration < warmup:
        factor = (iteration + 1) / warmup
    sched = train.get("scheduler") or {}
    kind = sched.get("type")
    if kind == "MultiStepLR":
        passed = bisect.bisect_right(sched.get("milestones", []), iteration)
        factor *= sched.get("gamma", 0.1) ** passed
    elif kind == "CosineAnnealingLR":
        period = sched.get("T_max", train["total_iter"])
        base_lr = train["optim_g"]["lr"]
        eta_min = sched.get("eta_min", 0.0) / base_lr if base_lr else 0.0
        t = min(iteration, period)
        factor *= eta_min + (1 - eta_min) * 0.5 * (1 + math.cos(math.pi * t / period))
    return factor
