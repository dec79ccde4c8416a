"""The ParagonSR2 fork's 23 training configs, as their author wrote them (dataroots pointed at the test
photos, CPU-sized patch and batch): each trains on a CPU, or stops with one line. The ones that stop are
refused by the fork's own strict schema too (the message says what traiNNer does); none stops on a
feature autosr lacks. Pretrained backbones: random stand-ins at the cache paths (tests/pretrained_files.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fork_configs import CONFIGS, FORK, prepared

from autosr.errors import AutosrError
from autosr.train_cmd import complete_if_partial, train_from_file

# The configs the fork's own schema refuses (checked against its traiNNer/utils/redux_options.py), with what
# autosr's one line names and its hint. AUTO_CALIBRATED is also partial (no num_gpu), so autosr plans it and
# first meets its network: `type: ParagonSR2` with ESRGAN's num_block/num_grow_ch, which the fork's generic
# class swallows; autosr names the architecture (its meta_info_file, which the fork refuses, comes after).
REFUSED_BY_THE_FORK_TOO = {
    "2xParagonSR2_Nano_AUTO_CALIBRATED.yml": ("unknown architecture 'paragonsr2'", "choose one of paragonsr2_nano"),
    "2xParagonSR2_Nano_DatasetBenchmark.yml": ("unknown key 'logging'", "traiNNer-redux rejects unknown keys too"),
    "2xS_real.yml": ("unknown key 'gan_start_iter'", "traiNNer-redux rejects unknown keys too"),
    "2xS_real_photography_showcase copy.yml": ("logger: unknown key 'high_order_degradations_debug'",
                                               "traiNNer-redux rejects unknown keys too"),
    "2xS_real_photography_showcase_copy.yml": ("logger: unknown key 'high_order_degradations_debug'",
                                               "traiNNer-redux rejects unknown keys too"),
}
GAN = {c.name for c in CONFIGS if "network_d" in yaml.safe_load(c.read_text())}


def test_the_23_configs_are_here() -> None:
    assert len(CONFIGS) == 23 and {c.parent.name for c in CONFIGS} == {"fidelity", "previous"}
    assert len(GAN) == 5 and set(REFUSED_BY_THE_FORK_TOO) <= {c.name for c in CONFIGS}


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_a_fork_config_trains_or_stops_with_one_line(config: Path, tmp_path: Path, pretrained: Path) -> None:
    steps = 50 if config.name in GAN else 20
    if config.name in REFUSED_BY_THE_FORK_TOO:
        message, hint = REFUSED_BY_THE_FORK_TOO[config.name]
        with pytest.raises(AutosrError) as caught:
            path = complete_if_partial(prepared(config, tmp_path, steps, compress=True), tmp_path, time_budget=None, explain=False)
            train_from_file(path, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True)
        assert message in caught.value.message and "\n" not in caught.value.message
        assert hint in caught.value.hint
        return
    path = complete_if_partial(prepared(config, tmp_path, steps, compress=True), tmp_path, time_budget=None, explain=False)
    assert train_from_file(path, out_dir=tmp_path / "runs", resume=None, overrides=[], dry_run=False, quiet=True) == 0
    run = next((tmp_path / "runs").iterdir())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(r["iter"] for r in rows) == steps
    if config.name in GAN:  # the adversarial phase came within the run: D trained
        assert any(r.get("d_updated") == 1.0 for r in rows if r.get("kind") == "train"), config.name


def test_the_minimal_zero_config_file_trains_as_written(tmp_path: Path) -> None:
    """Only its dataroots changed: the rest (batch, patch, length, LR, validation) is planned, its own keys kept."""
    tree = yaml.safe_load((FORK / "previous" / "2xParagonSR2_Nano_Minimal_0_Config.yml").read_text())
    photos = Path(__file__).parent / "data" / "photos"
    for role, split in (("train", "train"), ("val", "val")):
        tree["datasets"][role].update(dataroot_gt=str(photos / split / "hr"), dataroot_lq=str(photos / split / "lr"))
    partial = tmp_path / "minimal.yml"
    partial.write_text(yaml.safe_dump(tree, sort_keys=False))
    planned = complete_if_partial(partial, tmp_path / "runs", time_budget=None, explain=False)
    assert planned == tmp_path / "runs" / "minimal.planned.yml"
    out = yaml.safe_load(planned.read_text())
    assert out["name"] == tree["name"] and out["train"]["losses"] == tree["train"]["losses"]  # the user's keys kept
    assert isinstance(out["datasets"]["train"]["batch_size_per_gpu"], int) and isinstance(out["logger"]["save_checkpoint_freq"], int)
    plan = json.loads((tmp_path / "runs" / "minimal.planned.plan.json").read_text())
    assert "datasets.train.batch_size_per_gpu" in plan["decisions"]
    assert train_from_file(planned, out_dir=tmp_path / "runs", resume=None, overrides=["train.total_iter=6", "val.val_freq=6"],
                           dry_run=False, quiet=True) == 0
    assert complete_if_partial(partial, tmp_path / "runs", time_budget=None, explain=False) == planned  # a resume keeps the plan
