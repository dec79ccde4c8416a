"""Bad input is refused at load with one line naming the key (issue 11); unexpected errors leave a private log."""

from __future__ import annotations

import copy
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from autosr.cli import app
from autosr.config import apply_overrides, load_config, parse_override, read_yaml, validate
from autosr.errors import AutosrError
from autosr.init_cmd import run_init

runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def valid_config(tmp_path_factory: pytest.TempPathFactory, pair_set: tuple[Path, Path]) -> Path:
    """A config `autosr init` writes (fork flavour: the DLS and automation sections included)."""
    hr, lr = pair_set
    out = tmp_path_factory.mktemp("cfg") / "cfg.yml"
    run_init(gt=hr, lq=lr, arch="paragonsr2_nano", val_gt=None, val_lq=None, output=out, name="t", scale=None,
             overrides=["train.total_iter=100", "val.val_freq=50"], flavor="fork", force=True, print_only=False,
             explain=False, sample=64)
    return out


def tree_of(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def set_key(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = tree
    for part in parents:
        node = node[part]
    node[last] = value


def write(tmp_path: Path, tree: dict[str, Any], name: str = "bad.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def one_line(output: str) -> str:
    lines = [x for x in output.replace("\r", "").split("\n") if x.strip()]
    assert "Traceback" not in output
    return " ".join(lines)  # rich may wrap one long line at the terminal width


# ---- numeric ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-2.0e-4, float("nan"), float("inf"), 0.0])
def test_bad_learning_rate_is_refused_naming_the_key_and_range(tmp_path, valid_config, value):
    tree = tree_of(valid_config)
    set_key(tree, "train.optim_g.lr", value)
    with pytest.raises(AutosrError) as err:
        load_config(write(tmp_path, tree))
    assert "train.optim_g.lr" in str(err.value) and "(0, 1]" in str(err.value)


def test_negative_lr_in_yaml_exits_2_before_anything_starts(tmp_path, valid_config):
    text = valid_config.read_text(encoding="utf-8")
    tree = tree_of(valid_config)
    old = tree["train"]["optim_g"]["lr"]
    bad = tmp_path / "bad.yml"
    bad.write_text(text.replace(f"lr: {old}", "lr: -2.0e-4", 1), encoding="utf-8")
    assert "lr: -2.0e-4" in bad.read_text()
    result = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert "train.optim_g.lr" in line and "allowed: (0, 1]" in line and "unexpected" not in line
    assert not (tmp_path / "runs").exists()


def test_nan_lr_in_yaml_is_refused(tmp_path, valid_config):
    tree = tree_of(valid_config)
    bad = tmp_path / "bad.yml"
    bad.write_text(valid_config.read_text(encoding="utf-8").replace(f"lr: {tree['train']['optim_g']['lr']}", "lr: .nan", 1))
    with pytest.raises(AutosrError, match=r"train\.optim_g\.lr: nan is not a finite number"):
        load_config(bad)


def test_negative_worker_count_is_refused(tmp_path, valid_config):
    tree = tree_of(valid_config)
    tree["datasets"]["train"]["num_worker_per_gpu"] = -1
    with pytest.raises(AutosrError, match=r"datasets\.train\.num_worker_per_gpu: -1 is out of range .*≥ 0"):
        load_config(write(tmp_path, tree))


def test_val_freq_zero_with_validation_is_refused_with_a_hint(tmp_path, valid_config):
    tree = tree_of(valid_config)
    assert any(k.startswith("val") for k in tree["datasets"])
    tree["val"]["val_freq"] = 0
    with pytest.raises(AutosrError) as err:
        load_config(write(tmp_path, tree))
    assert "val.val_freq" in str(err.value) and "val.val_enabled: false" in str(err.value)
    tree["val"]["val_enabled"] = False  # validation off: 0 is then accepted
    load_config(write(tmp_path, tree))


@pytest.mark.parametrize(("key", "value"), [
    ("train.optim_g.weight_decay", -0.1), ("train.optim_g.eps", 0.0), ("train.ema_decay", 1.0), ("train.ema_power", 0.0),
    ("train.warmup_iter", -2), ("train.total_iter", 0), ("train.grad_clip_max_norm", 0.0), ("scale", 9),
    ("manual_seed", -1), ("val.tile_size", -1), ("logger.print_freq", 0), ("logger.save_checkpoint_freq", 0),
    ("datasets.train.batch_size_per_gpu", 0), ("datasets.train.lq_size", 0), ("datasets.train.accum_iter", 0),
    ("train.dynamic_loss_scheduling.momentum", 1.0), ("train.dynamic_loss_scheduling.max_weight", 0.5),
])
def test_out_of_range_values_are_refused(tmp_path, valid_config, key, value):
    tree = tree_of(valid_config)
    set_key(tree, key, value)
    with pytest.raises(AutosrError, match=f"{key}: .* allowed: "):
        load_config(write(tmp_path, tree))


def test_scheduler_and_betas_ranges(valid_config):
    tree = tree_of(valid_config)
    tree["train"]["optim_g"]["betas"] = [0.9, 1.0]
    with pytest.raises(AutosrError, match=r"train\.optim_g\.betas\[1\]: 1.0 is out of range .*\[0, 1\)"):
        validate(tree)
    tree = tree_of(valid_config)
    tree["train"]["scheduler"] = {"type": "MultiStepLR", "milestones": [-5], "gamma": 0.5}
    with pytest.raises(AutosrError, match=r"train\.scheduler\.milestones\[0\]"):
        validate(tree)
    tree["train"]["scheduler"] = {"type": "MultiStepLR", "milestones": [5], "gamma": 1.5}
    with pytest.raises(AutosrError, match=r"train\.scheduler\.gamma: 1.5 is out of range .*\(0, 1\]"):
        validate(tree)


def test_set_values_go_through_the_same_range_check(tmp_path, valid_config):
    for text, key in [("train.optim_g.lr=-2e-4", "train.optim_g.lr"), ("train.optim_g.lr=nan", "train.optim_g.lr"),
                      ("datasets.train.num_worker_per_gpu=-1", "datasets.train.num_worker_per_gpu")]:
        with pytest.raises(AutosrError, match=f"--set {key}: .* allowed: "):
            parse_override(text)
    result = runner.invoke(app, ["train", str(valid_config), "--out", str(tmp_path / "runs"), "--set", "train.optim_g.lr=-1"])
    assert result.exit_code == 2 and "train.optim_g.lr" in one_line(result.output)
    assert not (tmp_path / "runs").exists()


def test_free_mappings_refuse_non_finite_floats(valid_config):
    tree = tree_of(valid_config)
    tree["train"]["losses"][0]["loss_weight"] = float("nan")
    with pytest.raises(AutosrError, match=r"train\.losses\[0\]\.loss_weight: nan is not a finite number"):
        validate(tree)


def numeric_leaves(node: Any, path: str = "") -> list[tuple[str, tuple[Any, ...]]]:
    """(display path, access path) of every int/float leaf (bools excluded)."""
    out: list[tuple[str, tuple[Any, ...]]] = []

    def walk(value: Any, shown: str, access: tuple[Any, ...]) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{shown}.{k}" if shown else str(k), (*access, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{shown}[{i}]", (*access, i))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out.append((shown, access))

    walk(node, path, ())
    return out


def test_fuzz_every_numeric_leaf(valid_config):
    """-1, 0, NaN, 1e30 in every numeric key: accepted, or an AutosrError naming that key; nothing else."""
    base = tree_of(valid_config)
    leaves = numeric_leaves(base)
    assert len(leaves) > 20
    refused = 0
    for shown, access in leaves:
        for value in (-1, 0, float("nan"), 1e30):
            tree = copy.deepcopy(base)
            node: Any = tree
            for part in access[:-1]:
                node = node[part]
            node[access[-1]] = value
            try:
                validate(tree, "fuzz.yml")
            except AutosrError as exc:
                refused += 1
                named = shown.split("[")[0]  # cross-item rules (milestones increasing) name the list
                assert named in str(exc), (shown, value, str(exc))
            else:
                assert not (isinstance(value, float) and math.isnan(value)), (shown, "accepted nan")
    assert refused > len(leaves)  # at least NaN everywhere


# ---- YAML duplicates ------------------------------------------------------------------------------


def test_duplicate_key_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "dup.yml"
    path.write_text("name: a\nscale: 2\ntrain:\n  total_iter: 10\n  optim_g: {type: AdamW, lr: 1.0e-4}\n  total_iter: 20\n")
    with pytest.raises(AutosrError, match=r"key 'total_iter' appears twice in one mapping \(lines 4 and 6\)"):
        read_yaml(path)
    path.write_text("a: {b: 1, b: 2}\n")
    with pytest.raises(AutosrError, match="lines 1 and 1"):
        read_yaml(path)


def test_duplicate_key_through_the_cli(tmp_path, valid_config):
    text = valid_config.read_text(encoding="utf-8")
    bad = tmp_path / "bad.yml"
    bad.write_text(text + "manual_seed: 1\nmanual_seed: 2\n", encoding="utf-8")
    result = runner.invoke(app, ["train", str(bad), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "manual_seed' appears twice" in one_line(result.output)


def test_yaml_stays_safe_and_merges_still_work(tmp_path):
    path = tmp_path / "x.yml"
    path.write_text("a: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(AutosrError, match="not valid YAML"):
        read_yaml(path)
    path.write_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")  # a merge key may be overridden
    assert read_yaml(path) == {"base": {"x": 1, "y": 2}, "c": {"x": 1, "y": 3}}


# ---- --set list indices -------------------------------------------------------------------------


def test_set_index_past_the_end_names_the_list_length(tmp_path, valid_config):
    tree = tree_of(valid_config)
    n = len(tree["train"]["losses"])
    with pytest.raises(AutosrError, match=f"train.losses has {n} entries"):
        apply_overrides(tree, ["train.losses.5.loss_weight=1"])
    result = runner.invoke(app, ["train", str(valid_config), "--out", str(tmp_path / "runs"),
                                 "--set", "train.losses.5.loss_weight=1"])
    assert result.exit_code == 2 and f"train.losses has {n} entries" in one_line(result.output)


def test_init_set_index_past_the_end(tmp_path, pair_set):
    hr, lr = pair_set
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(tmp_path / "a.yml"), "--no-calibrate",
                                 "--set", "train.losses.5.loss_weight=1"])
    assert result.exit_code == 2, result.output
    assert "past the end" in one_line(result.output) and "entries" in one_line(result.output)
    assert not (tmp_path / "a.yml").exists()


# ---- crash log ----------------------------------------------------------------------------------


def test_crash_log_is_private_and_unique(monkeypatch, tmp_path):
    def boom(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("deep")

    monkeypatch.setattr("autosr.report.summary.report", boom)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    logs = []
    for _ in range(2):
        result = runner.invoke(app, ["report", str(tmp_path)])
        assert result.exit_code == 1 and "Traceback" not in result.output
        logs.append(sorted(tmp_path.glob("autosr-crash-*.log")))
    assert len(logs[-1]) == 2  # one new file per crash, never a shared fixed name
    assert not (tmp_path / "autosr-crash.log").exists()
    (newest,) = set(logs[-1]) - set(logs[0])
    assert str(newest) in result.output.replace("\n", "")  # the path is printed
    for log in logs[-1]:
        assert "ZeroDivisionError" in log.read_text()
        if os.name == "posix":
            assert stat.S_IMODE(log.stat().st_mode) == 0o600


# ---- init -o in a folder that cannot be written ---------------------------------------------------


@pytest.mark.skipif(IS_ROOT or os.name != "posix", reason="root ignores folder permissions")
def test_init_output_in_read_only_folder(tmp_path, pair_set):
    hr, lr = pair_set
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(folder / "a.yml"), "--no-calibrate"])
        assert result.exit_code == 2, result.output
        line = one_line(result.output)
        assert str(folder) in line.replace(" ", "") or str(folder) in line
        assert "not writable" in line and "unexpected" not in line
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_init_output_unwritable_folder_message(tmp_path, pair_set, monkeypatch):
    """The read-only branch as root too: os.access is what the check asks."""
    hr, lr = pair_set
    monkeypatch.setattr("os.access", lambda path, mode: Path(path) != tmp_path)
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(tmp_path / "a.yml"), "--no-calibrate"])
    assert result.exit_code == 2, result.output
    assert "folder is not writable" in one_line(result.output) and list(tmp_path.iterdir()) == []


def test_init_output_under_a_file_works_as_root_too(tmp_path, pair_set):
    hr, lr = pair_set
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(blocker / "sub" / "a.yml"), "--no-calibrate"])
    assert result.exit_code == 2, result.output
    line = one_line(result.output)
    assert "not a folder" in line and "afile" in line and "unexpected" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written
    result = runner.invoke(app, ["init", "--gt", str(hr), "--lq", str(lr), "-o", str(tmp_path), "--no-calibrate", "--force"])
    assert result.exit_code == 2 and "is a folder" in one_line(result.output)
