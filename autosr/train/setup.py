"""Everything the loop needs, built from a RunConfig: device, precision, model, optimizer, data.

Each builder returns its object plus the journal-worthy facts about how it was built, so the
run folder says why it trains the way it does.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autosr.train.settings import OptimizerSettings, RuntimeSettings


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> DistInfo:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them this is a single-process run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return info


def pick_device(dist: DistInfo) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Note:
    """A fact about how the run was built, for the journal: key, value, reason."""

    key: str
    value: Any
    reason: str


@dataclass
class Precision:
    """How the forward pass runs; `note` explains any change from what the config asked."""

    dtype: torch.dtype | None  # autocast dtype, None = fp32
    use_scaler: bool
    note: str

    @property
    def label(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self, device: torch.device) -> Callable[[], Any]:
        if self.dtype is None:
            return contextlib.nullcontext
        dtype = self.dtype
        return lambda: torch.autocast(device.type, dtype=dtype)


def choose_precision(rt: RuntimeSettings, device: torch.device) -> Precision:
    if not rt.use_amp:
        return Precision(None, False, "use_amp is off: fp32")
    if device.type != "cuda":
        return Precision(None, False, "use_amp asked for, but autocast on the CPU is slower than fp32 here: fp32")
    if rt.amp_bf16:
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, False, "bf16 autocast (amp_bf16)")
        return Precision(torch.float16, True, "amp_bf16 asked for, but this GPU has no bf16: fp16 autocast with loss scaling")
    return Precision(torch.float16, True, "fp16 autocast with loss scaling (use_amp)")


@dataclass(frozen=True)
class TorchSetup:
    device: torch.device
    precision: Precision
    seed: int
    notes: tuple[Note, ...]


def setup_torch(rt: RuntimeSettings, dist: DistInfo) -> TorchSetup:
    """Device, seeds, math modes and precision: everything global to torch, set once."""
    device = pick_device(dist)
    notes = []
    seed = rt.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
        notes.append(Note("manual_seed", seed, "not set: a random seed (traiNNer's default), kept in the checkpoint"))
    seed_everything(seed + dist.rank)
    if rt.fast_matmul and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if rt.deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick the fastest kernels
    precision = choose_precision(rt, device)
    notes.append(Note("precision", precision.label, precision.note))
    return TorchSetup(device, precision, seed, tuple(notes))


@contextlib.contextmanager
def denormals_flushed(device: torch.device) -> Any:
    """On CPU, flush denormal floats to zero while training (they make CPU math ~10× slower as weights
    and gradients shrink), and put the process-wide flag back afterwards: a library caller's (or a test's)
    float maths must not change because a run happened in its process."""
    if device.type != "cpu":
        yield
        return
    was_on = (torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() == 0.0
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def build_optimizer(params: list[torch.nn.Parameter], opt: OptimizerSettings, device: torch.device) -> torch.optim.Optimizer:
    kwargs: dict[str, Any] = {"lr": opt.lr, "betas": opt.betas, "eps": opt.eps, "weight_decay": opt.weight_decay}
    if device.type == "cuda":
        kwargs["fused"] = True if opt.fused is None else opt.fused  # one kernel for all parameters
    cls = torch.optim.AdamW if opt.type == "AdamW" else torch.optim.Adam
    return cls(params, **kwargs)


def cache_budget_bytes(device: torch.device) -> tuple[int, int | None, str]:
    """How much decoded training data may be cached: (device budget, host budget, reason).

    On a GPU: a third of the free VRAM (the rest is for training), then 40% of the available RAM
    as pinned host memory; on the CPU: 40% of the available RAM. Larger sets stream from disk
    through loader workers.
    """
    import psutil

    available = psutil.virtual_memory().available
    ram = f"40% of the {available / 2**30:.1f} GiB available RAM"
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.33), int(available * 0.40), f"a third of the {free / 2**30:.1f} GiB free VRAM, then {ram}"
    return int(available * 0.40), None, ram
