"""Profiles + preset + overrides → Plan: every config value with the reason it was chosen.

Pure: no file, GPU or clock access here (tests drive it with fake profiles). `autosr init`
renders the Plan to YAML; `--explain` prints it as a table.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autosr.config import parse_override, set_path, validate, without_fork_sections
from autosr.decision import Decision
from autosr.errors import AutosrError
from autosr.hardware import TIER_SETTINGS, HardwareProfile
from autosr.plan import realistic
from autosr.plan.calibrate import MemoryProbe
from autosr.plan.dataset import DatasetProfile
from autosr.plan.presets import VARIANTS, Preset, all_presets, load_preset
from autosr.plan.recommend import (
    MAX_BATCH,
    batch_budget,
    choose_channels_last,
    choose_compile,
    choose_precision,
    choose_workers,
    estimate_batch,
)
from autosr.schema import FORK_SECTIONS

CPU_MAX_BATCH = 8  # on a CPU a step is slow; small batches give feedback sooner
MIN_LQ = 16

# Measured on an H200 at equal wall time (3 min) on real photographs, ×2, held-out PSNR over
# bicubic (docs/budget.md): nano at batch 64, warm-up 100: lr 5e-4 +0.92, 1e-3 +1.10, 2e-3 +1.13 dB
# (batch 512, lr 4e-4, warm-up 1000: +0.14); s at batch 64: 5e-4 +1.03, 1e-3 +1.38, 2e-3 +1.66 dB
# (batch 128: +1.06). Small networks gain more from many quick steps than from big batches.
SHORT_BATCH = 64
SHORT_LR = 2.0e-3
SHORT_WARMUP = 100
MEASURED = {"nano", "micro", "tiny", "xs", "s"}  # nano and s measured; the sizes between follow them
# torch.compile, measured on an H200 (README): seconds to compile model + losses, and the speed-up.
COMPILE_COST = {"nano": (70.0, 1.35), "s": (86.0, 1.57)}
STARTUP_S = 10.0  # model build, data cache fill, first steps: kept out of a budget's training time
VAL_SHARE = 0.03  # of a budget, for the validations and checkpoints (re-measured by train)
AUTOMATIONS = (
    "IntelligentLearningRateScheduler",
    "DynamicBatchSizeOptimizer",
    "AdaptiveGradientClipping",
    "IntelligentEarlyStopping",
    "AdaptiveValidationFrequency",
)
GAN_AUTOMATIONS = ("GANBalance",)  # planned for realistic (GAN) runs only


@dataclass(frozen=True)
class ValData:
    """Where validation comes from: the user's folders, or pairs held out of the training set."""

    kind: str  # "folders" | "holdout"
    gt: str
    lq: str
    count: int
    meta_info: str | None = None  # holdout: the list of held-out pairs
    train_meta_info: str | None = None  # holdout: the list the training set keeps
    note: str = ""


@dataclass(frozen=True)
class Timing:
    """What init knows about time: the user's budget and the measured training speed."""

    budget_s: float | None = None  # --time
    it_per_s: float | None = None  # measured at the planned batch on this machine
    source: str = ""  # how the speed was measured (or why it was not)


@dataclass(frozen=True)
class Tuned:
    """Batch and LR chosen by init's trials on the user's data (autosr/plan/trials.py), with the reason."""

    batch: int
    lr: float
    reason: str


@dataclass
class Plan:
    values: dict[str, Decision] = field(default_factory=dict)  # dotted key → decision, in YAML order
    notes: list[str] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)  # init's calibration trials, as data
    flavor: str = "fork"
    fixed: dict[str, Any] = field(default_factory=dict)  # the user's --set values, by key

    def put(self, key: str, value: Any, reason: str, source: str = "auto") -> None:
        self.decide(key, Decision(value, reason, source))

    def decide(self, key: str, decision: Decision) -> Any:
        """Record a decision — unless the user set this key, which wins — and return the value, so
        that values derived later (milestones from total_iter…) follow the user's choice."""
        if key in self.fixed:
            decision = Decision(self.fixed[key], "set with --set", "set")
        self.values[key] = decision
        return decision.value

    def get(self, key: str) -> Any:
        return self.values[key].value

    def tree(self) -> dict[str, Any]:
        """The plan as the nested mapping the YAML holds."""
        out: dict[str, Any] = {}
        for key, decision in self.values.items():
            node = out
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = decision.value
        return without_fork_sections(out) if self.flavor == "upstream" else out


