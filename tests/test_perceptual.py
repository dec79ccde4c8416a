"""Perceptual losses, pretrained backbones and realism metrics (autosr/train/{backbones,perceptual,pixel_losses}.py).

No real weights exist here or in CI: the tests write RANDOMLY INITIALISED state dicts with the real
key names at the real cache paths (TORCH_HOME / HF_HOME pointed at a temporary folder) and check the
losses against references written here from the state dict with plain functional ops, and the pixel
losses against numpy re-statements of traiNNer's formulas (or published colour values).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from autosr.errors import AutosrError
from autosr.train import backbones as bb
from autosr.train.losses import LossTerm, build_losses
from autosr.train.metrics import calculate_metric, check_metric, metric_available
from autosr.train.validate import Validator

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


# ----------------------------------------------------------------------------- weight files
@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("caches")


def checkpoints(home: Path) -> Path:
    return home / "torch" / "hub" / "checkpoints"  # torch.hub.get_dir() is $TORCH_HOME/hub


def save(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return state


def random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random tensors of the module's names and shapes: N(0, 0.05²) weights, U(0, 0.1) vectors."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.05 if v.dim() > 1 else torch.rand(v.shape, generator=g) * 0.1
            for k, v in module.state_dict().items()}


def shapes(make):  # noqa: ANN001, ANN201 - the module on the meta device: names and shapes, no memory
    with torch.device("meta"):
        return make()


@pytest.fixture(scope="module")
def vgg19(home: Path) -> dict[str, torch.Tensor]:
    state = random_state(shapes(lambda: bb.VGGTrunk(19)), 0)
    state["classifier.6.bias"] = torch.zeros(1000)  # torchvision's head: present in the file, not loaded
    return save(state, checkpoints(home) / "vgg19-dcbb9e9d.pth")


@pytest.fixture(scope="module")
def vgg16(home: Path) -> dict[str, torch.Tensor]:
    return save(random_state(shapes(lambda: bb.VGGTrunk(16)), 1), checkpoints(home) / "vgg16-397923af.pth")


@pytest.fixture(scope="module")
def alexnet(home: Path) -> dict[str, torch.Tensor]:
    return save(random_state(shapes(bb.AlexNetTrunk), 2), checkpoints(home) / "alexnet-owt-7be5be79.pth")


@pytest.fixture(scope="module")
def lpips_heads(home: Path) -> dict[str, torch.Tensor]:
    state = {k: torch.rand_like(v) for k, v in bb.LPIPSHeads("alex").state_dict().items()}  # learned heads are ≥ 0
    return save(state, checkpoints(home) / "lpips" / "weights" / "v0.1" / "alex.pth")


@pytest.fixture(scope="module")
def dists_heads(home: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    state = {"alpha": torch.rand(1, 1475, 1, 1, generator=g), "beta": torch.rand(1, 1475, 1, 1, generator=g)}
    return save(state, checkpoints(home) / "dists_weights.pt")


@pytest.fixture(scope="module")
def convnext(home: Path) -> dict[str, torch.Tensor]:
    """Stem and stages 0–2 (what layers [1, 2] need), where timm leaves them in the Hugging Face cache."""
    state = random_state(shapes(lambda: bb.ConvNeXtTinyTrunk(stages=3)), 5)
    snap = home / "hf" / "hub" / "models--timm--convnext_tiny.fb_in22k_ft_in1k" / "snapshots" / "0123abcd"
    return save(state, snap / "model.safetensors")


@pytest.fixture
def hub(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point torch's and Hugging Face's caches at the test folder; returns the checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return checkpoints(home)


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return checkpoints(tmp_path)


def images(size: int = 16, n: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, size, size, generator=g)
    sr = (gt + 0.15 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return sr, gt


def one(kind: str, **opts: object) -> LossTerm:
    (term,) = build_losses([{"type": kind, "loss_weight": 1.0, **opts}])
    return term


# ----------------------------------------------------------------------------- functional references
def ref_vgg(state: dict[str, torch.Tensor], x: torch.Tensor, cfg: list, *, replicate_first: bool = False,
            l2_pools: bool = False, upto: int = 29) -> dict[int, torch.Tensor]:
    """torchvision's VGG ``features`` up to index ``upto`` from the state dict with F ops: {index: output}."""
    out, i, h = {}, 0, x
    for v in cfg:
        if i > upto:
            break
        if v == "M":
            if l2_pools:  # DISTS: sqrt(hann-weighted 3×3, stride 2 mean of x²)
                g = torch.tensor([0.5, 1.0, 0.5])
                win = (torch.outer(g, g) / torch.outer(g, g).sum()).expand(h.shape[1], 1, 3, 3)
                h = torch.sqrt(F.conv2d(h * h, win, stride=2, padding=1, groups=h.shape[1]) + 1e-12)
            else:
                h = F.max_pool2d(h, 2)
            out[i], i = h, i + 1
            continue
        w, b = state[f"features.{i}.weight"], state[f"features.{i}.bias"]
        h = F.conv2d(F.pad(h, (1, 1, 1, 1), mode="replicate"), w, b) if i == 0 and replicate_first else F.conv2d(h, w, b, padding=1)
        out[i] = h
        h = F.relu(h)
        out[i + 1], i = h, i + 2
    return out


