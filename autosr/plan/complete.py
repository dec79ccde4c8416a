"""Partial configs: a YAML that names the data and the network and leaves the rest to autosr (missing
required keys, or values written `auto`, as the ParagonSR2 design notes' zero-config file does) is
completed by the same planner as `autosr init`, keeping every key the user wrote.

`partial_reasons` says whether (and why) a tree is partial; `completion_inputs` turns it into init's
inputs: the folders, the arch and scale, and every written value as a `--set` override (so the values
derived from it follow, as with init's --set)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autosr.errors import AutosrError
from autosr.schema import ROOT, FreeMap, MapOf, Struct

AUTO = "auto"
# Keys where `auto` is a real traiNNer value, not a request to plan.
AUTO_IS_A_VALUE = {"num_gpu", "datasets.train.dataset_enlarge_ratio"}
# Written by init from the inputs below, not as overrides.
INPUT_KEYS = {"datasets.train.dataroot_gt", "datasets.train.dataroot_lq", "datasets.val.dataroot_gt",
              "datasets.val.dataroot_lq", "scale", "network_g.type", "name"}


@dataclass
class CompletionInputs:
    gt: Path
    lq: Path | None
    val_gt: Path | None
    val_lq: Path | None
    arch: str | None
    scale: int | None
    name: str | None
    overrides: list[str] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)  # keys written `auto` (autosr plans them)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Dotted keys and values; lists and the free-form mappings' items are leaves of their own."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def _missing_required(tree: dict[str, Any], spec: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(spec, Struct):
        for key in spec.required:
            if key not in tree:
                yield f"{prefix}{key}"
        for key, child in spec.keys.items():
            if isinstance(tree.get(key), dict):
                yield from _missing_required(tree[key], child, f"{prefix}{key}.")
    elif isinstance(spec, MapOf):
        for key, value in tree.items():
            child = spec.spec_for(str(key))
            if isinstance(value, dict) and child is not None:
                yield from _missing_required(value, child, f"{prefix}{key}.")
    elif isinstance(spec, FreeMap):
        return


def partial_reasons(tree: Any) -> list[str]:
    """What makes a config partial ([] for a complete one): `auto` values and missing required keys."""
    if not isinstance(tree, dict):
        return []
    auto = [k for k, v in _leaves(tree) if v == AUTO and k not in AUTO_IS_A_VALUE]
    missing = list(_missing_required(tree, ROOT))
    datasets = tree.get("datasets")
    if not isinstance(datasets, dict) or not isinstance(datasets.get("train"), dict) or not isinstance(tree.get("network_g"), dict):
        return []  # not even the data and the network: nothing to plan from (the strict loader says what is missing)
    return [f"{k}: auto" for k in auto] + [f"{k} missing" for k in missing]


def completion_inputs(tree: dict[str, Any], source: Path | str) -> CompletionInputs:
    train = tree["datasets"]["train"]
    val = next((v for k, v in (tree.get("datasets") or {}).items() if str(k).startswith("val") and isinstance(v, dict)), None)

    def folder(node: dict[str, Any] | None, key: str) -> Path | None:
        value = (node or {}).get(key)
        if isinstance(value, list):
            if len(value) != 1:
                raise AutosrError(f"{source}: datasets.*.{key} lists {len(value)} folders",
                                  "a partial config is planned from one folder per side; complete it by hand")
            value = value[0]
        return Path(value) if isinstance(value, str) else None

    gt = folder(train, "dataroot_gt")
    if gt is None:
        raise AutosrError(f"{source}: datasets.train.dataroot_gt is required to plan the rest", "add the HR folder")
    scale = tree.get("scale") if isinstance(tree.get("scale"), int) else None
    arch = tree["network_g"].get("type")
    inputs = CompletionInputs(gt=gt, lq=folder(train, "dataroot_lq"), val_gt=folder(val, "dataroot_gt"),
                              val_lq=folder(val, "dataroot_lq"), arch=str(arch).lower() if arch and arch != AUTO else None,
                              scale=scale, name=tree.get("name") if isinstance(tree.get("name"), str) else None)
    if (inputs.val_gt is None) != (inputs.val_lq is None):
        inputs.val_gt = inputs.val_lq = None  # an HR-only validation set: init holds out pairs instead
    for key, value in _leaves(tree):
        if value == AUTO and key not in AUTO_IS_A_VALUE:
            inputs.planned.append(key)
        elif key not in INPUT_KEYS and not key.startswith("datasets.val") and value != {}:
            inputs.overrides.append(f"{key}={json.dumps(value, default=str)}")  # JSON is YAML: --set reads it back typed
    return inputs
