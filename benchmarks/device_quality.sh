#!/usr/bin/env bash
# One device call (~8 min on an H200), 3-minute budgets on the real photographs (carry .bench/photos):
# group 1 — nano and s, the whole step as one CUDA graph vs eager (AUTOSR_NO_CUDA_GRAPH=1), the four at
# once on one GPU (each pair shares the GPU at the same moment); group 2 — the newer family (realtime,
# stream, photo) with autosr's short-run rule (batch 64, lq 64, lr 2e-3, warm-up 100), three at once.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() { echo "=== $1 ($(date +%T))" >> "$LOG"; shift; "$@" >> "$LOG" 2>&1; echo "--- exit $? ($(date +%T))" >> "$LOG"; }
step "graphed = eager (CUDA test)" timeout 100 python3 -m pytest tests/test_gpu.py -x -q -p no:cacheprovider -k graphed
step "group 1: graph vs eager, nano and s, 3 min" timeout 290 python3 benchmarks/quality_at_time.py --time 3m --together 4 \
  --arch paragonsr2_nano --work /tmp/q1 --json "$OUT/q_graph.json" \
  --setting "nano_graph=" --setting "nano_eager=env:AUTOSR_NO_CUDA_GRAPH=1" \
  --setting "s_graph=arch:paragonsr2_s" --setting "s_eager=arch:paragonsr2_s;env:AUTOSR_NO_CUDA_GRAPH=1"
RULE="datasets.train.batch_size_per_gpu=64;datasets.train.lq_size=64;train.optim_g.lr=2.0e-3;train.warmup_iter=100"
step "group 2: realtime, stream, photo, 3 min" timeout 290 python3 benchmarks/quality_at_time.py --time 3m --together 3 \
  --work /tmp/q2 --json "$OUT/q_family.json" \
  --setting "realtime=arch:paragonsr2_realtime;$RULE" --setting "stream=arch:paragonsr2_stream;$RULE" \
  --setting "photo=arch:paragonsr2_photo;$RULE"
echo "=== done $(date +%T)" >> "$LOG"
