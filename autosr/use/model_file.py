"""Self-describing model files: the safetensors metadata autosr writes, and rebuilding a network
from a file alone (no YAML). The keys are listed in docs/model-files.md.

Safetensors metadata maps str to str, so numbers are decimal strings and structures are JSON.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autosr import __version__
from autosr.errors import AutosrError

FORMAT = "autosr-model"
FORMAT_VERSION = "1"
ARCH = "paragonsr2"
# traiNNer-redux's BaseModel.save_network stores the network's constructor hyperparameters as one
# JSON object under this key (`{"metadata": json.dumps(net.hyperparameters)}`); we do the same.
TRAINNER_KEY = "metadata"

if TYPE_CHECKING:
    from torch import nn


def _constructor_defaults() -> dict[str, Any]:
    from autosr.archs.paragonsr2 import ParagonSR2

    return {name: p.default for name, p in inspect.signature(ParagonSR2).parameters.items()
            if p.default is not inspect.Parameter.empty}


def _plain(value: Any) -> Any:
    """A JSON-safe copy: numpy / torch scalars become Python numbers, mappings dicts, sequences lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)


def resolve_network(network_opts: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """`network_g` → (type, variant, every constructor value), checked as build_network checks it."""
    from autosr.archs import ARCH_NAMES, ARCH_PREFIX, NETWORK_KEYS
    from autosr.archs.paragonsr2 import VARIANTS

    args = dict(network_opts)
    name = str(args.pop("type", "")).strip().lower()
    if name not in ARCH_NAMES:
        raise AutosrError(f"network type {name or '(none)'!r} is not a ParagonSR2 variant",
                          "choose one of " + ", ".join(ARCH_NAMES))
    unknown = sorted(set(args) - set(NETWORK_KEYS))
    if unknown:
        raise AutosrError(f"unknown network key(s) {', '.join(unknown)}", f"{name} accepts " + ", ".join(NETWORK_KEYS))
    if "scale" not in args:
        raise AutosrError("the network's scale is missing", "set network_g.scale to 2, 3 or 4")
    variant = name[len(ARCH_PREFIX):]
    full = {**_constructor_defaults(), **VARIANTS[variant], **_plain(args)}
    return name, variant, {k: full[k] for k in NETWORK_KEYS}


def model_metadata(network_opts: Mapping[str, Any], *, iteration: int, metrics: Mapping[str, float] | None = None,
                   training: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The metadata of one model file (str → str), for CheckpointStore.save / mark_best."""
    name, variant, full = resolve_network(network_opts)
    defaults = {**_constructor_defaults(), **_variant_defaults(variant)}
    overrides = {k: v for k, v in full.items() if k != "scale" and v != defaults.get(k)}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": ARCH,
        "network_type": name,
        "variant": variant,
        "network_overrides": json.dumps(overrides, sort_keys=True),
        "scale": str(int(full["scale"])),
        "in_chans": str(int(full["in_chans"])),
        "out_chans": str(int(full["in_chans"])),  # ParagonSR2 returns as many channels as it takes
        "iter": str(int(iteration)),
        "autosr_version": __version__,
        TRAINNER_KEY: json.dumps(full, sort_keys=True),
    }
    if metrics:
        meta["best_metrics"] = json.dumps({str(k): float(v) for k, v in metrics.items()}, sort_keys=True)
    if training:
        meta["training"] = json.dumps(_plain(training), sort_keys=True)
    return meta


def _variant_defaults(variant: str) -> dict[str, Any]:
    from autosr.archs.paragonsr2 import VARIANTS

    return dict(VARIANTS[variant])


@dataclass(frozen=True)
class ModelInfo:
    """What a model file says about itself."""

    path: Path
    network_type: str
    variant: str
    scale: int
    in_chans: int
    out_chans: int
    iteration: int | None
    network_opts: dict[str, Any]  # a traiNNer network_g mapping: {"type", "scale", overrides...}
    metrics: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


def _json(meta: Mapping[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(meta[key])
    except (ValueError, TypeError) as e:
        raise AutosrError(f"{path}: metadata '{key}' is not valid JSON ({e})", "save or export the model again") from None


def network_opts_from_metadata(meta: Mapping[str, str], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `network_g` mapping a file's metadata describes, or a clear error for a foreign file."""
    path = Path(path)
    name = meta.get("network_type")
    if not name or meta.get("arch", ARCH) != ARCH:
        raise AutosrError(
            f"{path}: not an autosr ParagonSR2 model file (its metadata has no network_type)",
            "pass a model written by autosr ≥ 0.1 (models/net_g_*.safetensors of a run, or `autosr export`), "
            "or the run folder itself",
        )
    try:
        scale = int(meta["scale"])
    except (KeyError, ValueError):
        raise AutosrError(f"{path}: metadata 'scale' is missing or not a number", "save or export the model again") from None
    overrides = _json(meta, "network_overrides", path) if "network_overrides" in meta else {}
    if not isinstance(overrides, dict):
        raise AutosrError(f"{path}: metadata 'network_overrides' is not a JSON object", "save or export the model again")
    return {"type": name, "scale": scale, **overrides}


def describe(path: str | os.PathLike[str], meta: Mapping[str, str], network_opts: Mapping[str, Any]) -> ModelInfo:
    name, variant, full = resolve_network(network_opts)
    metrics = _json(meta, "best_metrics", Path(path)) if "best_metrics" in meta else {}
    training = _json(meta, "training", Path(path)) if "training" in meta else {}
    try:
        iteration: int | None = int(meta["iter"])
    except (KeyError, ValueError):
        iteration = None
    return ModelInfo(
        path=Path(path), network_type=name, variant=variant, scale=int(full["scale"]), in_chans=int(full["in_chans"]),
        out_chans=int(full["in_chans"]), iteration=iteration, network_opts=dict(network_opts),
        metrics=dict(metrics) if isinstance(metrics, dict) else {},
        training=dict(training) if isinstance(training, dict) else {}, metadata=dict(meta),
    )


def load_model(path: str | os.PathLike[str], *, network_opts: Mapping[str, Any] | None = None) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the network a model file describes and load its weights (CPU, eval mode).

    ``network_opts`` is a fallback for files written before the metadata existed (only ``iter``):
    a run folder's `network_g`. Files without the ``base.alpha`` buffer load with the
    constructor's (the variant's, or the overridden) sharpening strength.
    """
    from autosr.archs import build_network
    from autosr.safetensors_io import load_safetensors, read_safetensors_metadata

    path = Path(path)
    if not path.is_file():
        raise AutosrError(f"{path}: no such model file", "check the path")
    meta = read_safetensors_metadata(path)
    use_meta = "network_type" in meta or network_opts is None
    opts = network_opts_from_metadata(meta, path) if use_meta else dict(network_opts or {})
    info = describe(path, meta, opts)
    tensors = load_safetensors(path)
    model = build_network(opts)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        reason = " ".join(line.strip() for line in first[:2])[:300]
        raise AutosrError(f"{path}: the weights do not fit {info.network_type} ×{info.scale} ({reason})",
                          "the file is damaged or was written for another network") from None
    model.eval()
    return model, info
