"""Self-healing: a non-finite step is skipped; many in a row roll back with the LR halved; then stop."""

from __future__ import annotations

from collections.abc import Callable

import torch
from test_train import make_config

from autosr.config import load_config
from autosr.journal import Journal
from autosr.train.loop import MAX_ROLLBACKS
from autosr.train.setup import DistInfo
from autosr.train_cmd import build_trainer


class NaNAfter:
    """The model's output turns to NaN on the chosen forward calls (a diverging step)."""

    def __init__(self, model: torch.nn.Module, bad: Callable[[int], bool]) -> None:
        self.model, self.bad, self.calls = model, bad, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.model(x)
        return out * float("nan") if self.bad(self.calls) else out


def finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def test_a_non_finite_step_is_skipped_and_counted(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 12, ["val.val_enabled=false", "logger.print_freq=4"])
    journal = Journal(tmp_path / "events.jsonl")
    trainer = build_trainer(load_config(config), tmp_path / "run", DistInfo(), journal, quiet=True, automations=[])
    before = {}

    def bad(call: int) -> bool:
        if call == 5:
            before.update({k: v.clone() for k, v in trainer.objective.model.state_dict().items()})
        return call == 5

    trainer.objective.g.step_model = NaNAfter(trainer.objective.model, bad)
    assert trainer.fit() == 0 and trainer.iteration == 12
    assert finite(trainer.objective.model) and int(trainer.skipped) == 1
    assert any(e["key"] == "skipped_steps" and e["new"] == 1 for e in journal.records)


def test_a_diverging_run_rolls_back_with_a_lower_lr_then_stops(tmp_path, pair_set):
    config = make_config(tmp_path, pair_set, 200, ["val.val_enabled=false", "logger.print_freq=5",
                                                   "logger.save_checkpoint_freq=10"])
    journal = Journal(tmp_path / "events.jsonl")
    trainer = build_trainer(load_config(config), tmp_path / "run", DistInfo(), journal, quiet=True, automations=[])
    trainer.objective.g.step_model = NaNAfter(trainer.objective.model, lambda call: call > 12)  # every step from the 13th diverges
    assert trainer.fit() == 0
    rollbacks = [e for e in journal.records if e["key"] == "rollback"]
    assert len(rollbacks) == MAX_ROLLBACKS
    assert all(e["new"] == 10 for e in rollbacks)  # back to the checkpoint at iteration 10 each time
    assert trainer.lr_scale == 0.5**MAX_ROLLBACKS
    assert trainer.stop_reason is not None and "diverging" in trainer.stop_reason
    assert finite(trainer.objective.model)  # no update ever took a NaN in
    state = torch.load(tmp_path / "run" / "checkpoints" / f"state_{trainer.iteration}.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())  # the last save is whole