def pick_arch(hw: HardwareProfile, scale: int) -> tuple[Preset, str]:
    """The largest preset whose plan is measured (nano…s) that trains at the measured batch here.
    m, l and xl keep unmeasured preset values: they are planned only when asked for (--arch)."""
    vram_mib = hw.gpu_vram_mib  # None exactly when the backend is not CUDA
    if hw.backend != "cuda" or vram_mib is None:
        return load_preset("nano"), f"no CUDA GPU ({hw.backend}): nano is the preset that trains in useful time here"
    chosen = load_preset("nano")
    for preset in all_presets():
        if preset.variant in MEASURED and estimate_batch(hw, preset, lq_size=preset.lq_size, scale=scale).value >= SHORT_BATCH:
            chosen = preset
    batch = estimate_batch(hw, chosen, lq_size=chosen.lq_size, scale=scale).value
    return chosen, (
        f"largest preset with measured defaults (nano…s; m, l, xl only with --arch) whose estimated batch ({batch}) "
        f"on {vram_mib / 1024:.0f} GiB reaches the measured batch {SHORT_BATCH}"
    )


# With a time budget, s beat nano by 0.6 dB in 3 minutes on an H200 (2,202 iterations at batch 64;
# docs/budget.md). Below about this many iterations in the budget it is not known to win: nano then.
S_MIN_ITERATIONS = 1500


def budget_arch_choice(s_it_per_s: float | None, budget_s: float, probe_note: str) -> tuple[str, str]:
    """nano or s for a time budget, from s's speed measured on this machine and data."""
    if s_it_per_s is None:
        return "paragonsr2_nano", f"s's speed could not be measured ({probe_note}): nano, the safe choice for a budget"
    iterations = int(s_it_per_s * max(0.0, budget_s * (1 - VAL_SHARE) - STARTUP_S))
    if iterations >= S_MIN_ITERATIONS:
        return "paragonsr2_s", (f"time budget: s trains ~{iterations:,} iterations here (measured {s_it_per_s:.1f} it/s), "
                                f"≥ {S_MIN_ITERATIONS:,}, where it beat nano (+1.73 vs +1.12 dB in 3 min on an H200)")
    return "paragonsr2_nano", (f"time budget: s would train only ~{iterations:,} iterations here (measured {s_it_per_s:.1f} it/s), "
                               f"< {S_MIN_ITERATIONS:,}; nano's many quick steps win in short runs")


def _patch(ds: DatasetProfile, preset: Preset) -> Decision:
    if ds.smallest_side >= preset.lq_size:
        return Decision(preset.lq_size, f"preset patch; every sampled LR image is at least {ds.smallest_side} px")
    fitted = ds.smallest_side // 8 * 8
    if fitted < MIN_LQ:
        raise AutosrError(
            f"{ds.lq_dir}: the smallest sampled LR image side is {ds.smallest_side} px, below the {MIN_LQ} px minimum patch",
            "remove the tiny images or pass --set datasets.train.lq_size=<smaller>",
        )
    return Decision(fitted, f"preset wants {preset.lq_size} px, smallest sampled LR side is {ds.smallest_side} px")


