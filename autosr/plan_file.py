"""The plan hand-off: `autosr init` writes `<stem>.plan.json` beside the YAML; `autosr train` reads it.

Like nnU-Net's plans file, it keeps what the YAML cannot: the hardware and dataset profiles the
plan was made from, the calibration measurements, the time budget, and every decision as a typed
value with its reason. The YAML stays a plain traiNNer-redux config; train copies the plan into the
run folder and journals its decisions from here, marking any value edited by hand in the YAML since.
Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autosr import __version__
from autosr.config import lookup
from autosr.fsutil import write_text_atomic
from autosr.runfolder import plain

SCHEMA = "autosr.plan/1"


def plan_path_for(config: Path) -> Path:
    """auto.yml → auto.plan.json (same folder)."""
    return config.with_name(f"{config.stem}.plan.json")


def write_plan(path: Path, *, decisions: dict[str, Any], command: str, config: Path, hardware: dict[str, Any],
               dataset: dict[str, Any], time_budget_s: float | None, calibration: dict[str, Any] | None) -> Path:
    """decisions: dotted key → Decision (value, reason, source)."""
    data = {
        "schema": SCHEMA,
        "autosr_version": __version__,
        "command": command,
        "config": config.name,
        "time_budget_s": time_budget_s,
        "calibration": calibration or {},
        "decisions": {k: {"value": plain(d.value), "reason": d.reason, "source": d.source} for k, d in decisions.items()},
        "hardware": plain(hardware),
        "dataset": plain(dataset),
    }
    return write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def read_plan(path: Path) -> dict[str, Any]:
    """The plan, or {} when there is none or it cannot be read (a hand-written YAML has no plan)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else {}


def plan_records(plan: dict[str, Any], config_tree: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(key, value, reason) for the journal: each planned value as the run will use it. A value
    that differs in the YAML (edited by hand after init) or was removed from it says so."""
    out = []
    for key, entry in plan.get("decisions", {}).items():
        found, value = lookup(config_tree, key)
        reason = "set by the user" if entry.get("source") == "set" else entry.get("reason", "")
        if not found:
            continue  # the flavour or a --set removed the section
        if plain(value) != entry.get("value"):
            out.append((key, value, f"edited in the YAML after init (planned {entry.get('value')!r}: {reason})"))
        else:
            out.append((key, value, reason))
    calibration = plan.get("calibration")
    for trial in (calibration.get("trials") or []) if isinstance(calibration, dict) else []:
        if isinstance(trial, dict):  # init's batch × LR trials on the user's data, one record each
            out.append(("calibration.trial", trial.get("gain_db"), str(trial.get("text", ""))))
    return out
