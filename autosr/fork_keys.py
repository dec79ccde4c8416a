"""The ParagonSR2 fork's names and keys in `train.training_automations` and `train.dynamic_loss_scheduling`.

The fork (github delafer/traiNNer-redux) reads both sections as free dicts with `config.get(key, default)`:
`traiNNer/utils/training_automations.py` (the four automations, their base class and the manager),
`traiNNer/losses/dynamic_loss_scheduling.py` and `traiNNer/models/sr_model.py` (DLS). This module is
the table of what it reads (`FORK_READS`), the spellings it accepts for each automation (`SPELLINGS`),
and, for each key autosr accepts but does not use, what autosr does instead (`UNUSED`), so that
`autosr train` can say so once (`unused_fork_keys`). Shared base: imports no stage.
"""

from __future__ import annotations

from typing import Any

AUTOMATIONS_SECTION = "training_automations"
DLS_SECTION = "dynamic_loss_scheduling"

# autosr's name of each automation → the other spellings it answers to. The fork registers its classes
# (AUTOMATION_REGISTRY, names lower-cased) and the manager adds the snake_case aliases; its registry
# matches a name lower-cased, and so does autosr. The fork renamed DynamicBatchSizeOptimizer (autosr's
# name) to DynamicBatchAndPatchSizeOptimizer in 8295d9eb "better name". autosr's own snake_case
# spellings (marked) complete the pattern; the fork has no AdaptiveValidationFrequency.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "IntelligentLearningRateScheduler": ("intelligent_learning_rate_scheduler",),
    "DynamicBatchSizeOptimizer": (
        "DynamicBatchAndPatchSizeOptimizer",
        "dynamic_batch_and_patch_size_optimizer",
        "dynamic_batch_size_optimizer",  # autosr's (the fork's logger names its statistics so)
    ),
    "AdaptiveGradientClipping": ("adaptive_gradient_clipping",),
    "IntelligentEarlyStopping": ("intelligent_early_stopping",),
    "AdaptiveValidationFrequency": ("adaptive_validation_frequency",),  # autosr's
    "GANBalance": ("gan_balance",),  # autosr's (GAN runs)
}
_BY_LOWER: dict[str, str] = {
    spelling.lower(): name for name, others in SPELLINGS.items() for spelling in (name, *others)
}


def canonical_automation(name: str) -> str | None:
    """autosr's name for an automation spelt any way the fork accepts (case-insensitive), or None."""
    return _BY_LOWER.get(name.lower())


def all_spellings() -> list[str]:
    """Every accepted spelling, for did-you-mean."""
    return [spelling for name, others in SPELLINGS.items() for spelling in (name, *others)]


# ---- what the fork reads -----------------------------------------------------------------------
# Section (autosr's automation name, or the DLS / automations section) → dotted key inside it → the
# fork's default. Written from the fork's source at b676e3a; `tests/test_fork_keys.py` checks that the
# schema accepts every key here, and that each one either acts in autosr or is in UNUSED.

_BASE = {"enabled": False, "fallback": {}, "max_adjustments": 100}  # TrainingAutomationBase.__init__

FORK_READS: dict[str, dict[str, Any]] = {
    # TrainingAutomationManager / setup_training_automations: `enabled`, then one dict per automation
    AUTOMATIONS_SECTION: {"enabled": False},
    "IntelligentLearningRateScheduler": {
        **_BASE, "monitor_loss": True, "monitor_validation": True, "adaptation_threshold": 0.02,
        "plateau_patience": 1000, "improvement_threshold": 0.001, "min_lr_factor": 0.1, "max_lr_factor": 2.0,
        "lr_log_frequency": 100, "architecture_hints": {},
    },
    "DynamicBatchSizeOptimizer": {  # the fork's DynamicBatchAndPatchSizeOptimizer
        **_BASE, "target_vram_usage": 0.85, "safety_margin": 0.05, "adjustment_frequency": 25,
        "min_batch_size": 2, "max_batch_size": 64, "min_lq_size": 32, "max_lq_size": 256, "vram_history_size": 50,
    },
    "AdaptiveGradientClipping": dict(_BASE),  # "autonomous": it reads nothing else
    "IntelligentEarlyStopping": {
        **_BASE, "patience": 2000, "min_improvement": 0.001, "min_epochs": 1000, "min_iterations": 5000,
        "monitor_metric": "val/psnr", "max_no_improvement": 2000, "improvement_threshold": 0.002,
        "warmup_iterations": 1000, "convergence_log_frequency": 100, "convergence_threshold": 0.0005,
        "min_sustained_convergence_for_log": 10,
    },
    # sr_model (enabled), create_dynamic_loss_scheduler (auto_calibrate), DynamicLossScheduler's arguments,
    # _create_intelligent_loss_scheduler (architecture_type, training_config.*), and the keys
    # _determine_intelligent_parameters skips (dataset_info)
    DLS_SECTION: {
        "enabled": False, "auto_calibrate": False, "momentum": 0.9, "adaptation_rate": 0.01, "min_weight": 1e-6,
        "max_weight": 100.0, "adaptation_threshold": 0.1, "baseline_iterations": 100, "enable_monitoring": True,
        "architecture_type": "unknown", "training_config.total_iterations": 40000,
        **{f"{where}dataset_info.{key}": 0.5 for where in ("training_config.", "")
           for key in ("texture_variance", "edge_density", "color_variation", "overall_complexity")},
    },
}

