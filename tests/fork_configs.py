"""The ParagonSR2 fork's 23 training configs (tests/data/fork_configs, from github delafer/traiNNer-redux
master b676e3a, Apache-2.0) made runnable on a CPU in seconds: dataroots pointed at the small real
photographs in tests/data/photos, and the sizes a CPU can take (patch, batch, length, workers). Every
other key stays as the author wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"
FORK = DATA / "fork_configs"
PHOTOS = DATA / "photos"
CONFIGS = sorted(FORK.rglob("*.yml"))
CPU_SIZES = {"lq_size": 16, "batch_size_per_gpu": 2, "num_worker_per_gpu": 0}


def _compress_schedules(tree: dict[str, Any], iterations: int) -> None:
    """Per-loss start_iter / target_iter / disable_after scaled from the config's length to `iterations`,
    so that a GAN phase that starts at 10k of 60k starts at 1/6 of the short run (its D then trains)."""
    train = tree.get("train") or {}
    length = train.get("total_iter")
    if not isinstance(length, int) or length <= iterations:
        return
    for entry in train.get("losses") or []:
        for key in ("start_iter", "target_iter", "disable_after"):
            if isinstance(entry.get(key), int):
                entry[key] = max(0, round(entry[key] * iterations / length))


def prepared(config: Path, out: Path, iterations: int = 20, *, compress: bool = False) -> Path:
    """A copy of `config` in `out`, pointed at the test photos and sized for a CPU. compress: the per-loss
    schedules squeezed into the short run (see _compress_schedules)."""
    tree: dict[str, Any] = yaml.safe_load(config.read_text(encoding="utf-8"))
    if compress:
        _compress_schedules(tree, iterations)
    for role, dataset in (tree.get("datasets") or {}).items():
        split = "val" if role.startswith("val") else "train"
        dataset["dataroot_gt"] = str(PHOTOS / split / "hr")
        if "dataroot_lq" in dataset or dataset.get("type", "").lower() == "pairedimagedataset":
            dataset["dataroot_lq"] = str(PHOTOS / split / "lr")
        dataset.pop("meta_info", None)
        if split == "train":
            for key, value in CPU_SIZES.items():
                if key in dataset or key != "num_worker_per_gpu":
                    dataset[key] = value
            if "gt_size" in dataset:
                dataset.pop("lq_size", None)
                dataset["gt_size"] = CPU_SIZES["lq_size"] * int(tree.get("scale", 2))
    train = tree.setdefault("train", {})
    if isinstance(train, dict):
        train["total_iter"] = iterations
    for key in ("pretrain_network_g", "pretrain_network_d", "resume_state"):
        if isinstance(tree.get("path"), dict) and tree["path"].get(key):
            tree["path"][key] = None
    tree["name"] = config.stem.replace(" ", "_")
    out.mkdir(parents=True, exist_ok=True)
    target = out / (config.stem.replace(" ", "_") + ".yml")
    target.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return target