def use_checkpointing(hw: HardwareProfile, preset: Preset, lq: int, scale: int) -> Decision | None:
    """`network_g.use_checkpointing` for a network that takes it (realtime…pro), None for one that does not.
    On only where not one sample of the planned patch fits without it: where one does, gradient
    accumulation reaches the reference batch without recomputing every block in the backward pass."""
    ckpt = preset.checkpointing
    if ckpt is None:
        return None
    usable = batch_budget(hw).value - preset.fixed_mib
    plain, saved = preset.sample_mib(lq, scale), preset.sample_mib(lq, scale, checkpointed=True)
    cost = f"×{ckpt.step_time:.2f} step time for {ckpt.memory_share:.1%} of the memory per sample ({ckpt.source})"
    if usable >= plain:
        return Decision(False, f"{int(usable // plain)} sample(s) of lq {lq} ×{scale} fit without it "
                               f"({plain:,.0f} MiB each); it would cost {cost}")
    if usable >= saved:
        return Decision(True, f"not one sample of lq {lq} ×{scale} fits without it ({plain:,.0f} MiB each, "
                              f"{max(0, usable):,.0f} MiB usable); with it {saved:,.0f} MiB each: {cost}")
    return Decision(True, f"not one sample of lq {lq} ×{scale} fits even with it ({saved:,.0f} MiB each, "
                          f"{max(0, usable):,.0f} MiB usable): expect out-of-memory; choose a smaller preset or patch")


def memory_batch(hw: HardwareProfile, preset: Preset, lq: int, scale: int, memory: MemoryProbe | None,
                 checkpointed: bool = False) -> Decision:
    """The batch that fits the tier's share of the card: from init's memory probe when it measured one
    (it runs the planned network, use_checkpointing included), else estimated from the preset's memory
    table. Reason: '<budget>; <division> → <outcome>'."""
    fits = memory.batch_for(batch_budget(hw).value) if memory is not None else None
    if memory is None or fits is None or memory.fixed_mib is None or memory.per_sample_mib is None:
        estimate = estimate_batch(hw, preset, lq_size=lq, scale=scale, checkpointed=checkpointed)
        if memory is not None:  # the probe ran and fell back: say why
            return Decision(estimate.value, f"{estimate.reason} (memory probe: {memory.note.replace('; ', ', ')})")
        return estimate
    budget = batch_budget(hw)
    value = max(1, min(fits, MAX_BATCH))
    outcome = ("less than one sample fits: 1 (expect out-of-memory; choose a smaller preset or patch)" if fits < 1
               else f"{fits}, capped at {MAX_BATCH}" if fits > MAX_BATCH else str(value))
    return Decision(value, f"{budget.reason}; measured ({memory.note.replace('; ', ', ')}): "
                           f"({budget.value:,} − {memory.fixed_mib:.0f} MiB fixed) ÷ {memory.per_sample_mib:.1f} MiB/sample "
                           f"at lq {lq} ×{scale} → {outcome}")


def _batch(hw: HardwareProfile, preset: Preset, lq: int, scale: int, memory: MemoryProbe | None = None,
           checkpointed: bool = False) -> Decision:
    estimate = memory_batch(hw, preset, lq, scale, memory, checkpointed)
    if preset.variant in MEASURED and hw.backend == "cuda":
        batch = min(int(estimate.value), SHORT_BATCH)
        if batch < SHORT_BATCH:
            return Decision(batch, f"{estimate.reason} (below the measured best {SHORT_BATCH})")
        fits = estimate.reason.split("; ")[-1]
        return Decision(batch, f"{SHORT_BATCH}, the measured best progress per second for nano and s on real photos "
                               f"(batch 128: 0.06–0.6 dB lower, 512: 1 dB lower at equal time); memory would fit {fits}")
    cap = MAX_BATCH if hw.backend == "cuda" else CPU_MAX_BATCH
    batch = min(int(estimate.value), cap)
    if batch == estimate.value:
        return Decision(batch, estimate.reason)
    why = "on a CPU small batches give feedback sooner" if hw.backend != "cuda" else "throughput has saturated"
    return Decision(batch, f"{estimate.reason.split(', capped')[0]}; {batch} ({why})")