# ---- what autosr does instead ------------------------------------------------------------------
# Section → key (a subtree: its keys too) → one line: what autosr does instead of what the key asks.

_NO_TEST = "the fork reads it but never uses it"
_NO_CONVERGENCE = "autosr has no training-loss convergence test: it stops on the validation metric only"


def _base(bounds: str) -> dict[str, str]:
    return {
        "fallback": "autosr picks its fallbacks itself (the tier's defaults when detection fails) and journals why; "
                    "the fork never applies these",
        "max_adjustments": f"autosr bounds its changes by cooldowns and ranges, not by a count: {bounds}",
    }


UNUSED: dict[str, dict[str, str]] = {
    "IntelligentLearningRateScheduler": {
        **_base("one change per plateau_patience iterations, the total factor within [min_lr_factor, max_lr_factor]"),
        "adaptation_threshold": f"{_NO_TEST}; autosr's plateau test uses improvement_threshold",
        "lr_log_frequency": "autosr journals every LR change (events.jsonl) and holds none back",
        "architecture_hints": f"{_NO_TEST}; autosr calibrates from the hardware tier and the run's length",
    },
    "DynamicBatchSizeOptimizer": {
        **_base("at most one batch growth per 1000 iterations, never to a size that ran out of memory"),
        "adjustment_frequency": "autosr grows the batch at most once per 1000 iterations, after 200 under the memory target",
        "min_lq_size": "autosr never changes the patch size while training: the configured lq_size / gt_size stays",
        "max_lq_size": "autosr never changes the patch size while training: the configured lq_size / gt_size stays",
        "vram_history_size": "autosr reads every step's peak memory over the last 200 iterations, not a history of samples",
    },
    "AdaptiveGradientClipping": _base("the threshold re-set at most once per 500 steps, within [0.1, 10]"),
    "IntelligentEarlyStopping": {
        **_base("one stop, never before 20% of the run"),
        "min_epochs": f"{_NO_TEST}; autosr never stops before 20% of total_iter",
        "min_iterations": "autosr never stops before 20% of total_iter, nor with fewer iterations left than the patience",
        "max_no_improvement": f"{_NO_TEST}; autosr counts patience (as the fork does)",
        "improvement_threshold": f"{_NO_TEST}; autosr uses min_improvement (as the fork does)",
        "warmup_iterations": f"starts the fork's convergence test; {_NO_CONVERGENCE}",
        "convergence_threshold": f"the fork's convergence test; {_NO_CONVERGENCE}",
        "convergence_log_frequency": f"paces the fork's convergence messages; {_NO_CONVERGENCE}",
        "min_sustained_convergence_for_log": f"paces the fork's convergence messages; {_NO_CONVERGENCE}",
    },
    DLS_SECTION: {
        "architecture_type": "autosr takes the architecture from network_g.type (the fork overwrites this key with it too)",
        "training_config": "autosr reads train.total_iter and measures the dataset's complexity on the first batch "
                           "(the fork overwrites this key too)",
        "dataset_info": "autosr measures the dataset's complexity on the first batch (the fork skips this key)",
    },
}


def _on(section: Any) -> bool:
    """autosr's rule: a section that is present is on unless it says `enabled: false`."""
    return isinstance(section, dict) and bool(section.get("enabled", True))


def _report(section: dict[str, Any], unused: dict[str, str], where: str) -> list[tuple[str, str]]:
    return [(f"{where}.{key}", unused[key]) for key in section if key in unused]


def unused_fork_keys(tree: Any) -> list[tuple[str, str]]:
    """(dotted key, what autosr does instead) for every key of the fork's two free-form sections that
    autosr accepts but does not use, in the config's order; the key as written (an automation under any
    of its spellings). Keys of a section switched off (`enabled: false`) are left out: they do nothing
    in either tool. Works on a raw tree and on a validated one; [] when there is nothing to say."""
    train = tree.get("train") if isinstance(tree, dict) else None
    if not isinstance(train, dict):
        return []
    out: list[tuple[str, str]] = []
    dls = train.get(DLS_SECTION)
    if isinstance(dls, dict) and dls and _on(dls):
        out += _report(dls, UNUSED[DLS_SECTION], f"train.{DLS_SECTION}")
    autos = train.get(AUTOMATIONS_SECTION)
    if isinstance(autos, dict) and _on(autos):
        for spelt, section in autos.items():
            name = canonical_automation(str(spelt)) if spelt != "enabled" else None
            if name is not None and _on(section):
                out += _report(section, UNUSED.get(name, {}), f"train.{AUTOMATIONS_SECTION}.{spelt}")
    return out
