"""GANBalance on scripted statistics (a fake Controls): it weakens an overpowering D step by step, undoes
it when D is back, and rolls a degenerating G back with a lower adversarial weight — bounded, journaled."""

from __future__ import annotations

from autosr.schedule.gan_balance import GANBalance
from autosr.schedule.testing import FakeControls, make_run, step_stats, val_stats
from autosr.train.hooks import LossInfo, ValStats

LOSSES = (LossInfo("l1", "l1loss", 1.0), LossInfo("gan", "ganloss", 0.1))


def start(total_iter: int = 10_000) -> tuple[GANBalance, FakeControls]:
    run = make_run(losses=LOSSES, has_gan=True, total_iter=total_iter)
    balance, controls = GANBalance({"enabled": True}, run), FakeControls()
    balance.on_start(run, controls)
    return balance, controls


def d_stats(it: int, d_loss: float, gap: float):  # noqa: ANN201
    return step_stats(it, {"l1": 0.05, "gan": 0.7}, extras={
        "l_d_real": d_loss / 2, "l_d_fake": d_loss / 2, "out_d_real": gap / 2, "out_d_fake": -gap / 2, "d_updated": 1.0})


def test_an_overpowering_d_is_weakened_step_by_step_then_relaxed() -> None:
    balance, controls = start()
    assert balance.settings is not None and balance.settings.cooldown.value == 200
    it = 0
    for _ in range(10):  # the GAN phase's starting level: a D at chance (vanilla: 2·ln 2)
        it += 8
        balance.after_step(d_stats(it, 1.386, 0.1), controls)
    for _ in range(600):  # D wins: its loss falls to ~0.05 and the logits part
        it += 8
        balance.after_step(d_stats(it, 0.05, 6.0), controls)
    knobs = [(c.args[0], c.args[1]) for c in controls.of("set_knob")]
    # halve D's LR down to 0.05 (1 → 0.5 … 0.0625 → 0.05), then fewer D updates, at most one change per cooldown
    assert knobs[:6] == [("d_lr_scale", 0.5), ("d_lr_scale", 0.25), ("d_lr_scale", 0.125), ("d_lr_scale", 0.0625),
                         ("d_lr_scale", 0.05), ("d_every", 2)]
    assert len(knobs) <= 600 * 8 // 200 + 1
    assert all("D overpowers G" in c.reason and "logit gap" in c.reason for c in controls.of("set_knob"))
    weakened = len(knobs)
    for _ in range(300):  # D is back near chance: the reductions are undone, newest first
        it += 8
        balance.after_step(d_stats(it, 1.2, 0.3), controls)
    undone = [(c.args[0], c.args[1]) for c in controls.of("set_knob")][weakened:]
    assert undone[0] == ("d_every", knobs[-1][1] - 1)  # the newest reduction first
    assert balance.d_every == 1 and balance.d_lr_scale == 1.0 and balance.steps_taken == []  # all undone
    assert all("no longer overpowers" in c.reason for c in controls.of("set_knob")[weakened:])


def test_a_balanced_d_is_left_alone() -> None:
    balance, controls = start()
    for it in range(8, 8 * 600, 8):
        balance.after_step(d_stats(it, 1.386 * (0.9 + 0.1 * (it % 3)), 0.4), controls)
    assert controls.of("set_knob") == []


def test_a_degenerating_g_is_rolled_back_with_a_lower_adversarial_weight_at_most_twice() -> None:
    balance, controls = start()
    for it in range(8, 8 * 11, 8):
        balance.after_step(d_stats(it, 1.386, 0.1), controls)  # in the GAN phase
    balance.after_validation(val_stats(1000, 30.0), controls)
    balance.after_validation(val_stats(2000, 29.5), controls)  # a realistic model trades a little PSNR: fine
    assert controls.of("roll_back") == []
    balance.after_validation(val_stats(3000, 28.6), controls)  # 1.4 dB under the best: collapse
    assert [c.args for c in controls.of("roll_back")] == [("GANBalance",)]
    assert [(c.args[0], c.args[1]) for c in controls.of("set_knob")] == [("adv_scale", 0.5)]
    assert "PSNR 28.60 dB is 1.40 dB under" in controls.of("roll_back")[0].reason
    artefacts = ValStats(4000, {"psnr": 29.9, "hf_ratio": 1.8})
    balance.after_validation(artefacts, controls)  # too much high-frequency energy: artefacts
    assert len(controls.of("roll_back")) == 2 and controls.knobs["adv_scale"] == 0.25
    balance.after_validation(val_stats(5000, 30.0), controls)  # the restored model sets the phase's best anew
    balance.after_validation(val_stats(6000, 20.0), controls)
    assert len(controls.of("roll_back")) == 2  # max_rollbacks
    assert any(c.args[2] == "no rollback" for c in controls.notes("GANBalance"))
    state = balance.state_dict()
    again = GANBalance({"enabled": True}, make_run(losses=LOSSES, has_gan=True))
    again.load_state_dict(state)
    assert again.state_dict() == state


def test_without_a_gan_it_says_so_once_and_does_nothing() -> None:
    run = make_run()
    balance, controls = GANBalance({"enabled": True}, run), FakeControls()
    balance.on_start(run, controls)
    balance.after_step(d_stats(8, 0.01, 9.0), controls)
    assert [c.args[2] for c in controls.notes("GANBalance")] == ["no-op"] and controls.of("set_knob") == []
