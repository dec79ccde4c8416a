"""Pretrained image networks for the perceptual losses and metrics, without torchvision or timm.

The module definitions reproduce torchvision's ``vgg16``/``vgg19``/``alexnet`` feature trunks and
timm's ``convnext_tiny`` layer for layer, with the same state-dict key names, so the files those
libraries download load here unchanged (their classifier heads are not built: their keys are
skipped). The small learned heads of LPIPS and DISTS are loaded from the files traiNNer-redux ships.

Nothing is ever downloaded. Every file is looked for where its own library caches it:

- torchvision's ImageNet weights: ``torch.hub.get_dir()/checkpoints/<torchvision's file name>``
  (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``);
- LPIPS's linear heads, traiNNer's ``traiNNer/archs/lpips/weights/v0.1/<net>.pth``:
  ``<checkpoints>/lpips/weights/v0.1/<net>.pth`` (copy traiNNer's ``archs/lpips`` folder there);
- DISTS's alpha/beta, traiNNer's ``traiNNer/losses/dists_weights.pt``: ``<checkpoints>/dists_weights.pt``;
- timm's ConvNeXt-Tiny: the Hugging Face hub cache
  (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) as timm leaves it,
  or the same ``model.safetensors`` saved as ``<checkpoints>/<timm name>.safetensors``.

A missing file is an :class:`AutosrError` on one line naming the file, the folder it was looked for
in and where to get it. A file with the wrong tensors is an error naming the first wrong key.
Networks come back frozen (no gradients) and in eval mode, on the CPU, in float32.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from autosr.errors import AutosrError

_M = TypeVar("_M", bound=nn.Module)

# ----------------------------------------------------------------------------- where files live


def checkpoints_dir() -> Path:
    """torch's hub cache, where torchvision keeps downloaded weights: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_hub_dir() -> Path:
    """The Hugging Face hub cache (where timm's ``pretrained=True`` leaves its files)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "huggingface" / "hub"


@dataclass(frozen=True)
class WeightFile:
    """One weights file: what it is, its name (as its source writes it) and where to get it."""

    what: str  # e.g. "VGG19 ImageNet weights (torchvision)"
    name: str  # path under the checkpoints folder, e.g. "vgg19-dcbb9e9d.pth"
    url: str
    size: str  # for the hint, e.g. "548 MB"
    hf_repo: str = ""  # timm weights: "timm/convnext_tiny.fb_in22k_ft_in1k"

    def candidates(self) -> list[Path]:
        """Every place the file is looked for, in order."""
        paths = [checkpoints_dir() / self.name]
        if self.hf_repo:
            repo = hf_hub_dir() / f"models--{self.hf_repo.replace('/', '--')}"
            snapshots = sorted((repo / "snapshots").iterdir()) if (repo / "snapshots").is_dir() else []
            main = repo / "refs" / "main"  # the revision the hub client resolved last: tried first
            if main.is_file():
                current = repo / "snapshots" / main.read_text().strip()
                snapshots = [current, *(p for p in snapshots if p != current)]
            for snap in snapshots:
                paths += [snap / "model.safetensors", snap / "pytorch_model.bin"]
        return paths

    def find(self) -> Path | None:
        return next((p for p in self.candidates() if p.is_file()), None)

    def missing(self) -> tuple[str, str]:
        """(message, hint) for the file not being there: one line together."""
        folder = checkpoints_dir() / Path(self.name).parent
        where = f"{Path(self.name).name} in {folder}"
        if self.hf_repo:
            where += f" (nor in the Hugging Face cache {hf_hub_dir()} as {self.hf_repo})"
        return (f"{self.what} not found: {where}",
                f"download {self.url} ({self.size}) and save it as {checkpoints_dir() / self.name}; autosr never downloads")

    def require(self) -> Path:
        path = self.find()
        if path is None:
            raise AutosrError(*self.missing())
        return path


_TV = "https://download.pytorch.org/models/"
_LPIPS = "https://github.com/the-database/traiNNer-redux/raw/master/traiNNer/archs/lpips/weights/v0.1/"
VGG19 = WeightFile("VGG19 ImageNet weights (torchvision)", "vgg19-dcbb9e9d.pth", _TV + "vgg19-dcbb9e9d.pth", "548 MB")
VGG16 = WeightFile("VGG16 ImageNet weights (torchvision)", "vgg16-397923af.pth", _TV + "vgg16-397923af.pth", "528 MB")
ALEXNET = WeightFile("AlexNet ImageNet weights (torchvision)", "alexnet-owt-7be5be79.pth",
                     _TV + "alexnet-owt-7be5be79.pth", "233 MB")
LPIPS_HEADS = {
    net: WeightFile(f"LPIPS v0.1 {net} linear heads (traiNNer-redux's traiNNer/archs/lpips/weights/v0.1/{net}.pth)",
                    f"lpips/weights/v0.1/{net}.pth", _LPIPS + f"{net}.pth", size)
    for net, size in (("alex", "6 kB"), ("vgg", "7 kB"))
}
DISTS_HEAD = WeightFile("DISTS alpha/beta weights (traiNNer-redux's traiNNer/losses/dists_weights.pt)", "dists_weights.pt",
                        "https://github.com/the-database/traiNNer-redux/raw/master/traiNNer/losses/dists_weights.pt", "12 kB")
# The fork's convnextperceptualloss asks timm for these, in this order (the first found is used).
CONVNEXT_TINY = tuple(
    WeightFile(f"ConvNeXt-Tiny weights (timm {tag})", f"{tag}.safetensors",
               f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors", "114 MB", hf_repo=f"timm/{tag}")
    for tag in ("convnext_tiny.fb_in22k_ft_in1k", "convnext_tiny.in12k_ft_in1k")
)


def first_found(files: Iterable[WeightFile]) -> tuple[WeightFile, Path] | None:
    return next(((f, p) for f in files if (p := f.find()) is not None), None)


# ----------------------------------------------------------------------------- reading and loading
def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A flat name → tensor mapping from a .pth/.pt (torch.load, weights only) or .safetensors file."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path))
        else:
            try:  # memory-mapped: only the tensors used are read (VGG's 400 MB classifier is not)
                raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # files in torch's legacy (pre-zip) format cannot be mapped
                raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same one-line message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AutosrError(f"{path} is not a readable weights file ({first})",
                          "the file is damaged or of another kind: delete it and download it again") from None
    if not isinstance(raw, Mapping):
        raise AutosrError(f"{path} does not hold a state dict (found {type(raw).__name__})",
                          "delete it and download it again")
    return {str(k): v for k, v in raw.items() if isinstance(v, Tensor)}


def load_weights(module: nn.Module, path: Path, what: str) -> None:
    """Fill every tensor of ``module`` from ``path``; keys the module lacks (classifier heads) are skipped.

    ``module`` may live on the meta device (built without initialising weights that are overwritten
    here anyway): its tensors are replaced by float32 copies of the file's.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    for key, tensor in own.items():
        if key not in state:
            raise AutosrError(f"{path} is not {what}: it has no '{key}'", "delete it and download the right file")
        if state[key].shape != tensor.shape:
            raise AutosrError(f"{path} is not {what}: '{key}' is {tuple(state[key].shape)}, expected {tuple(tensor.shape)}",
                              "delete it and download the right file")
    module.load_state_dict({k: state[k].to(torch.float32, copy=True) for k in own}, strict=True, assign=True)


