#!/usr/bin/env bash
# One device call (~9 min on an H200; carry .bench/photos): the graphed-step CUDA test; realistic vs
# fidelity (3 min each, the two at once, nano, paired photos: held-out PSNR and the offline detail
# measure hf_ratio); the result users feel of the CUDA graph: nano zero-config graph then eager, alone, 2 min each.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() { echo "=== $1 ($(date +%T))" >> "$LOG"; shift; "$@" >> "$LOG" 2>&1; echo "--- exit $? ($(date +%T))" >> "$LOG"; }
step "graphed = eager (CUDA test)" timeout 100 python3 -m pytest tests/test_gpu.py -x -q -p no:cacheprovider -k graphed
step "realistic vs fidelity, nano, 3 min, together" timeout 250 python3 benchmarks/quality_at_time.py --time 3m --together 2 \
  --arch paragonsr2_nano --work /tmp/q3 --json "$OUT/q_realistic.json" \
  --setting "fidelity=" --setting "realistic=init:--style=realistic"
step "nano zero-config, graphed then eager, alone, 2 min" timeout 330 python3 benchmarks/quality_at_time.py --time 2m \
  --arch paragonsr2_nano --work /tmp/q4 --json "$OUT/q_graph_alone.json" \
  --setting "graph=" --setting "eager=env:AUTOSR_NO_CUDA_GRAPH=1"
echo "=== done $(date +%T)" >> "$LOG"
