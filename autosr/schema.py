"""The traiNNer-redux YAML schema, as data: which keys exist, their types, which are required.

Strict like traiNNer's msgspec structs: an unknown key at any level is an error, and so is a
value of the wrong type. One tree serves `init --set` (key paths and typed parsing), the
renderer's tests and `train`'s loader (../shared/specs/trainner-yaml.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# ---- type specs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    """int, float (ints accepted), bool, str, or a choice of literal strings.

    Numbers may carry a range, checked at load: `lo`/`hi` are the bounds (None: unbounded), and
    `lo_open`/`hi_open` exclude the bound itself. Floats must always be finite (no nan/inf)."""

    kind: type
    choices: tuple[str, ...] = ()
    nullable: bool = False
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def in_range(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def range_text(self) -> str:
        """'> 0', '≥ 1', '[0, 1)', '[1, 8]' …"""
        if self.lo is not None and self.hi is not None:
            return f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '≥'} {self.lo}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '≤'} {self.hi}"
        return "any finite number" if self.kind is float else "any integer"


@dataclass(frozen=True)
class Either:
    """One of several specs, tried in order (e.g. "auto" or an int)."""

    options: tuple[Any, ...]


@dataclass(frozen=True)
class ListOf:
    item: Any
    min_len: int = 0


@dataclass(frozen=True)
class Struct:
    """A mapping with known keys; `required` must be present; nothing else is allowed."""

    keys: dict[str, Any]
    required: tuple[str, ...] = ()
    free: bool = False  # free mappings (network_g) are checked by their owner, not here
    # The fork's free-form sections (a dict it reads with float()/int()): numbers written as text
    # ('1e-6', which YAML reads as a string) are numbers there, and an unknown key is ignored there.
    fork_free_form: bool = False


@dataclass(frozen=True)
class MapOf:
    """A mapping whose keys the user names (val datasets, metrics). `by_prefix` pairs a key
    prefix with the spec of its value; the first matching prefix wins; "" matches any key."""

    by_prefix: tuple[tuple[str, Any], ...]

    def spec_for(self, key: str) -> Any | None:
        for prefix, spec in self.by_prefix:
            if key.startswith(prefix):
                return spec
        return None


@dataclass(frozen=True)
class FreeMap:
    """A mapping checked elsewhere (network_g: by the architecture; losses: by the loss builder)."""

    required: tuple[str, ...] = ()


INT, FLOAT, BOOL, STR = Scalar(int), Scalar(float), Scalar(bool), Scalar(str)
# Ranged numbers (every float is also checked finite): the names say the allowed range.
COUNT0 = Scalar(int, lo=0)  # ≥ 0
COUNT1 = Scalar(int, lo=1)  # ≥ 1
POSITIVE = Scalar(float, lo=0, lo_open=True)  # > 0
NONNEG = Scalar(float, lo=0)  # ≥ 0
FRACTION = Scalar(float, lo=0, hi=1, hi_open=True)  # [0, 1)


def ranged(kind: type, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False) -> Scalar:
    return Scalar(kind, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open)

OPT_STR = Scalar(str, nullable=True)
STR_OR_LIST = Either((STR, ListOf(STR, min_len=1)))

# ---- the tree ---------------------------------------------------------------------------------

TRAIN_DATASET = Struct(
    {
        "name": STR,
        # realesrgandataset: HR alone, the LR made on the fly (autosr/train/degradations.py checks its keys)
        "type": Scalar(str, choices=("pairedimagedataset", "realesrgandataset")),
        "dataroot_gt": STR_OR_LIST,
        "dataroot_lq": STR_OR_LIST,
        "meta_info": OPT_STR,
        "lq_size": COUNT1,
        "gt_size": COUNT1,
        "batch_size_per_gpu": COUNT1,
        "num_worker_per_gpu": COUNT0,
        "accum_iter": COUNT1,
        "use_hflip": BOOL,
        "use_rot": BOOL,
        "dataset_enlarge_ratio": Either((Scalar(str, choices=("auto",)), COUNT1)),
        "prefetch_mode": OPT_STR,
        "pin_memory": BOOL,
        "persistent_workers": BOOL,
    },
    # no dataroot_lq: HR alone, the LR made on the fly (bicubic for pairedimagedataset)
    required=("name", "type", "dataroot_gt", "batch_size_per_gpu"),
)

VAL_DATASET = Struct(
    {
        "name": STR,
        "type": Scalar(str, choices=("pairedimagedataset",)),
        "dataroot_gt": STR_OR_LIST,
        "dataroot_lq": STR_OR_LIST,
        "meta_info": OPT_STR,
    },
    required=("name", "type", "dataroot_gt", "dataroot_lq"),
)

def _FreeForm(keys: dict[str, Any], required: tuple[str, ...] = ()) -> Struct:  # noqa: N802  (reads like Struct)
    return Struct(keys, required, fork_free_form=True)


# DLS and automation ranges: the same as autosr/schedule/calibration.py checks when it reads them.
# Below each section's own keys, the keys the fork reads there that autosr does not use: accepted (a
# fork config loads) and reported by `autosr train` with what autosr does instead (autosr/fork_keys.py).
_DATASET_INFO = _FreeForm({key: FLOAT for key in ("texture_variance", "edge_density", "color_variation", "overall_complexity")})
DLS = _FreeForm(
    {
        "enabled": BOOL,
        "auto_calibrate": BOOL,
        "momentum": FRACTION,
        "adaptation_rate": ranged(float, 0, 0.5, lo_open=True, hi_open=True),
        "min_weight": ranged(float, 0, 1, lo_open=True),  # (0, 1] ≤ max_weight
        "max_weight": ranged(float, 1),
        "adaptation_threshold": NONNEG,
        "baseline_iterations": COUNT1,
        "enable_monitoring": BOOL,
        # per-phase values (docs/scheduler.md): used as they are in that phase, like top-level keys
        "phases": _FreeForm({
            phase: _FreeForm({"momentum": FRACTION, "adaptation_rate": ranged(float, 0, 0.5, lo_open=True, hi_open=True),
                           "max_weight": ranged(float, 1)})
            for phase in ("warmup", "early", "middle", "late")
        }),
        # the fork's, unused
        "architecture_type": STR,
        "training_config": _FreeForm({"total_iterations": INT, "dataset_info": _DATASET_INFO}),
        "dataset_info": _DATASET_INFO,
    }
)

# every automation of the fork (TrainingAutomationBase): unused by autosr
_FORK_BASE = {"fallback": FreeMap(), "max_adjustments": INT}

AUTOMATIONS = _FreeForm(
    {
        "enabled": BOOL,
        "IntelligentLearningRateScheduler": _FreeForm(
            {
                "enabled": BOOL,
                "monitor_loss": BOOL,
                "monitor_validation": BOOL,
                "plateau_patience": COUNT1,
                "improvement_threshold": FRACTION,
                "min_lr_factor": ranged(float, 0.1, 1),
                "max_lr_factor": ranged(float, 1, 2),
                **_FORK_BASE, "adaptation_threshold": FLOAT, "lr_log_frequency": INT, "architecture_hints": FreeMap(),
            }
        ),
        "DynamicBatchSizeOptimizer": _FreeForm(
            {
                "enabled": BOOL,
                "target_vram_usage": ranged(float, 0, 1, lo_open=True),
                "safety_margin": FRACTION,
                "min_batch_size": COUNT1,
                "max_batch_size": COUNT1,
                **_FORK_BASE, "adjustment_frequency": INT, "min_lq_size": INT, "max_lq_size": INT, "vram_history_size": INT,
            }
        ),
        "AdaptiveGradientClipping": _FreeForm(
            {"enabled": BOOL, "initial_threshold": ranged(float, 0.1, 10), "calibration_steps": COUNT1,
             "percentile": ranged(float, 0, 100, lo_open=True),  # 0.95 and 95 both mean p95
             **_FORK_BASE}
        ),
        "IntelligentEarlyStopping": _FreeForm(
            {"enabled": BOOL, "patience": COUNT1, "min_improvement": NONNEG, "monitor_metric": STR,
             **_FORK_BASE, "min_epochs": INT, "min_iterations": INT, "max_no_improvement": INT, "improvement_threshold": FLOAT,
             "warmup_iterations": INT, "convergence_log_frequency": INT, "convergence_threshold": FLOAT,
             "min_sustained_convergence_for_log": INT}
        ),
        "AdaptiveValidationFrequency": _FreeForm({"enabled": BOOL, "min_freq": COUNT1, "max_freq": COUNT1}),
        # autosr's own (the fork has none; it logs an unknown automation and goes on)
        "GANBalance": _FreeForm({"enabled": BOOL, "d_loss_floor": ranged(float, 0, 1, lo_open=True, hi_open=True),
                                 "logit_gap": POSITIVE, "cooldown": COUNT1, "psnr_drop_db": POSITIVE,
                                 "hf_ratio_max": ranged(float, 1, lo_open=True), "max_rollbacks": COUNT0}),
    }
)

FORK_SECTIONS = ("dynamic_loss_scheduling", "training_automations")

OPTIMIZER = Struct(
    {
        "type": Scalar(str, choices=("AdamW", "Adam")),
        "lr": ranged(float, 0, 1, lo_open=True),  # (0, 1]: Adam(W) diverges far below 1
        "weight_decay": NONNEG,
        "betas": ListOf(FRACTION, min_len=2),
        "eps": POSITIVE,
        "fused": BOOL,
    },
    required=("type", "lr"),
)

TRAIN = Struct(
    {
        "total_iter": COUNT1,
        "optim_g": OPTIMIZER,
        "optim_d": OPTIMIZER,  # the discriminator's (GAN training: network_d)
        # upstream's adaptive_d: pause D updates while the smoothed G adversarial loss rises
        "adaptive_d": BOOL,
        "adaptive_d_ema_decay": FRACTION,
        "adaptive_d_threshold": ranged(float, 1),
        # traiNNer-redux's mixture of augmentations (mixup, cutmix, resizemix): off by default there;
        # autosr does not implement it and refuses use_moa: true (train/settings.py)
        "use_moa": BOOL,
        "moa_augs": ListOf(STR),
        "moa_probs": ListOf(NONNEG),
        "moa_debug": BOOL,
        "moa_debug_limit": COUNT0,
        "scheduler": Struct(
            {
                "type": Scalar(str, choices=("MultiStepLR", "CosineAnnealingLR")),
                "milestones": ListOf(COUNT0),
                "gamma": ranged(float, 0, 1, lo_open=True),
                "T_max": COUNT1,
                "eta_min": NONNEG,
            },
            required=("type",),
        ),
        "warmup_iter": ranged(int, -1),  # -1: no warm-up
        "ema_decay": FRACTION,  # 0: no EMA
        "ema_power": POSITIVE,
        "grad_clip": BOOL,
        "grad_clip_max_norm": POSITIVE,
        "losses": ListOf(FreeMap(required=("type", "loss_weight")), min_len=1),
        "dynamic_loss_scheduling": DLS,
        "training_automations": AUTOMATIONS,
    },
    required=("total_iter",),
)

METRIC = Struct(
    {
        # which keys each type takes is checked by autosr.train.metrics.check_metric
        "type": Scalar(str, choices=("calculate_psnr", "calculate_ssim", "calculate_lpips", "calculate_dists",
                                     "calculate_topiq", "calculate_hf_ratio", "calculate_gmsd")),
        "crop_border": COUNT0,
        "test_y_channel": BOOL,
        "net": Scalar(str, choices=("alex", "vgg")),
        "better": Scalar(str, choices=("higher", "lower")),
    },
    required=("type",),
)

VAL = Struct(
    {
        "val_enabled": BOOL,
        "val_freq": COUNT0,  # 0 is refused when validation is on (config._check_rules)
        "save_img": BOOL,
        "metrics_enabled": BOOL,
        "metrics": MapOf((("", METRIC),)),
        "tile_size": COUNT0,  # 0: whole images
    }
)

LOGGER = Struct(
    {
        "print_freq": COUNT1,
        "save_checkpoint_freq": COUNT1,
        "save_checkpoint_format": Scalar(str, choices=("safetensors", "pth")),
        "use_tb_logger": BOOL,
    }
)

PATH = Struct(
    {
        "pretrain_network_g": OPT_STR,
        "param_key_g": OPT_STR,
        "strict_load_g": BOOL,
        "pretrain_network_d": OPT_STR,
        "param_key_d": OPT_STR,
        "strict_load_d": BOOL,
        "resume_state": OPT_STR,
    }
)

ROOT = Struct(
    {
        "name": STR,
        "scale": ranged(int, 1, 8),
        "num_gpu": Either((Scalar(str, choices=("auto",)), COUNT0)),
        "path": PATH,
        "manual_seed": ranged(int, 0, 2**63 - 1),
        "deterministic": BOOL,
        "use_amp": BOOL,
        "amp_bf16": BOOL,
        "use_channels_last": BOOL,
        "fast_matmul": BOOL,
        "use_compile": BOOL,
        "compile_mode": Scalar(str, choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")),
        "network_g": FreeMap(required=("type",)),
        "network_d": FreeMap(required=("type",)),  # checked by autosr.archs.discriminators
        # the fork's: its own VRAM manager's settings; autosr's memory probe and batch back-off decide instead
        "auto_vram_management": FreeMap(),
        "datasets": MapOf((("train", TRAIN_DATASET), ("val", VAL_DATASET))),
        "train": TRAIN,
        "val": VAL,
        "logger": LOGGER,
    },
    required=("name", "scale", "num_gpu", "path"),
)

# ---- defaults -----------------------------------------------------------------------------------
# What a missing key means. Where traiNNer-redux defines the key, this is its default (upstream
# the-database/traiNNer-redux and the ParagonSR2 fork agree on all of these; checked against
# traiNNer/utils/redux_options.py), so a config that loads in both trains the same way. Keys
# traiNNer requires (print_freq, …) or does not have get autosr's value, marked "autosr".
# `autosr.train.settings` reads these; docs/config.md shows them.
DEFAULTS: dict[str, Any] = {
    "manual_seed": None,  # a random seed, journaled and kept in the checkpoint
    "deterministic": False,
    "use_amp": False,
    "amp_bf16": False,
    "use_channels_last": True,
    "fast_matmul": False,
    "use_compile": False,
    "compile_mode": "max-autotune-no-cudagraphs",
    "num_gpu": "auto",
    "path.pretrain_network_g": None,
    "path.param_key_g": None,  # autosr: params_ema, else params, else the whole file
    "path.strict_load_g": True,
    "path.pretrain_network_d": None,
    "path.param_key_d": None,  # autosr: params, else the whole file
    "path.strict_load_d": True,
    "train.adaptive_d": False,
    "train.use_moa": False,
    "train.adaptive_d_ema_decay": 0.999,
    "train.adaptive_d_threshold": 1.02,
    "path.resume_state": None,
    "datasets.train.meta_info": None,
    "datasets.train.num_worker_per_gpu": None,  # autosr decides (cores per GPU)
    "datasets.train.accum_iter": 1,
    "datasets.train.use_hflip": True,
    "datasets.train.use_rot": True,
    "datasets.train.dataset_enlarge_ratio": "auto",
    "datasets.train.prefetch_mode": None,
    "datasets.train.pin_memory": True,
    "datasets.train.persistent_workers": True,
    "datasets.val.meta_info": None,
    "train.optim_g.lr": 2.0e-4,  # autosr: traiNNer has no default (optim_g is required there)
    "train.optim_g.betas": [0.9, 0.999],  # torch's
    "train.optim_g.eps": 1.0e-8,  # torch's
    "train.warmup_iter": -1,
    "train.ema_decay": 0.0,  # no EMA
    "train.ema_power": 10.0,  # no EMA warm-up
    "train.grad_clip": False,
    "train.grad_clip_max_norm": 100.0,  # upstream only; the fork has no such key
    "train.scheduler": None,  # constant learning rate
    "val.val_enabled": True,  # autosr (required in traiNNer)
    "val.save_img": False,  # autosr (required in traiNNer)
    "val.metrics_enabled": False,
    "val.metrics": None,
    "val.val_freq": None,
    "val.tile_size": 0,  # whole images
    "logger.print_freq": 100,  # autosr (required in traiNNer)
    "logger.save_checkpoint_freq": None,  # autosr: val_freq, else 1000 (required in traiNNer)
    "logger.save_checkpoint_format": "safetensors",
    "logger.use_tb_logger": False,  # autosr (required in traiNNer)
}
