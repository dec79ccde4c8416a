"""Agreement between the processes of a multi-GPU run: every rank must take the same decisions at
the same step, or the next all-reduce hangs. Each function is one small collective."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn


def average(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Each value averaged over the ranks (one all-reduce, no host sync), so that every
    step-driven decision is the same on every rank."""
    if not values:
        return values
    flat = torch.stack(list(values.values()))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat = flat / dist.get_world_size()
    return dict(zip(values, flat, strict=True))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when the flag is set on any rank."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def rank0_int(value: int, is_main: bool, device: torch.device) -> int:
    """Rank 0's value on every rank."""
    agreed = torch.tensor([value if is_main else 0], dtype=torch.int64, device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
    return int(agreed.item())


def broadcast_floats(values: Sequence[float], device: torch.device) -> list[float]:
    """Rank 0's numbers on every rank."""
    knobs = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.broadcast(knobs, 0)
    return [float(v) for v in knobs.tolist()]


def broadcast_(tensor: Tensor) -> None:
    """Rank 0's tensor, in place, on every rank."""
    dist.broadcast(tensor, 0)


def disagreement(modules: Sequence[nn.Module], knobs: Sequence[Tensor], device: torch.device) -> float:
    """How far the ranks' weights and knobs are apart (a fingerprint, all-reduced as max and min):
    0 when every rank holds the same."""
    with torch.no_grad():
        weights = torch.stack([p.detach().double().sum() for m in modules for p in m.parameters()]).sum()
        fingerprint = torch.stack([weights, *(k.to(device=device, dtype=torch.float64).sum() for k in knobs)])
    high, low = fingerprint.clone(), fingerprint.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    spread = float((high - low).abs().max())
    return spread / max(1.0, float(high.abs().max()))


def leave(*, together: bool) -> None:
    """Destroy the process group at the end of a run. together (a run that ended normally, on every rank):
    first wait for every rank, so that no rank tears its group down while another still uses it — a rank
    that left early died in C++ teardown ('terminate called without an active exception', SIGABRT) after
    the run had finished. Not after an error: the other ranks may be inside a collective that never comes."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if together:
        dist.barrier()
    dist.destroy_process_group()
