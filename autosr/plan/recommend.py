"""Training settings that follow from a HardwareProfile, each a Decision with its reason.

Pure functions of the profile (and a preset): `autosr detect` prints them and the planner
calls the same ones, so what detect recommends is what init plans. No I/O, no torch import.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from autosr.decision import Decision
from autosr.hardware import HardwareProfile
from autosr.plan.presets import Preset, all_presets

MAX_BATCH = 512  # performance.md: throughput has saturated by here; larger only slows iterations
CPU_RAM_SHARE = 0.25  # CPU/MPS training: leave most RAM to the OS, the loader and the page cache
CPU_BUDGET_CAP_MIB = 8 * 1024
MAX_WORKERS = 8


@dataclass(frozen=True)
class Advice:
    precision: Decision  # "bf16" | "fp16" | "fp32"
    channels_last: Decision  # bool
    compile: Decision  # bool
    workers: Decision  # int, data-loader workers per GPU (or per process on CPU)
    batch_budget: Decision  # int MiB per GPU (RAM on CPU/MPS) the batch estimates divide
    batch_estimates: dict[str, Decision]  # preset variant ("nano"…) → per-GPU batch that fits
    batch_lq_sizes: dict[str, int]  # variant → the LR patch side the estimate assumed


def triton_available() -> bool:
    """Triton (the compiler torch.compile uses on CUDA) is installed; looked up, not imported."""
    return importlib.util.find_spec("triton") is not None


def _cc_text(profile: HardwareProfile) -> str:
    ccs = sorted({f"{g.arch_family}, cc {g.compute_capability}" for g in profile.gpus if g.compute_capability})
    return "; ".join(ccs) or "unknown compute capability"


def _min_cc(profile: HardwareProfile) -> tuple[int, int] | None:
    """Lowest compute capability among the GPUs used; None when any is unknown."""
    pairs = []
    for g in profile.gpus:
        if not g.compute_capability:
            return None
        major, _, minor = g.compute_capability.partition(".")
        pairs.append((int(major), int(minor or 0)))
    return min(pairs) if pairs else None


def choose_precision(profile: HardwareProfile) -> Decision:
    if profile.backend == "mps":
        return Decision("fp32", "Apple MPS: mixed-precision training there is not reliable yet; fp32")
    if profile.backend != "cuda":
        return Decision("fp32", "CPU: most CPUs have no fast half-precision math; fp32")
    cc = _min_cc(profile)
    if cc is None:
        return Decision("fp16", "compute capability unknown: fp16 AMP with loss scaling works on every CUDA GPU")
    if cc >= (8, 0):
        return Decision("bf16", f"{_cc_text(profile)} supports bf16: bf16 autocast, fp32 range, no loss scaling")
    if cc >= (7, 0):
        return Decision("fp16", f"{_cc_text(profile)} has no bf16: fp16 AMP with a gradient scaler")
    return Decision("fp32", f"{_cc_text(profile)} has no tensor cores: half precision gains little; fp32")


def choose_channels_last(profile: HardwareProfile) -> Decision:
    if profile.backend != "cuda":
        return Decision(False, f"{profile.backend.upper()}: no tensor cores to feed; default memory layout")
    cc = _min_cc(profile)
    if cc is not None and cc < (7, 0):
        return Decision(False, f"{_cc_text(profile)} has no tensor cores: channels_last gains nothing")
    return Decision(True, "tensor-core convolutions prefer NHWC: 1.1–1.6× faster steps measured on ParagonSR2")


def choose_compile(profile: HardwareProfile) -> Decision:
    if profile.backend == "mps":
        return Decision(False, "Apple MPS: torch.compile is not dependable for training there; eager mode")
    if profile.backend != "cuda":
        return Decision(False, "CPU: compile time outweighs the gain on CPU-sized runs; eager mode")
    if profile.platform == "win32":
        return Decision(False, "Windows: torch.compile needs Triton, which Windows builds of torch lack; eager mode")
    if not profile.platform.startswith("linux"):
        return Decision(False, f"{profile.platform}: torch.compile on CUDA is supported on Linux only; eager mode")
    if not triton_available():
        return Decision(False, "Triton is not installed (CUDA builds of torch ship it): eager mode")
    cc = _min_cc(profile)
    if cc is None:
        return Decision(False, "compute capability unknown, Triton needs ≥ 7.0: eager mode to be safe")
    if cc < (7, 0):
        return Decision(False, f"{_cc_text(profile)}: Triton needs compute capability ≥ 7.0; eager mode")
    return Decision(True, "Linux + CUDA + Triton, cc ≥ 7.0: 1.2–1.6× faster steps after 10–45 s of compilation")


def choose_workers(profile: HardwareProfile) -> Decision:
    cores = max(1, profile.physical_cores)
    if profile.backend == "cuda":
        gpus = max(1, len(profile.gpus))
        per_gpu = cores // gpus
        value = max(0, min(MAX_WORKERS, per_gpu - 1))
        return Decision(
            value,
            f"{cores} physical cores / {gpus} GPU{'s' if gpus > 1 else ''} = {per_gpu} per GPU, "
            f"one kept for the training process → {value} (cap {MAX_WORKERS})",
        )
    if profile.backend == "mps":
        value = max(0, min(4, cores - 1))
        return Decision(value, f"Apple MPS: {cores} physical cores, one for training, spawned workers start slowly → {value} (cap 4)")
    value = max(0, min(2, cores // 4))
    beside = f"{value} worker(s) decode images beside them" if value else "images load in the training process"
    return Decision(value, f"CPU only: the {cores} physical cores do the training; {beside}")


def _mib_text(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def batch_budget(profile: HardwareProfile) -> Decision:
    """Memory (MiB) one training process may fill, with how it was computed."""
    if profile.backend == "cuda":
        vram = profile.gpu_vram_mib or 0
        target = profile.settings.vram_target
        assumed = " (assumed)" if not profile.vram_known else ""
        which = "smallest GPU " if len(profile.gpus) > 1 else ""
        budget = vram * target
        basis = f"{which}{_mib_text(vram)}{assumed} × {target:.2f} {profile.tier} target"
    else:
        ram = profile.ram_available_mib
        budget = min(CPU_RAM_SHARE * ram, CPU_BUDGET_CAP_MIB)
        where = "MPS shares system RAM: " if profile.backend == "mps" else "CPU: "
        basis = f"{where}{CPU_RAM_SHARE:.0%} of {_mib_text(ram)} available RAM, at most {_mib_text(CPU_BUDGET_CAP_MIB)}"
    return Decision(int(budget), f"{basis} = {_mib_text(budget)}")


def estimate_batch(profile: HardwareProfile, preset: Preset, lq_size: int | None = None, scale: int = 2,
                   checkpointed: bool = False) -> Decision:
    """Per-GPU batch that fits the memory budget: (budget − fixed) ÷ memory per sample, in [1, 1024].
    The reason is '<budget>; <division>' so that a table can show the shared budget once.
    `checkpointed`: with use_checkpointing (the preset's measured share of the memory per sample)."""
    lq = lq_size or preset.lq_size
    budget = batch_budget(profile)
    per_sample = preset.sample_mib(lq, scale, checkpointed)
    fits = preset.batch_for(budget.value, lq, scale, checkpointed)
    value = min(fits, MAX_BATCH)
    per_text = f"{per_sample:.1f}" if per_sample < 10 else f"{per_sample:.0f}"
    division = (
        f"({_mib_text(budget.value)} − {preset.fixed_mib:.0f} MiB fixed) ÷ {per_text} MiB/sample at lq {lq} ×{scale}"
        + (" with use_checkpointing" if checkpointed else "")
    )
    if budget.value - preset.fixed_mib < per_sample:
        ckpt = preset.checkpointing
        rescue = (f"; use_checkpointing fits {preset.batch_for(budget.value, lq, scale, True)}"
                  if ckpt and not checkpointed and budget.value - preset.fixed_mib >= preset.sample_mib(lq, scale, True) else "")
        outcome = f"less than one sample fits: 1 (expect out-of-memory; choose a smaller preset or patch){rescue}"
    elif fits > MAX_BATCH:
        outcome = f"{fits}, capped at {MAX_BATCH}"
    else:
        outcome = str(value)
    return Decision(value, f"{budget.reason}; {division} → {outcome}")


def recommend(profile: HardwareProfile, presets: list[Preset] | None = None) -> Advice:
    """Every recommendation for this machine; batch estimates for each ParagonSR2 preset."""
    chosen = presets if presets is not None else all_presets()
    return Advice(
        precision=choose_precision(profile),
        channels_last=choose_channels_last(profile),
        compile=choose_compile(profile),
        workers=choose_workers(profile),
        batch_budget=batch_budget(profile),
        batch_estimates={p.variant: estimate_batch(profile, p) for p in chosen},
        batch_lq_sizes={p.variant: p.lq_size for p in chosen},
    )
