"""The result users feel: held-out PSNR after the same wall-clock time, zero-config vs hand settings.

    python benchmarks/photos.py                      # real photographs → .bench/photos (once)
    python benchmarks/quality_at_time.py --arch paragonsr2_nano --time 3m \\
        --setting zero= \\
        --setting bs64_lr1e-3=datasets.train.batch_size_per_gpu=64,train.optim_g.lr=1.0e-3 \\
        --json out.json

Every setting runs the real commands: `autosr init --time T` on the training photos (validation
on the held-out photos), with the setting's `--set` values on top (none for zero-config), then
`autosr train`, which fits the run to the budget. Reported per setting: batch, LR, warm-up,
compile, iterations done, the train command's wall time, init's time (its calibration), the best
and the final held-out PSNR, the bicubic PSNR and the gain over it. Runs are sequential, one GPU
each, so wall times are comparable within one invocation.

On a host with several GPUs, `--gpus N` runs N settings at the same time, one GPU each, and
`--rounds R` repeats every setting R times with the GPUs rotated (on one GPU: in A B, B A order): a
paired comparison in which both sides see the same host at the same moment (small models are
launch-bound, so the host's speed, not the GPU's, sets how many iterations fit in the budget;
sequential single runs of the same setting differ by ±10% or more in samples/s on a shared host).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autosr.durations import parse_duration  # noqa: E402
from autosr.runfolder import RunFolder, read_jsonl  # noqa: E402


def run_setting(name: str, sets: list[str], args: argparse.Namespace, work: Path, gpu: int | None = None) -> dict:
    """One setting: `--set` items, plus `arch:NAME` (another --arch), `env:KEY=VALUE` (for both commands)
    and `init:--flag=value` (another init option)."""
    data, folder = Path(args.data), work / name
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "cfg.yml"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    arch, extra = args.arch, []
    for item in [s for s in sets if s.split(":", 1)[0] in ("arch", "env", "init")]:
        kind, _, value = item.partition(":")
        if kind == "arch":
            arch = value
        elif kind == "env":
            key, _, val = value.partition("=")
            env[key] = val
        else:
            extra += value.split("=", 1)
    sets = [s for s in sets if s.split(":", 1)[0] not in ("arch", "env", "init")]
    cli = [sys.executable, "-m", "autosr"]
    init = [*cli, "init", "--gt", str(data / "train/hr"), "--lq", str(data / "train/lr"),
            "--val-gt", str(data / "val/hr"), "--val-lq", str(data / "val/lr"), "--arch", arch,
            "-o", str(config), "--force", "--name", name, *extra]
    # equal wall time (the product's promise), or equal iterations (what a setting does per step,
    # free of the GPU's run-to-run speed spread)
    init += ["--set", f"train.total_iter={args.iters}"] if args.iters else ["--time", args.time]
    for item in sets:
        init += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(init, capture_output=True, text=True, env=env)
    init_s = time.perf_counter() - started
    if done.returncode:
        return {"setting": name, "error": f"init failed: {done.stderr.strip()[-400:]}"}
    started = time.perf_counter()
    done = subprocess.run([*cli, "train", str(config), "--out", str(folder / "runs")],
                          capture_output=True, text=True, env=env)
    train_s = time.perf_counter() - started
    (folder / "train.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if args.keep:
        keep = Path(args.keep)
        keep.mkdir(parents=True, exist_ok=True)
        run_dir = RunFolder(folder / "runs" / name)
        for source, suffix in ((run_dir.metrics, "metrics.jsonl"), (run_dir.events, "events.jsonl"), (folder / "train.log", "train.log")):
            if source.is_file():
                shutil.copyfile(source, keep / f"{args.arch}_{name}_{suffix}")
    if done.returncode:
        return {"setting": name, "error": f"train failed: {done.stderr.strip()[-400:]}"}
    run = RunFolder(folder / "runs" / name)
    rows = read_jsonl(run.metrics).records
    vals = [r for r in rows if r.get("kind") == "val"]
    base = next(r for r in rows if r.get("kind") == "baseline")["psnr"]
    train = [r for r in rows if r.get("kind") == "train"]
    import yaml

    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    best = max(r["psnr"] for r in vals)
    realism = {k: vals[-1][k] for k in ("hf_ratio", "gmsd", "lpips") if k in vals[-1]}  # the final model's, when measured
    return {
        "setting": name,
        "sets": sets,
        "batch": cfg["datasets"]["train"]["batch_size_per_gpu"],
        "lr": cfg["train"]["optim_g"]["lr"],
        "warmup": cfg["train"].get("warmup_iter"),
        "compile": cfg.get("use_compile"),
        "iterations": max(r["iter"] for r in rows),
        "init_s": round(init_s, 1),
        "train_s": round(train_s, 1),
        "samples_s": round(sum(r.get("samples_s", 0) for r in train) / max(1, len(train)), 1),
        "bicubic": round(base, 4),
        "best_psnr": round(best, 4), **{f"final_{k}": v for k, v in realism.items()},
        "final_psnr": round(vals[-1]["psnr"], 4),
        "gain_db": round(best - base, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=".bench/photos", help="folder with train/{hr,lr} and val/{hr,lr}")
    parser.add_argument("--arch", default="paragonsr2_nano")
    parser.add_argument("--time", default="3m", help="wall-clock budget of each run")
    parser.add_argument("--setting", action="append", default=[],
                        help="NAME=key=value,key=value (NAME= alone: zero-config); repeatable")
    parser.add_argument("--iters", type=int, help="equal iterations instead of equal time: every run trains this many")
    parser.add_argument("--gpus", type=int, default=1, help="run this many settings at once, one GPU each")
    parser.add_argument("--rounds", type=int, default=1, help="run every setting this many times (GPUs rotated)")
    parser.add_argument("--keep", help="copy each run's metrics.jsonl, events.jsonl and train.log here (flat names)")
    parser.add_argument("--work", default="/tmp/quality_at_time")
    parser.add_argument("--together", type=int, default=1,
                        help="run this many settings at the same time on one GPU (they share it: a fair pairing of "
                             "the settings that run together, not the speed one run alone gets)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    budget = parse_duration(args.time)
    specs = []
    for spec in args.setting or ["zero="]:
        name, _, rest = spec.partition("=")
        specs.append((name, [s for s in rest.split(";" if ";" in rest else ",") if s]))
    results: list[dict] = []
    for round_ in range(args.rounds):
        order = specs if args.gpus > 1 or round_ % 2 == 0 else specs[::-1]  # one GPU: A B, B A, … (drift cancels)
        width = max(args.gpus, args.together)
        for start in range(0, len(order), width):
            group = order[start:start + width]
            with ThreadPoolExecutor(max_workers=len(group)) as pool:
                futures = []
                for slot, (name, sets) in enumerate(group):
                    gpu = (slot + round_) % args.gpus if args.gpus > 1 else None  # --together: all on the one GPU
                    label = f"{name}_r{round_}" if args.rounds > 1 else name
                    futures.append((name, round_, gpu, pool.submit(run_setting, label, sets, args, Path(args.work) / args.arch, gpu)))
                for name, round_no, gpu, future in futures:
                    result = {**future.result(), "setting": name, "round": round_no, "gpu": gpu}
                    result["budget_s"] = None if args.iters else budget
                    results.append(result)
                    print(json.dumps(result), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    length = f"{args.iters} iterations each" if args.iters else f"budget {args.time} ({budget:.0f} s)"
    print(f"\n{args.arch}, {length}, held-out PSNR on {args.data}/val")
    print("| setting | round | gpu | batch | lr | warm-up | compile | iters | samples/s | train s | PSNR best | PSNR final | vs bicubic |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['setting']} | {r['round']} | {r['gpu']} | {r['error'][:80]} |")
            continue
        took = f"{r['train_s']:.0f}" + ("" if args.iters else f" ({r['train_s'] / budget:.1%})")
        print(f"| {r['setting']} | {r['round']} | {r['gpu']} | {r['batch']} | {r['lr']:.1e} | {r['warmup']} | {r['compile']} | "
              f"{r['iterations']} | {r['samples_s']:,.0f} | {took} | {r['best_psnr']:.3f} | {r['final_psnr']:.3f} | "
              f"{r['gain_db']:+.3f} dB |")
    if args.rounds > 1:
        print("\nmean over rounds (best held-out PSNR gain over bicubic, iterations)")
        for name, _ in specs:
            mine = [r for r in results if r["setting"] == name and "error" not in r]
            if mine:
                gain = sum(r["gain_db"] for r in mine) / len(mine)
                iters = sum(r["iterations"] for r in mine) / len(mine)
                each = ", ".join(f"{r['gain_db']:+.3f}" for r in mine)
                print(f"  {name}: {gain:+.3f} dB over {len(mine)} runs ({each}), {iters:,.0f} iterations")


if __name__ == "__main__":
    main()
