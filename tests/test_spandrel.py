"""spandrel (chaiNNer's model loader) loads autosr's model files: every variant and scale, detected from
state-dict keys alone, hyperparameters read off tensor shapes, output equal to autosr's own."""

from __future__ import annotations

import enum
import importlib
import sys
import types

import pytest
import torch

from autosr.archs import build_network
from autosr.archs.paragonsr2 import SCALES, VARIANTS
from autosr.safetensors_io import save_safetensors
from autosr.use.model_file import load_model, model_metadata


def _torchvision_stand_in() -> dict[str, types.ModuleType]:
    """spandrel imports three names from torchvision for LaMa and RestoreFormer. CI's CPU torch has no
    matching torchvision (PyPI's fails to import beside it: 'operator torchvision::nms does not exist'),
    so these tests give spandrel a stand-in with those names; nothing here calls them."""

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"

    def unavailable(*args: object, **kwargs: object) -> None:
        raise NotImplementedError("torchvision stand-in (tests only)")

    root, transforms, functional = (types.ModuleType(n) for n in
                                    ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"))
    functional.InterpolationMode = InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = functional.normalize = unavailable  # type: ignore[attr-defined]
    root.transforms, transforms.functional = transforms, functional  # type: ignore[attr-defined]
    return {m.__name__: m for m in (root, transforms, functional)}


@pytest.fixture(scope="module")
def spandrel():
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 — any import failure of a mismatched build
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        sys.modules.update(_torchvision_stand_in())
    module = importlib.import_module("spandrel")
    from autosr.archs import spandrel_support

    spandrel_support.install()
    return module


def _trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, so a wrong hyperparameter or a mismatched load shows in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def _same(descriptor, model, x) -> bool:
    """spandrel's descriptor returns the network's output clamped to the image range [0, 1]."""
    with torch.no_grad():
        return torch.equal(descriptor(x), model(x).clamp(0, 1))


def _model_file(tmp_path, opts, name="m.safetensors"):
    model = _trained_like(build_network(opts))
    path = tmp_path / name
    save_safetensors(model.state_dict(), path, model_metadata(opts, iteration=1000))
    return path


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_spandrel_loads_every_variant_and_scale_like_autosr(tmp_path, spandrel, variant, scale):
    path = _model_file(tmp_path, {"type": f"paragonsr2_{variant}", "scale": scale})
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert isinstance(descriptor, spandrel.ImageModelDescriptor)
    assert descriptor.architecture.id == "ParagonSR2" and variant in descriptor.tags
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (scale, 3, 3)
    assert descriptor.purpose == "SR"
    ours, _ = load_model(path)
    x = torch.rand(1, 3, 19, 13)  # odd sizes: not a multiple of the attention window
    assert _same(descriptor, ours, x)


def test_hyperparameters_off_the_table_are_read_from_shapes(tmp_path, spandrel):
    opts = {"type": "paragonsr2_nano", "scale": 3, "in_chans": 1, "num_feat": 20, "num_groups": 2, "num_blocks": 3,
            "ffn_ratio": 1.7, "band_kernel": 9, "upsampler_alpha": 0.8, "use_attention": True,
            "use_channel_mod": True, "use_content_aware": False}
    path = _model_file(tmp_path, opts)
    descriptor = spandrel.ModelLoader().load_from_file(path)
    from autosr.archs.spandrel_support import hyperparameters

    got = hyperparameters(spandrel.canonicalize_state_dict(dict(descriptor.model.state_dict())))
    assert got.pop("upsampler_alpha") == pytest.approx(0.8)  # a float32 buffer
    assert {k: v for k, v in got.items() if k != "ffn_ratio"} == {
        k: v for k, v in opts.items() if k not in ("type", "ffn_ratio", "upsampler_alpha")}
    assert int(got["ffn_ratio"] * 20 + 1e-6) == int(1.7 * 20 + 1e-6)  # the same hidden width
    assert descriptor.input_channels == descriptor.output_channels == 1 and descriptor.scale == 3
    assert "nano" not in descriptor.tags and "20nf" in descriptor.tags
    ours, _ = load_model(path)
    x = torch.rand(2, 1, 16, 24)
    assert _same(descriptor, ours, x)


def test_a_file_from_before_the_alpha_buffer_loads_with_its_variants_sharpening(tmp_path, spandrel):
    model = _trained_like(build_network({"type": "paragonsr2_micro", "scale": 2}))
    tensors = {k: v for k, v in model.state_dict().items() if k != "base.alpha"}
    path = tmp_path / "old.safetensors"
    save_safetensors(tensors, path, {"iter": "500"})  # what autosr wrote before: only the iteration
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert float(descriptor.model.base.alpha) == pytest.approx(VARIANTS["micro"]["upsampler_alpha"])
    x = torch.rand(1, 3, 12, 12)
    assert _same(descriptor, model, x)


def test_training_state_dict_wrappers_load_too(tmp_path, spandrel):
    """traiNNer-style .pth files wrap the weights ({"params_ema": …}); spandrel unwraps them before detecting."""
    model = _trained_like(build_network({"type": "paragonsr2_tiny", "scale": 4}))
    path = tmp_path / "net_g_ema.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    descriptor = spandrel.ModelLoader().load_from_file(path)
    x = torch.rand(1, 3, 10, 10)
    assert _same(descriptor, model, x)


def test_bfloat16_as_spandrel_advertises(tmp_path, spandrel):
    descriptor = spandrel.ModelLoader().load_from_file(_model_file(tmp_path, {"type": "paragonsr2_s", "scale": 2}))
    assert descriptor.supports_bfloat16
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        full = descriptor(x)
        descriptor.bfloat16()
        half = descriptor(x.bfloat16()).float()
    assert (half - full).abs().max().item() < 0.1  # bf16 keeps 8 bits of mantissa


def test_no_other_architecture_claims_a_paragonsr2_file(spandrel):
    for variant in VARIANTS:
        state = build_network({"type": f"paragonsr2_{variant}", "scale": 2}).state_dict()
        claims = [s.architecture.id for s in spandrel.MAIN_REGISTRY.architectures("detection") if s.detect(state)]
        assert claims == ["ParagonSR2"], variant


# Architectures whose default constructors are cheap: ParagonSR2's detection must not claim them, and
# spandrel must still load them as what they are once ParagonSR2 is installed.
OTHERS = ["Compact", "SwiftSRGAN", "OmniSR", "DITN", "RealCUGAN", "CRAFT", "SeemoRe", "DAT", "PLKSR", "ESRGAN"]


@pytest.mark.parametrize("arch_id", OTHERS)
def test_paragonsr2_claims_no_other_architecture(spandrel, arch_id):
    from autosr.archs.spandrel_support import ParagonSR2Arch

    module = importlib.import_module(f"spandrel.architectures.{arch_id}")
    cls = next(getattr(module, n) for n in module.__all__ if not n.endswith("Arch"))
    state = cls().state_dict()
    assert not ParagonSR2Arch().detect(state)
    assert spandrel.ModelLoader().load_from_state_dict(state).architecture.id == arch_id


def test_install_twice_is_harmless_and_a_private_registry_works(spandrel):
    from autosr.archs.spandrel_support import install

    install()
    assert "ParagonSR2" in spandrel.MAIN_REGISTRY
    registry = spandrel.ArchRegistry()
    install(registry)
    install(registry)
    assert [s.architecture.id for s in registry.architectures("detection")] == ["ParagonSR2", "ParagonSR2v2"]
    state = build_network({"type": "paragonsr2_xs", "scale": 2}).state_dict()
    assert spandrel.ModelLoader(registry=registry).load_from_state_dict(state).architecture.id == "ParagonSR2"


# ---------------------------------------------------------------- realtime…pro (the fork's family)

V2_VARIANTS = ("realtime", "stream", "photo", "pro")


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("variant", V2_VARIANTS)
def test_spandrel_loads_every_v2_variant_and_scale_like_autosr(tmp_path, spandrel, variant, scale):
    path = _model_file(tmp_path, {"type": f"paragonsr2_{variant}", "scale": scale})
    descriptor = spandrel.ModelLoader().load_from_file(path)
    assert descriptor.architecture.id == "ParagonSR2v2" and descriptor.tags == [variant]
    assert (descriptor.scale, descriptor.input_channels, descriptor.output_channels) == (scale, 3, 3)
    ours, _ = load_model(path)
    assert _same(descriptor, ours, torch.rand(1, 3, 19, 13))


def test_a_fork_pth_under_params_ema_loads_with_the_variants_defaults(tmp_path, spandrel):
    model = _trained_like(build_network({"type": "paragonsr2_pro", "scale": 2, "export_safe": True}))
    torch.save({"params_ema": model.state_dict()}, tmp_path / "2xParagonSR2_Pro.pth")
    descriptor = spandrel.ModelLoader().load_from_file(tmp_path / "2xParagonSR2_Pro.pth")
    assert descriptor.tags == ["pro", "no attention"] and descriptor.model.base.alpha == 0.4
    assert _same(descriptor, model, torch.rand(1, 3, 10, 10))


def test_v2_hyperparameters_off_the_table_are_read_from_shapes(spandrel):
    from autosr.archs.paragonsr2_v2 import ParagonSR2V2
    from autosr.archs.paragonsr2_v2_keys import hyperparameters

    opts = {"scale": 3, "in_chans": 1, "num_feat": 24, "num_groups": 2, "num_blocks": 3, "variant": "photo",
            "detail_gain": 0.25, "upsampler_alpha": 0.5, "use_checkpointing": False, "attention_mode": "sdpa",
            "export_safe": False, "window_size": 8}  # alpha and window: the class defaults, not in the weights
    model = _trained_like(ParagonSR2V2(**opts))
    with torch.no_grad():
        model.detail_gain.fill_(0.25)
    assert hyperparameters(model.state_dict()) == opts
    descriptor = spandrel.ModelLoader().load_from_state_dict(model.state_dict())
    assert descriptor.tags == ["photo", "24nf"] and descriptor.input_channels == 1
    assert _same(descriptor, model, torch.rand(2, 1, 16, 24))


@pytest.mark.parametrize("opts", [{"type": f"paragonsr2_{v}", "scale": 2} for v in V2_VARIANTS]
                         + [{"type": "paragonsr2_photo", "scale": 4, "export_safe": True}])
def test_no_other_architecture_claims_a_v2_file(spandrel, opts):
    state = build_network(opts).state_dict()
    claims = [s.architecture.id for s in spandrel.MAIN_REGISTRY.architectures("detection") if s.detect(state)]
    assert claims == ["ParagonSR2v2"]


@pytest.mark.parametrize("arch_id", OTHERS)
def test_v2_claims_no_other_architecture(spandrel, arch_id):
    from autosr.archs.spandrel_support import ParagonSR2V2Arch

    module = importlib.import_module(f"spandrel.architectures.{arch_id}")
    cls = next(getattr(module, n) for n in module.__all__ if not n.endswith("Arch"))
    assert not ParagonSR2V2Arch().detect(cls().state_dict())


def test_v2_in_half_precision_as_spandrel_advertises(tmp_path, spandrel):
    descriptor = spandrel.ModelLoader().load_from_file(_model_file(tmp_path, {"type": "paragonsr2_stream", "scale": 2}))
    assert descriptor.supports_half and descriptor.supports_bfloat16
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        full = descriptor(x)
        descriptor.bfloat16()
        half = descriptor(x.bfloat16()).float()
    assert (half - full).abs().max().item() < 0.1  # bf16 keeps 8 bits of mantissa
