"""Typed settings: a missing key means what it means in traiNNer-redux; ema_decay 0 turns EMA off."""

from __future__ import annotations

from pathlib import Path

import yaml

from autosr.config import spec_at, validate
from autosr.journal import read_journal
from autosr.runfolder import RunFolder
from autosr.schema import DEFAULTS
from autosr.train.settings import build_settings
from autosr.train_cmd import train_from_file


def minimal(hr: Path, lr: Path, **train: object) -> dict:
    """A hand-written traiNNer config that sets only what traiNNer requires."""
    return {
        "name": "hand", "scale": 2, "num_gpu": "auto", "path": {},
        "network_g": {"type": "paragonsr2_nano"},
        "datasets": {
            "train": {"name": "t", "type": "pairedimagedataset", "dataroot_gt": str(hr), "dataroot_lq": str(lr),
                      "lq_size": 32, "batch_size_per_gpu": 4},
            "val": {"name": "v", "type": "pairedimagedataset", "dataroot_gt": str(hr), "dataroot_lq": str(lr)},
        },
        "train": {"total_iter": 6, "optim_g": {"type": "AdamW", "lr": 1.0e-3},
                  "losses": [{"type": "l1loss", "loss_weight": 1.0}], **train},
        "val": {"val_enabled": True, "val_freq": 3, "save_img": False},
        "logger": {"print_freq": 2, "save_checkpoint_freq": 3, "use_tb_logger": False},
    }


def test_every_default_names_a_schema_key():
    for key in DEFAULTS:
        spec_at(key)  # raises on a key the schema does not have


def test_missing_keys_take_trainners_defaults(pair_set):
    s = build_settings(validate(minimal(*pair_set), "hand.yml"))
    assert s.ema_decay == 0.0 and s.ema_power == 10.0  # no EMA, no EMA warm-up
    assert s.grad_clip is False and s.grad_clip_max_norm == 100.0
    assert s.schedule.warmup_iter == -1 and s.schedule.kind is None
    assert s.runtime.channels_last is True and s.runtime.use_amp is False and s.runtime.seed is None
    assert s.data.use_hflip and s.data.use_rot and s.data.accum_iter == 1 and s.data.num_workers is None
    # traiNNer computes no metrics unless metrics_enabled: validation is off, and says why
    assert not s.val.enabled and "metrics_enabled" in s.val.off_reason and s.val.tile_size == 0


def test_schedule_factor_warmup_and_milestones(pair_set):
    tree = minimal(*pair_set, warmup_iter=4, scheduler={"type": "MultiStepLR", "milestones": [6, 8], "gamma": 0.5})
    tree["train"]["total_iter"] = 10
    schedule = build_settings(validate(tree, "hand.yml")).schedule
    assert [schedule.factor(i) for i in range(10)] == [0.25, 0.5, 0.75, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]


def test_ema_decay_zero_trains_without_ema_and_saves(tmp_path, pair_set):
    tree = minimal(*pair_set, ema_decay=0.0)
    tree["val"]["metrics_enabled"] = True
    tree["val"]["metrics"] = {"psnr": {"type": "calculate_psnr", "crop_border": 2}}
    config = tmp_path / "hand.yml"
    config.write_text(yaml.safe_dump(tree), encoding="utf-8")
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    run = RunFolder(tmp_path / "runs" / "hand")
    models = sorted(p.name for p in run.models.iterdir())
    assert "net_g_6.safetensors" in models and "net_g_best.safetensors" in models
    assert not any("ema" in name for name in models)
    events = read_journal(run.events)
    assert any(e["key"] == "train.ema_decay" and "no EMA" in e["reason"] for e in events)
    assert any(e["key"] == "manual_seed" for e in events)  # random seed, journaled
    # resuming a no-EMA run works too
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=["train.total_iter=8"],
                           dry_run=False, quiet=True) == 0


def test_a_trained_model_file_alone_rebuilds_the_network(tmp_path, pair_set):
    import torch

    from autosr.use.model_file import load_model

    tree = minimal(*pair_set, ema_decay=0.999)
    tree["val"]["metrics_enabled"] = True
    tree["val"]["metrics"] = {"psnr": {"type": "calculate_psnr", "crop_border": 2}}
    config = tmp_path / "hand.yml"
    config.write_text(yaml.safe_dump(tree), encoding="utf-8")
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    models = RunFolder(tmp_path / "runs" / "hand").models
    for name in ("net_g_best.safetensors", "net_g_6.safetensors", "net_g_ema_6.safetensors"):
        model, info = load_model(models / name)  # no YAML: the file describes itself
        out = model(torch.rand(1, 3, 12, 10))
        assert out.shape == (1, 3, 24, 20) and info.scale == 2
