from __future__ import annotations

from pathlib import Path

import pytest

from autosr.synthetic import write_pairs


@pytest.fixture(scope="session")
def pair_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small ×2 paired set (HR 192×160) shared by tests that only read it."""
    root = tmp_path_factory.mktemp("pairs")
    return write_pairs(root, 12, scale=2, size=(192, 160), seed=3)
