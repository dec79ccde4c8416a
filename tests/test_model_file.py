"""Self-describing model files: metadata round-trip, rebuilding from the file alone, older files."""

from __future__ import annotations

import json

import pytest
import torch

from autosr import __version__
from autosr.archs import build_network
from autosr.archs.paragonsr2 import VARIANTS
from autosr.errors import AutosrError
from autosr.safetensors_io import load_safetensors, read_safetensors_metadata, save_safetensors
from autosr.train.checkpoint import CheckpointStore
from autosr.use.model_file import TRAINNER_KEY, load_model, model_metadata


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights everywhere, so a mismatched load would show in the output."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model.eval()


def test_metadata_round_trips(tmp_path):
    opts = {"type": "paragonsr2_nano", "scale": 3, "num_feat": 16, "upsampler_alpha": 0.4}
    meta = model_metadata(opts, iteration=12000, metrics={"psnr": 31.5, "ssim": 0.9},
                          training={"lr": 2e-4, "batch_size": 8, "dataset": {"gt": "x"}})
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert meta["network_type"] == "paragonsr2_nano" and meta["variant"] == "nano" and meta["arch"] == "paragonsr2"
    assert meta["scale"] == "3" and meta["in_chans"] == meta["out_chans"] == "3" and meta["iter"] == "12000"
    assert meta["autosr_version"] == __version__
    # only what differs from the variant's default (upsampler_alpha 0.4 is nano's)
    assert json.loads(meta["network_overrides"]) == {"num_feat": 16}
    # traiNNer-redux's convention: every constructor value as one JSON under "metadata"
    assert json.loads(meta[TRAINNER_KEY]) == {**VARIANTS["nano"], "scale": 3, "in_chans": 3, "num_feat": 16}
    model = _trained_like(build_network(opts))
    save_safetensors(model.state_dict(), tmp_path / "m.safetensors", meta)
    assert read_safetensors_metadata(tmp_path / "m.safetensors") == meta
    _, info = load_model(tmp_path / "m.safetensors")
    assert info.metrics == {"psnr": 31.5, "ssim": 0.9}
    assert info.training == {"lr": 2e-4, "batch_size": 8, "dataset": {"gt": "x"}}
    assert info.iteration == 12000 and info.scale == 3 and info.variant == "nano"
    assert info.network_opts == {"type": "paragonsr2_nano", "scale": 3, "num_feat": 16}


@pytest.mark.parametrize(("variant", "scale"), [("nano", 2), ("micro", 4), ("s", 3)])
def test_a_model_file_alone_rebuilds_the_network(tmp_path, variant, scale):
    opts = {"type": f"paragonsr2_{variant}", "scale": scale, "upsampler_alpha": 0.7, "band_kernel": 5}
    model = _trained_like(build_network(opts))
    path = tmp_path / "m.safetensors"
    save_safetensors(model.state_dict(), path, model_metadata(opts, iteration=5, metrics=None, training=None))
    rebuilt, info = load_model(path)
    assert float(rebuilt.base.alpha) == pytest.approx(0.7)
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    assert info.scale == scale and info.metrics == {} and info.training == {}


