"""Deterministic weights and inputs for comparing autosr's discriminators with traiNNer's.

Shared by tests/test_discriminators.py and tests/data/make_discriminator_keys.py (which ran traiNNer's own
modules through these to write tests/data/discriminator_keys.json). Every state-dict entry is set by a
closed-form expression of its name and shape (DySample's ``init_pos`` excepted: its construction is
compared), spectral norm's u/v are set so that σ = ‖Wv‖/4 > 0, and the network runs in eval mode, float64.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# the variants whose output is compared, and their input size (the default munet, 11 M parameters in float64,
# is slow on a CPU: munet_feat16 has its four levels at a quarter of the width)
PROBE_SIZES = {"dunet": 16, "dunet_feat32": 32, "unetdiscriminatorsn": 16,
               "unetdiscriminatorsn_noskip_feat32": 32, "munet_feat16": 32, "munet_feat32_122": 40}


def _wave(name: str, shape: torch.Size) -> Tensor:
    n = 1
    for s in shape:
        n *= s
    k = torch.arange(n, dtype=torch.float64)
    seed = sum(map(ord, name)) % 97
    return torch.sin(0.37 * k + 0.11 * seed) + 0.5 * torch.cos(1.3 * k + seed)


def fill_deterministic(net: nn.Module) -> None:
    sd = net.state_dict()
    new: dict[str, Tensor] = {}
    for name, t in sd.items():
        if name.endswith("init_pos"):
            new[name] = t
            continue
        w = _wave(name, t.shape).view(t.shape)
        if t.dim() == 4:  # conv weights: ~unit gain
            w = w / (t[0].numel() ** 0.5)
        elif name.endswith("gamma"):
            w = torch.full_like(w, 0.5)
        else:
            w = 0.1 * w
        new[name] = w
    for name, t in sd.items():  # spectral norm: u, v from the weight, σ = uᵀWv = ‖Wv‖/4 > 0
        for weight, u_name, v_name in ((".parametrizations.weight.original", ".parametrizations.weight.0._u",
                                        ".parametrizations.weight.0._v"), (".weight_orig", ".weight_u", ".weight_v")):
            if name.endswith(weight):
                base = name[: -len(weight)]
                mat = new[name].reshape(t.shape[0], -1)
                u0 = new[base + u_name] / new[base + u_name].norm()
                v = mat.t() @ u0
                v = v / v.norm()
                u = mat @ v
                new[base + v_name], new[base + u_name] = v, u / (4 * u.norm())  # σ/4: gain 4, signals survive depth
    net.double().load_state_dict({k: v.to(sd[k].dtype) if not sd[k].is_floating_point() else v for k, v in new.items()})
    net.double().eval()


def probe_input(size: int) -> Tensor:
    n, c, i, j = torch.meshgrid(*(torch.arange(k, dtype=torch.float64) for k in (2, 3, size, size)), indexing="ij")
    return 0.5 + 0.4 * torch.sin(0.3 * i + 0.2 * j * (c + 1) + n)


def fingerprint(out: Tensor) -> dict[str, object]:
    flat = out.detach().flatten()
    picks = torch.linspace(0, flat.numel() - 1, 16).round().long()
    return {"shape": list(out.shape), "mean": float(flat.mean()), "std": float(flat.std()),
            "values": [float(v) for v in flat[picks]]}
