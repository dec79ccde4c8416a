"""Where a real plan's step time goes with the runtime scheduler on and off: two configs written by
`autosr init` (the second with the scheduler switched off), timed in alternating blocks of the real
iteration, then profiled for a few steps each (CUDA kernels, host ops and host syncs per step, the
host ops that differ most); and what one validation of the plan's validation set costs.

    python -m autosr init --gt … --lq … -o on.yml --set train.total_iter=20000
    python -m autosr init --gt … --lq … -o off.yml --set train.total_iter=20000 \\
        --set train.dynamic_loss_scheduling.enabled=false --set train.training_automations.enabled=false
    python benchmarks/scheduler_profile.py on.yml off.yml --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import timed_steps  # noqa: E402

from autosr.config import load_config  # noqa: E402
from autosr.journal import Journal  # noqa: E402
from autosr.train.loop import Trainer  # noqa: E402
from autosr.train.setup import DistInfo  # noqa: E402
from autosr.train_cmd import build_trainer  # noqa: E402

SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaMemcpy", "cudaMemcpyAsync", "cudaEventSynchronize")


HOST_S: Counter = Counter()  # seconds of host time inside each automation's after_step


def build(config: Path) -> Trainer:
    import time

    trainer = build_trainer(load_config(config), None, DistInfo(), Journal(None), quiet=True)
    for automation in trainer.automations:
        automation.on_start(trainer.run_info(), trainer)
        real = automation.after_step

        def timed(stats, controls, real=real, name=automation.name):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            real(stats, controls)
            HOST_S[name] += time.perf_counter() - started

        automation.after_step = timed  # type: ignore[method-assign]
    return trainer


def profile(trainer: Trainer, steps: int) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        timed_steps(trainer, steps)
    kernels, ops, host, syncs = 0, 0, Counter(), Counter()
    for event in prof.key_averages():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels += event.count
        else:
            ops += event.count if event.key.startswith("aten::") else 0
            host[event.key] = event.self_cpu_time_total / steps
            if event.key in SYNCS:
                syncs[event.key] = event.count / steps
    return {"kernels_per_step": kernels / steps, "aten_ops_per_step": ops / steps, "syncs_per_step": dict(syncs),
            "host_us_per_step": host}


def validation_seconds(trainer: Trainer) -> dict:
    """Seconds of the bicubic baseline and of three validations (the first pays cuDNN's autotuning)."""
    import time

    if trainer.validator is None:
        return {}
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    started = time.perf_counter()
    trainer.validator.bicubic()
    out = {"images": len(trainer.validator.images), "bicubic": round(time.perf_counter() - started, 3), "runs": []}
    for i in range(3):
        sync()
        started = time.perf_counter()
        trainer.validator.run(trainer.eval_model.eval(), i)
        sync()
        out["runs"].append(round(time.perf_counter() - started, 3))
    trainer.eval_model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("on", type=Path)
    parser.add_argument("off", type=Path)
    parser.add_argument("--block", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--profile-steps", type=int, default=16)
    parser.add_argument("--no-validation", action="store_true", help="skip timing one validation")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    def say(text: str) -> None:  # progress on stderr: the JSON result alone goes to stdout
        print(text, file=sys.stderr, flush=True)

    say("building the two trainers (data cached once each)…")
    trainers = {"on": build(args.on), "off": build(args.off)}
    for name, trainer in trainers.items():
        timed_steps(trainer, 60)  # past warm-up's first sampled automations, cuDNN autotuning
        say(f"  {name}: warmed up (batch {trainer.batch_size}, data {trainer.source.kind})")
    blocks: dict[str, list[float]] = {"on": [], "off": []}
    HOST_S.clear()
    on_seconds = 0.0
    for round_ in range(args.rounds):
        # A B then B A: the host's drift over time falls on both sides alike
        for name in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
            trainer = trainers[name]
            seconds = timed_steps(trainer, args.block)
            on_seconds += seconds if name == "on" else 0.0
            blocks[name].append(args.block * trainer.batch_size / seconds)
        say(f"  round {round_ + 1}/{args.rounds}: on {blocks['on'][-1]:.0f}, off {blocks['off'][-1]:.0f} samples/s")
    # Launch-bound steps: the host time the automations take is what they can cost (an upper bound,
    # and free of the ±10% block-to-block drift of the host that hides a 1% effect in the timings).
    host_share = {name: round(v / on_seconds, 5) for name, v in HOST_S.items()}
    say("profiling a few steps each…")
    profiles = {name: profile(trainer, args.profile_steps) for name, trainer in trainers.items()}
    on_host, off_host = profiles["on"].pop("host_us_per_step"), profiles["off"].pop("host_us_per_step")
    differ = sorted(set(on_host) | set(off_host), key=lambda k: -abs(on_host.get(k, 0) - off_host.get(k, 0)))[:20]
    result = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "batch": {k: t.batch_size for k, t in trainers.items()},
        "automations_on": [a.name for a in trainers["on"].automations],
        "automations_off": [a.name for a in trainers["off"].automations],
        "samples_s_median": {k: round(statistics.median(v), 1) for k, v in blocks.items()},
        "ratio_on_off": round(statistics.median(blocks["on"]) / statistics.median(blocks["off"]), 4),
        "ratio_per_round_median": round(statistics.median(a / b for a, b in zip(blocks["on"], blocks["off"], strict=True)), 4),
        "automation_host_share_of_step_time": host_share,
        "automation_host_share_total": round(sum(host_share.values()), 5),
        "blocks": {k: [round(x, 1) for x in v] for k, v in blocks.items()},
        "profile": profiles,
        "validation_s": None if args.no_validation else validation_seconds(trainers["on"]),
        "host_us_per_step_differing": {k: [round(on_host.get(k, 0), 1), round(off_host.get(k, 0), 1)] for k in differ},
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
