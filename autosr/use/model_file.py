"""Self-describing model files: the safetensors metadata autosr writes, and rebuilding a network
from a file alone (no YAML). The keys are listed in docs/model-files.md.

Safetensors metadata maps str to str, so numbers are decimal strings and structures are JSON.
Files of the fork's realtime…pro family (.safetensors or .pth, bare or under params_ema/params) carry
no such metadata: their network is read off the weights.
"""

from __future__ import annotations

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
ARCH = "paragonsr2"  # the `arch` of nano…xl files; realtime…pro files say "paragonsr2_v2" (archs.FAMILIES)
# traiNNer-redux's BaseModel.save_network stores the network's constructor hyperparameters as one
# JSON object under this key (`{"metadata": json.dumps(net.hyperparameters)}`); we do the same.
TRAINNER_KEY = "metadata"

if TYPE_CHECKING:
    from torch import Tensor, nn


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
    from autosr.archs import ARCH_NAMES, ARCH_PREFIX, NETWORK_KEYS, network_defaults

    args = dict(network_opts)
    name = str(args.pop("type", "")).strip().lower()
    if name not in ARCH_NAMES:
        raise AutosrError(f"network type {name or '(none)'!r} is not a ParagonSR2 variant",
                          "choose one of " + ", ".join(ARCH_NAMES))
    keys = NETWORK_KEYS[name]
    unknown = sorted(set(args) - set(keys))
    if unknown:
        raise AutosrError(f"unknown network key(s) {', '.join(unknown)}", f"{name} accepts " + ", ".join(keys))
    if "scale" not in args:
        raise AutosrError("the network's scale is missing", "set network_g.scale to 2, 3 or 4")
    full = {**network_defaults(name), **_plain(args)}
    return name, name[len(ARCH_PREFIX):], {k: full[k] for k in keys}


def model_metadata(network_opts: Mapping[str, Any], *, iteration: int, metrics: Mapping[str, float] | None = None,
                   training: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The metadata of one model file (str → str), for CheckpointStore.save / mark_best."""
    from autosr.archs import family_of, network_defaults

    name, variant, full = resolve_network(network_opts)
    defaults = network_defaults(name)
    overrides = {k: v for k, v in full.items() if k != "scale" and v != defaults.get(k)}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": family_of(name),
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
    notes: tuple[str, ...] = ()  # what the user should know about how it was read (a fork file's defaults)


def _json(meta: Mapping[str, str], key: str, path: Path) -> Any:
    try:
        return json.loads(meta[key])
    except (ValueError, TypeError) as e:
        raise AutosrError(f"{path}: metadata '{key}' is not valid JSON ({e})", "save or export the model again") from None


def network_opts_from_metadata(meta: Mapping[str, str], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `network_g` mapping a file's metadata describes, or a clear error for a foreign file."""
    from autosr.archs import FAMILIES

    path = Path(path)
    name = meta.get("network_type")
    if not name or meta.get("arch", ARCH) not in FAMILIES:
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


def describe(path: str | os.PathLike[str], meta: Mapping[str, str], network_opts: Mapping[str, Any],
             notes: tuple[str, ...] = ()) -> ModelInfo:
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
        training=dict(training) if isinstance(training, dict) else {}, metadata=dict(meta), notes=notes,
    )


def _read_weights(path: Path) -> tuple[dict[str, str], dict[str, Tensor]]:
    """(metadata, tensors) of a .safetensors file, or of a .pth/.pt state dict (bare, or under
    traiNNer's params_ema / params; no metadata)."""
    from autosr.safetensors_io import load_safetensors, read_safetensors_metadata

    if path.suffix.lower() not in (".pth", ".pt"):
        return read_safetensors_metadata(path), load_safetensors(path)
    import torch

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise AutosrError(f"{path}: not a readable weights file ({type(exc).__name__})",
                          "pass a .safetensors model file, or a .pth state dict") from None
    if isinstance(raw, dict):
        raw = raw.get("params_ema", raw.get("params", raw))  # traiNNer/BasicSR wrappers; EMA weights first
    if not isinstance(raw, dict):
        raise AutosrError(f"{path}: holds no state dict", "pass a .safetensors model file, or a .pth state dict")
    return {}, {str(k).removeprefix("module."): v for k, v in raw.items() if isinstance(v, torch.Tensor)}


def _fork_network_opts(path: Path, tensors: Mapping[str, Tensor]) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """A file of the fork's realtime…pro family without autosr metadata: its network_g read off the
    weights, and a note on the values the fork does not store. None for anything else."""
    from autosr.archs.paragonsr2_v2_keys import hyperparameters, is_paragonsr2_v2, registered_variant

    if not is_paragonsr2_v2(tensors):
        return None
    hyper = hyperparameters(tensors)
    variant = registered_variant(hyper)
    if variant is None:
        raise AutosrError(
            f"{path}: a ParagonSR2 {hyper['variant']} network with {hyper['num_feat']} features and "
            f"{hyper['num_groups']}×{hyper['num_blocks']} blocks, which no registered variant has",
            "autosr builds paragonsr2_realtime/stream/photo/pro with the bodies the fork's factories give them")
    opts: dict[str, Any] = {"type": f"paragonsr2_{variant}", "scale": hyper["scale"]}
    if hyper["in_chans"] != 3:
        opts["in_chans"] = hyper["in_chans"]
    if hyper["export_safe"]:
        opts["export_safe"] = True
    unstored = f"upsampler_alpha {hyper['upsampler_alpha']}"
    if variant in ("photo", "pro") and not hyper["export_safe"]:
        unstored += f" and window_size {hyper['window_size']}"
    note = (f"{path.name} has no autosr metadata: read as {opts['type']} ×{hyper['scale']} from its weights, with the "
            f"variant's {unstored} (the fork does not store them; its fidelity configs train with upsampler_alpha 0.0)")
    return opts, (note,)


def load_model(path: str | os.PathLike[str], *, network_opts: Mapping[str, Any] | None = None) -> tuple[nn.Module, ModelInfo]:
    """Rebuild the network a model file describes and load its weights (CPU, eval mode).

    ``network_opts`` is a fallback for files written before the metadata existed (only ``iter``):
    a run folder's `network_g`. Files without the ``base.alpha`` buffer load with the
    constructor's (the variant's, or the overridden) sharpening strength. A file of the fork's
    realtime…pro family with neither (.safetensors or .pth) is read off its weights.
    """
    from autosr.archs import build_network

    path = Path(path)
    if not path.is_file():
        raise AutosrError(f"{path}: no such model file", "check the path")
    meta, tensors = _read_weights(path)
    notes: tuple[str, ...] = ()
    fork = None if "network_type" in meta or network_opts is not None else _fork_network_opts(path, tensors)
    if fork is not None:
        opts, notes = fork
    elif "network_type" in meta or network_opts is None:
        opts = network_opts_from_metadata(meta, path)
    else:
        opts = dict(network_opts)
    info = describe(path, meta, opts, notes)
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
