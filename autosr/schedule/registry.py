"""The one list of run-time automations, and building them from the two YAML sections.

`plan.py` and `schema.py` derive their lists from here (`AUTOMATION_NAMES`, and each class's
`options` for the schema's keys); adding an automation is adding its file and one line below.
Torch-free at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autosr.errors import AutosrError, did_you_mean
from autosr.schedule.base import ScheduledAutomation
from autosr.schedule.batch_size import DynamicBatchSizeOptimizer
from autosr.schedule.calibration import DLS_NAME, dls_enabled
from autosr.schedule.dls import DynamicLossScheduling
from autosr.schedule.early_stop import IntelligentEarlyStopping
from autosr.schedule.gan_balance import GANBalance
from autosr.schedule.grad_clip import AdaptiveGradientClipping
from autosr.schedule.lr_plateau import IntelligentLearningRateScheduler
from autosr.schedule.val_freq import AdaptiveValidationFrequency
from autosr.train.hooks import Automation, RunInfo

# `train.training_automations.<name>`, in the order they run after each step and validation
AUTOMATIONS: dict[str, type[ScheduledAutomation]] = {
    cls.name: cls
    for cls in (
        IntelligentLearningRateScheduler,
        DynamicBatchSizeOptimizer,
        AdaptiveGradientClipping,
        IntelligentEarlyStopping,
        AdaptiveValidationFrequency,
        GANBalance,
    )
}
AUTOMATION_NAMES: tuple[str, ...] = tuple(AUTOMATIONS)
# `train.dynamic_loss_scheduling`: the same interface, its own YAML section
DLS: type[ScheduledAutomation] = DynamicLossScheduling
ALL: dict[str, type[ScheduledAutomation]] = {DLS_NAME: DLS, **AUTOMATIONS}


def _on(section: Mapping[str, Any] | None) -> bool:
    """A section that is present is on unless it says `enabled: false`."""
    return section is not None and bool(section.get("enabled", True))


def _check_names(section: Mapping[str, Any]) -> None:
    for key in section:
        if key != "enabled" and key not in AUTOMATIONS:
            raise AutosrError(f"train.training_automations.{key}: unknown automation{did_you_mean(key, AUTOMATION_NAMES)}",
                              "known: " + ", ".join(AUTOMATION_NAMES))


def _instances(dls_section: Mapping[str, Any] | None, automations_section: Mapping[str, Any] | None,
               run: RunInfo) -> tuple[list[ScheduledAutomation], list[str]]:
    autos: list[ScheduledAutomation] = []
    notes: list[str] = []
    if dls_enabled(dls_section):
        assert dls_section is not None
        dls = DynamicLossScheduling(dls_section, run)
        autos.append(dls)
        assert dls.settings is not None
        notes.extend(dls.settings.warnings)
    elif dls_section:
        notes.append(f"{DLS_NAME}: off (enabled: false)")
    section = automations_section or {}
    _check_names(section)
    if section and not section.get("enabled", True):
        notes.append("training_automations: off (enabled: false)")
        return autos, notes
    for name, cls in AUTOMATIONS.items():
        sub = section.get(name)
        if sub is None:
            continue
        if not _on(sub):
            notes.append(f"{name}: off (enabled: false)")
            continue
        autos.append(cls(sub, run))
    return autos, notes


def build_automations(dls_section: Mapping[str, Any] | None, automations_section: Mapping[str, Any] | None,
                      run: RunInfo) -> tuple[list[Automation], list[str]]:
    """The enabled automations, configured from their (schema-checked) sections, DLS first; and
    notes for the journal (a preset fallback, sections switched off). A name that is not
    listed under `training_automations` is off; a listed one is on unless `enabled: false`."""
    autos, notes = _instances(dls_section, automations_section, run)
    out: list[Automation] = list(autos)
    return out, notes


def describe(run: RunInfo, dls_section: Mapping[str, Any] | None,
             automations_section: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(automation, setting, value with its reason) for `autosr train --explain`: every enabled
    automation's settings and DLS's parameters per phase."""
    autos, notes = _instances(dls_section, automations_section, run)
    rows: list[tuple[str, str, str]] = []
    for auto in autos:
        rows.extend(auto.describe())
    for note in notes:
        who = note.split(":", 1)[0]
        rows.append((who, "note", note.split(":", 1)[-1].strip()))
    return rows