def ref_perceptual(state: dict[str, torch.Tensor], sr: torch.Tensor, gt: torch.Tensor, weights: dict[int, float],
                   charbonnier: bool = True) -> float:
    fx = ref_vgg(state, (sr - MEAN) / STD, VGG19_CFG, replicate_first=True, upto=max(weights))
    fy = ref_vgg(state, (gt - MEAN) / STD, VGG19_CFG, replicate_first=True, upto=max(weights))
    total = 0.0
    for idx, w in weights.items():
        d = fx[idx] - fy[idx]
        total += w * float((torch.sqrt(d * d + 1e-12) if charbonnier else d.abs()).mean())
    return total


def ref_dists(state: dict[str, torch.Tensor], heads: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 − DISTS per image, as DISTS_pytorch / traiNNer define it."""
    def feats(z: torch.Tensor) -> list[torch.Tensor]:
        f = ref_vgg(state, (z - MEAN) / STD, VGG16_CFG, l2_pools=True)
        return [z] + [f[i] for i in (3, 8, 15, 22, 29)]

    chns = [3, 64, 128, 256, 512, 512]
    w_sum = heads["alpha"].sum() + heads["beta"].sum()
    alpha, beta = torch.split(heads["alpha"] / w_sum, chns, 1), torch.split(heads["beta"] / w_sum, chns, 1)
    d1 = d2 = torch.zeros(x.shape[0])
    for k, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        ma, mb = a.mean((2, 3), keepdim=True), b.mean((2, 3), keepdim=True)
        s1 = (2 * ma * mb + 1e-6) / (ma**2 + mb**2 + 1e-6)
        va, vb = ((a - ma) ** 2).mean((2, 3), keepdim=True), ((b - mb) ** 2).mean((2, 3), keepdim=True)
        cov = (a * b).mean((2, 3), keepdim=True) - ma * mb
        s2 = (2 * cov + 1e-6) / (va + vb + 1e-6)
        d1 = d1 + (alpha[k] * s1).sum(1).flatten()
        d2 = d2 + (beta[k] * s2).sum(1).flatten()
    return 1 - (d1 + d2)


def ref_lpips(state: dict[str, torch.Tensor], heads: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 (alex) per image, for x, y on [0, 1]."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(z: torch.Tensor) -> list[torch.Tensor]:
        h = ((2 * z - 1) - shift) / scale
        out = []
        for i, (stride, pad, pool) in zip((0, 3, 6, 8, 10), ((4, 2, True), (1, 2, True), (1, 1, False), (1, 1, False), (1, 1, False)),
                                          strict=True):
            h = F.relu(F.conv2d(h, state[f"features.{i}.weight"], state[f"features.{i}.bias"], stride=stride, padding=pad))
            out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
            if pool:
                h = F.max_pool2d(h, 3, 2)
        return out

    total = torch.zeros(x.shape[0])
    for k, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        total = total + ((a - b) ** 2 * heads[f"lin{k}.model.1.weight"]).sum(1).mean((1, 2))
    return total


def ref_convnext(state: dict[str, torch.Tensor], x: torch.Tensor, stages: int) -> list[torch.Tensor]:
    """timm convnext_tiny stage outputs from the state dict with F ops."""
    def ln2d(h: torch.Tensor, key: str) -> torch.Tensor:
        return F.layer_norm(h.permute(0, 2, 3, 1), h.shape[1:2], state[key + ".weight"], state[key + ".bias"], 1e-6).permute(0, 3, 1, 2)

    h = ln2d(F.conv2d(x, state["stem.0.weight"], state["stem.0.bias"], stride=4), "stem.1")
    outs = []
    for s, depth in zip(range(stages), (3, 3, 9, 3), strict=False):
        if s > 0:
            h = F.conv2d(ln2d(h, f"stages.{s}.downsample.0"), state[f"stages.{s}.downsample.1.weight"],
                         state[f"stages.{s}.downsample.1.bias"], stride=2)
        for b in range(depth):
            p = f"stages.{s}.blocks.{b}."
            y = F.conv2d(h, state[p + "conv_dw.weight"], state[p + "conv_dw.bias"], padding=3, groups=h.shape[1]).permute(0, 2, 3, 1)
            y = F.layer_norm(y, y.shape[-1:], state[p + "norm.weight"], state[p + "norm.bias"], 1e-6)
            y = F.linear(F.gelu(F.linear(y, state[p + "mlp.fc1.weight"], state[p + "mlp.fc1.bias"])),
                         state[p + "mlp.fc2.weight"], state[p + "mlp.fc2.bias"])
            h = h + (y * state[p + "gamma"]).permute(0, 3, 1, 2)
        outs.append(h)
    return outs


# ----------------------------------------------------------------------------- backbones: loading
def test_backbones_load_a_random_state_dict_from_the_torch_hub_cache(hub: Path, vgg19, alexnet) -> None:
    net = bb.load_vgg(19, upto=7)
    assert [k for k in net.state_dict()] == [k for k in vgg19 if k.startswith("features.") and int(k.split(".")[1]) <= 7]
    assert all(torch.equal(v, vgg19[k]) for k, v in net.state_dict().items())  # the classifier key is skipped
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    alex = bb.load_alexnet()
    assert torch.equal(alex.state_dict()["features.10.weight"], alexnet["features.10.weight"])


def test_convnext_loads_from_the_hugging_face_cache_or_the_checkpoints_folder(hub: Path, convnext, home: Path) -> None:
    net = bb.load_convnext_tiny(stages=3)
    assert all(torch.equal(v, convnext[k]) for k, v in net.state_dict().items())
    flat = home / "flat"  # the same file saved as <checkpoints>/<timm name>.safetensors
    save(convnext, flat / "torch" / "hub" / "checkpoints" / "convnext_tiny.fb_in22k_ft_in1k.safetensors")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(flat / "torch"))
        mp.setenv("HF_HOME", str(flat / "no-hf"))
        assert torch.equal(bb.load_convnext_tiny(stages=1).state_dict()["stem.0.weight"], convnext["stem.0.weight"])
    # several revisions in the Hugging Face cache: the one refs/main names is taken
    repo = home / "revs" / "hub" / "models--timm--convnext_tiny.fb_in22k_ft_in1k"
    save(convnext, repo / "snapshots" / "ffff" / "model.safetensors")
    (repo / "snapshots" / "0000").mkdir(parents=True)
    (repo / "snapshots" / "0000" / "model.safetensors").write_bytes(b"an older, broken download")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("ffff")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(home / "revs" / "hub"))
        assert torch.equal(bb.load_convnext_tiny(stages=1).state_dict()["stem.0.weight"], convnext["stem.0.weight"])


@pytest.mark.parametrize(("load", "file"), [
    (lambda: bb.load_vgg(19), "vgg19-dcbb9e9d.pth"),
    (lambda: bb.load_vgg(16), "vgg16-397923af.pth"),
    (bb.load_alexnet, "alexnet-owt-7be5be79.pth"),
    (lambda: bb.load_lpips_heads("alex"), "alex.pth"),
    (bb.load_dists_heads, "dists_weights.pt"),
    (bb.load_convnext_tiny, "convnext_tiny.fb_in22k_ft_in1k"),
])
def test_a_missing_file_is_one_line_naming_file_folder_and_source(empty_hub: Path, load, file: str) -> None:
    with pytest.raises(AutosrError) as info:
        load()
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    assert file in text and str(empty_hub) in text and "https://" in text and "never downloads" in text
    assert not empty_hub.exists()  # nothing was created, nothing fetched


def test_a_wrong_or_damaged_file_names_the_problem(empty_hub: Path) -> None:
    path = empty_hub / "vgg19-dcbb9e9d.pth"
    save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, path)
    with pytest.raises(AutosrError, match=r"is not VGG19 .*features\.0\.weight.*\(64, 3, 5, 5\)"):
        bb.load_vgg(19, upto=1)
    save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(AutosrError, match=r"has no 'features\.0\.bias'"):
        bb.load_vgg(19, upto=1)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(AutosrError, match=r"not a readable weights file"):
        bb.load_vgg(19, upto=1)


# ----------------------------------------------------------------------------- network losses
def test_perceptualloss_defaults_equal_the_vgg19_reference(hub: Path, vgg19) -> None:
    sr, gt = images(16)
    term = one("perceptualloss")
    expected = ref_perceptual(vgg19, sr, gt, {2: 0.1, 7: 0.1, 16: 1.0, 25: 1.0, 34: 1.0})  # pre-ReLU conv1_2 … conv5_4
    assert term(sr, gt).item() == pytest.approx(expected, rel=1e-5)
    assert term(gt, gt.clone()).item() == pytest.approx(0.0, abs=1e-5)  # charbonnier: sqrt(1e-12) per layer


def test_perceptualloss_options(hub: Path, vgg19) -> None:
    sr, gt = images(16)
    l1 = one("perceptualloss", criterion="l1", layer_weights={"conv2_2": 2.0, "conv1_2": 0.5})
    assert l1(sr, gt).item() == pytest.approx(ref_perceptual(vgg19, sr, gt, {2: 0.5, 7: 2.0}, charbonnier=False), rel=1e-5)
    # pd on relu1_2: each channel a distribution, L1 of the cumulative sums, × α (1) × w_lambda
    pd = one("perceptualloss", criterion="pd", layer_weights={"relu1_2": 3.0}, w_lambda=0.5)
    fx = ref_vgg(vgg19, (sr - MEAN) / STD, VGG19_CFG, replicate_first=True, upto=3)[3].double()
    fy = ref_vgg(vgg19, (gt - MEAN) / STD, VGG19_CFG, replicate_first=True, upto=3)[3].double()
    cx = torch.cumsum((fx / (fx.sum((2, 3), keepdim=True) + 1e-14)).flatten(2), -1)
    cy = torch.cumsum((fy / (fy.sum((2, 3), keepdim=True) + 1e-14)).flatten(2), -1)
    assert pd(sr, gt).item() == pytest.approx(float((cx - cy).abs().sum(-1).mean()) * 0.5 * 3.0, rel=1e-4)
    fd = one("perceptualloss", criterion="fd", layer_weights={"relu1_2": 1.0}, num_proj_fd=8)
    assert fd(gt, gt.clone()).item() == 0.0 and fd(sr, gt).item() > 0


def test_network_losses_are_built_once_frozen_in_eval_and_pass_gradients(hub: Path, vgg19, monkeypatch) -> None:
    term = one("perceptualloss", layer_weights={"conv1_2": 1.0, "conv2_2": 1.0})
    monkeypatch.setattr(bb, "read_state_dict", lambda path: pytest.fail("weights read again after the build"))
    net = term.fn
    assert isinstance(net, torch.nn.Module)
    net.train()  # the trainer's model.train() must not reach it
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    sr, gt = images(16)
    sr.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # LossTerm computes in float32 anyway
        value = term(sr, gt)
    assert value.dtype == torch.float32
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    # it follows the images' device: each call checks it, and a new one moves the network (the meta
    # device stands in for a GPU here)
    seen: list[torch.device] = []
    follow = net._follow
    monkeypatch.setattr(net, "_follow", lambda device: (seen.append(device), follow(device)))
    net(sr.detach(), gt)
    assert seen == [torch.device("cpu")]
    follow(torch.device("meta"))
    assert all(t.device.type == "meta" for t in [*net.parameters(), *net.buffers()])


@pytest.mark.parametrize(("opts", "words"), [
    ({"layer_weight": {"conv1_2": 1.0}}, ["layer_weight", "did you mean 'layer_weights'"]),
    ({"layer_weights": {"conv9_9": 1.0}}, ["conv9_9", "not a VGG19 layer"]),
    ({"alpha": [0.0, 1.0]}, ["alpha", "2 values for 5 layers"]),
    ({"criterion": "l1", "layer_weights": {"relu1_2": 1.0}}, ["α > 0", "pd, fd"]),
    ({"criterion": "l3"}, ["criterion", "charbonnier"]),
    ({"antialiased": True}, ["antialiased", "set it to false"]),
])
def test_perceptualloss_bad_options(hub: Path, vgg19, opts: dict, words: list[str]) -> None:
    with pytest.raises(AutosrError) as info:
        one("perceptualloss", **opts)
    assert all(w in str(info.value) for w in ["train.losses[0]", *words]), str(info.value)


def test_network_losses_without_weights_refuse_at_build(empty_hub: Path) -> None:
    for kind, file in (("perceptualloss", "vgg19-dcbb9e9d.pth"), ("distsloss", "vgg16-397923af.pth"),
                       ("convnextperceptualloss", "convnext_tiny.fb_in22k_ft_in1k")):
        with pytest.raises(AutosrError) as info:
            one(kind)
        text = str(info.value)
        assert text.startswith(f"train.losses[0] ({kind}): ") and file in text and "loss_weight to 0" in text
    assert build_losses([{"type": "l1loss", "loss_weight": 1.0}, {"type": "perceptualloss", "loss_weight": 0}])


def test_convnextperceptualloss_equals_the_timm_reference(hub: Path, convnext) -> None:
    sr, gt = images(32)
    term = one("convnextperceptualloss", layers=[1, 2], layer_weights=[1.0, 0.7])
    norm = lambda x: (x.clamp(0, 1) - MEAN) / (STD + 1e-6)  # noqa: E731
    fx, fy = ref_convnext(convnext, norm(sr), 3), ref_convnext(convnext, norm(gt), 3)
    expected = (1.0 * float((fx[1] - fy[1]).abs().mean()) + 0.7 * float((fx[2] - fy[2]).abs().mean())) / 1.7
    assert term(sr, gt).item() == pytest.approx(expected, rel=1e-4)
    assert one("convnextperceptualloss")(gt, gt.clone()).item() == 0.0
    sr.requires_grad_()
    term(sr, gt).backward()  # unlike the fork's (features under no_grad), the gradient reaches the output
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    with pytest.raises(AutosrError, match="stages 0–3"):
        one("convnextperceptualloss", layers=[4])


def test_distsloss_and_the_dists_metric_equal_the_reference(hub: Path, vgg16, dists_heads) -> None:
    sr, gt = images(32, n=2)
    expected = ref_dists(vgg16, dists_heads, sr, gt)
    term = one("distsloss")
    assert term(sr, gt).item() == pytest.approx(float(expected.mean()), rel=1e-4)
    assert term(gt, gt.clone()).item() == pytest.approx(0.0, abs=1e-6)
    a, b = (sr[0] * 255).round().byte(), (gt[0] * 255).round().byte()
    spec = {"type": "calculate_dists", "better": "lower"}
    value = calculate_metric(spec, a, b)
    assert value == pytest.approx(float(ref_dists(vgg16, dists_heads, a[None] / 255.0, b[None] / 255.0)[0]), rel=1e-4)
    assert value == calculate_metric(spec, b, a)  # symmetric
    assert calculate_metric(spec, a, a.clone()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(AutosrError, match="metric mode"):
        one("distsloss", as_loss=False)


def test_lpips_metric_equals_the_reference_zero_for_identical_and_symmetric(hub: Path, alexnet, lpips_heads) -> None:
    sr, gt = images(64)
    a, b = (sr[0] * 255).round().byte(), (gt[0] * 255).round().byte()
    spec = {"type": "calculate_lpips", "better": "lower"}
    value = calculate_metric(spec, a, b)
    assert value == pytest.approx(float(ref_lpips(alexnet, lpips_heads, a[None] / 255.0, b[None] / 255.0)[0]), rel=1e-4)
    assert value > 0 and value == calculate_metric(spec, b, a)
    assert calculate_metric(spec, a, a.clone()) == 0.0


def test_metric_availability_names_the_missing_file(empty_hub: Path) -> None:
    ok, reason = metric_available({"type": "calculate_lpips"}, where="val.metrics.lpips")
    assert not ok and "\n" not in reason
    assert reason.startswith("val.metrics.lpips (calculate_lpips) skipped: ") and "alexnet-owt-7be5be79.pth" in reason
    assert str(empty_hub) in reason and "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in reason
    ok, reason = metric_available({"type": "calculate_dists"})
    assert not ok and "vgg16-397923af.pth" in reason
    ok, reason = metric_available({"type": "calculate_topiq"})
    assert not ok and "cfanet_fr_kadid_res50" in reason
    for spec in ({"type": "calculate_psnr"}, {"type": "calculate_gmsd"}, {"type": "calculate_hf_ratio", "crop_border": 2}):
        assert metric_available(spec) == (True, "")
    with pytest.raises(AutosrError, match=r"crop_border: unknown key for calculate_lpips .*traiNNer ignores"):
        check_metric({"type": "calculate_lpips", "crop_border": 4})
    with pytest.raises(AutosrError, match=r"net must be alex or vgg"):
        check_metric({"type": "calculate_lpips", "net": "squeeze"})


def test_metric_availability_with_the_weights_there(hub: Path, alexnet, lpips_heads, vgg16, dists_heads) -> None:
    assert metric_available({"type": "calculate_lpips"}) == (True, "")
    assert metric_available({"type": "calculate_dists"}) == (True, "")
    ok, reason = metric_available({"type": "calculate_lpips", "net": "vgg"})  # the vgg heads are not there
    assert not ok and "vgg.pth" in reason and str(hub / "lpips" / "weights" / "v0.1") in reason


def test_validator_drops_unavailable_metrics_with_a_reason(empty_hub: Path) -> None:
    metrics = {"psnr": {"type": "calculate_psnr"}, "lpips": {"type": "calculate_lpips", "better": "lower"},
               "topiq": {"type": "calculate_topiq"}, "hf": {"type": "calculate_hf_ratio"}, "gmsd": {"type": "calculate_gmsd"}}
    v = Validator([], metrics, scale=2, tile=0, device=torch.device("cpu"), autocast=torch.no_grad, channels_last=False)
    assert list(v.metrics) == ["psnr", "hf", "gmsd"] and v.primary == "psnr"
    assert set(v.dropped) == {"lpips", "topiq"} and "alexnet-owt-7be5be79.pth" in v.dropped["lpips"]
    assert v.higher == {"psnr": True, "hf": True, "gmsd": False}
    assert v._improves("hf", 0.9, 0.7) and v._improves("hf", 1.05, 0.9) and not v._improves("hf", 1.3, 0.9)
    assert v._improves("gmsd", 0.1, 0.2) and not v._improves("psnr", 20.0, 21.0)


# ----------------------------------------------------------------------------- pixel losses
def test_the_new_types_take_traiNNers_options_with_its_defaults() -> None:
    """The constructor signatures of upstream's / the fork's classes, loss_weight aside."""
    from autosr.train.losses import OPTIONS

    assert OPTIONS["perceptualloss"] == {
        "layer_weights": None, "w_lambda": 0.01, "alpha": None, "criterion": "charbonnier", "num_proj_fd": 256,
        "phase_weight_fd": 1.0, "stride_fd": 1, "clip_min": 0.0, "antialiased": False, "verbose_logging": False}
    assert OPTIONS["convnextperceptualloss"] == {"layers": (1, 2), "layer_weights": None, "eps": 1e-6}
    assert OPTIONS["distsloss"] == {"as_loss": True, "load_weights": True, "use_input_norm": True, "clip_min": 0.0}
    assert OPTIONS["hsluvloss"] == {"hue_weight": 1 / 3, "saturation_weight": 1 / 3, "lightness_weight": 1 / 3,
                                    "criterion": "l1", "downscale_factor": 1, "blur_strength": 0}
    assert OPTIONS["consistencyloss"] == {
        "criterion": "chc", "blur": True, "blur_kernel_size": 21, "blur_sigma": 3.0, "saturation": 1.0,
        "brightness": 0.9, "cosim": True, "cosim_weight": 0.5, "chc_lambda": 0.012}
    assert OPTIONS["ffloss"] == {"alpha": 1.0, "patch_factor": 1, "ave_spectrum": True, "log_matrix": False,
                                 "batch_matrix": False}
    assert OPTIONS["hfenloss"] == {"kernel_size": 7, "sigma": 1.0, "reduction": "mean", "eps": 1e-6,
                                   "criterion": "charbonnier"}
    assert OPTIONS["laplacianpyramidloss"] == {"levels": 4, "criterion": "charbonnier"}
    assert OPTIONS["adaptiveblocktvloss"] == {"block_size": 2, "sharpness": 4.0, "reduction": "mean", "eps": 1e-6}
    with pytest.raises(AutosrError, match=r"train\.losses\[0\]\.start_itr: unknown key for ffloss.*start_iter"):
        one("ffloss", start_itr=1000)  # the fork's schedule keys are taken on every loss; a typo is not
    with pytest.raises(AutosrError, match=r"block_size: must be ≥ 2"):
        one("AdaptiveBlockTVLoss", block_size=1)  # types are matched case-insensitively


def np_linear(v: np.ndarray) -> np.ndarray:
    """The sRGB curve undone."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def cie_l(y: np.ndarray) -> np.ndarray:
    """CIE L* (0–100) of a relative luminance Y."""
    return np.where(y <= 216 / 24389, y * 24389 / 27, 116 * np.cbrt(y) - 16)


def np_lstar(v: np.ndarray) -> np.ndarray:
    """CIE L* of sRGB greys."""
    return cie_l(np_linear(v))


def uniform(rgb: tuple[float, float, float], size: int = 8) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, size, size).contiguous()


