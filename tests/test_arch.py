"""ParagonSR2: every variant builds and keeps shapes; the init, dtypes, layouts and exports behave."""

from __future__ import annotations

import shutil

import pytest
import torch

from autosr.archs import ARCH_NAMES, build_network, count_parameters
from autosr.archs.paragonsr2 import VARIANTS, ParagonSR2
from autosr.errors import AutosrError
from autosr.plan.presets import load_preset


def _net(variant: str = "nano", scale: int = 2, **overrides: object) -> ParagonSR2:
    torch.manual_seed(0)
    return build_network({"type": f"paragonsr2_{variant}", "scale": scale, **overrides}).eval()


def _wake(model: ParagonSR2) -> ParagonSR2:
    """Push the start-tiny gains up so the detail path and attention visibly change the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "attn_gain")):
                p.fill_(0.5)
    return model


def test_registry_names_every_variant():
    assert tuple(f"paragonsr2_{v}" for v in VARIANTS) == ARCH_NAMES[:len(VARIANTS)]  # realtime…pro follow
    assert list(VARIANTS) == ["nano", "micro", "tiny", "xs", "s", "m", "l", "xl"]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_variant_maps_odd_sizes_to_scale_times(variant, scale):
    model = _net(variant, scale)
    x = torch.rand(1, 3, 13, 9) if variant in ("l", "xl") else torch.rand(2, 3, 13, 17)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (x.shape[0], 3, x.shape[2] * scale, x.shape[3] * scale)
    assert torch.isfinite(y).all()


def test_parameter_counts_grow_with_the_variant():
    counts = {v: count_parameters(_net(v)) for v in VARIANTS}
    print("ParagonSR2 ×2 parameters:", counts)
    sizes = list(counts.values())
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert 5_000 < counts["nano"] < 100_000
    assert count_parameters(_net("nano", 4)) > counts["nano"]  # the upsampler grows with scale²


def test_base_path_has_no_trainable_parameters():
    model = _net()
    assert not list(model.base.parameters())
    # only the sharpening strength is stored (a 0-dim buffer); the kernels are constants of the code
    assert [k for k in model.state_dict() if k.startswith("base.")] == ["base.alpha"]


def test_base_path_keeps_a_flat_image_flat_inside():
    x = torch.full((1, 3, 16, 16), 0.5)
    with torch.no_grad():
        y = _net().base(x)
    # Kernels sum to 1: away from the zero-padded border a constant image stays constant.
    assert torch.allclose(y[..., 8:-8, 8:-8], torch.full_like(y[..., 8:-8, 8:-8], 0.5), atol=1e-6)


def test_at_init_the_output_is_the_base_path_plus_a_small_detail():
    for variant in ("nano", "s", "xl"):  # xl: the deepest body must not blow the features up
        model = _net(variant)
        x = torch.rand(1, 3, 10, 12)
        with torch.no_grad():
            base, out = model.base(x), model(x)
        assert (out - base).abs().max() < 0.02
        assert (out - base).abs().max() > 0  # the detail path is live, only small


def test_icnr_upsampler_starts_without_checkerboard():
    model = _net("nano", 3)
    with torch.no_grad():
        y = model.upsampler(torch.rand(1, 12, 5, 7))
    for i in range(3):
        for j in range(3):
            assert torch.equal(y[..., i::3, j::3], y[..., 0::3, 0::3])


def test_attention_windows_pad_and_crop_back():
    attn = _wake(_net("s")).body[0].blocks[0].attn
    x = torch.rand(2, 48, 11, 19)
    with torch.no_grad():
        y = attn(x)
        # A window sees only itself: the first 8×8 window's output ignores the rest of the map.
        assert torch.allclose(attn(x[..., :8, :8]), y[..., :8, :8], atol=1e-5)
    assert y.shape == x.shape


def test_bf16_autocast_forward():
    model = _net("s")
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    ref = model(x).detach()
    assert y.shape == ref.shape and torch.isfinite(y).all()
    # The base path (most of the value) stays fp32 under autocast; only the small detail is bf16.
    assert y.dtype == torch.float32
    assert (y - ref).abs().max() < 2e-3


def test_bf16_weights_and_input_without_autocast():
    model = _net().to(torch.bfloat16)
    assert model(torch.rand(1, 3, 9, 9, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_channels_last_matches_contiguous():
    model = _wake(_net("s"))
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        y = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(y, ref, atol=1e-5)


def test_backward_reaches_every_trainable_parameter():
    model = _wake(_net("s")).train()
    model(torch.rand(1, 3, 10, 10)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_state_dict_round_trip(tmp_path):
    model = _wake(_net("micro"))
    torch.save(model.state_dict(), tmp_path / "g.pth")
    torch.manual_seed(123)  # a different init, so equality proves the load
    fresh = build_network({"type": "paragonsr2_micro", "scale": 2}).eval()
    fresh.load_state_dict(torch.load(tmp_path / "g.pth", weights_only=True))
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_build_network_overrides_the_variant_defaults():
    model = _net("nano", num_feat=16, use_channel_mod=True)
    assert model.conv_in.out_channels == 16
    assert model.body[0].blocks[0].ffn.channel_mod is not None


@pytest.mark.parametrize(
    ("opts", "named"),
    [
        ({"type": "paragonsr2_nnao", "scale": 2}, "paragonsr2_nano"),
        ({"type": "paragonsr2_nano", "scale": 2, "num_feats": 16}, "network_g.num_feats"),
        ({"type": "paragonsr2_nano", "scale": 2, "gain": 0.1}, "network_g.gain"),
        ({"type": "paragonsr2_nano"}, "network_g.scale"),
        ({"scale": 2}, "network_g.type"),
        ({"type": "paragonsr2_nano", "scale": 8}, "network_g.scale"),
        ({"type": "paragonsr2_nano", "scale": 2, "band_kernel": 8}, "network_g.band_kernel"),
        ({"type": "paragonsr2_nano", "scale": 2, "ffn_ratio": "1.5"}, "network_g.ffn_ratio"),
        ({"type": "paragonsr2_nano", "scale": 2, "use_attention": "yes"}, "network_g.use_attention"),
    ],
)
def test_build_network_rejects_bad_input_naming_the_key(opts, named):
    with pytest.raises(AutosrError) as err:
        build_network(opts)
    assert named in err.value.message


def test_unknown_key_suggests_the_close_keyword():
    with pytest.raises(AutosrError, match="did you mean 'num_feat'"):
        build_network({"type": "paragonsr2_nano", "scale": 2, "num_feats": 16})


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_presets_carry_the_variant_table(variant):
    assert load_preset(variant).network == VARIANTS[variant]


def test_onnx_export_with_dynamic_height_and_width(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from autosr.use.onnx_export import export_onnx

    model = _wake(_net("nano"))
    path = export_onnx(model, tmp_path / "nano.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 16, 24), (2, 3, 13, 9)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        out = session.run(None, {"input": x.numpy()})[0]
        assert out.shape == ref.shape
        assert abs(out - ref).max() < 1e-4


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_torch_compile_forward_matches_eager():
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    model = _wake(_net("nano"))
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: any graph break is a failure
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)
