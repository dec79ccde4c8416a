"""From a folder of photos alone: init (no --lq) → train → report → upscale, end to end on a CPU, for the
fidelity style (bicubic made on the fly) and the realistic one (Real-ESRGAN-style degradations, GAN)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from autosr.cli import app

runner = CliRunner()
PHOTOS = Path(__file__).parent / "data" / "photos"
SMALL = ["--set", "datasets.train.lq_size=16", "--set", "datasets.train.batch_size_per_gpu=2", "--set", "train.total_iter=6",
         "--set", "val.val_freq=6", "--no-calibrate"]


@pytest.mark.parametrize("style", ["fidelity", "realistic"])
def test_photos_alone_init_train_report_upscale(tmp_path: Path, style: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("autosr.report.crops.CROP_HR", 32)  # the test photos are 96 px
    config = tmp_path / "auto.yml"
    result = runner.invoke(app, ["init", "--gt", str(PHOTOS / "train/hr"), "-o", str(config), "--style", style, *SMALL])
    assert result.exit_code == 0, result.output
    tree = yaml.safe_load(config.read_text())
    train = tree["datasets"]["train"]
    assert "dataroot_lq" not in train and tree["scale"] == 2
    assert train["type"] == ("pairedimagedataset" if style == "fidelity" else "realesrgandataset")
    val_lr = Path(tree["datasets"]["val"]["dataroot_lq"])
    held = list(val_lr.iterdir())
    assert len(held) == 1  # one of the six photos held out, its LR written once by init
    hr = Image.open(next(PHOTOS.glob(f"train/hr/{held[0].stem}.*")))
    assert Image.open(held[0]).size == (hr.width // 2, hr.height // 2)
    if style == "fidelity":  # bicubic: the held-out LR is the antialiased bicubic downscale, as paired sets are made
        offline = np.asarray(hr.convert("RGB").resize((hr.width // 2, hr.height // 2), Image.Resampling.BICUBIC, reducing_gap=None))
        assert np.array_equal(np.asarray(Image.open(held[0]).convert("RGB")), offline)
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "runs")]).exit_code == 0
    run = next((tmp_path / "runs").iterdir())
    assert runner.invoke(app, ["report", str(run), *(["--no-images"] if style == "fidelity" else [])]).exit_code == 0
    if style == "realistic":  # the result is the final model; the PSNR-best one is kept and shown beside it
        assert (run / "models" / "net_g_psnr_best.safetensors").is_file()
        assert "PSNR-best model" in (run / "report.html").read_text()
    out = tmp_path / "up"
    result = runner.invoke(app, ["upscale", str(run), str(PHOTOS / "val/lr"), str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {p.with_suffix(".png").name for p in (PHOTOS / "val/lr").iterdir()}