# hsluv.org's values for the sRGB primaries (H, S, L)
RED, GREEN = (12.177050630061776, 100.0, 53.23711559542933), (127.71501294924047, 100.0, 87.73551910965973)


def test_hsluvloss_on_colours_with_known_hsluv_values() -> None:
    term = one("hsluvloss")
    red, green, grey = uniform((1, 0, 0)), uniform((0, 1, 0)), uniform((0.5, 0.5, 0.5))
    d = abs(RED[0] - GREEN[0]) / 360
    expected = (min(d, 1 - d) * 2 + 0 + abs(RED[2] - GREEN[2]) / 100) / 3  # hue, saturation, lightness
    assert term(red, green).item() == pytest.approx(expected, abs=2e-4)
    # a grey against a colour: hue distance = the larger saturation (1); saturation |1 − 0| weighted by
    # min(l, 1 − l) of each; lightness |ΔL|
    lg, lr = float(np_lstar(np.array(0.5))) / 100, RED[2] / 100
    expected = (1.0 + 1.0 * (min(lr, 1 - lr) + min(lg, 1 - lg)) + abs(lr - lg)) / 3
    assert term(red, grey).item() == pytest.approx(expected, abs=2e-4)
    # two greys: no hue, no saturation, only lightness; hue_weight etc. scale the three terms
    g1, g2 = uniform((0.25,) * 3), uniform((0.75,) * 3)
    l1, l2 = np_lstar(np.array([0.25, 0.75])) / 100
    assert term(g1, g2).item() == pytest.approx(abs(l1 - l2) / 3, abs=1e-5)
    assert one("hsluvloss", lightness_weight=1.0, criterion="l2")(g1, g2).item() == pytest.approx((l1 - l2) ** 2, abs=1e-5)


