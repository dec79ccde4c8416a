"""ParagonSR2 realtime…pro: the fork's key names and shapes, every variant and scale forward and back,
the published parameter counts, refusals by name, export_safe, checkpointing, dtypes and layouts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from autosr.archs import ARCH_NAMES, NETWORK_KEYS, build_network, count_parameters, network_defaults
from autosr.archs import paragonsr2_v2 as v2
from autosr.archs.paragonsr2_v2 import FACTORIES, ParagonSR2V2, ParagonSR2V2ConfigError
from autosr.errors import AutosrError
from autosr.plan.presets import V2_VARIANTS, all_presets, load_preset

FORK = json.loads((Path(__file__).parent / "data" / "paragonsr2_v2_fork_keys.json").read_text(encoding="utf-8"))
VARIANTS = list(FACTORIES)
# shared/specs/paragonsr2.md's table (the fork's own counts: every parameter, the 72 frozen base values included)
SPEC_PARAMS = {"realtime": (16_780, 44_620), "stream": (110_092, 221_068), "photo": (745_292, 1_188_428),
               "pro": (1_993_420, 2_436_556)}
FROZEN_BASE = 2 * 3 * (7 + 5)  # sharpen and blur, horizontal and vertical, 3 channels


def _net(variant: str = "realtime", scale: int = 2, **overrides: object) -> ParagonSR2V2:
    torch.manual_seed(0)
    model = build_network({"type": f"paragonsr2_{variant}", "scale": scale, **overrides})
    assert isinstance(model, ParagonSR2V2)
    return model.eval()


def _wake(model: ParagonSR2V2) -> ParagonSR2V2:
    """Raise the start-tiny layer scales and the gain, so every branch visibly moves the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.3)
        model.detail_gain.fill_(1.0)
    return model


def _fork_shapes(name: str, scale: int) -> dict[str, list[int]]:
    entry = FORK["models"][name]
    return {**entry["state_dict"], **entry["at_scale"].get(str(scale), {})}


def test_registry_holds_both_families_apart():
    assert [n for n in ARCH_NAMES if n.removeprefix("paragonsr2_") in VARIANTS] == [f"paragonsr2_{v}" for v in VARIANTS]
    assert ARCH_NAMES[:8] == tuple(f"paragonsr2_{v}" for v in ("nano", "micro", "tiny", "xs", "s", "m", "l", "xl"))
    # each name checks network_g against its own constructor
    assert "num_feat" in NETWORK_KEYS["paragonsr2_nano"] and "num_feat" not in NETWORK_KEYS["paragonsr2_photo"]
    assert "window_size" in NETWORK_KEYS["paragonsr2_pro"] and "window_size" not in NETWORK_KEYS["paragonsr2_stream"]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_state_dict_names_and_shapes_are_the_forks(variant, scale):
    ours = {k: list(v.shape) for k, v in _net(variant, scale).state_dict().items()}
    assert list(ours) == list(_fork_shapes(variant, scale))  # same names, same order
    assert ours == _fork_shapes(variant, scale)


@pytest.mark.parametrize("variant", ["photo", "pro"])
def test_export_safe_drops_the_attention_as_the_fork_does(variant):
    full, safe = _net(variant).state_dict(), _net(variant, export_safe=True).state_dict()
    assert {k: list(v.shape) for k, v in safe.items()} == _fork_shapes(f"{variant}+export_safe", 2)
    dropped = set(full) - set(safe)
    assert dropped and set(safe) < set(full)
    assert all(".attn" in k or ".window_attn." in k or ".norm3." in k or ".scale3." in k for k in dropped)
    # attention_mode null builds the same network
    assert _net(variant, attention_mode=None).state_dict().keys() == safe.keys()


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts_are_the_specs(variant):
    for scale, want in zip((2, 4), SPEC_PARAMS[variant], strict=True):
        model = _net(variant, scale)
        assert count_parameters(model, include_frozen=True) == want
        assert count_parameters(model) == want - FROZEN_BASE  # what the optimiser sees
    assert count_parameters(_net("photo", export_safe=True), include_frozen=True) == 477_004


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_forward_and_backward_on_odd_sizes(variant, scale):
    model = _wake(_net(variant, scale)).train()
    x = torch.rand(1, 3, 13, 19)  # neither side a multiple of the 16-pixel window
    y = model(x)
    assert y.shape == (1, 3, 13 * scale, 19 * scale) and torch.isfinite(y).all()
    y.square().mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert [n for n, p in trainable if p.grad is None or not p.grad.any()] == []
    assert all(p.grad is None for n, p in model.named_parameters() if n.startswith("base."))


