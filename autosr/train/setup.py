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

from autosr.config import RunConfig
from autosr.errors import AutosrError


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
        return lambda: torch.autocast(device.type, dtype=self.dtype)


def choose_precision(cfg: RunConfig, device: torch.device) -> Precision:
    use_amp, want_bf16 = cfg.data.get("use_amp", False), cfg.data.get("amp_bf16", False)
    if not use_amp:
        return Precision(None, False, "use_amp is off: fp32")
    if device.type != "cuda":
        return Precision(None, False, "use_amp asked for, but autocast on the CPU is slower than fp32 here: fp32")
    if want_bf16:
        if torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, False, "bf16 autocast (amp_bf16)")
        return Precision(torch.float16, True, "amp_bf16 asked for, but this GPU has no bf16: fp16 autocast with loss scaling")
    return Precision(torch.float16, True, "fp16 autocast with loss scaling (use_amp)")


def build_optimizer(params: list[torch.nn.Parameter], cfg: RunConfig, device: torch.device) -> torch.optim.Optimizer:
    opt = cfg.train.get("optim_g") or {"type": "AdamW", "lr": 2e-4}
    kwargs: dict[str, Any] = {"lr": opt["lr"]}
    if "betas" in opt:
        kwargs["betas"] = tuple(opt["betas"][:2])
    if "eps" in opt:
        kwargs["eps"] = opt["eps"]
    kind = opt.get("type", "AdamW")
    kwargs["weight_decay"] = opt.get("weight_decay", 1e-2 if kind == "AdamW" else 0.0)
    if device.type == "cuda":
        kwargs["fused"] = opt.get("fused", True)  # one kernel for all parameters
    cls = torch.optim.AdamW if kind == "AdamW" else torch.optim.Adam
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


def check_network_scale(cfg: RunConfig) -> dict[str, Any]:
    net = dict(cfg.data["network_g"])
    net.setdefault("scale", cfg.scale)
    if net["scale"] not in (2, 3, 4):
        raise AutosrError(f"{cfg.source}: scale {net['scale']} is not trained by ParagonSR2", "use 2, 3 or 4")
    return net
