"""What the runtime scheduler costs per step: scheduler on vs off, interleaved in one process.

    python benchmarks/scheduler_overhead.py --arch paragonsr2_nano --batch 64 --data .bench/photos/train

Small batches are launch-bound, and their speed drifts by 10–20% between runs (and within one) on
a shared host, which hides a 1% effect when the two are timed one after the other. So both trainers
are built once on the same data and timed in alternating blocks (on, off, on, off, …) of the real
training iteration (`Trainer.train_step`: the step and the automations due); the ratio of their
median block speeds is the scheduler's cost. `--json FILE` saves the blocks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import make_config, timed_steps  # noqa: E402

from autosr.config import validate  # noqa: E402
from autosr.journal import Journal  # noqa: E402
from autosr.schedule import AUTOMATION_NAMES  # noqa: E402
from autosr.train.loop import Trainer  # noqa: E402
from autosr.train.setup import DistInfo  # noqa: E402
from autosr.train_cmd import build_trainer  # noqa: E402


def build(args: argparse.Namespace, scheduler: bool) -> Trainer:
    tree = make_config(args.data, args.arch, args.batch, args.lq, 2, "bf16", False, True, 8)
    tree["train"]["losses"] = [{"type": "l1loss", "loss_weight": 1.0}, {"type": "ssimloss", "loss_weight": 0.05}]
    tree["train"]["dynamic_loss_scheduling"] = {"enabled": scheduler, "auto_calibrate": True}
    tree["train"]["training_automations"] = {"enabled": scheduler, **{n: {"enabled": scheduler} for n in AUTOMATION_NAMES}}
    trainer = build_trainer(validate(tree, "benchmark config"), None, DistInfo(), Journal(None), quiet=True)
    for automation in trainer.automations:
        automation.on_start(trainer.run_info(), trainer)
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="paragonsr2_nano")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lq", type=int, default=64)
    parser.add_argument("--data", type=Path, required=True, help="folder with hr/ and lr/")
    parser.add_argument("--block", type=int, default=200, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    trainers = {"off": build(args, False), "on": build(args, True)}
    for trainer in trainers.values():  # warm-up: cuDNN autotuning, the caches, the first allocations
        timed_steps(trainer, 50)
    blocks: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            seconds = timed_steps(trainer, args.block)
            blocks[name].append(args.block * trainer.batch_size / seconds)
    on, off = statistics.median(blocks["on"]), statistics.median(blocks["off"])
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "arch": args.arch, "batch": args.batch, "lq": args.lq,
        "automations": [a.name for a in trainers["on"].automations],
        "iterations_each": args.block * args.rounds + 50,
        "samples_s_on_median": round(on, 1), "samples_s_off_median": round(off, 1),
        "ratio_on_off": round(on / off, 4),
        "ratio_per_round": [round(a / b, 4) for a, b in zip(blocks["on"], blocks["off"], strict=True)],
        "blocks": {k: [round(v, 1) for v in vs] for k, vs in blocks.items()},
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