def test_one_pixel_and_one_channel_inputs():
    for variant in ("realtime", "photo"):
        assert _net(variant, 3)(torch.rand(1, 3, 1, 1)).shape == (1, 3, 3, 3)
    assert _net("stream", 2, in_chans=1)(torch.rand(1, 1, 5, 7)).shape == (1, 1, 10, 14)


def test_base_path_is_frozen_stored_and_keeps_a_flat_image_flat():
    model = _net("photo")
    base = {k for k in model.state_dict() if k.startswith("base.")}
    assert base == {f"base.{p}.{k}" for p in ("sharp", "blur") for k in ("kernel", "h.weight", "v.weight")}
    assert not any(p.requires_grad for p in model.base.parameters())
    x = torch.full((1, 3, 24, 24), 0.5)
    with torch.no_grad():
        y = model.base(x)
    assert torch.allclose(y[..., 16:-16, 16:-16], torch.full_like(y[..., 16:-16, 16:-16], 0.5), atol=1e-6)


def test_at_init_the_output_is_the_base_path_plus_a_small_detail():
    for variant in VARIANTS:
        model = _net(variant)
        x = torch.rand(1, 3, 10, 12)
        with torch.no_grad():
            gap = (model(x) - model.base(x)).abs().max()
        assert 0 < gap < 0.1, variant  # the detail path is live, only small: the base path dominates


