"""Start from pretrained weights (`path.pretrain_network_g`): safetensors or a traiNNer/BasicSR .pth."""

from __future__ import annotations

from pathlib import Path

import torch

from autosr.errors import AutosrError
from autosr.safetensors_io import load_safetensors


def read_weights(path: Path, param_key: str | None, net: str = "g") -> dict[str, torch.Tensor]:
    """`net`: "g" or "d", the network whose path.* keys name the file (in errors)."""
    if not path.is_file():
        raise AutosrError(f"path.pretrain_network_{net}: {path} does not exist", "fix the path or remove the key")
    if path.suffix.lower() == ".safetensors":
        return load_safetensors(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise AutosrError(f"path.pretrain_network_{net}: {path} is not a readable weights file ({type(exc).__name__})",
                          "use a .safetensors or .pth state dict") from None
    if isinstance(raw, dict) and param_key:
        if param_key not in raw:
            raise AutosrError(f"path.param_key_{net}: '{param_key}' is not in {path.name}", f"its keys: {', '.join(list(raw)[:6])}")
        raw = raw[param_key]
    elif isinstance(raw, dict):
        # traiNNer/BasicSR save {"params": …} or {"params_ema": …}; prefer the EMA weights.
        raw = raw.get("params_ema", raw.get("params", raw))
    return {k.removeprefix("module."): v for k, v in raw.items() if isinstance(v, torch.Tensor)}


def load_pretrained(model: torch.nn.Module, path: Path, *, param_key: str | None, strict: bool, net: str = "g") -> str:
    """Load weights into `model`; returns a line for the journal. Mismatches are errors naming keys."""
    weights = read_weights(path, param_key, net)
    own = model.state_dict()
    # base.alpha (a constant the variant fixes) is absent from files written before it was stored
    missing = [k for k in own if k not in weights and not k.endswith("base.alpha")]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if wrong:
        k = wrong[0]
        raise AutosrError(
            f"path.pretrain_network_{net}: {path.name} does not fit this network ({k}: {tuple(weights[k].shape)} vs {tuple(own[k].shape)})",
            f"check network_{net}.type" + (" and scale" if net == "g" else "") + " match the pretrained model",
        )
    if strict and (missing or unexpected):
        few = ", ".join((missing + unexpected)[:4])
        raise AutosrError(f"path.pretrain_network_{net}: {path.name} has {len(missing)} missing and {len(unexpected)} "
                          f"unexpected keys ({few})",
                          f"use weights of the same architecture, or set path.strict_load_{net}: false")
    model.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    loaded = len(own) - len(missing)
    return f"{loaded} of {len(own)} tensors from {path}" + (f" ({len(missing)} kept at init)" if missing else "")
