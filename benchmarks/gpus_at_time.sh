#!/usr/bin/env bash
# 1 GPU vs every GPU at the same wall-clock budget, with plain `autosr train` (no torchrun):
#   bash benchmarks/gpus_at_time.sh [arch] [budget] [out]     (real photos from benchmarks/photos.py)
set -euo pipefail
arch=${1:-paragonsr2_nano}; budget=${2:-1m}; out=${3:-/tmp/gpus_at_time}; data=.bench/photos
for gpus in 1 all; do
  work=$out/$gpus; mkdir -p "$work"
  python -m autosr init --gt $data/train/hr --lq $data/train/lr --val-gt $data/val/hr --val-lq $data/val/lr \
    --arch "$arch" --time "$budget" --no-calibrate -o "$work/cfg.yml" --name "g$gpus" --force > "$work/init.log" 2>&1
  flag=(); [ "$gpus" = 1 ] && flag=(--gpus 1)
  start=$(python -c "import time; print(time.time())")
  python -m autosr train "$work/cfg.yml" "${flag[@]}" --out "$work/runs" > "$work/train.log" 2>&1
  python -c "import time; print('$gpus', round(time.time() - $start, 1))" >> "$out/wall.txt"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
walls = dict(line.split() for line in (out / "wall.txt").read_text().splitlines())
for gpus in ("1", "all"):
    run = out / gpus / "runs" / f"g{gpus}"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    vals = [r["psnr"] for r in rows if r.get("kind") == "val"]
    base = next(r["psnr"] for r in rows if r.get("kind") == "baseline")
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    procs = [e for e in events if e["key"] == "num_gpu"]
    speed = sorted(r["samples_s"] for r in train[1:])
    print(json.dumps({"gpus": gpus, "processes": procs[-1]["new"] if procs else None, "wall_s": float(walls[gpus]),
                      "iterations": train[-1]["iter"], "median_samples_s": speed[len(speed) // 2] if speed else None,
                      "best_psnr": round(max(vals), 4) if vals else None, "bicubic": round(base, 4),
                      "gain_db": round(max(vals) - base, 3) if vals else None}))
PY