def test_alpha_zero_skips_the_sharpening():
    model = _net("realtime", upsampler_alpha=0.0)
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        plain = model.base.blur(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
        assert torch.equal(model.base(x), plain)
        assert not torch.equal(_net("realtime").base(x), plain)  # realtime's default 0.3 sharpens


@pytest.mark.parametrize(
    ("opts", "named"),
    [
        ({"type": "paragonsr2_photo", "scale": 2, "window_sise": 8}, "did you mean 'window_size'"),
        ({"type": "paragonsr2_realtime", "scale": 2, "attention_mode": "sdpa"}, "network_g.attention_mode"),
        ({"type": "paragonsr2_pro", "scale": 2, "num_feat": 32}, "network_g.num_feat"),  # fixed by the variant
        ({"type": "paragonsr2_stream", "scale": 2, "variant": "pro"}, "network_g.variant"),
        ({"type": "paragonsr2_photo", "scale": 8}, "network_g.scale"),
        ({"type": "paragonsr2_photo", "scale": 2, "attention_mode": "flash"}, "network_g.attention_mode"),
        ({"type": "paragonsr2_photo", "scale": 2, "window_size": 0}, "network_g.window_size"),
        ({"type": "paragonsr2_stream", "scale": 2, "upsampler_alpha": 1.5}, "network_g.upsampler_alpha"),
        ({"type": "paragonsr2_pro", "scale": 2, "use_checkpointing": "yes"}, "network_g.use_checkpointing"),
        ({"type": "paragonsr2_realtme", "scale": 2}, "paragonsr2_realtime"),
    ],
)
def test_bad_network_g_is_one_error_naming_the_key(opts, named):
    with pytest.raises(AutosrError) as err:
        build_network(opts)
    assert named in err.value.message


def test_the_module_alone_refuses_by_name_with_a_value_error():
    with pytest.raises(ValueError, match="network_g.variant") as err:
        ParagonSR2V2(variant="ultra")
    assert isinstance(err.value, ParagonSR2V2ConfigError) and "realtime, stream, photo, pro" in err.value.hint
    with pytest.raises(ParagonSR2V2ConfigError, match="multiple of 4"):
        ParagonSR2V2(num_feat=30)
    with pytest.raises(TypeError, match="num_feats"):  # keyword-only, no **kwargs: Python names the stray key
        v2.paragonsr2_photo(num_feats=32)  # type: ignore[call-arg]


def test_window_attention_sees_only_its_window_and_shifts_on_odd_blocks():
    model = _wake(_net("photo", window_size=8))
    blocks = [b for group in model.body for b in group.blocks]
    assert [b.attn.shift for b in blocks] == [0, 4] * 8  # counted over the whole body
    attn = blocks[0].attn
    x = torch.rand(2, 64, 11, 19)
    with torch.no_grad():
        y = attn(x)
        assert y.shape == x.shape
        # an unshifted window ignores the rest of the map
        assert torch.allclose(attn(x[..., :8, :8]), y[..., :8, :8], atol=1e-5)
        # a shifted one does not line up with the unshifted grid
        shifted = blocks[1].attn
        assert not torch.allclose(shifted(x[..., :8, :8]), shifted(x)[..., :8, :8], atol=1e-3)


def test_flex_attention_computes_what_sdpa_computes():
    """On the CPU (eager) flex falls back to sdpa: the same weights give the same output."""
    sdpa = _wake(_net("photo", window_size=8))
    flex = _net("photo", window_size=8, attention_mode="flex")
    flex.load_state_dict(sdpa.state_dict())
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        assert torch.equal(flex(x), sdpa(x))


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkpointing_gives_the_same_gradients_and_runs_only_while_training(variant, monkeypatch):
    plain = _wake(_net(variant)).train()
    ckpt = _net(variant, use_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    real = v2.checkpoint.checkpoint

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(kwargs.get("use_reentrant"))
        return real(*args, **kwargs)

    monkeypatch.setattr(v2.checkpoint, "checkpoint", counting)
    x = torch.rand(1, 3, 12, 10)
    for model in (plain, ckpt):
        model(x).square().mean().backward()
    blocks = sum(len(group.blocks) for group in ckpt.body)
    assert calls == [False] * blocks  # one per block, use_reentrant=False
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-8), name
    with torch.no_grad():
        ckpt.eval()(x)
    assert len(calls) == blocks  # not in eval


@pytest.mark.parametrize("variant", VARIANTS)
def test_channels_last_matches_contiguous(variant):
    model = _wake(_net(variant))
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        y = model(x.contiguous(memory_format=torch.channels_last))
    assert (y - ref).abs().max() <= 1e-5 * max(1.0, ref.abs().max().item())  # float rounding only


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("variant", VARIANTS)
def test_autocast_keeps_the_base_path_in_fp32(variant, dtype):
    model = _net(variant)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=dtype):
            y = model(x)
            base = model.base(x)
    assert y.dtype == base.dtype == torch.float32
    assert torch.equal(base, model.base(x))  # the base path is not touched by autocast
    assert (y - ref).abs().max() < 2e-3


def test_bf16_weights_and_input_without_autocast():
    for variant in ("stream", "pro"):
        model = _net(variant).to(torch.bfloat16)
        y = model(torch.rand(1, 3, 9, 9, dtype=torch.bfloat16))
        assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()


def test_stream_gate_product_stays_finite_in_fp16():
    """The gate multiplies in fp32 and clamps to the fp16 range before casting back."""
    block = v2.StreamBlock(8).half()
    with torch.no_grad():
        block.proj.weight.fill_(30.0)
        y = block(torch.full((1, 8, 4, 4), 10.0, dtype=torch.float16))
    assert y.dtype == torch.float16 and torch.isfinite(y).all()