OKLAB_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                     [0.0883024619, 0.2817188376, 0.6299787005]])
OKLAB_M2_AB = np.array([[1.9779984951, -2.4285922050, 0.4505937099], [0.0259040371, 0.7827717662, -0.8086757660]])


def test_consistencyloss_on_uniform_colours() -> None:
    """The fork's defaults (criterion chc, brightness 0.9, cosim 0.5, λ 0.012), computed by hand."""
    a, b = np.array([0.2, 0.4, 0.6]), np.array([0.3, 0.3, 0.3])
    lstar = lambda v: float(cie_l(np_linear(v) @ np.array([0.2126, 0.7152, 0.0722]))) / 100  # noqa: E731 - BT.709 Y
    ab = lambda v: OKLAB_M2_AB @ np.cbrt(OKLAB_M1 @ np_linear(v))  # noqa: E731
    l_in, l_tg = lstar(a), lstar(b) * 0.9
    c_in, c_tg = np.clip(ab(a) + 0.5, 0, 1), np.clip(ab(b) + 0.5, 0, 1)
    cos = float(c_in @ c_tg / np.linalg.norm(c_in) / np.linalg.norm(c_tg))
    clip = lambda x: np.clip(x, 1 / 255, 254 / 255)  # noqa: E731
    chc_l = float(clip(abs(l_in - l_tg)))  # the lightness maps are constant along H: their cosine is 1
    chc_c = float(np.mean(clip(np.abs(c_in - c_tg) + 0.012 * (1 - cos))))
    expected = chc_l + chc_c + 0.5 * (0.0 + (1 - cos))
    value = one("consistencyloss")(uniform(tuple(a), 24), uniform(tuple(b), 24)).item()  # blurred: still uniform
    assert value == pytest.approx(expected, rel=1e-4)
    same = one("consistencyloss", brightness=1.0)(uniform(tuple(b), 24), uniform(tuple(b), 24)).item()
    assert same == pytest.approx(2 / 255, abs=1e-6)  # each chc term is clamped below at 1/255
    with pytest.raises(AutosrError, match="odd"):
        one("consistencyloss", blur_kernel_size=20)