def test_the_alpha_buffer_alone_sets_the_sharpening(tmp_path):
    """The weights determine the network: alpha comes from the file even if the metadata lacks it."""
    model = _trained_like(build_network({"type": "paragonsr2_nano", "scale": 2}))
    model.base.alpha.fill_(0.9)
    path = tmp_path / "m.safetensors"
    save_safetensors(model.state_dict(), path, model_metadata({"type": "paragonsr2_nano", "scale": 2}, iteration=1))
    rebuilt, _ = load_model(path)
    assert float(rebuilt.base.alpha) == pytest.approx(0.9)
    x = torch.rand(1, 3, 9, 9)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_an_older_file_without_the_alpha_buffer_still_loads(tmp_path):
    opts = {"type": "paragonsr2_micro", "scale": 2, "upsampler_alpha": 0.3}
    model = _trained_like(build_network(opts))
    old = {k: v for k, v in model.state_dict().items() if k != "base.alpha"}
    path = tmp_path / "old.safetensors"
    save_safetensors(old, path, model_metadata(opts, iteration=1))
    rebuilt, _ = load_model(path)
    assert float(rebuilt.base.alpha) == pytest.approx(0.3)
    x = torch.rand(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
    # plain load_state_dict (strict) accepts it too; an iter-only file loads with a run's network_g
    fresh = build_network(opts)
    fresh.load_state_dict(old)
    save_safetensors(old, tmp_path / "iter_only.safetensors", {"iter": "7"})
    again, info = load_model(tmp_path / "iter_only.safetensors", network_opts=opts)
    assert info.iteration == 7 and float(again.base.alpha) == pytest.approx(0.3)


def test_foreign_and_mismatched_files_are_one_clear_error(tmp_path):
    save_safetensors({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors", {"iter": "1"})
    with pytest.raises(AutosrError, match="not an autosr ParagonSR2 model file"):
        load_model(tmp_path / "foreign.safetensors")
    save_safetensors({"w": torch.zeros(2)}, tmp_path / "wrong.safetensors",
                     model_metadata({"type": "paragonsr2_nano", "scale": 2}, iteration=1))
    with pytest.raises(AutosrError, match="do not fit paragonsr2_nano ×2"):
        load_model(tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(AutosrError):
        load_model(tmp_path / "junk.safetensors")
    with pytest.raises(AutosrError, match="no such model file"):
        load_model(tmp_path / "missing.safetensors")
    with pytest.raises(AutosrError, match="not a ParagonSR2 variant"):
        model_metadata({"type": "esrgan", "scale": 2}, iteration=1)


def test_checkpoint_store_writes_the_metadata(tmp_path):
    opts = {"type": "paragonsr2_nano", "scale": 2}
    model = _trained_like(build_network(opts))
    store = CheckpointStore(tmp_path / "run")
    meta = model_metadata(opts, iteration=100, metrics=None, training={"total_iter": 1000})
    store.save(100, {"iter": 100}, model.state_dict(), model.state_dict(), metadata=meta)
    assert read_safetensors_metadata(store.model_path(100)) == meta
    assert read_safetensors_metadata(store.model_path(100, ema=True)) == meta
    best_meta = model_metadata(opts, iteration=100, metrics={"psnr": 30.0}, training={"total_iter": 1000})
    store.mark_best(100, {"psnr": 30.0}, metadata=best_meta)
    assert read_safetensors_metadata(store.best_model_path)["best_metrics"] == json.dumps({"psnr": 30.0})
    assert load_safetensors(store.best_model_path).keys() == model.state_dict().keys()
    # without metadata: iter only, as before
    store.save(200, {"iter": 200}, model.state_dict())
    assert read_safetensors_metadata(store.model_path(200)) == {"iter": "200"}
    store.mark_best(200, weights=model.state_dict())
    assert read_safetensors_metadata(store.best_model_path) == {"iter": "200"}


# ---------------------------------------------------------------- realtime…pro (the fork's family)


@pytest.mark.parametrize(("variant", "scale"), [("realtime", 2), ("stream", 4), ("photo", 3), ("pro", 2)])
def test_a_v2_model_file_alone_rebuilds_the_network(tmp_path, variant, scale):
    alpha = 0.25 if variant == "stream" else 0.0  # off each variant's default (stream's is 0.0)
    opts = {"type": f"paragonsr2_{variant}", "scale": scale, "upsampler_alpha": alpha}
    if variant in ("photo", "pro"):
        opts["window_size"] = 8  # not in the weights: only the metadata can say it
    model = _trained_like(build_network(opts))
    meta = model_metadata(opts, iteration=300)
    assert meta["arch"] == "paragonsr2_v2" and meta["variant"] == variant
    assert json.loads(meta["network_overrides"]) == {k: v for k, v in opts.items() if k not in ("type", "scale")}
    hyper = json.loads(meta[TRAINNER_KEY])  # every value the variant's constructor takes
    assert hyper["scale"] == scale and hyper["upsampler_alpha"] == alpha and "num_feat" not in hyper
    path = tmp_path / "m.safetensors"
    save_safetensors(model.state_dict(), path, meta)
    rebuilt, info = load_model(path)
    assert rebuilt.base.alpha == alpha and info.network_opts == opts and info.notes == ()
    x = torch.rand(1, 3, 13, 11)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def _fork_like(variant: str, scale: int, **overrides: object) -> torch.nn.Module:
    """A network as the fork builds it: its state dict has the fork's names and shapes (tests/test_arch_v2.py)."""
    return _trained_like(build_network({"type": f"paragonsr2_{variant}", "scale": scale, **overrides}))


@pytest.mark.parametrize("wrap", ["bare.safetensors", "bare.pth", "params_ema.pth", "params.pth"])
def test_a_fork_file_without_metadata_is_read_off_its_weights(tmp_path, wrap):
    model = _fork_like("photo", 2)
    state = model.state_dict()
    path = tmp_path / f"2xParagonSR2_Photo_{wrap}"
    if wrap.endswith(".safetensors"):
        save_safetensors(state, path, {})
    elif wrap.startswith("bare"):
        torch.save(dict(state), path)
    else:  # traiNNer's {"metadata": …, "params": …}; a params_ema file may hold the raw weights too
        other = {k: torch.zeros_like(v) for k, v in state.items()}
        torch.save({"metadata": {"iter": 5}, wrap.split(".")[0]: dict(state),
                    **({"params": other} if wrap.startswith("params_ema") else {})}, path)
    rebuilt, info = load_model(path)
    assert info.network_opts == {"type": "paragonsr2_photo", "scale": 2} and info.iteration is None
    assert len(info.notes) == 1 and "upsampler_alpha 0.4 and window_size 16" in info.notes[0]
    x = torch.rand(1, 3, 12, 18)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_fork_files_keep_what_their_weights_say(tmp_path):
    for variant, scale, extra in (("realtime", 3, {"in_chans": 1}), ("pro", 4, {"export_safe": True})):
        model = _fork_like(variant, scale, **extra)
        save_safetensors(model.state_dict(), tmp_path / "f.safetensors", {})
        rebuilt, info = load_model(tmp_path / "f.safetensors")
        assert info.network_opts == {"type": f"paragonsr2_{variant}", "scale": scale, **extra}
        x = torch.rand(1, info.in_chans, 9, 10)
        with torch.no_grad():
            assert torch.equal(rebuilt(x), model(x))


def test_a_fork_body_no_variant_has_is_one_clear_error(tmp_path):
    from autosr.archs.paragonsr2_v2 import ParagonSR2V2

    odd = ParagonSR2V2(scale=2, num_feat=24, num_groups=1, num_blocks=2, variant="stream")
    save_safetensors(odd.state_dict(), tmp_path / "odd.safetensors", {})
    with pytest.raises(AutosrError, match="24 features and 1×2 blocks, which no registered variant has"):
        load_model(tmp_path / "odd.safetensors")
    torch.save({"params": {"w": torch.zeros(2)}}, tmp_path / "foreign.pth")
    with pytest.raises(AutosrError, match="not an autosr ParagonSR2 model file"):
        load_model(tmp_path / "foreign.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a model")
    with pytest.raises(AutosrError, match="not a readable weights file"):
        load_model(tmp_path / "junk.pth")
