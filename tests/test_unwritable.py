"""Every path a command writes, in a folder this user cannot write (simulated: the tests run as root, for
whom every folder is writable) or under a regular file (a real error for any user): one line naming the
folder, exit 2, nothing written. (train --out, upscale OUTPUT, export --onnx/--safetensors, report --html,
demo --dir, init -o.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autosr.cli import app

runner = CliRunner()
PHOTOS = Path(__file__).parent / "data" / "photos"


@pytest.fixture
def read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder `ro/` that os.access reports as not writable (what chmod 555 does for a non-root user)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(path)).resolve() == folder.resolve() and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config and a finished tiny run (for the commands that read a run)."""
    root = tmp_path_factory.mktemp("run")
    config = root / "cfg.yml"
    args = ["init", "--no-calibrate", "--gt", str(PHOTOS / "train/hr"), "--lq", str(PHOTOS / "train/lr"), "-o", str(config),
            "--set", "train.total_iter=2", "--set", "datasets.train.lq_size=16", "--set", "datasets.train.batch_size_per_gpu=2",
            "--set", "val.val_freq=2"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, ["train", str(config), "--out", str(root / "runs")]).exit_code == 0
    return config, next((root / "runs").iterdir())


def one_line_naming(result: object, folder: Path) -> None:
    output = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, output  # type: ignore[attr-defined]
    assert "Traceback" not in output and "unexpected" not in output, output
    assert str(folder.resolve()).replace(" ", "") in "".join(output.split()), output


def test_train_out(trained: tuple[Path, Path], read_only: Path) -> None:
    one_line_naming(runner.invoke(app, ["train", str(trained[0]), "--out", str(read_only / "runs")]), read_only)
    assert list(read_only.iterdir()) == []


def test_train_out_under_a_file(trained: tuple[Path, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_naming(runner.invoke(app, ["train", str(trained[0]), "--out", str(blocker / "runs")]), blocker)


def test_upscale_output(trained: tuple[Path, Path], read_only: Path) -> None:
    one_line_naming(runner.invoke(app, ["upscale", str(trained[1]), str(PHOTOS / "val/lr"), str(read_only / "out")]), read_only)
    assert list(read_only.iterdir()) == []
    one_line_naming(runner.invoke(app, ["upscale", str(trained[1]), str(PHOTOS / "val/lr/skimage-rocket.png"),
                                        str(read_only / "one.png")]), read_only)


def test_export_paths(trained: tuple[Path, Path], read_only: Path) -> None:
    one_line_naming(runner.invoke(app, ["export", str(trained[1]), "--safetensors", str(read_only / "m.safetensors")]), read_only)
    pytest.importorskip("onnx")
    one_line_naming(runner.invoke(app, ["export", str(trained[1]), "--onnx", str(read_only / "m.onnx")]), read_only)
    assert list(read_only.iterdir()) == []


def test_report_html(trained: tuple[Path, Path], read_only: Path) -> None:
    one_line_naming(runner.invoke(app, ["report", str(trained[1]), "--html", str(read_only / "r.html")]), read_only)
    one_line_naming(runner.invoke(app, ["report", str(trained[1]), "--html", str(read_only)]), read_only)
    assert list(read_only.iterdir()) == []


def test_demo_dir(read_only: Path) -> None:
    one_line_naming(runner.invoke(app, ["demo", "--dir", str(read_only / "demo")]), read_only)
    assert list(read_only.iterdir()) == []


def test_init_output(read_only: Path) -> None:
    result = runner.invoke(app, ["init", "--no-calibrate", "--gt", str(PHOTOS / "train/hr"), "--lq", str(PHOTOS / "train/lr"),
                                 "-o", str(read_only / "auto.yml")])
    one_line_naming(result, read_only)
    assert list(read_only.iterdir()) == []