def test_ffloss_equals_the_numpy_focal_frequency_loss() -> None:
    sr, gt = images(8, n=2, seed=1)
    fs, fg = np.fft.fft2(sr.double().numpy(), norm="ortho"), np.fft.fft2(gt.double().numpy(), norm="ortho")
    d = fs.mean(0) - fg.mean(0)  # ave_spectrum: the batch-mean spectra
    dist = np.abs(d) ** 2
    w = np.abs(d) / np.abs(d).max(axis=(-2, -1), keepdims=True)
    assert one("ffloss")(sr, gt).item() == pytest.approx(50 * float((w * dist).mean()), rel=1e-4)
    d = fs - fg  # per image, alpha 2, log matrix, patches of 4×4
    assert one("ffloss", ave_spectrum=False)(sr, gt).item() == pytest.approx(
        50 * float((np.abs(d) / np.abs(d).max(axis=(-2, -1), keepdims=True) * np.abs(d) ** 2).mean()), rel=1e-4)
    assert one("ffloss", patch_factor=2)(sr, gt).item() > 0 and one("ffloss")(gt, gt.clone()).item() == 0.0


def test_hfenloss_equals_log_filtering_by_hand() -> None:
    sr, gt = images(10, seed=2)
    r, s2 = 3, 1.0
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    k = (xx**2 + yy**2 - 2 * s2) / s2**2 * np.exp(-(xx**2 + yy**2) / (2 * s2))
    k -= k.mean()
    diff = np.pad((sr - gt).double().numpy()[0], ((0, 0), (r, r), (r, r)))
    hf = np.array([[[(diff[c, i:i + 7, j:j + 7] * k).sum() for j in range(10)] for i in range(10)] for c in range(3)])
    assert one("hfenloss")(sr, gt).item() == pytest.approx(float(np.sqrt(hf**2 + 1e-6).mean()), rel=1e-4)
    assert one("hfenloss", criterion="l1", reduction="sum")(sr, gt).item() == pytest.approx(float(np.abs(hf).sum()), rel=1e-4)


