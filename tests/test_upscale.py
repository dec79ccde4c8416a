"""`autosr upscale`: folder = direct model output, seamless tiles, alpha / gray / 16-bit, no overwrites."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from autosr.archs import build_network
from autosr.cli import app
from autosr.errors import AutosrError
from autosr.safetensors_io import save_safetensors
from autosr.use.model_file import load_model, model_metadata
from autosr.use.upscale import Picture, find_model, plan_jobs, read_picture, upscale, upscale_tensor, write_picture


def _model_file(path, variant="nano", scale=2, content_aware=True):
    opts = {"type": f"paragonsr2_{variant}", "scale": scale, "use_content_aware": content_aware}
    model = build_network(opts)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    save_safetensors(model.state_dict(), path, model_metadata(opts, iteration=1000))
    return path


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_folder_equals_the_models_direct_output(tmp_path):
    mpath = _model_file(tmp_path / "m.safetensors")
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(_rgb(20, 24, 1)).save(src / "a.png")
    Image.fromarray(_rgb(17, 13, 2)).save(src / "sub" / "b.jpg", quality=95)
    (src / "sub" / "broken.png").write_bytes(b"not a png")
    result, info = upscale(mpath, src, tmp_path / "out", device="cpu", show_progress=False)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in result.done) == ["a.png", "sub/b.png"]
    assert [p.name for p, _ in result.failed] == ["broken.png"]
    model, _ = load_model(mpath)
    for name, out_name in (("a.png", "a.png"), ("sub/b.jpg", "sub/b.png")):
        lr = np.asarray(Image.open(src / name).convert("RGB"), np.float32) / 255.0
        with torch.no_grad():
            sr = model(torch.from_numpy(lr.transpose(2, 0, 1))[None]).clamp(0, 1)
        want = np.round(sr[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        got = np.asarray(Image.open(tmp_path / "out" / out_name))
        assert got.shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # rounding only


@pytest.mark.parametrize(("variant", "content_aware"), [("nano", True), ("nano", False), ("s", True)])
def test_tiled_equals_whole_within_one_level(tmp_path, variant, content_aware):
    """The content gain is computed once for the whole image (exactly), so tiling leaves only the
    receptive field beyond the overlap: far below 1/255 for these nets."""
    model, info = load_model(_model_file(tmp_path / "m.safetensors", variant, 3, content_aware))
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        whole = model(x)
        tiled = upscale_tensor(model, x, info.scale, tile=32, overlap=16)
        assert model.content_gain is not None or not content_aware  # restored after tiling
        assert (tiled - whole).abs().max() < 1 / 255
        one_tile = upscale_tensor(model, x, info.scale, tile=128)
        assert (one_tile - whole).abs().max() < 1e-5  # the held gain equals the model's own


def test_alpha_gray_and_16_bit_round_trip_with_their_modes(tmp_path):
    mpath = _model_file(tmp_path / "m.safetensors")
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (10, 12, 4), dtype=np.uint8)).save(src / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (10, 12), dtype=np.uint8)).save(src / "gray.png")
    Image.fromarray(rng.integers(0, 256, (10, 12, 2), dtype=np.uint8), mode="LA").save(src / "la.png")
    Image.fromarray(rng.integers(0, 65536, (10, 12), dtype=np.uint16)).save(src / "gray16.png")
    write_picture(src / "rgb16.png", Picture(rng.random((10, 12, 3), dtype=np.float32), None, 16))
    write_picture(src / "rgba16.png", Picture(rng.random((10, 12, 3), dtype=np.float32),
                                              rng.random((10, 12), dtype=np.float32), 16))
    result, _ = upscale(mpath, src, dst, device="cpu", show_progress=False)
    assert not result.failed and len(result.done) == 6
    modes = {p.name: Image.open(p).mode for p in dst.iterdir()}
    assert modes["rgba.png"] == "RGBA" and modes["gray.png"] == "L" and modes["la.png"] == "LA"
    assert modes["gray16.png"].startswith("I")  # Pillow's 16-bit gray
    for name, channels, alpha in (("rgb16.png", 3, False), ("rgba16.png", 3, True), ("gray16.png", 1, False)):
        pic = read_picture(dst / name)
        assert pic.bits == 16 and pic.color.shape == (20, 24, channels) and (pic.alpha is not None) == alpha
    # alpha: bicubic ×2 of the input's alpha, not touched by the model
    a_in = torch.from_numpy(np.asarray(Image.open(src / "rgba.png"))[..., 3].astype(np.float32) / 255)[None, None]
    want = torch.nn.functional.interpolate(a_in, scale_factor=2, mode="bicubic").clamp(0, 1)[0, 0].numpy()
    got = np.asarray(Image.open(dst / "rgba.png"))[..., 3].astype(np.float32) / 255
    assert np.abs(got - want).max() <= 0.5 / 255 + 1e-6


def test_16_bit_png_codec_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(4)
    for c in (3, 4):
        arr = rng.integers(0, 65536, (7, 9, c), dtype=np.uint16)
        pic = Picture(arr[..., :3].astype(np.float32) / 65535, arr[..., 3].astype(np.float32) / 65535 if c == 4 else None, 16)
        write_picture(tmp_path / f"x{c}.png", pic)
        back = read_picture(tmp_path / f"x{c}.png")
        planes = back.color if back.alpha is None else np.concatenate([back.color, back.alpha[..., None]], axis=2)
        assert np.array_equal(np.round(planes * 65535).astype(np.uint16), arr)


def test_inputs_are_never_overwritten(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_rgb(8, 8)).save(src / "a.png")
    with pytest.raises(AutosrError, match="is the INPUT"):
        plan_jobs(src, src)
    with pytest.raises(AutosrError, match="is the INPUT"):
        plan_jobs(src / "a.png", src / "a.png")
    with pytest.raises(AutosrError, match="would overwrite an input"):
        plan_jobs(src / "a.png", src)  # → in/a.png
    # an output folder inside the input: its files are not inputs, and no input is hit
    jobs = plan_jobs(src, src / "up")
    assert jobs == [(src / "a.png", src / "up" / "a.png")]
    before = (src / "a.png").read_bytes()
    mpath = _model_file(tmp_path / "m.safetensors")
    upscale(mpath, src, src / "up", device="cpu", show_progress=False)
    upscale(mpath, src, src / "up", device="cpu", show_progress=False)  # again: up/ is not read as input
    assert (src / "a.png").read_bytes() == before
    assert sorted(p.name for p in (src / "up").rglob("*")) == ["a.png"]


def test_run_folder_picks_the_best_then_the_newest(tmp_path):
    models = tmp_path / "run" / "models"
    models.mkdir(parents=True)
    for name in ("net_g_1000.safetensors", "net_g_2000.safetensors", "net_g_ema_2000.safetensors"):
        _model_file(models / name)
    assert find_model(tmp_path / "run")[0].name == "net_g_ema_2000.safetensors"
    _model_file(models / "net_g_best.safetensors")
    assert find_model(tmp_path / "run")[0].name == "net_g_best.safetensors"
    with pytest.raises(AutosrError, match="no such model file or run folder"):
        find_model(tmp_path / "nothing")


def test_cli_upscale(tmp_path):
    mpath = _model_file(tmp_path / "m.safetensors")
    Image.fromarray(_rgb(9, 11)).save(tmp_path / "a.png")
    runner = CliRunner()
    ok = runner.invoke(app, ["upscale", str(mpath), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--device", "cpu"])
    assert ok.exit_code == 0, ok.output
    assert Image.open(tmp_path / "b.png").size == (22, 18)
    bad = runner.invoke(app, ["upscale", str(mpath), str(tmp_path / "a.png"), str(tmp_path / "c.png"), "--device", "cpu", "--fp16"])
    assert bad.exit_code == 2 and "needs a CUDA device" in bad.output
    same = runner.invoke(app, ["upscale", str(mpath), str(tmp_path / "a.png"), str(tmp_path / "a.png")])
    assert same.exit_code == 2 and "is the INPUT" in same.output
    (tmp_path / "folder").mkdir()
    Image.fromarray(_rgb(9, 11)).save(tmp_path / "folder" / "ok.png")
    (tmp_path / "folder" / "bad.jpg").write_bytes(b"junk")
    partial = runner.invoke(app, ["upscale", str(mpath), str(tmp_path / "folder"), str(tmp_path / "o"), "--device", "cpu"])
    assert partial.exit_code == 1 and "bad.jpg" in partial.output
    assert (tmp_path / "o" / "ok.png").is_file()


def _encode_png16_with_filters(arr):
    """A 16-bit RGB PNG whose rows cycle through all five PNG filter types (what libpng writes)."""
    import struct
    import zlib

    h, w, c = arr.shape
    bpp = 2 * c
    rows = np.ascontiguousarray(arr.astype(">u2")).view(np.uint8).reshape(h, -1).astype(int)
    out, prev = bytearray(), [0] * rows.shape[1]
    for y in range(h):
        kind, cur = y % 5, rows[y].tolist()
        line = [kind]
        for i, v in enumerate(cur):
            a = cur[i - bpp] if i >= bpp else 0
            b, cc = prev[i], prev[i - bpp] if i >= bpp else 0
            p = a + b - cc
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - cc)
            pred = [0, a, b, (a + b) // 2, a if pa <= pb and pa <= pc else b if pb <= pc else cc][kind]
            line.append((v - pred) & 255)
        out += bytes(line)
        prev = cur

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b""))


def test_16_bit_png_reader_undoes_every_filter_type(tmp_path):
    arr = np.random.default_rng(5).integers(0, 65536, (11, 6, 3), dtype=np.uint16)
    (tmp_path / "f.png").write_bytes(_encode_png16_with_filters(arr))
    pic = read_picture(tmp_path / "f.png")
    assert pic.bits == 16 and pic.alpha is None
    assert np.array_equal(np.round(pic.color * 65535).astype(np.uint16), arr)


def test_running_out_of_gpu_memory_halves_the_tile_and_the_output_is_the_same(tmp_path, monkeypatch):
    """The tile estimate is rough and other programs share the card: an out-of-memory tile is halved
    (and stays halved for the next images); the result equals an untroubled run's."""
    import autosr.use.upscale as up

    mpath = _model_file(tmp_path / "m.safetensors")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        Image.fromarray(_rgb(150, 140, i)).save(src / f"{i}.png")
    calm, _ = upscale(mpath, src, tmp_path / "calm", device="cpu", tile=128, show_progress=False)
    real, tiles = up.upscale_tensor, []

    def tight(model, x, scale, *, tile, overlap=up.OVERLAP):
        tiles.append(tile)
        if tile > 64:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return real(model, x, scale, tile=tile, overlap=overlap)

    monkeypatch.setattr(up, "upscale_tensor", tight)
    result, _ = upscale(mpath, src, tmp_path / "tight", device="cpu", tile=128, show_progress=False)
    assert tiles == [128, 64, 64]  # the second image starts from the tile that worked
    assert result.notes == ["tile 128 ran out of GPU memory: 64 from now on"] and not result.failed
    for name in ("0.png", "1.png"):
        a = np.asarray(Image.open(tmp_path / "calm" / name)).astype(int)
        b = np.asarray(Image.open(tmp_path / "tight" / name)).astype(int)
        assert np.abs(a - b).max() <= 1  # tiling is seamless: any tile size gives the same picture
    monkeypatch.setattr(up, "MIN_TILE", 128)
    result, _ = upscale(mpath, src, tmp_path / "none", device="cpu", tile=128, show_progress=False)
    assert not result.done and len(result.failed) == 2 and "out of GPU memory even in 128-pixel tiles" in result.failed[0][1]


