"""Randomly initialised stand-ins for the pretrained weight files autosr reads (VGG19, VGG16, AlexNet,
ConvNeXt-Tiny, the LPIPS and DISTS heads), written with the real key names and shapes where the real
files live (TORCH_HOME's hub/checkpoints, HF_HOME's hub): the real loading code runs on them. Nothing can
be downloaded here or in CI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from autosr.train import backbones as bb


def _random(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=g) * 0.05 if v.dim() > 1 else torch.rand(v.shape, generator=g) * 0.1)
            for k, v in module.state_dict().items()}


def _meta(make):  # noqa: ANN001, ANN202 - names and shapes without memory
    with torch.device("meta"):
        return make()


def write_all(home: Path) -> Path:
    """Every file under `home` (use it as TORCH_HOME/.. and HF_HOME/..); returns `home`."""
    hub = home / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True, exist_ok=True)
    torch.save(_random(_meta(lambda: bb.VGGTrunk(19)), 0), hub / "vgg19-dcbb9e9d.pth")
    torch.save(_random(_meta(lambda: bb.VGGTrunk(16)), 1), hub / "vgg16-397923af.pth")
    torch.save(_random(_meta(bb.AlexNetTrunk), 2), hub / "alexnet-owt-7be5be79.pth")
    for net in ("alex", "vgg"):
        heads = hub / "lpips" / "weights" / "v0.1" / f"{net}.pth"
        heads.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: torch.rand_like(v) for k, v in bb.LPIPSHeads(net).state_dict().items()}, heads)
    g = torch.Generator().manual_seed(4)
    torch.save({"alpha": torch.rand(1, 1475, 1, 1, generator=g), "beta": torch.rand(1, 1475, 1, 1, generator=g)},
               hub / "dists_weights.pt")
    save_file(_random(_meta(lambda: bb.ConvNeXtTinyTrunk(stages=4)), 5), str(hub / "convnext_tiny.fb_in22k_ft_in1k.safetensors"))
    return home


def use(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point torch's and Hugging Face's caches at `home` (and nowhere else)."""
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
