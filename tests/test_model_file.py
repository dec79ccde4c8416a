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