def _accum(preset: Preset, batch: int) -> Decision:
    if preset.variant in MEASURED:
        return Decision(1, "no accumulation: for these small networks more steps per second beat a larger batch")
    accum = max(1, math.ceil(preset.effective_batch / batch))
    if accum > 1:
        return Decision(accum, f"{batch} × {accum} reaches the preset's reference batch {preset.effective_batch}")
    return Decision(1, f"batch {batch} already ≥ reference batch {preset.effective_batch}")


def _lr(preset: Preset, per_gpu: int, gpus: int = 1) -> Decision:
    """Square-root scaling from the reference batch, bounded to ×0.5…×2 (measured presets: never
    above the measured 2e-3). `per_gpu` is batch × accumulation; the global batch is × gpus."""
    if preset.variant in MEASURED:
        factor = min(1.0, max(0.5, math.sqrt(per_gpu / SHORT_BATCH)))
        lr = float(f"{SHORT_LR * factor:.3g}")
        many = (f"; not raised for the {gpus} GPUs' global batch {per_gpu * gpus}: above {SHORT_LR:.0e} is not measured, "
                f"and batch 128 at {SHORT_LR:.0e} measured +1.07 dB (nano, 1 GPU, 3 min)") if gpus > 1 else ""
        if factor == 1.0:
            return Decision(lr, f"{SHORT_LR:.0e} at batch {SHORT_BATCH}: measured best for nano and s in 3-minute runs "
                                f"(1e-3: 0.03 / 0.28 dB lower){many}")
        return Decision(lr, f"measured {SHORT_LR:.0e} at batch {SHORT_BATCH} × √({per_gpu}/{SHORT_BATCH}) = {factor:.2f}{many}")
    effective = per_gpu * gpus  # traiNNer's DDP averages gradients over every GPU's samples
    ratio = effective / preset.effective_batch
    factor = min(2.0, max(0.5, math.sqrt(ratio)))
    if abs(factor - 1) < 1e-9:
        return Decision(preset.lr, f"preset learning rate at its reference batch {preset.effective_batch}")
    return Decision(
        float(f"{preset.lr * factor:.3g}"),
        f"preset {preset.lr:.1e} × {factor:.2f} (√ of effective batch {effective}"
        f"{f' = {per_gpu} × {gpus} GPUs' if gpus > 1 else ''} / {preset.effective_batch}, bounded ×0.5–×2)",
    )


def _duration(timing: Timing, total_iter: int) -> str:
    if not timing.it_per_s:
        return ""
    from autosr.durations import format_duration

    return f" (≈ {format_duration(total_iter / timing.it_per_s + STARTUP_S)} at the measured {timing.it_per_s:.1f} it/s)"


def _fit_budget(timing: Timing, compile_s: float, speedup: float, preset: Preset) -> Decision:
    """Iterations that fill the budget at the measured speed, start-up and validations kept out."""
    from autosr.durations import format_duration

    assert timing.budget_s is not None
    usable = timing.budget_s * (1 - VAL_SHARE) - STARTUP_S - compile_s
    if not timing.it_per_s:
        return Decision(preset.total_iter, f"--time {format_duration(timing.budget_s)}: speed not measured here "
                        f"({timing.source}); train re-fits the length to the speed it measures")
    rate = timing.it_per_s * speedup
    total = max(50, int(usable * rate))
    return Decision(total, f"--time {format_duration(timing.budget_s)}: {format_duration(max(0, usable))} of training "
                    f"at {rate:.1f} it/s ({timing.source}); train re-fits it to the speed it measures")