def test_laplacianpyramidloss_equals_the_pyramid_by_hand() -> None:
    def down(x: np.ndarray) -> np.ndarray:  # bilinear ×0.5 of an even side = 2×2 mean
        return x.reshape(*x.shape[:-2], x.shape[-2] // 2, 2, x.shape[-1] // 2, 2).mean(axis=(-3, -1))

    def up_axis(x: np.ndarray, axis: int) -> np.ndarray:  # bilinear ×2, align_corners false, edges clamped
        n = x.shape[axis]
        src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, None)
        i0 = np.floor(src).astype(int)
        i1, lam = np.minimum(i0 + 1, n - 1), src - np.floor(src)
        shape = [1] * x.ndim
        shape[axis] = 2 * n
        return np.take(x, i0, axis) * (1 - lam.reshape(shape)) + np.take(x, i1, axis) * lam.reshape(shape)

    sr, gt = images(16, seed=3)
    g = (sr - gt).double().numpy()
    expected = 0.0
    for _ in range(2):
        d = down(g)
        band = g - up_axis(up_axis(d, -2), -1)
        expected += float(np.abs(band).mean())
        g = d
    assert one("laplacianpyramidloss", levels=2, criterion="l1")(sr, gt).item() == pytest.approx(expected, rel=1e-4)
    assert one("laplacianpyramidloss")(gt, gt.clone()).item() == pytest.approx(4e-6, rel=1e-3)  # 4 levels of sqrt(1e-12)


