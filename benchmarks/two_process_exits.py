"""Do two-process runs exit cleanly? N consecutive `torchrun --standalone --nproc-per-node 2 -m autosr train`
runs (gloo, CPU) of a short config on the test photos; each must exit 0 with both ranks done, and none may
print "terminate called" (a C++ thread torn down while running: the abort seen after "done" before the fix).

    python benchmarks/two_process_exits.py --runs 20          # the issue's check
    python benchmarks/two_process_exits.py --runs 2 --autosr  # `autosr train` with two forced processes
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"


def config(folder: Path) -> Path:
    tree = {
        "name": "two", "scale": 2, "num_gpu": "auto", "path": {}, "manual_seed": 3, "use_channels_last": False,
        "network_g": {"type": "paragonsr2_nano"},
        "datasets": {"train": {"name": "t", "type": "pairedimagedataset", "dataroot_gt": str(PHOTOS / "train/hr"),
                               "dataroot_lq": str(PHOTOS / "train/lr"), "lq_size": 16, "batch_size_per_gpu": 2,
                               "num_worker_per_gpu": 0},
                     "val": {"name": "v", "type": "pairedimagedataset", "dataroot_gt": str(PHOTOS / "val/hr"),
                             "dataroot_lq": str(PHOTOS / "val/lr")}},
        "train": {"total_iter": 12, "optim_g": {"type": "AdamW", "lr": 1e-3}, "losses": [{"type": "l1loss", "loss_weight": 1.0}]},
        "val": {"val_enabled": True, "val_freq": 6, "metrics_enabled": True, "metrics": {"psnr": {"type": "calculate_psnr"}}},
        "logger": {"print_freq": 6, "save_checkpoint_freq": 6, "use_tb_logger": False},
    }
    path = folder / "two.yml"
    path.write_text(yaml.safe_dump(tree))
    return path


def one_run(folder: Path, use_autosr: bool) -> tuple[int, str]:
    cfg = config(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if use_autosr:
        env["AUTOSR_FORCE_PROCS"] = "2"
        cmd = [sys.executable, "-m", "autosr", "train", str(cfg), "--out", str(folder / "runs")]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "autosr", "train", str(cfg), "--out", str(folder / "runs")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return done.returncode, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--autosr", action="store_true", help="`autosr train` starting its two processes itself")
    args = parser.parse_args()
    bad = 0
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            code, out = one_run(Path(tmp), args.autosr)
            aborted = "terminate called" in out
            ok = code == 0 and not aborted
            bad += not ok
            print(f"run {i + 1}/{args.runs}: exit {code}{' (terminate called)' if aborted else ''} "
                  f"in {time.perf_counter() - started:.0f} s", flush=True)
            if not ok:
                print(out[-1500:], flush=True)
    print(f"{args.runs - bad} of {args.runs} runs exited cleanly")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
