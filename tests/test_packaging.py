"""The wheel ships templates/ and presets/, and an installed copy finds them (not the repo's)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    pytest.importorskip("hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
                   check=True, capture_output=True)
    return next(out.glob("autosr-*.whl"))


def test_wheel_contains_the_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "autosr/_data/templates/trainner.yml.j2" in names
    for variant in ("nano", "micro", "tiny", "xs", "s", "m", "l", "xl"):
        assert f"autosr/_data/presets/{variant}.yml" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_finds_its_own_data(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from autosr.resources import data_dir; "
            "from autosr.plan.presets import load_preset; print(data_dir('presets')); print(load_preset('xl').arch)")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, capture_output=True, text=True, check=True)
    presets_dir, arch = result.stdout.split()
    assert Path(presets_dir).is_relative_to(target) and arch == "paragonsr2_xl"