def freeze(module: _M) -> _M:
    """No gradients for its weights, eval mode (dropout off). Returns the module."""
    module.requires_grad_(False)
    return module.eval()


# ----------------------------------------------------------------------------- VGG (torchvision)
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
# torchvision's configurations "D" (VGG16) and "E" (VGG19): channels, "M" = 2×2 max pool.
VGG_CFG: dict[int, tuple[int | str, ...]] = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


def vgg_layer_names(depth: int) -> list[str]:
    """traiNNer's names of torchvision's ``features`` indices: conv1_1, relu1_1, conv1_2, …, pool5."""
    names, block, n = [], 1, 1
    for v in VGG_CFG[depth]:
        if v == "M":
            names.append(f"pool{block}")
            block, n = block + 1, 1
        else:
            names += [f"conv{block}_{n}", f"relu{block}_{n}"]
            n += 1
    return names


class VGGTrunk(nn.Module):
    """torchvision's VGG ``features`` up to index ``upto`` (inclusive): keys ``features.<i>.weight``.

    ReLUs are not in place (the losses read pre-activation outputs). ``first_padding`` sets the
    padding mode of conv1_1 (traiNNer's perceptualloss uses "replicate" there).
    """

    features: nn.Sequential

    def __init__(self, depth: int = 19, *, upto: int | None = None, first_padding: PaddingMode = "zeros") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        last = len(vgg_layer_names(depth)) - 1 if upto is None else upto
        for v in VGG_CFG[depth]:
            if len(layers) > last:
                break
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                mode: PaddingMode = first_padding if not layers else "zeros"
                layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1, padding_mode=mode), nn.ReLU()]
                channels = int(v)
        self.features = nn.Sequential(*layers[: last + 1])

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class AlexNetTrunk(nn.Module):
    """torchvision's AlexNet ``features`` (keys ``features.<i>.weight``), ReLUs not in place."""

    features: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