def test_adaptiveblocktvloss_by_hand() -> None:
    x = torch.rand(1, 2, 9, 10, generator=torch.Generator().manual_seed(4))
    a = x.double().numpy()
    dx = np.concatenate([a[..., 1:] - a[..., :-1], np.zeros((1, 2, 9, 1))], -1)
    dy = np.concatenate([a[..., 1:, :] - a[..., :-1, :], np.zeros((1, 2, 1, 10))], -2)
    tv = np.sqrt(dx**2 + dy**2 + 1e-6)
    blocks = a[..., :8, :10].reshape(1, 2, 4, 2, 5, 2)
    m = np.zeros_like(a)
    m[..., :8, :10] = np.abs(blocks - blocks.mean(axis=(3, 5), keepdims=True)).reshape(1, 2, 8, 10)
    weight = 1 / (1 + np.exp(-4.0 * m / (m.mean() + 1e-6)))
    assert one("adaptiveblocktvloss")(x, torch.zeros_like(x)).item() == pytest.approx(float((tv * weight).mean()), rel=1e-5)


def test_every_new_loss_gives_gradients_and_zero_or_floor_for_identical() -> None:
    sr, gt = images(32, n=2, seed=5)
    sr.requires_grad_()
    for kind in ("hsluvloss", "consistencyloss", "ffloss", "hfenloss", "laplacianpyramidloss", "adaptiveblocktvloss"):
        term = one(kind)
        value = term(sr, gt)
        value.backward()
        assert torch.isfinite(value) and sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0, kind
        sr.grad = None
        assert term(sr, gt).item() >= term(gt, gt.clone()).item(), kind


