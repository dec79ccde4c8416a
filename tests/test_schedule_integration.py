"""The whole scheduler in one CPU run, with constructed situations: an out-of-memory batch, a
diverging stretch (NaN), a flat validation metric. The journal must show the calibration, the
phases and one action of each kind."""

from __future__ import annotations

import pytest
import torch
from test_self_heal import NaNAfter
from test_train import FakeOOM, make_config

from autosr.config import load_config
from autosr.journal import Journal
from autosr.train.setup import DistInfo
from autosr.train.validate import ValResult
from autosr.train_cmd import build_trainer


@pytest.mark.slow
def test_everything_on_with_constructed_situations(tmp_path, pair_set):
    a = "train.training_automations."
    config = make_config(tmp_path, pair_set, 160, [
        "val.val_freq=8", "logger.print_freq=4", "logger.save_checkpoint_freq=16",
        "train.dynamic_loss_scheduling.baseline_iterations=8",
        a + "IntelligentLearningRateScheduler.plateau_patience=16",
        a + "AdaptiveGradientClipping.calibration_steps=16",
        a + "IntelligentEarlyStopping.patience=24",
    ])
    journal = Journal(tmp_path / "events.jsonl")
    trainer = build_trainer(load_config(config), tmp_path / "run", DistInfo(), journal, quiet=True)
    assert {x.name for x in trainer.automations} >= {"dynamic_loss_scheduling", "IntelligentLearningRateScheduler",
                                                      "AdaptiveGradientClipping", "IntelligentEarlyStopping",
                                                      "AdaptiveValidationFrequency", "DynamicBatchSizeOptimizer"}
    # 1. the card is too small for batch 8 (out of memory above 6); 2. steps 40–52 diverge
    nan = NaNAfter(trainer.objective.model, lambda call: 40 <= call <= 52)
    trainer.objective.g.step_model = FakeOOM(nan, limit=6)
    # 3. the validation metric is flat: no improvement after the first validation
    real = trainer.validator.run if trainer.validator else None
    assert real is not None

    def flat(model: torch.nn.Module, iteration: int) -> ValResult:
        result = real(model, iteration)
        first = min(v[1] for v in result.best.values())
        values = {"psnr": 30.0, "ssim": 0.9}
        best = {k: (v, first) for k, v in values.items()}
        trainer.validator.best = best
        return ValResult(iteration, values, tuple(values) if iteration == first else (), best, result.higher_is_better)

    trainer.validator.run = flat  # type: ignore[method-assign]
    assert trainer.fit() == 0
    keys = [(e["source"], e["key"]) for e in journal.records]

    def has(source: str, prefix: str) -> bool:
        return any(s == source and k.startswith(prefix) for s, k in keys)

    assert has("automation", "dynamic_loss_scheduling.")  # calibration records, with reasons
    assert has("trainer", "phase")  # phase events
    assert has("trainer", "batch_size")  # out of memory → back-off
    assert has("trainer", "rollback") or has("trainer", "skipped_steps")  # NaN → skipped, then rolled back
    assert has("automation", "loss_weight.")  # DLS moved the weights
    assert has("automation", "grad_clip_max_norm")  # clipping threshold measured
    assert has("automation", "lr_scale")  # flat metric → LR cut
    assert has("trainer", "stop")  # flat metric → early stop, after 20% of the run
    stop = next(e for e in journal.records if e["key"] == "stop")
    assert stop["new"] >= 0.2 * 160
    assert all(torch.isfinite(p).all() for p in trainer.objective.model.parameters())
