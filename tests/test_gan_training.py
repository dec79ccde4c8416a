"""GAN training end to end on a CPU: the two networks' updates stay apart, D trains only while the
adversarial term is on, a run resumes exactly across the switch to the GAN phase (D and both optimisers
in the checkpoint), and the runtime scheduler reaches the D side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from autosr.config import load_config
from autosr.journal import Journal
from autosr.safetensors_io import load_safetensors
from autosr.train.setup import DistInfo
from autosr.train_cmd import build_trainer, train_from_file

PHOTOS = Path(__file__).parent / "data" / "photos"


def gan_config(tmp_path: Path, *, iters: int = 12, gan_start: int = 4, extra: dict | None = None) -> Path:
    tree = {
        "name": "gan", "scale": 2, "num_gpu": 1, "path": {}, "manual_seed": 7, "use_channels_last": False,
        "network_g": {"type": "paragonsr2_nano"},
        "network_d": {"type": "munet", "num_feat": 8, "ch_mult": [1, 2]},
        "datasets": {
            "train": {"name": "t", "type": "pairedimagedataset", "dataroot_gt": str(PHOTOS / "train" / "hr"),
                      "dataroot_lq": str(PHOTOS / "train" / "lr"), "lq_size": 16, "batch_size_per_gpu": 2,
                      "num_worker_per_gpu": 0},
            "val": {"name": "v", "type": "pairedimagedataset", "dataroot_gt": str(PHOTOS / "val" / "hr"),
                    "dataroot_lq": str(PHOTOS / "val" / "lr")},
        },
        "train": {
            "total_iter": iters, "warmup_iter": -1, "ema_decay": 0.9, "grad_clip": True,
            "optim_g": {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.99]},
            "optim_d": {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.99]},
            "losses": [
                {"type": "l1loss", "loss_weight": 1.0},
                {"type": "ganloss", "gan_type": "r3gan", "loss_weight": 0.1, "start_iter": gan_start},
                {"type": "featurematchingloss", "loss_weight": 0.1, "start_iter": gan_start},
                {"type": "ldlloss", "loss_weight": 0.5},
            ],
        },
        "val": {"val_enabled": True, "val_freq": 4, "metrics_enabled": True,
                "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2}}},
        "logger": {"print_freq": 2, "save_checkpoint_freq": 4, "use_tb_logger": False},
    }
    for key, value in (extra or {}).items():
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path = tmp_path / "gan.yml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_each_update_moves_only_its_own_network(tmp_path: Path) -> None:
    trainer = build_trainer(load_config(gan_config(tmp_path, gan_start=0)), None, DistInfo(), Journal(None), quiet=True)
    objective = trainer.objective
    g, d = objective.g.model, objective.d
    seen: dict[str, dict] = {}
    update_g, update_d = objective.g.update, objective._update_d

    def g_then_record(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen["d_before_g"], seen["g_before"] = snapshot(d), snapshot(g)
        out = update_g(*args, **kwargs)
        seen["d_after_g"], seen["g_after"] = snapshot(d), snapshot(g)
        return out

    def d_then_record(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen["g_before_d"] = snapshot(g)
        out = update_d(*args, **kwargs)
        seen["g_after_d"], seen["d_after_d"] = snapshot(g), snapshot(d)
        return out

    objective.g.update, objective._update_d = g_then_record, d_then_record
    trainer._enter_phase()
    trainer._set_lr()
    stats = trainer._step()
    assert same(seen["d_before_g"], seen["d_after_g"]), "the G update changed D"
    assert not same(seen["g_before"], seen["g_after"]), "the G update changed nothing"
    assert same(seen["g_before_d"], seen["g_after_d"]), "the D update changed G"
    assert not same(seen["d_after_g"], seen["d_after_d"]), "the D update changed nothing"
    assert {"l_d_real", "l_d_fake", "out_d_real", "out_d_fake", "r1_penalty", "r2_penalty", "grad_norm_d"} <= set(stats.extras)
    assert float(stats.extras["d_updated"]) == 1.0 and {"l1", "gan", "featurematching", "ldl"} <= set(stats.losses)


def test_d_rests_until_the_adversarial_term_starts(tmp_path: Path) -> None:
    trainer = build_trainer(load_config(gan_config(tmp_path, gan_start=3)), None, DistInfo(), Journal(None), quiet=True)
    d = trainer.objective.d
    start = snapshot(d)
    for _ in range(2):  # iterations 1 and 2: factor 0, a fidelity step
        stats, _ = trainer.train_step()
        assert float(stats.extras["d_updated"]) == 0.0 and "gan" not in stats.losses
    assert same(start, snapshot(d))
    stats, _ = trainer.train_step()  # iteration 3: the GAN phase
    assert float(stats.extras["d_updated"]) == 1.0 and "gan" in stats.losses
    assert not same(start, snapshot(d))


def test_resume_across_the_switch_to_gan_is_exact(tmp_path: Path) -> None:
    config = gan_config(tmp_path, iters=12, gan_start=6)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_from_file(config, out_dir=straight, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    assert train_from_file(config, out_dir=split, resume=None, overrides=["train.total_iter=4"], dry_run=False, quiet=True) == 0
    assert train_from_file(config, out_dir=split, resume=None, overrides=[], dry_run=False, quiet=True) == 0
    for name in ("net_g_12", "net_g_ema_12"):
        a = load_safetensors(straight / "gan" / "models" / f"{name}.safetensors")
        b = load_safetensors(split / "gan" / "models" / f"{name}.safetensors")
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    from autosr.train.checkpoint import load_training_state

    s1 = load_training_state(straight / "gan" / "checkpoints" / "state_12.pt")
    s2 = load_training_state(split / "gan" / "checkpoints" / "state_12.pt")
    for key in s1["net_d"]:
        torch.testing.assert_close(s1["net_d"][key], s2["net_d"][key], rtol=0, atol=1e-6)
    assert s1["optimizer_d"]["state"] and s2["optimizer_d"]["state"]  # D trained after the switch
    def rows(run: Path) -> list[tuple]:
        records = map(json.loads, (run / "gan" / "metrics.jsonl").read_text().splitlines())
        return [(r["iter"], r["loss"], r.get("l_d_real")) for r in records if r.get("kind") == "train" and r["iter"] > 4]

    assert rows(straight) == rows(split)


def test_a_gan_term_without_network_d_and_ldl_without_ema_are_one_line_errors(tmp_path: Path) -> None:
    from autosr.errors import AutosrError

    tree = yaml.safe_load(gan_config(tmp_path).read_text())
    del tree["network_d"]
    (tmp_path / "no_d.yml").write_text(yaml.safe_dump(tree))
    with pytest.raises(AutosrError, match="ganloss, featurematchingloss, which train.s. against a discriminator"):
        build_trainer(load_config(tmp_path / "no_d.yml"), None, DistInfo(), Journal(None), quiet=True)
    with pytest.raises(AutosrError, match="ldlloss compares the output with the EMA generator's"):
        build_trainer(load_config(gan_config(tmp_path, extra={"train.ema_decay": 0.0})), None, DistInfo(), Journal(None), quiet=True)
    tree = yaml.safe_load(gan_config(tmp_path).read_text())
    tree["train"]["losses"] = [{"type": "l1loss", "loss_weight": 1.0}]
    (tmp_path / "no_gan.yml").write_text(yaml.safe_dump(tree))
    with pytest.raises(AutosrError, match="network_d is set but train.losses has no ganloss"):
        build_trainer(load_config(tmp_path / "no_gan.yml"), None, DistInfo(), Journal(None), quiet=True)


def test_knobs_reach_the_d_side_and_are_journaled(tmp_path: Path) -> None:
    journal = Journal(None)
    trainer = build_trainer(load_config(gan_config(tmp_path, gan_start=0)), None, DistInfo(), journal, quiet=True)
    trainer.train_step()
    trainer.set_knob("d_lr_scale", 0.25, "test: D overpowering")
    assert trainer.objective.optimizer_d.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.25)
    trainer.set_knob("d_every", 2, "test")
    stats, _ = trainer.train_step()  # iteration 2: D trains (2 % 2 == 0)
    stats3, _ = trainer.train_step()  # iteration 3: D rests
    assert float(stats.extras["d_updated"]) == 1.0 and float(stats3.extras["d_updated"]) == 0.0
    keys = [(r["key"], r["new"]) for r in journal.records]
    assert ("d_lr_scale", 0.25) in keys and ("d_every", 2) in keys
    assert trainer.state()["gan_knobs"] == {"d_lr_scale": 0.25, "d_every": 2, "adv_scale": 1.0}


def test_a_metric_without_its_weights_is_skipped_and_said_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """val.metrics lpips with no AlexNet/LPIPS weights on the machine: training goes on with PSNR, and the
    terminal, the journal (and so the report) say which file is missing and where it belongs."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    tree = yaml.safe_load(gan_config(tmp_path, iters=2).read_text())
    del tree["network_d"], tree["train"]["optim_d"]
    tree["train"]["losses"] = [{"type": "l1loss", "loss_weight": 1.0}]
    tree["val"]["val_freq"] = 2
    tree["val"]["metrics"]["lpips"] = {"type": "calculate_lpips"}
    config = tmp_path / "lpips.yml"
    config.write_text(yaml.safe_dump(tree))
    assert train_from_file(config, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    err = capsys.readouterr().err
    assert err.count("val.metrics.lpips (calculate_lpips) skipped") == 1 and "alexnet-owt-7be5be79.pth" in err
    events = [json.loads(line) for line in (tmp_path / "runs" / "gan" / "events.jsonl").read_text().splitlines()]
    skipped = [e for e in events if e["key"] == "val.metrics.lpips"]
    assert len(skipped) == 1 and skipped[0]["new"] == "skipped" and "alexnet-owt-7be5be79.pth" in skipped[0]["reason"]
    rows = [json.loads(line) for line in (tmp_path / "runs" / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "val" and "psnr" in r and "lpips" not in r for r in rows)