# ----------------------------------------------------------------------------- ConvNeXt-Tiny (timm)
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (timm's LayerNorm2d, eps 1e-6)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class _Mlp(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, 4 * channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
    """timm's ConvNeXtBlock (conv_mlp false): depthwise 7×7, LayerNorm, MLP ×4 with GELU, layer scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, kernel_size=7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.mlp = _Mlp(channels)
        self.gamma = nn.Parameter(torch.full((channels,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        y = self.mlp(self.norm(self.conv_dw(x).permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + y * self.gamma.view(1, -1, 1, 1)


class ConvNeXtStage(nn.Module):
    def __init__(self, in_channels: int, channels: int, depth: int) -> None:
        super().__init__()
        self.downsample: nn.Module = nn.Identity() if in_channels == channels else nn.Sequential(
            LayerNorm2d(in_channels), nn.Conv2d(in_channels, channels, kernel_size=2, stride=2))
        self.blocks = nn.Sequential(*(ConvNeXtBlock(channels) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


CONVNEXT_TINY_DEPTHS = (3, 3, 9, 3)
CONVNEXT_TINY_DIMS = (96, 192, 384, 768)


class ConvNeXtTinyTrunk(nn.Module):
    """timm's ``convnext_tiny`` stem and its first ``stages`` stages (keys ``stem.0.weight``,
    ``stages.1.blocks.0.conv_dw.weight``, …). ``forward`` returns each stage's output, as timm's
    ``features_only=True`` model does (stage i: ``dims[i]`` channels at 1/2^(i+2) of the size)."""

    def __init__(self, stages: int = 4) -> None:
        super().__init__()
        dims = CONVNEXT_TINY_DIMS
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0]))
        self.stages = nn.Sequential(*(ConvNeXtStage(dims[max(i - 1, 0)], dims[i], CONVNEXT_TINY_DEPTHS[i])
                                      for i in range(stages)))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out


# ----------------------------------------------------------------------------- LPIPS and DISTS heads
LPIPS_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)


class _LinLayer(nn.Module):
    """LPIPS's NetLinLayer: dropout then a 1×1 convolution to one channel (keys ``model.1.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPSHeads(nn.Module):
    """The five learned per-layer weightings of LPIPS (keys ``lin0.model.1.weight`` … ``lin4``)."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        for i, c in enumerate(LPIPS_CHANNELS[net]):
            self.add_module(f"lin{i}", _LinLayer(c))

    def layers(self) -> list[nn.Module]:
        return [getattr(self, f"lin{i}") for i in range(5)]


class DISTSHeads(nn.Module):
    """DISTS's alpha (structure) and beta (texture) weights, one per channel of its six feature sets."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1, sum(DISTS_CHANNELS), 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, sum(DISTS_CHANNELS), 1, 1), 0.1))


# ----------------------------------------------------------------------------- loaders
def load_vgg(depth: int, *, upto: int | None = None, first_padding: PaddingMode = "zeros") -> VGGTrunk:
    """torchvision's VGG16/VGG19 trunk with its ImageNet weights, frozen; ``upto`` = last features index."""
    file = VGG19 if depth == 19 else VGG16
    path = file.require()
    with torch.device("meta"):  # no weight init: the file's weights replace it
        net = VGGTrunk(depth, upto=upto, first_padding=first_padding)
    load_weights(net, path, file.what)
    return freeze(net)


def load_alexnet() -> AlexNetTrunk:
    path = ALEXNET.require()
    with torch.device("meta"):
        net = AlexNetTrunk()
    load_weights(net, path, ALEXNET.what)
    return freeze(net)


def load_convnext_tiny(stages: int = 4) -> ConvNeXtTinyTrunk:
    """timm's ConvNeXt-Tiny (fb_in22k_ft_in1k, else in12k_ft_in1k, as the fork asks timm), frozen."""
    found = first_found(CONVNEXT_TINY)
    if found is None:
        raise AutosrError(*CONVNEXT_TINY[0].missing())
    file, path = found
    with torch.device("meta"):
        net = ConvNeXtTinyTrunk(stages)
    load_weights(net, path, file.what)
    return freeze(net)


def load_lpips_heads(net: str) -> LPIPSHeads:
    file = LPIPS_HEADS[net]
    path = file.require()
    heads = LPIPSHeads(net)
    load_weights(heads, path, file.what)
    return freeze(heads)


def load_dists_heads() -> DISTSHeads:
    path = DISTS_HEAD.require()
    heads = DISTSHeads()
    load_weights(heads, path, DISTS_HEAD.what)
    return freeze(heads)