def test_a_fork_state_dict_round_trips(tmp_path):
    model = _wake(_net("photo", 3))
    torch.save(model.state_dict(), tmp_path / "g.pth")
    fresh = _net("photo", 3)
    fresh.load_state_dict(torch.load(tmp_path / "g.pth", weights_only=True), strict=True)
    x = torch.rand(1, 3, 11, 13)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


@pytest.mark.parametrize("kind", VARIANTS)
def test_onnx_export_with_dynamic_height_and_width(tmp_path, kind):
    """Each block kind in a short body (one plain and one shifted block): padding, roll and windows
    are recorded for every size, not only the traced one. The full variants: tests/test_export.py."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from autosr.use.onnx_export import export_onnx

    torch.manual_seed(0)
    model = _wake(ParagonSR2V2(scale=3, num_feat=16, num_groups=1, num_blocks=2, variant=kind, window_size=8)).eval()
    path = export_onnx(model, tmp_path / f"{kind}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 16, 24), (2, 3, 13, 9)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            ref = model(x).numpy()
        out = session.run(None, {"input": x.numpy()})[0]
        assert out.shape == ref.shape
        assert abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_presets_carry_the_variants_defaults_and_the_forks_training_values(variant):
    preset = load_preset(f"paragonsr2_{variant}")
    shown = ("detail_gain", "upsampler_alpha", "attention_mode", "window_size")
    defaults = {**v2.BODIES[variant], **{k: v for k, v in network_defaults(f"paragonsr2_{variant}").items() if k in shown}}
    assert preset.network == defaults
    # the fork's fidelity configs: AdamW 2e-4, L1 + 0.08 MS-SSIM, EMA 0.999
    assert preset.optimizer == {"type": "AdamW", "lr": 2e-4, "weight_decay": 1e-4, "betas": [0.9, 0.99]}
    assert preset.losses == ({"type": "l1loss", "loss_weight": 1.0}, {"type": "mssimloss", "loss_weight": 0.08})
    assert preset.ema_decay == 0.999 and preset.memory_source == "measured"  # H200, benchmarks/preset_memory.py


def test_the_planners_candidates_stay_nano_to_xl():
    assert tuple(VARIANTS) == V2_VARIANTS  # presets and networks name the same four
    assert [p.variant for p in all_presets()] == ["nano", "micro", "tiny", "xs", "s", "m", "l", "xl"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compiler stack
def test_torch_compile_forward_matches_eager():
    """Shifted windows and the flex branch trace without a graph break (on the CPU flex computes as sdpa)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    torch.manual_seed(0)
    model = _wake(ParagonSR2V2(scale=2, num_feat=16, num_groups=1, num_blocks=2, variant="photo", window_size=8,
                               attention_mode="flex")).eval()
    compiled = torch.compile(model, fullgraph=True)
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_checkpointing_keeps_less_for_the_backward_pass_and_the_presets_say_how_much():
    """The share the planner reads (presets/*.yml `checkpointing:`) is what checkpointing does: measured here
    on the smallest variant with benchmarks/checkpointing_cost.py's own measurement."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "checkpointing_cost.py"
    spec = importlib.util.spec_from_file_location("checkpointing_cost", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    per_sample = {}
    for on in (False, True):
        net = build_network({"type": "paragonsr2_realtime", "scale": 2, "use_checkpointing": on}).train()
        per_sample[on] = bench.peak_mib(net, 2, 32, cpu) - bench.peak_mib(net, 1, 32, cpu)
    share = per_sample[True] / per_sample[False]
    assert 0.2 < share < 0.8, per_sample
    for variant in V2_VARIANTS:
        ckpt = load_preset(f"paragonsr2_{variant}").checkpointing
        assert ckpt is not None and 0 < ckpt.memory_share < 1 and ckpt.step_time >= 1
