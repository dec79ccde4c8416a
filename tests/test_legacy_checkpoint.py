"""A run folder written by autosr before the package was reorganised (tests/data/legacy_run, made by
make_fixture.py at commit bf49518: 8 of 16 iterations) resumes with today's code and ends where an
uninterrupted run of today's code ends: the checkpoint format is unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from autosr.safetensors_io import load_safetensors
from autosr.train_cmd import train_from_file

FIXTURE = Path(__file__).parent / "data" / "legacy_run"


def _config(root: Path) -> Path:
    config = root / "config.yml"
    config.write_text((FIXTURE / "config.yml.in").read_text().replace("{root}", FIXTURE.as_posix()))
    return config


def _train_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("kind") in ("train", "val")]


def test_a_run_folder_from_before_the_reorganisation_resumes_exactly(tmp_path: Path) -> None:
    config = _config(tmp_path)
    resumed, straight = tmp_path / "resumed", tmp_path / "straight"
    shutil.copytree(FIXTURE / "run", resumed)
    legacy_rows = _train_rows(resumed / "legacy")
    assert train_from_file(config, out_dir=resumed, resume=True, overrides=[], dry_run=False, quiet=True) == 0
    assert train_from_file(config, out_dir=straight, resume=None, overrides=[], dry_run=False, quiet=True) == 0

    fields = ("iter", "kind", "loss", "lr", "grad_norm", "psnr")
    rows = lambda run: [tuple(r.get(f) for f in fields) for r in _train_rows(run / "legacy")]  # noqa: E731
    # The first 8 iterations as today's code computes them, against the file the old code wrote:
    # equal to the last bit on the machine that made the fixture; another CPU's kernels may round differently.
    same_machine = rows(straight)[: len(legacy_rows)] == [tuple(r.get(f) for f in fields) for r in legacy_rows]
    tolerance = 0.0 if same_machine else 1e-5
    a = load_safetensors(straight / "legacy" / "models" / "net_g_16.safetensors")
    b = load_safetensors(resumed / "legacy" / "models" / "net_g_16.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=tolerance)
    if same_machine:
        assert rows(straight) == rows(resumed)
    events = [json.loads(line) for line in (resumed / "legacy" / "events.jsonl").read_text().splitlines()]
    assert any(e["key"] == "resume" and e["new"] == 8 for e in events)
