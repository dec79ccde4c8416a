"""`autosr export`: ONNX matches PyTorch at two sizes; the standalone safetensors copy."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from autosr.archs import build_network
from autosr.archs.paragonsr2 import VARIANTS
from autosr.cli import app
from autosr.errors import AutosrError
from autosr.safetensors_io import read_safetensors_metadata, save_safetensors
from autosr.use.export import FP16_TOLERANCE, TOLERANCE, export
from autosr.use.model_file import load_model, model_metadata

pytest.importorskip("onnxruntime")


def _model_file(path, variant="nano", scale=2, iteration=40000, alpha=None):
    opts = {"type": f"paragonsr2_{variant}", "scale": scale}
    model = build_network(opts)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        if alpha is not None:
            model.base.alpha.fill_(alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(model.state_dict(), path, model_metadata(opts, iteration=iteration, metrics={"psnr": 30.0}))
    return path


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_onnx_of_nano_matches_pytorch_at_two_sizes(tmp_path, scale):
    mpath = _model_file(tmp_path / "m.safetensors", "nano", scale, alpha=0.65)
    lines: list[str] = []
    result = export(mpath, onnx_path=tmp_path / "m.onnx", say=lines.append)
    assert len(result.checks) == 2 and all(d <= TOLERANCE for _, d in result.checks)
    assert sum("max abs difference" in line for line in lines) == 2


@pytest.mark.slow
@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "nano"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_onnx_of_every_variant_matches_pytorch(tmp_path, variant, scale):
    result = export(_model_file(tmp_path / "m.safetensors", variant, scale), onnx_path=tmp_path / "m.onnx", say=lambda _: None)
    assert all(d <= TOLERANCE for _, d in result.checks)


@pytest.mark.parametrize(("variant", "scale"), [("nano", 2), ("s", 3)])
def test_fp16_onnx_is_half_the_size_and_within_one_8bit_level(tmp_path, variant, scale):
    import onnx

    mpath = _model_file(tmp_path / "m.safetensors", variant, scale)
    lines: list[str] = []
    full = export(mpath, onnx_path=tmp_path / "32.onnx", say=lambda _: None)
    half = export(mpath, onnx_path=tmp_path / "16.onnx", fp16=True, say=lines.append)
    assert len(half.checks) == 2 and all(d <= FP16_TOLERANCE for _, d in half.checks)
    assert all(d > TOLERANCE / 100 for _, d in half.checks)  # it really ran in fp16
    graph, graph32 = (onnx.load(str(tmp_path / f)).graph for f in ("16.onnx", "32.onnx"))
    fp16 = onnx.TensorProto.FLOAT16
    assert graph.input[0].type.tensor_type.elem_type == graph.output[0].type.tensor_type.elem_type == fp16
    assert {w.data_type for w in graph.initializer} == {fp16}  # every weight
    assert sum(len(w.raw_data) for w in graph.initializer) * 2 == sum(len(w.raw_data) for w in graph32.initializer)
    assert "fp16" in lines[0] and full.checks[0][1] <= TOLERANCE
    # the exported model file is untouched: the copy was halved, not the loaded model
    model, _ = load_model(mpath)
    assert next(model.parameters()).dtype == torch.float32


def test_static_onnx(tmp_path):
    import onnx

    result = export(_model_file(tmp_path / "m.safetensors"), onnx_path=tmp_path / "s.onnx", static=(16, 20), say=lambda _: None)
    assert [size for size, _ in result.checks] == [(16, 20)]
    dims = [d.dim_value for d in onnx.load(str(tmp_path / "s.onnx")).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 20]


def test_standalone_safetensors_from_a_run_folder(tmp_path):
    run = tmp_path / "my run"
    _model_file(run / "models" / "net_g_best.safetensors", "nano", 2, iteration=42500, alpha=0.7)
    out = tmp_path / "share"
    out.mkdir()
    result = export(run, safetensors_path=out, say=lambda _: None)
    assert result.safetensors == out / "2x_my_run_nano_42k.safetensors"
    meta = read_safetensors_metadata(result.safetensors)
    assert meta["name"] == "my_run" and meta["iter"] == "42500" and meta["network_type"] == "paragonsr2_nano"
    assert meta["best_metrics"] == '{"psnr": 30.0}'
    copy, _ = load_model(result.safetensors)
    original, _ = load_model(run / "models" / "net_g_best.safetensors")
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(copy(x), original(x))
    named = export(run, safetensors_path=tmp_path / "x.safetensors", name="Mine", say=lambda _: None)
    assert read_safetensors_metadata(named.safetensors)["name"] == "Mine"


def test_refusals(tmp_path):
    mpath = _model_file(tmp_path / "m.safetensors")
    with pytest.raises(AutosrError, match="nothing to export"):
        export(mpath)
    with pytest.raises(AutosrError, match="is the model being exported"):
        export(mpath, safetensors_path=mpath)
    with pytest.raises(AutosrError, match="opset"):
        export(mpath, onnx_path=tmp_path / "a.onnx", opset=13)
    with pytest.raises(AutosrError, match="--fp16 is for the ONNX file"):
        export(mpath, safetensors_path=tmp_path, fp16=True)


def test_cli_export(tmp_path):
    mpath = _model_file(tmp_path / "m.safetensors", "nano", 3)
    res = CliRunner().invoke(app, ["export", str(mpath), "--onnx", str(tmp_path / "m.onnx"), "--safetensors", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert res.output.count("max abs difference") == 2
    res = CliRunner().invoke(app, ["export", str(mpath), "--onnx", str(tmp_path / "h.onnx"), "--fp16"])
    assert res.exit_code == 0 and "fp16" in res.output, res.output
    assert (tmp_path / "3x_m_nano_40k.safetensors").is_file()
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "missing.safetensors"), "--onnx", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 2 and "no such model file" in bad.output


def test_onnx_without_its_packages_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    """A plain `pip install autosr` has neither onnx nor onnxruntime (an extra): say so before writing."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "onnxruntime") else real(name, *a))
    mpath = _model_file(tmp_path / "m.safetensors")
    res = CliRunner().invoke(app, ["export", str(mpath), "--onnx", str(tmp_path / "out" / "m.onnx")])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "needs onnx and onnxruntime" in res.output and 'autosr[onnx]' in res.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- realtime…pro (the fork's family)


def _v2_model_file(path, variant, scale, **overrides):
    opts = {"type": f"paragonsr2_{variant}", "scale": scale, **overrides}
    model = build_network(opts)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    save_safetensors(model.state_dict(), path, model_metadata(opts, iteration=20000))
    return path


@pytest.mark.parametrize(("variant", "scale"), [("realtime", 2), ("stream", 3), ("photo", 4)])
def test_onnx_of_v2_matches_pytorch(tmp_path, variant, scale):
    """Attention exported as it trained (sdpa; export_safe would be another network), window 8 here to
    keep the trace short; every size goes through the recorded pad, roll and windows."""
    extra = {"window_size": 8} if variant == "photo" else {}
    result = export(_v2_model_file(tmp_path / "m.safetensors", variant, scale, **extra), onnx_path=tmp_path / "m.onnx",
                    say=lambda _: None)
    assert len(result.checks) == 2 and all(d <= TOLERANCE for _, d in result.checks)


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "overrides"), [("photo", {}), ("pro", {}), ("pro", {"export_safe": True})])
def test_onnx_of_the_full_attention_variants(tmp_path, variant, overrides):
    result = export(_v2_model_file(tmp_path / "m.safetensors", variant, 2, **overrides), onnx_path=tmp_path / "m.onnx",
                    say=lambda _: None)
    assert all(d <= TOLERANCE for _, d in result.checks)


def test_fp16_onnx_of_stream_within_one_8bit_level(tmp_path):
    half = export(_v2_model_file(tmp_path / "m.safetensors", "stream", 2), onnx_path=tmp_path / "h.onnx", fp16=True,
                  say=lambda _: None)
    assert all(d <= FP16_TOLERANCE for _, d in half.checks)


def test_a_fork_file_exports_to_a_self_describing_copy(tmp_path):
    model = build_network({"type": "paragonsr2_realtime", "scale": 4})
    torch.save(model.state_dict(), tmp_path / "4xParagonSR2_Realtime.pth")
    lines: list[str] = []
    result = export(tmp_path / "4xParagonSR2_Realtime.pth", safetensors_path=tmp_path / "out.safetensors", say=lines.append)
    assert lines[0].startswith("note: 4xParagonSR2_Realtime.pth has no autosr metadata")
    meta = read_safetensors_metadata(result.safetensors)
    assert meta["arch"] == "paragonsr2_v2" and meta["network_type"] == "paragonsr2_realtime" and meta["scale"] == "4"
    copy, info = load_model(result.safetensors)
    assert info.notes == ()  # the copy says what it is
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(copy(x), model.eval()(x))