# ----------------------------------------------------------------------------- realism metrics
def texture(seed: int = 0, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, size, size, generator=g) * 255).round().byte()


def test_hf_ratio_is_one_for_identical_below_one_for_blur_and_a_ratio_of_energies() -> None:
    gt = texture()
    assert calculate_metric({"type": "calculate_hf_ratio"}, gt, gt.clone()) == 1.0
    blurred = F.avg_pool2d(gt[None].float(), 3, stride=1, padding=1, count_include_pad=False)[0].round().byte()
    assert calculate_metric({"type": "calculate_hf_ratio"}, blurred, gt) < 0.5
    assert calculate_metric({"type": "calculate_hf_ratio"}, gt, blurred) > 2  # SR noisier than the truth
    # the detail layer is linear: halving the contrast around grey quarters the energy (to rounding)
    pattern = torch.sin(torch.arange(48.0).view(-1, 1) * 1.3) * torch.cos(torch.arange(48.0).view(1, -1) * 0.9)
    hr = (128 + 100 * pattern).round().byte().expand(3, -1, -1)
    sr = (128 + 50 * pattern).round().byte().expand(3, -1, -1)
    assert calculate_metric({"type": "calculate_hf_ratio"}, sr, hr) == pytest.approx(0.25, rel=0.02)


def test_gmsd_zero_for_identical_or_shifted_brightness_and_matches_its_definition() -> None:
    gt, other = texture(1), texture(2)
    spec = {"type": "calculate_gmsd"}
    assert calculate_metric(spec, gt, gt.clone()) == 0.0
    shifted = (gt.int().clamp(0, 200) + 40).byte()  # a brightness offset leaves every gradient as it is
    base = gt.int().clamp(0, 200).byte()
    assert calculate_metric(spec, shifted, base) == pytest.approx(0.0, abs=1e-12)  # luma rounding only
    value = calculate_metric(spec, other, gt)
    assert value == calculate_metric(spec, gt, other) and value > 0.05
    # the definition re-stated: luma, 2×2 mean, Prewitt (÷3, valid), GMS with T = 170, population std
    def grad(img: torch.Tensor) -> np.ndarray:
        y = (img.double().numpy() * np.array([0.299, 0.587, 0.114]).reshape(3, 1, 1)).sum(0)
        y = y.reshape(24, 2, 24, 2).mean(axis=(1, 3))
        px = np.array([[1, 0, -1]] * 3) / 3
        gx = np.array([[(y[i:i + 3, j:j + 3] * px).sum() for j in range(22)] for i in range(22)])
        gy = np.array([[(y[i:i + 3, j:j + 3] * px.T).sum() for j in range(22)] for i in range(22)])
        return np.sqrt(gx**2 + gy**2)

    ma, mb = grad(other), grad(gt)
    assert value == pytest.approx(float(((2 * ma * mb + 170) / (ma**2 + mb**2 + 170)).std()), rel=1e-9)
    assert math.isfinite(calculate_metric({"type": "calculate_gmsd", "crop_border": 4}, other, gt))
