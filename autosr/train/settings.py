"""Typed, frozen run settings, built once from a validated RunConfig.

The trainer reads these and never the YAML tree: one place decides what a missing key means.
A key traiNNer-redux also reads has traiNNer's default (`schema.DEFAULTS`), so a config that
loads in both trains the same way (ema_decay 0 = no EMA, grad_clip_max_norm 100, …).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from autosr.config import RunConfig, lookup
from autosr.errors import AutosrError
from autosr.schema import DEFAULTS
from autosr.train.degradations import kind_for_config, options_of


@dataclass(frozen=True)
class RuntimeSettings:
    seed: int | None  # None: a random seed, chosen at start and kept in the checkpoint
    deterministic: bool
    fast_matmul: bool
    channels_last: bool
    use_amp: bool
    amp_bf16: bool
    use_compile: bool
    compile_mode: str
    num_gpu: int | str


@dataclass(frozen=True)
class DataSettings:
    dataroot_gt: tuple[str, ...]
    dataroot_lq: tuple[str, ...]
    meta_info: tuple[str, ...] | None
    lq_size: int
    batch_size: int
    accum_iter: int
    num_workers: int | None  # None: autosr decides
    use_hflip: bool
    use_rot: bool
    # traiNNer loader hints autosr's own pipeline decides (named in the journal when set)
    prefetch_mode: str | None
    pin_memory: bool
    persistent_workers: bool
    dataset_enlarge_ratio: int | str
    # HR alone: the LR made on the fly by this degradation ("bicubic", "realesrgan", "paragon"), else None
    degradation: str | None = None
    degradation_opts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValSet:
    name: str
    dataroot_gt: tuple[str, ...]
    dataroot_lq: tuple[str, ...]
    meta_info: tuple[str, ...] | None


@dataclass(frozen=True)
class ValSettings:
    enabled: bool  # val_enabled and metrics_enabled and a val set and a frequency
    freq: int
    save_img: bool
    metrics: dict[str, dict[str, Any]]
    tile_size: int  # LR pixels per tile; 0 = whole images
    sets: tuple[ValSet, ...]
    off_reason: str  # why validation is off ("" when on)


@dataclass(frozen=True)
class OptimizerSettings:
    type: str  # "AdamW" | "Adam"
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    fused: bool | None  # None: fused where the device has it


@dataclass(frozen=True)
class ScheduleSettings:
    """The learning-rate schedule: linear warm-up × the configured decay (a pure function of the
    iteration, so a resumed run sets exactly the LR a straight run would)."""

    total_iter: int
    warmup_iter: int  # ≤ 0: no warm-up (traiNNer's -1)
    kind: str | None  # "MultiStepLR" | "CosineAnnealingLR" | None (constant)
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    t_max: int = 0
    eta_min_ratio: float = 0.0  # eta_min / base lr

    def factor(self, iteration: int, total_iter: int | None = None) -> float:
        """Multiplier of the base LR at `iteration` (0-based step about to run). With a
        `total_iter` other than the configured one (a time budget re-fitted the run), the decay
        (milestones, cosine period) stretches with it; the warm-up stays in iterations."""
        factor = 1.0
        if self.warmup_iter > 0 and iteration < self.warmup_iter:
            factor = (iteration + 1) / self.warmup_iter
        stretch = (total_iter or self.total_iter) / self.total_iter
        if self.kind == "MultiStepLR":
            factor *= self.gamma ** bisect.bisect_right([m * stretch for m in self.milestones], iteration)
        elif self.kind == "CosineAnnealingLR":
            period = self.t_max * stretch
            t = min(iteration, period)
            factor *= self.eta_min_ratio + (1 - self.eta_min_ratio) * 0.5 * (1 + math.cos(math.pi * t / period))
        return factor


@dataclass(frozen=True)
class PretrainSettings:
    path: str | None
    param_key: str | None
    strict: bool


@dataclass(frozen=True)
class GanSettings:
    """The discriminator side of GAN training (network_d, optim_d, upstream's adaptive_d)."""

    network_d: dict[str, Any]
    optimizer: OptimizerSettings
    pretrain: PretrainSettings
    adaptive_d: bool
    adaptive_d_ema_decay: float
    adaptive_d_threshold: float
    optimizer_note: str  # where optim_d's values came from ("" when the config sets it)


@dataclass(frozen=True)
class Settings:
    name: str
    scale: int
    network: dict[str, Any]  # network_g with scale filled in
    runtime: RuntimeSettings
    data: DataSettings
    val: ValSettings
    optimizer: OptimizerSettings
    schedule: ScheduleSettings
    ema_decay: float  # 0 = no EMA (traiNNer)
    ema_power: float
    grad_clip: bool
    grad_clip_max_norm: float
    losses: tuple[dict[str, Any], ...]
    dynamic_loss_scheduling: dict[str, Any]
    training_automations: dict[str, Any]
    print_freq: int
    save_checkpoint_freq: int
    save_checkpoint_format: str
    use_tb_logger: bool
    pretrain: PretrainSettings
    resume_state: str | None
    source: str = field(default="config")
    gan: GanSettings | None = None  # GAN training: the config has network_d
    auto_vram_management: dict[str, Any] = field(default_factory=dict)  # the fork's; autosr decides memory itself
    tree: dict[str, Any] = field(default_factory=dict, repr=False)  # the validated config, for notes on unused keys

    @property
    def total_iter(self) -> int:
        return self.schedule.total_iter


def _clip_threshold(tree: dict[str, Any], get: _Reader) -> float:
    """upstream's train.grad_clip_max_norm; else the fork's place for it (the fork has no such key);
    else traiNNer's default."""
    fork_key = "train.training_automations.AdaptiveGradientClipping.initial_threshold"
    if not lookup(tree, "train.grad_clip_max_norm")[0] and lookup(tree, fork_key)[0]:
        return float(get(fork_key))
    return float(get("train.grad_clip_max_norm"))


def _paths(value: str | list[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


class _Reader:
    """Reads dotted keys of a validated tree; a missing key gives its traiNNer default."""

    def __init__(self, tree: dict[str, Any]) -> None:
        self.tree = tree

    def __call__(self, dotted: str, default: Any = None) -> Any:
        found, value = lookup(self.tree, dotted)
        return value if found else DEFAULTS.get(_generic(dotted), default)


def _generic(dotted: str) -> str:
    """datasets.val_2.meta_info → datasets.val.meta_info (the key DEFAULTS lists)."""
    parts = dotted.split(".")
    if len(parts) > 2 and parts[0] == "datasets" and parts[1].startswith("val"):
        parts[1] = "val"
    return ".".join(parts)


def build_settings(cfg: RunConfig) -> Settings:
    """Every value the run uses, typed, with traiNNer's defaults for missing keys."""
    get = _Reader(cfg.data)
    scale = cfg.scale
    network = dict(cfg.data["network_g"])
    network.setdefault("scale", scale)
    if network["scale"] not in (2, 3, 4):
        raise AutosrError(f"{cfg.source}: scale {network['scale']} is not trained by ParagonSR2", "use 2, 3 or 4")

    ds = "datasets.train."
    lq_size = get(ds + "lq_size") or get(ds + "gt_size") // scale
    data = DataSettings(
        dataroot_gt=_paths(get(ds + "dataroot_gt")) or (),
        dataroot_lq=_paths(get(ds + "dataroot_lq")) or (),
        meta_info=_paths(get(ds + "meta_info")),
        lq_size=lq_size,
        batch_size=get(ds + "batch_size_per_gpu"),
        accum_iter=get(ds + "accum_iter"),
        num_workers=get(ds + "num_worker_per_gpu"),
        use_hflip=get(ds + "use_hflip"),
        use_rot=get(ds + "use_rot"),
        prefetch_mode=get(ds + "prefetch_mode"),
        pin_memory=get(ds + "pin_memory"),
        persistent_workers=get(ds + "persistent_workers"),
        dataset_enlarge_ratio=get(ds + "dataset_enlarge_ratio"),
        degradation=kind_for_config(cfg.data),
        degradation_opts=options_of(cfg.data),
    )

    if get("train.use_moa"):
        raise AutosrError(f"{cfg.source}: train.use_moa: true asks for traiNNer's mixture of augmentations (mixup, cutmix, "
                          "resizemix), which autosr does not implement", "set train.use_moa: false (traiNNer's default)")
    total_iter = get("train.total_iter")
    optimizer = _optimizer(get("train.optim_g") or {}, DEFAULTS["train.optim_g.lr"])
    lr = optimizer.lr
    sched = get("train.scheduler") or {}
    t_max = sched.get("T_max", total_iter)
    schedule = ScheduleSettings(
        total_iter=total_iter,
        warmup_iter=get("train.warmup_iter"),
        kind=sched.get("type"),
        milestones=tuple(sched.get("milestones", ())),
        gamma=float(sched.get("gamma", 0.1)),
        t_max=max(1, t_max),
        eta_min_ratio=float(sched.get("eta_min", 0.0)) / lr if lr else 0.0,
    )

    val = _val_settings(cfg, get, scale)
    save_freq = get("logger.save_checkpoint_freq") or (val.freq or 1000)
    return Settings(
        name=cfg.name,
        scale=scale,
        network=network,
        runtime=RuntimeSettings(
            seed=get("manual_seed"),
            deterministic=bool(get("deterministic")),
            fast_matmul=get("fast_matmul"),
            channels_last=get("use_channels_last"),
            use_amp=get("use_amp"),
            amp_bf16=get("amp_bf16"),
            use_compile=get("use_compile"),
            compile_mode=get("compile_mode"),
            num_gpu=get("num_gpu"),
        ),
        data=data,
        val=val,
        optimizer=optimizer,
        schedule=schedule,
        ema_decay=float(get("train.ema_decay")),
        ema_power=float(get("train.ema_power")),
        grad_clip=get("train.grad_clip"),
        grad_clip_max_norm=_clip_threshold(cfg.data, get),
        losses=tuple(get("train.losses") or ()),
        dynamic_loss_scheduling=dict(get("train.dynamic_loss_scheduling") or {}),
        training_automations=dict(get("train.training_automations") or {}),
        print_freq=get("logger.print_freq"),
        save_checkpoint_freq=save_freq,
        save_checkpoint_format=get("logger.save_checkpoint_format"),
        use_tb_logger=get("logger.use_tb_logger"),
        pretrain=PretrainSettings(get("path.pretrain_network_g"), get("path.param_key_g"), get("path.strict_load_g")),
        resume_state=get("path.resume_state"),
        source=str(cfg.source),
        gan=_gan_settings(cfg, get),
        auto_vram_management=dict(cfg.data.get("auto_vram_management") or {}),
        tree=cfg.data,
    )


def _optimizer(optim: dict[str, Any], default_lr: float) -> OptimizerSettings:
    kind = optim.get("type", "AdamW")
    betas = optim.get("betas", DEFAULTS["train.optim_g.betas"])
    return OptimizerSettings(
        type=kind, lr=float(optim.get("lr", default_lr)), betas=(float(betas[0]), float(betas[1])),
        eps=float(optim.get("eps", DEFAULTS["train.optim_g.eps"])),
        weight_decay=float(optim.get("weight_decay", 1e-2 if kind == "AdamW" else 0.0)),  # torch's defaults
        fused=optim.get("fused"),
    )


# optim_d when network_d is set without it: every upstream GAN template's (docs/losses.md; realistic.md).
OPTIM_D_TEMPLATE: dict[str, Any] = {"type": "AdamW", "lr": 1e-4, "weight_decay": 0.0, "betas": [0.9, 0.99]}


def _gan_settings(cfg: RunConfig, get: _Reader) -> GanSettings | None:
    network_d = cfg.data.get("network_d")
    if not network_d:
        return None
    optim = get("train.optim_d")
    note = "" if optim else ("train.optim_d is not set: upstream traiNNer-redux's GAN templates' AdamW lr 1e-4, "
                             "weight_decay 0, betas [0.9, 0.99]")
    return GanSettings(
        network_d=dict(network_d), optimizer=_optimizer(optim or OPTIM_D_TEMPLATE, OPTIM_D_TEMPLATE["lr"]),
        pretrain=PretrainSettings(get("path.pretrain_network_d"), get("path.param_key_d"), get("path.strict_load_d")),
        adaptive_d=bool(get("train.adaptive_d")), adaptive_d_ema_decay=float(get("train.adaptive_d_ema_decay")),
        adaptive_d_threshold=float(get("train.adaptive_d_threshold")), optimizer_note=note,
    )


def _val_settings(cfg: RunConfig, get: _Reader, scale: int) -> ValSettings:
    sets = tuple(
        ValSet(name, _paths(v["dataroot_gt"]) or (), _paths(v["dataroot_lq"]) or (), _paths(v.get("meta_info")))
        for name, v in cfg.val_sets.items()
    )
    metrics = get("val.metrics") or {}
    freq = get("val.val_freq") or 0
    reasons = [
        (not sets, "no validation dataset"),
        (not get("val.val_enabled"), "val.val_enabled is false"),
        (not get("val.metrics_enabled"), "val.metrics_enabled is false (traiNNer's default)"),
        (not metrics, "val.metrics lists no metric"),
        (freq <= 0, "val.val_freq is not set"),
    ]
    off = next((why for cond, why in reasons if cond), "")
    return ValSettings(
        enabled=not off, freq=freq if not off else 0, save_img=get("val.save_img"),
        metrics={k: dict(v) for k, v in metrics.items()}, tile_size=get("val.tile_size"),
        sets=sets, off_reason=off,
    )