def _total_iter(preset: Preset, pairs: int) -> Decision:
    if pairs < 200:
        return Decision(preset.total_iter // 2, f"preset {preset.total_iter} halved: {pairs} pairs overfit long before that")
    if pairs > 20000:
        return Decision(int(preset.total_iter * 1.5), f"preset {preset.total_iter} × 1.5: {pairs} pairs keep improving longer")
    return Decision(preset.total_iter, f"preset length for {pairs} pairs (200–20000 keeps it)")


def _round_to(value: float, step: int) -> int:
    return max(step, int(round(value / step)) * step)


GENERIC_FOLDERS = {"hr", "gt", "lr", "lq", "high", "low", "train", "images", "x2", "x3", "x4"}


def dataset_name(gt_dir: Path) -> str:
    """`…/DF2K/HR` → "DF2K": a folder named just hr/gt says nothing, its parent does."""
    for part in (gt_dir.name, gt_dir.parent.name):
        if part and part.lower() not in GENERIC_FOLDERS:
            return part
    return gt_dir.name or "train"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def make_plan(
    hw: HardwareProfile,
    ds: DatasetProfile,
    *,
    arch: str | None,
    val: ValData,
    overrides: Sequence[str] = (),
    flavor: str = "fork",
    name: str | None = None,
    timing: Timing = Timing(),
    arch_reason: str | None = None,
    tuned: Tuned | None = None,
    memory: MemoryProbe | None = None,
    style: str = "fidelity",
    degradation: str | None = None,
    pretrain: str | None = None,
    vgg19: bool = False,
) -> Plan:
    """Decide every value of the traiNNer config for this hardware and dataset. `arch_reason`:
    the arch was chosen automatically (by init's measurement), for this reason. `tuned`: batch and LR
    chosen by trials on the user's data. `memory`: init's memory probe (the batch that fits)."""
    if arch and arch_reason:
        preset, arch_source = load_preset(arch), "auto"
    elif arch:
        preset, arch_reason, arch_source = load_preset(arch), "chosen with --arch", "set"
    else:
        preset, arch_reason = pick_arch(hw, ds.scale)
        arch_source = "auto"
    scale = ds.scale
    plan = Plan(flavor=flavor, fixed=dict(parse_override(o) for o in overrides))
    put, decide = plan.put, plan.decide

    put("name", name or _slug(f"{scale}x_{preset.arch}_{dataset_name(ds.gt_dir)}"),
        "set with --name" if name else "scale, arch and dataset folder", "set" if name else "auto")
    put("scale", scale, "set with --scale" if ds.scale_source == "set" else "HR alone: ×2 unless --scale says otherwise"
        if ds.scale_source == "default" else f"HR/LR size ratio of {ds.sampled} sampled pairs")
    gpus = len(hw.gpus) if hw.backend == "cuda" else 1
    put("num_gpu", "auto", f"the {gpus} visible GPUs: `autosr train` starts one process per GPU itself (PyTorch's elastic "
                           "launcher); --gpus N or num_gpu: N uses fewer" if gpus > 1 else
        "every visible GPU (one here); on a machine with more, `autosr train` starts one process per GPU")
    if pretrain:
        put("path.pretrain_network_g", pretrain, "--pretrain: the generator starts from these weights", "set")
    else:
        put("path", {}, "nothing to resume or pretrain from")
    put("manual_seed", 1024, "fixed so that a run can be repeated")

    precision = choose_precision(hw)
    put("use_amp", precision.value != "fp32", precision.reason)
    put("amp_bf16", precision.value == "bf16", precision.reason)
    cl = choose_channels_last(hw)
    put("use_channels_last", bool(cl.value), cl.reason)
    put("fast_matmul", hw.backend == "cuda", "TF32 matmuls on CUDA: faster, no visible loss for SR" if hw.backend == "cuda" else "no CUDA")
    compile_ = choose_compile(hw)
    compile_s, speedup = COMPILE_COST["nano" if preset.variant in ("nano", "micro", "tiny") else "s"]
    compile_on = bool(compile_.value)
    planned_s = timing.budget_s or ((_total_iter(preset, ds.pair_count).value / timing.it_per_s) if timing.it_per_s else None)
    if compile_on and planned_s is not None:
        saved = planned_s * (1 - 1 / speedup)
        compile_on = saved > 2 * compile_s
        compile_reason = (f"pays back: ~{saved:.0f} s saved ({speedup:.2f}× faster steps) over a {planned_s:.0f} s run, "
                          f"for ~{compile_s:.0f} s of compiling" if compile_on else
                          f"does not pay back: ~{compile_s:.0f} s of compiling for ~{saved:.0f} s saved in a {planned_s:.0f} s run")
    else:
        compile_reason = compile_.reason
    put("use_compile", compile_on, compile_reason)
    put("compile_mode", "default", "fastest to compile; autotune modes rarely pay back on short SR runs")
    if not compile_on:
        compile_s, speedup = 0.0, 1.0

    net_source = {"source": arch_source}
    put("network_g.type", preset.arch, arch_reason, **net_source)
    put("network_g.scale", scale, "same as scale")
    if style == "realistic":
        net_d = realistic.discriminator(preset.variant, scale)
        for key, value in net_d.value.items():
            put(f"network_d.{key}", value, net_d.reason)

    lq = decide("datasets.train.lq_size", _patch(ds, preset))
    workers = choose_workers(hw)
    t = "datasets.train."
    put(t + "name", dataset_name(ds.gt_dir), "from the dataset folder name")
    kind = None
    if ds.hr_only:
        kind, why = realistic.degradation_kind(ds, style, degradation)
        put(t + "type", "pairedimagedataset" if kind == "bicubic" else "realesrgandataset",
            f"HR alone, no dataroot_lq: each LR crop is made on the fly from its HR crop — {why}")
        put(t + "dataroot_gt", str(ds.gt_dir), "--gt")
    else:
        put(t + "type", "pairedimagedataset", "paired HR/LR folders")
        put(t + "dataroot_gt", str(ds.gt_dir), "--gt")
        put(t + "dataroot_lq", str(ds.lq_dir), "--lq")
    if val.train_meta_info:
        why = (f"all pairs except the {val.count} held out for validation" if val.kind == "holdout"
               else "the paired files only (some files have no partner)")
        put(t + "meta_info", val.train_meta_info, why)
    plan.values[t + "lq_size"] = plan.values.pop(t + "lq_size")  # keep the YAML order: patch after paths
    checkpointing = use_checkpointing(hw, preset, lq, scale)
    checkpointed = checkpointing is not None and bool(decide("network_g.use_checkpointing", checkpointing))
    per_gpu = _batch(hw, preset, lq, scale, memory, checkpointed) if tuned is None else Decision(tuned.batch, tuned.reason)
    if gpus > 1:
        per_gpu = Decision(per_gpu.value, f"{per_gpu.reason}; × {gpus} GPUs = {per_gpu.value * gpus} samples per step")
    batch = decide(t + "batch_size_per_gpu", per_gpu)
    accum = decide(t + "accum_iter", _accum(preset, batch))
    put(t + "num_worker_per_gpu", workers.value, workers.reason)
    put(t + "use_hflip", True, "flips are free extra data for SR")
    put(t + "use_rot", True, "so are 90° rotations")
    put(t + "pin_memory", hw.backend == "cuda", "faster host→GPU copies" if hw.backend == "cuda" else "no GPU")
    put(t + "persistent_workers", workers.value > 0, "keep workers between epochs" if workers.value else "no workers")
    for item in realistic.degradation_values(ds, kind or ""):
        put(item.key, item.value, item.reason)

    v = "datasets.val."
    put(v + "name", "val", "held-out pairs" if val.kind == "holdout" else "--val-gt/--val-lq")
    put(v + "type", "pairedimagedataset", "paired HR/LR folders")
    put(v + "dataroot_gt", val.gt, "--val-gt" if val.kind == "folders" else "the training HR folder")
    put(v + "dataroot_lq", val.lq, "--val-lq" if val.kind == "folders" else
        "the held-out HR images' LR, made once by init with the training degradation (fixed seed)" if ds.hr_only
        else "the training LR folder")
    if val.meta_info:
        put(v + "meta_info", val.meta_info, f"{val.count} pair(s) held out of training, never trained on")

    tr = "train."
    if timing.budget_s:
        total_iter = decide(tr + "total_iter", _fit_budget(timing, compile_s, speedup, preset))
    else:
        base = _total_iter(preset, ds.pair_count)
        total_iter = decide(tr + "total_iter", Decision(base.value, base.reason + _duration(timing, base.value)))
    step = 100 if total_iter >= 2500 else 10  # round derived iteration counts to readable numbers
    put(tr + "optim_g.type", "AdamW", "decoupled weight decay; the preset's optimizer")
    decide(tr + "optim_g.lr", _lr(preset, batch * accum, gpus) if tuned is None else Decision(tuned.lr, tuned.reason))
    put(tr + "optim_g.weight_decay", float(preset.optimizer["weight_decay"]), "preset")
    put(tr + "optim_g.betas", [float(b) for b in preset.optimizer["betas"]], "preset")
    put(tr + "scheduler.type", "MultiStepLR", "step decay composes with EMA and the LR automation")
    put(tr + "scheduler.milestones", [_round_to(total_iter * f, step) for f in (0.75, 0.875)], "75% and 87.5% of the run")
    put(tr + "scheduler.gamma", 0.5, "halve the LR at each milestone")
    if preset.variant in MEASURED:
        warmup = min(SHORT_WARMUP, total_iter // 10)
        capped = ", at most 10% of the run" if warmup < SHORT_WARMUP else ""
        put(tr + "warmup_iter", warmup, f"{SHORT_WARMUP} (1000 measured 0.04 dB lower for nano){capped}")
    else:
        warmup = min(preset.warmup_iter, total_iter // 10)
        capped = ", at most 10% of the run" if warmup < preset.warmup_iter else ""
        put(tr + "warmup_iter", warmup, f"preset {preset.warmup_iter}{capped}")
    put(tr + "ema_decay", preset.ema_decay, "preset; validation and the exported model use the EMA weights")
    put(tr + "ema_power", 0.75, "EMA warm-up: the first steps are not averaged in for long")
    tier = TIER_SETTINGS[hw.tier]
    put(tr + "grad_clip", True, "guards against rare exploding steps")
    if flavor == "upstream":  # the fork's schema has no grad_clip_max_norm: it goes in its automation section there
        put(tr + "grad_clip_max_norm", float(tier.clip_start), f"{hw.tier} tier start value")
    if style == "realistic":
        start, start_why = realistic.gan_start(total_iter, from_pretrain=bool(pretrain))
        recipe, recipe_why = realistic.losses(list(preset.losses), start, vgg19=vgg19, from_pretrain=bool(pretrain))
        put(tr + "losses", recipe, f"{recipe_why}; {start_why}")
        put(tr + "optim_d.type", "AdamW", "upstream traiNNer-redux's GAN templates")
        put(tr + "optim_d.lr", 1e-4, "upstream's GAN templates (D trains only once the adversarial term is on)")
        put(tr + "optim_d.weight_decay", 0.0, "upstream's GAN templates")
        put(tr + "optim_d.betas", [0.9, 0.99], "upstream's GAN templates")
    else:
        put(tr + "losses", [dict(x) for x in preset.losses], "preset: L1 for fidelity, a little SSIM for structure")
    if flavor == "fork":
        d = tr + "dynamic_loss_scheduling."
        put(d + "enabled", True, "balances the losses while training")
        put(d + "auto_calibrate", True, f"settings from the {preset.variant} preset, dataset complexity and phase")
        a = tr + "training_automations."
        put(a + "enabled", True, "each automation derives its settings from the hardware tier and run length")
        for name_ in AUTOMATIONS:
            if style == "realistic" and name_ == "IntelligentEarlyStopping":
                put(a + name_ + ".enabled", False, "a realistic model trades PSNR for detail: stopping when PSNR stops "
                                                   "rising would end the adversarial phase")
                continue
            put(a + name_ + ".enabled", True, "no hand-set parameters")
            if name_ == "AdaptiveGradientClipping":
                put(a + name_ + ".initial_threshold", float(tier.clip_start),
                    f"{hw.tier} tier start value (the fork's place for the clip threshold); re-measured while training")
        if style == "realistic":
            for name_ in GAN_AUTOMATIONS:
                put(a + name_ + ".enabled", False, "not measured helping on a GPU yet (docs/realistic.md): off until it is; "
                                                   "set it true to let it weaken an overpowering D and roll back a collapse")

    put("val.val_enabled", True, f"{val.count} validation pair(s)")
    n_vals = 25 if not timing.budget_s else min(25, max(5, int(timing.budget_s / 30)))  # a short budget keeps its time for training
    every = _round_to(total_iter / n_vals, step) if total_iter >= n_vals * step else total_iter // n_vals
    val_freq = decide("val.val_freq", Decision(max(1, every),
                                               f"~{n_vals} validations over {total_iter} iterations"))
    put("val.save_img", False, "metrics only; saving images slows validation")
    put("val.metrics_enabled", True, "PSNR and SSIM track progress")
    for metric in ("psnr", "ssim"):
        m = f"val.metrics.{metric}."
        put(m + "type", f"calculate_{metric}", "traiNNer's definition")
        put(m + "crop_border", scale, "border of `scale` px ignored, as usual for SR")
        put(m + "test_y_channel", False, "RGB, matching the training losses")
    put("logger.print_freq", max(10, min(100, _round_to(total_iter / 200, 10))), "about 200 log lines per run")
    put("logger.save_checkpoint_freq", val_freq, "a checkpoint at every validation")
    put("logger.save_checkpoint_format", "safetensors", "weights only, no pickled code: safe to share")
    put("logger.use_tb_logger", True, "TensorBoard scalars when tensorboard is installed")

    _apply_overrides(plan, overrides)
    plan.notes.extend(ds.notes)
    if gpus > 1:
        plan.notes.append(f"{gpus} GPUs: each trains its batch per step at about one GPU's speed (DDP: 1.99× the samples/s "
                          "of one H200 on two), so the length and the time estimate, counted in steps, hold; every "
                          f"step sees {gpus}× the samples; validation runs on GPU 0 while the others wait")
    if val.note:
        plan.notes.append(val.note)
    # The plan must pass autosr's own strict loader: generated configs that fail it are a bug.
    validate(plan.tree(), "planned config")
    return plan


def _apply_overrides(plan: Plan, overrides: Sequence[str]) -> None:
    for text in overrides:
        key, value = parse_override(text)
        parts = key.split(".")
        if plan.flavor == "upstream" and len(parts) > 1 and parts[0] == "train" and parts[1] in FORK_SECTIONS:
            raise AutosrError(f"--set {key}: the upstream flavour has no train.{parts[1]} section", "use --flavor fork")
        if plan.flavor == "fork" and key == "train.grad_clip_max_norm":  # the fork's schema rejects the key
            raise AutosrError(f"--set {key}: the ParagonSR2 fork of traiNNer-redux has no such key",
                              "set train.training_automations.AdaptiveGradientClipping.initial_threshold, or use --flavor upstream")
        # A key inside a list value (train.losses.0.loss_weight): change that element.
        parent = next((".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in plan.values), None)
        if parent is not None and isinstance(plan.values[parent].value, list | dict):
            rest = parts[len(parent.split(".")):]
            tree = copy.deepcopy(plan.values[parent].value)
            wrapper: dict[str, Any] = {}
            node = wrapper
            for part in parent.split(".")[:-1]:  # the real path, so that errors name the whole key
                node = node.setdefault(part, {})
            node[parent.split(".")[-1]] = tree
            set_path(wrapper, ".".join([parent, *rest]), value)
            plan.values[parent] = Decision(tree, f"set with --set {key}", "set")
            continue
        for old in [k for k in plan.values if k.startswith(key + ".")]:
            del plan.values[old]  # a whole section replaced
        plan.values[key] = Decision(value, "set with --set", "set")
        twin = {"datasets.train.gt_size": "datasets.train.lq_size", "datasets.train.lq_size": "datasets.train.gt_size"}.get(key)
        if twin:
            plan.values.pop(twin, None)  # traiNNer takes exactly one of them


__all__ = ["Plan", "ValData", "budget_arch_choice", "make_plan", "pick_arch", "VARIANTS"]
