from __future__ import annotations

from pathlib import Path

import pytest

from autosr.synthetic import write_pairs


@pytest.fixture(scope="session")
def pair_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small ×2 paired set (HR 192×160) shared by tests that only read it."""
    root = tmp_path_factory.mktemp("pairs")
    return write_pairs(root, 12, scale=2, size=(192, 160), seed=3)


@pytest.fixture(scope="session")
def pretrained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random stand-ins for every pretrained weight file, at their real paths (tests/pretrained_files.py)."""
    from pretrained_files import write_all

    return write_all(tmp_path_factory.mktemp("pretrained"))


@pytest.fixture
def pretrained(pretrained_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME / HF_HOME pointed at the random stand-ins for this test."""
    from pretrained_files import use

    use(pretrained_home, monkeypatch)
    return pretrained_home
