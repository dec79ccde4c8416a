"""Training throughput: the full step with the real data pipeline vs the same step on a batch
already on the device (the GPU-bound ceiling). Ratios are measured in one run.

    python benchmarks/train_throughput.py --arch paragonsr2_nano --batch 256 --lq 64
    python benchmarks/train_throughput.py --arch paragonsr2_s --batch 128 --lq 64 --compile
    python benchmarks/train_throughput.py --batch 64 --ssim --schedule --modes eager,graphed,compiled

--modes runs each way of executing the step in this one process, one after the other, and prints
the ratios to the first: eager (AUTOSR_NO_CUDA_GRAPH=1), graphed (the whole step as one CUDA graph,
what `autosr train` does where it can), compiled (torch.compile; its warm-up is reported apart, and
TORCHINDUCTOR_CACHE_DIR decides whether its cache is cold or warm).

Writes a generated paired set (or uses --data DIR with hr/ and lr/), builds autosr's Trainer from
a config like the one `autosr init` writes, and times N steps each way after warm-up. Prints the
device, versions, samples/s of both, their ratio and peak VRAM; `--json FILE` saves them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosr.config import validate  # noqa: E402
from autosr.journal import Journal  # noqa: E402
from autosr.synthetic import write_pairs  # noqa: E402
from autosr.train.loop import Trainer  # noqa: E402
from autosr.train.setup import DistInfo  # noqa: E402
from autosr.train_cmd import build_trainer  # noqa: E402


def make_config(
    data: Path,
    arch: str,
    batch: int,
    lq: int,
    scale: int,
    precision: str,
    compile_: bool,
    channels_last: bool,
    workers: int,
) -> dict:
    return {
        "name": "bench",
        "scale": scale,
        "num_gpu": "auto",
        "path": {},
        "manual_seed": 0,
        "use_amp": precision != "fp32",
        "amp_bf16": precision == "bf16",
        "use_channels_last": channels_last,
        "fast_matmul": True,
        "use_compile": compile_,
        "compile_mode": "default",  # what autosr init writes (traiNNer's own default autotunes for minutes)
        "network_g": {"type": arch, "scale": scale},
        "datasets": {
            "train": {
                "name": "bench",
                "type": "pairedimagedataset",
                "dataroot_gt": str(data / "hr"),
                "dataroot_lq": str(data / "lr"),
                "lq_size": lq,
                "batch_size_per_gpu": batch,
                "num_worker_per_gpu": workers,
                "accum_iter": 1,
                "use_hflip": True,
                "use_rot": True,
            }
        },
        "train": {
            "total_iter": 10**6,
            "optim_g": {"type": "AdamW", "lr": 2e-4, "weight_decay": 1e-4, "betas": [0.9, 0.99]},
            "warmup_iter": -1,
            "ema_decay": 0.999,
            "grad_clip": True,
            "grad_clip_max_norm": 1.0,
            "losses": [{"type": "l1loss", "loss_weight": 1.0}],
        },
        "val": {"val_enabled": False},
        "logger": {"print_freq": 10**6, "save_checkpoint_freq": 10**6, "use_tb_logger": False},
    }


def timed_steps(trainer: Trainer, steps: int) -> float:
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()  # what fit() runs per iteration, the runtime scheduler included
    sync()
    return time.perf_counter() - start


def run_modes(args: argparse.Namespace) -> None:
    """Each mode in turn, in this process, on the same data: samples/s and ratios to the first."""
    import os
    import subprocess

    rows = []
    for mode in args.modes.split(","):
        env = {**os.environ, "AUTOSR_NO_CUDA_GRAPH": "0" if mode == "graphed" else "1"}
        argv = [sys.executable, __file__, "--arch", args.arch, "--batch", str(args.batch), "--lq", str(args.lq),
                "--scale", str(args.scale), "--precision", args.precision, "--steps", str(args.steps),
                "--warmup", str(args.warmup), "--images", str(args.images), "--workers", str(args.workers)]
        argv += ["--ssim"] * args.ssim + (["--schedule", args.schedule] if args.schedule else [])
        argv += ["--compile"] * (mode == "compiled") + (["--data", str(args.data)] if args.data else [])
        out = subprocess.run(argv, env=env, capture_output=True, text=True)
        if out.returncode:
            print(f"{mode}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"mode": mode, **row})
    base = rows[0]["end_to_end_samples_s"] if rows else 1.0
    for row in rows:
        row["vs_first"] = round(row["end_to_end_samples_s"] / base, 3)
        print(json.dumps(row))
    print(f"{'mode':<9} {'samples/s':>10} {'ceiling':>9} {'ratio':>6} {'vs ' + rows[0]['mode'] if rows else '':>10} {'warm-up s':>9}")
    for row in rows:
        print(f"{row['mode']:<9} {row['end_to_end_samples_s']:>10.0f} {row['ceiling_samples_s']:>9.0f} {row['ratio']:>6.3f} "
              f"{row['vs_first']:>10.3f} {row['warmup_seconds']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="paragonsr2_nano")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lq", type=int, default=64)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--images", type=int, default=64, help="generated pairs (HR 512×512)")
    parser.add_argument("--data", type=Path, help="folder with hr/ and lr/ (default: generate)")
    parser.add_argument(
        "--force-loader", action="store_true", help="stream from disk with workers instead of the cache"
    )
    parser.add_argument("--ssim", action="store_true", help="L1 + 0.05 SSIM, as the presets train (default: L1)")
    parser.add_argument("--schedule", nargs="?", const="all", default="",
                        help="the runtime scheduler on: all of it (DLS + every automation, as init plans them) "
                             "or a comma list of names (dynamic_loss_scheduling, AdaptiveGradientClipping, …)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--modes", default="", help="comma list of eager, graphed, compiled (see above)")
    args = parser.parse_args()
    if args.modes:
        run_modes(args)
        return

    data = args.data
    if data is None:
        data = Path(tempfile.gettempdir()) / f"autosr-bench-x{args.scale}-{args.images}"
        if not (data / "hr").is_dir():
            write_pairs(data, args.images, scale=args.scale, size=(512, 512), seed=1)
    tree = make_config(
        data,
        args.arch,
        args.batch,
        args.lq,
        args.scale,
        args.precision,
        args.compile,
        not args.no_channels_last,
        args.workers,
    )
    if args.ssim:
        tree["train"]["losses"].append({"type": "ssimloss", "loss_weight": 0.05})
    if args.schedule:
        from autosr.schedule import AUTOMATION_NAMES

        fidelity = {n for n in AUTOMATION_NAMES if n != "GANBalance"}  # GANBalance is for GAN runs
        chosen = fidelity | {"dynamic_loss_scheduling"} if args.schedule == "all" else set(args.schedule.split(","))
        tree["train"]["dynamic_loss_scheduling"] = {"enabled": "dynamic_loss_scheduling" in chosen, "auto_calibrate": True}
        tree["train"]["training_automations"] = {"enabled": True, **{n: {"enabled": n in chosen} for n in AUTOMATION_NAMES}}
    cfg = validate(tree, "benchmark config")
    if args.force_loader:
        import autosr.train.inputs as inputs_module

        inputs_module.cache_budget_bytes = lambda device: (0, None, "forced to stream (--force-loader)")
    trainer = build_trainer(cfg, None, DistInfo(), Journal(None), quiet=True)

    for automation in trainer.automations:
        automation.on_start(trainer.run_info(), trainer)
    compile_started = time.perf_counter()
    timed_steps(trainer, args.warmup)  # includes torch.compile's first-step build
    warm_seconds = time.perf_counter() - compile_started
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    full = timed_steps(trainer, args.steps)
    peak = torch.cuda.max_memory_allocated() / 2**30 if trainer.device.type == "cuda" else None

    # The ceiling: the same step with one batch already on the device (no data pipeline at all).
    fixed = trainer.source.next_batch()
    trainer.source.next_batch = lambda: fixed  # type: ignore[method-assign]
    timed_steps(trainer, 3)
    ceiling = timed_steps(trainer, args.steps)

    result = {
        "device": torch.cuda.get_device_name()
        if trainer.device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "arch": args.arch,
        "scale": args.scale,
        "lq": args.lq,
        "batch": trainer.batch_size,
        "precision": trainer.precision.label,
        "channels_last": trainer.s.runtime.channels_last,
        "compile": args.compile, "losses": [t.name for t in trainer.objective.terms],
        "cuda_graph": type(trainer.objective).__name__ == "GraphedFidelity",
        "schedule": [a.name for a in trainer.automations],
        "data": trainer.source.kind,
        "data_reason": trainer.source.reason,
        "warmup_seconds": round(warm_seconds, 2),
        "end_to_end_samples_s": round(args.steps * trainer.batch_size / full, 1),
        "ceiling_samples_s": round(args.steps * trainer.batch_size / ceiling, 1),
        "peak_vram_gib": round(peak, 2) if peak is not None else None,
    }
    result["ratio"] = round(result["end_to_end_samples_s"] / result["ceiling_samples_s"], 3)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    trainer.source.close()


if __name__ == "__main__":
    main()
