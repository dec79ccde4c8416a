#!/usr/bin/env bash
# The shortened last device call (what ~5 minutes of device time allows): the graphed-step CUDA test,
# then realistic vs fidelity, nano, 2-minute budgets, the two at once (paired photos; carry .bench/photos).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() { echo "=== $1 ($(date +%T))" >> "$LOG"; shift; "$@" >> "$LOG" 2>&1; echo "--- exit $? ($(date +%T))" >> "$LOG"; }
step "graphed = eager (CUDA test)" timeout 60 python3 -m pytest tests/test_gpu.py -x -q -p no:cacheprovider -k graphed
step "realistic vs fidelity, nano, 2 min, together" timeout 190 python3 benchmarks/quality_at_time.py --time 2m --together 2 \
  --arch paragonsr2_nano --work /tmp/q3 --json "$OUT/q_realistic.json" \
  --setting "fidelity=" --setting "realistic=init:--style=realistic"
echo "=== done $(date +%T)" >> "$LOG"