# ---------------------------------------------------------------- realtime…pro (the fork's family)


def _v2_net(variant, scale):
    model = build_network({"type": f"paragonsr2_{variant}", "scale": scale})
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.mark.parametrize("variant", ["realtime", "stream"])
def test_v2_tiles_equal_one_pass(variant):
    """No content gain and a receptive field inside the overlap: tiling changes float rounding only."""
    model = _v2_net(variant, 3)
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        assert (upscale_tensor(model, x, 3, tile=32, overlap=16) - model(x)).abs().max() < 1e-5


def test_a_fork_pth_upscales_from_the_cli_with_a_note(tmp_path):
    """The fork saves bare state dicts (no metadata): the network is read off the weights, and the user is
    told which values the file cannot carry."""
    model = _v2_net("photo", 2)
    mpath = tmp_path / "2xParagonSR2_Photo_fidelity.pth"
    torch.save({"params_ema": model.state_dict()}, mpath)
    Image.fromarray(_rgb(20, 27)).save(tmp_path / "a.png")
    res = CliRunner().invoke(app, ["upscale", str(mpath), str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "read as paragonsr2_photo ×2" in res.output and "upsampler_alpha 0.4" in res.output
    lr = np.asarray(Image.open(tmp_path / "a.png"), np.float32) / 255.0
    with torch.no_grad():
        sr = model(torch.from_numpy(lr.transpose(2, 0, 1))[None]).clamp(0, 1)
    want = np.round(sr[0].permute(1, 2, 0).numpy() * 255).astype(int)
    assert np.abs(np.asarray(Image.open(tmp_path / "b.png")).astype(int) - want).max() <= 1  # rounding only
