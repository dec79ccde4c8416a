"""Faults in the user's input, each refused with one line and exit 2: same HR/LR folder, scales train cannot
train, list indices past the end, unwritable folders; values left stale by --set train.total_iter; the demo
never deleting an earlier run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autosr.cli import app
from autosr.config import stale_after_overrides
from autosr.init_cmd import TRAIN_SCALES, run_init
from autosr.synthetic import write_pairs

runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def one_line(output: str) -> str:
    lines = [x for x in output.replace("\r", "").split("\n") if x.strip()]
    assert "Traceback" not in output and "unexpected" not in output, output
    return " ".join(lines)  # rich may wrap one long line at the terminal width


def squeezed(text: str) -> str:
    return "".join(text.split())  # paths wrapped by rich compare whole


def init(*args: str) -> Any:
    return runner.invoke(app, ["init", "--no-calibrate", *args])


# ---- 1. HR and LR: different folders, a scale train supports -------------------------------------


def test_init_same_folder_for_hr_and_lr_is_refused(tmp_path, pair_set):
    hr, _ = pair_set
    out = tmp_path / "a.yml"
    result = init("--gt", str(hr), "--lq", str(hr), "-o", str(out))
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert "same folder" in line and "different folders" in line and squeezed(str(hr.resolve())) in squeezed(line)
    assert list(tmp_path.iterdir()) == []
    # the same folder through a symlink too
    link = tmp_path / "link"
    link.symlink_to(hr, target_is_directory=True)
    result = init("--gt", str(hr), "--lq", str(link), "-o", str(out))
    assert result.exit_code == 2 and "same folder" in one_line(result.output)
    assert not out.exists()


def test_init_same_validation_folder_is_refused(tmp_path, pair_set):
    hr, lr = pair_set
    result = init("--gt", str(hr), "--lq", str(lr), "--val-gt", str(lr), "--val-lq", str(lr), "-o", str(tmp_path / "a.yml"))
    assert result.exit_code == 2, result.output
    assert "--val-gt and --val-lq are the same folder" in one_line(result.output)


def test_train_scales_match_the_network():
    from autosr.archs.paragonsr2 import SCALES

    assert tuple(TRAIN_SCALES) == tuple(SCALES)


@pytest.mark.parametrize("scale", ["1", "5", "8"])
def test_init_scale_train_cannot_train_is_refused(tmp_path, pair_set, scale):
    hr, lr = pair_set
    result = init("--gt", str(hr), "--lq", str(lr), "--scale", scale, "-o", str(tmp_path / "a.yml"))
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert f"--scale {scale}" in line and "2, 3, 4" in line
    assert list(tmp_path.iterdir()) == []


def test_init_scale_train_can_train_is_accepted(tmp_path, pair_set):
    hr, lr = pair_set
    result = init("--gt", str(hr), "--lq", str(lr), "--scale", "2", "-o", str(tmp_path / "a.yml"))
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "a.yml").read_text())["scale"] == 2


@pytest.mark.parametrize("factor", [1, 5])
def test_init_measured_ratio_train_cannot_train_is_refused(tmp_path, factor):
    hr, lr = write_pairs(tmp_path / "data", 4, scale=factor, size=(160, 160), seed=1)
    out = tmp_path / "a.yml"
    result = init("--gt", str(hr), "--lq", str(lr), "-o", str(out))
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert f"×{factor} the size" in line and "supports only ×2, 3, 4" in line
    assert not out.exists()


# ---- 2. values stale after --set train.total_iter ----------------------------------------------------


def planned_tree(total: int = 40000) -> dict[str, Any]:
    """The length-dependent part of what init writes for `total` iterations."""
    return {
        "name": "t",
        "scale": 2,
        "train": {"total_iter": total, "warmup_iter": 1000,
                  "scheduler": {"type": "MultiStepLR", "milestones": [30000, 35000], "gamma": 0.5}},
        "val": {"val_enabled": True, "val_freq": 1600},
        "logger": {"print_freq": 100, "save_checkpoint_freq": 1600},
    }


def test_stale_nothing_when_total_iter_not_overridden():
    assert stale_after_overrides(planned_tree(), []) == []
    assert stale_after_overrides(planned_tree(), ["train.warmup_iter=5"]) == []


def test_stale_nothing_when_everything_fits():
    assert stale_after_overrides(planned_tree(), ["train.total_iter=60000"]) == []
    assert stale_after_overrides(planned_tree(), ["train.total_iter=36000"]) == []


def test_stale_lines_name_key_value_total_and_fix():
    lines = stale_after_overrides(planned_tree(), ["train.total_iter=1000"])
    assert len(lines) == 4, lines
    by_key = {line.split("=", 1)[0]: line for line in lines}
    assert set(by_key) == {"train.warmup_iter", "train.scheduler.milestones", "val.val_freq", "logger.save_checkpoint_freq"}
    for key, line in by_key.items():
        assert "train.total_iter=1000" in line and f"--set {key}=" in line.replace("'", ""), line
    warm = by_key["train.warmup_iter"]
    assert warm.startswith("train.warmup_iter=1000 ") and warm.endswith("--set train.warmup_iter=100")
    assert "[30000,35000]" in by_key["train.scheduler.milestones"]
    assert "'train.scheduler.milestones=[750,875]'" in by_key["train.scheduler.milestones"]
    assert "val.val_freq=1600" in by_key["val.val_freq"] and "--set val.val_freq=40" in by_key["val.val_freq"]
    assert "--set logger.save_checkpoint_freq=40" in by_key["logger.save_checkpoint_freq"]
    assert all("\n" not in line for line in lines)


def test_stale_partial_and_thresholds():
    # 2000 iterations: warm-up 1000 is half the run, milestones past the end; val every 1600 still fits
    lines = stale_after_overrides(planned_tree(), ["train.total_iter=2000"])
    assert sorted(line.split("=", 1)[0] for line in lines) == ["train.scheduler.milestones", "train.warmup_iter"]
    # a milestone equal to total_iter is stale (it never fires); val_freq equal to it is not
    tree = planned_tree()
    tree["val"]["val_freq"] = tree["logger"]["save_checkpoint_freq"] = 30000
    lines = stale_after_overrides(tree, ["train.total_iter=30000"])
    assert [line.split("=", 1)[0] for line in lines] == ["train.scheduler.milestones"]


def test_stale_skips_values_set_in_the_same_command_and_reads_either_tree():
    sets = ["train.total_iter=1000", "val.val_freq=50", "train.scheduler.milestones=[600,800]"]
    lines = stale_after_overrides(planned_tree(), sets)
    assert sorted(line.split("=", 1)[0] for line in lines) == ["logger.save_checkpoint_freq", "train.warmup_iter"]
    assert "logger.save_checkpoint_freq=50" in [line for line in lines if line.startswith("logger")][0]  # the new val_freq
    from autosr.config import apply_overrides

    assert stale_after_overrides(apply_overrides(planned_tree(), sets), sets) == lines  # the tree after the overrides


def test_stale_cosine_t_max_and_no_warmup():
    tree = planned_tree()
    tree["train"]["scheduler"] = {"type": "CosineAnnealingLR", "T_max": 40000}
    tree["train"]["warmup_iter"] = -1
    lines = stale_after_overrides(tree, ["train.total_iter=10000"])
    assert [line.split("=", 1)[0] for line in lines] == ["train.scheduler.T_max"]
    assert "--set train.scheduler.T_max=10000" in lines[0]


def test_stale_on_a_config_init_wrote(tmp_path, pair_set):
    hr, lr = pair_set
    out = tmp_path / "a.yml"
    run_init(gt=hr, lq=lr, arch="paragonsr2_nano", val_gt=None, val_lq=None, output=out, name="t", scale=None,
             overrides=["train.total_iter=4000"], flavor="fork", force=True, print_only=False, explain=False, sample=64)
    data = yaml.safe_load(out.read_text())
    assert stale_after_overrides(data, ["train.total_iter=4000"]) == []
    keys = {line.split("=", 1)[0] for line in stale_after_overrides(data, ["train.total_iter=20"])}
    assert {"train.scheduler.milestones", "val.val_freq", "logger.save_checkpoint_freq"} <= keys


# ---- 3. the demo: never deletes an earlier run; an unwritable --dir is one line --------------------------


@pytest.fixture
def fake_train(monkeypatch):
    """train_from_file stand-in: makes the run folder and a marker, fails (so the demo stops there)."""
    import autosr.train_cmd

    calls: list[str] = []

    def fake(config: Path, *, out_dir: Path, resume: Any, overrides: list[str], dry_run: bool) -> int:
        name = yaml.safe_load(Path(config).read_text())["name"]
        (out_dir / name).mkdir(parents=True)
        (out_dir / name / "marker").write_text(name)
        calls.append(name)
        return 1

    monkeypatch.setattr(autosr.train_cmd, "train_from_file", fake)
    monkeypatch.setattr("autosr.demo.PAIRS", 8)
    return calls


def test_demo_twice_keeps_the_first_run(tmp_path, fake_train):
    folder = tmp_path / "demo"
    first = runner.invoke(app, ["demo", "--dir", str(folder), "--iters", "20"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["demo", "--dir", str(folder), "--iters", "20"])
    assert second.exit_code == 0, second.output
    assert fake_train == ["demo", "demo-2"]
    assert (folder / "runs" / "demo" / "marker").read_text() == "demo"  # untouched
    assert (folder / "runs" / "demo-2" / "marker").exists()
    assert (folder / "demo.yml").exists() and (folder / "demo-2.yml").exists()
    assert yaml.safe_load((folder / "demo.yml").read_text())["name"] == "demo"
    assert "demo-2" in squeezed(second.output) and "kept" in second.output
    third = runner.invoke(app, ["demo", "--dir", str(folder), "--iters", "20"])
    assert third.exit_code == 0 and fake_train[-1] == "demo-3"


def test_demo_unwritable_dir_is_one_line(tmp_path, monkeypatch, fake_train):
    """As root too: os.access is what the check asks."""
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr("os.access", lambda path, mode: not (Path(path) == ro and mode & os.W_OK))
    for target in (ro, ro / "sub"):
        result = runner.invoke(app, ["demo", "--dir", str(target), "--iters", "20"])
        assert result.exit_code == 2, result.output
        line = one_line(result.output)
        assert "not writable" in line and squeezed(str(ro)) in squeezed(line) and "PermissionError" not in line
    assert list(ro.iterdir()) == [] and fake_train == []


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores folder permissions")
def test_demo_read_only_dir_real_permissions(tmp_path, fake_train):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = runner.invoke(app, ["demo", "--dir", str(ro), "--iters", "20"])
        assert result.exit_code == 2, result.output
        assert "not writable" in one_line(result.output)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_demo_dir_that_is_a_file(tmp_path, fake_train):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = runner.invoke(app, ["demo", "--dir", str(blocker), "--iters", "20"])
    assert result.exit_code == 2 and "not a folder" in one_line(result.output)


# ---- 4. --set list index past the end: init and train --dry-run -----------------------------------------


def test_set_list_index_past_the_end_init_and_dry_run(tmp_path, pair_set):
    hr, lr = pair_set
    cfg = tmp_path / "a.yml"
    result = init("--gt", str(hr), "--lq", str(lr), "-o", str(cfg), "--set", "train.losses.5.loss_weight=1")
    assert result.exit_code == 2, result.output
    assert not cfg.exists()
    assert "past the end" in one_line(result.output) and "entries" in one_line(result.output)
    assert init("--gt", str(hr), "--lq", str(lr), "-o", str(cfg), "--set", "train.total_iter=100").exit_code == 0
    n = len(yaml.safe_load(cfg.read_text())["train"]["losses"])
    result = init("--gt", str(hr), "--lq", str(lr), "-o", str(cfg), "--force", "--set", "train.losses.5.loss_weight=1")
    assert result.exit_code == 2 and f"train.losses has {n} entries" in one_line(result.output), result.output
    result = runner.invoke(app, ["train", str(cfg), "--dry-run", "--out", str(tmp_path / "runs"),
                                 "--set", "train.losses.5.loss_weight=1"])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert f"train.losses has {n} entries" in line and "past the end" in line
    assert not (tmp_path / "runs").exists()


def test_init_set_list_index_message_names_the_whole_key(tmp_path, pair_set):
    hr, lr = pair_set
    result = init("--gt", str(hr), "--lq", str(lr), "-o", str(tmp_path / "a.yml"), "--set", "train.losses.5.loss_weight=1")
    assert result.exit_code == 2
    assert "--set train.losses.5.loss_weight" in one_line(result.output)


# ---- 5. init -o / --output into a read-only folder -----------------------------------------------------


@pytest.mark.parametrize("flag", ["-o", "--output"])
@pytest.mark.parametrize("sub", ["a.yml", "new/deeper/a.yml"])
def test_init_output_in_unwritable_folder(tmp_path, pair_set, monkeypatch, flag, sub):
    hr, lr = pair_set
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != ro)
    result = init("--gt", str(hr), "--lq", str(lr), flag, str(ro / sub))
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert "not writable" in line and squeezed(str(ro)) in squeezed(line)
    assert list(ro.iterdir()) == []


def test_train_says_what_a_shorter_total_iter_leaves_behind(tmp_path, pair_set):
    hr, lr = pair_set
    cfg = tmp_path / "a.yml"
    assert init("--gt", str(hr), "--lq", str(lr), "-o", str(cfg), "--set", "train.total_iter=4000").exit_code == 0
    result = runner.invoke(app, ["train", str(cfg), "--dry-run", "--set", "train.total_iter=20"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "train.warmup_iter" in result.output and "--set" in result.output
