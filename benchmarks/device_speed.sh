#!/usr/bin/env bash
# One device call (~8 min on an H200): the GPU tests (graphed step vs eager), the step's speed
# eager / graphed / compiled for nano and s (ratios in one run), the newer ParagonSR2 family's
# memory and speed, on-the-fly degradation cost. Everything lands in $OUT (log.txt + JSON files).
#   device run:  bash benchmarks/device_speed.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() { echo "=== $1 ($(date +%T))" >> "$LOG"; shift; "$@" >> "$LOG" 2>&1; echo "--- exit $? ($(date +%T))" >> "$LOG"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG" 2>&1
python3 -c "import torch; print('torch', torch.__version__)" >> "$LOG" 2>&1
step "GPU tests" timeout 170 python3 -m pytest tests/test_gpu.py -x -q -p no:cacheprovider
step "nano b64 modes" timeout 170 python3 benchmarks/train_throughput.py --arch paragonsr2_nano --batch 64 --lq 64 --ssim --schedule \
  --modes eager,graphed,compiled --steps 300 --warmup 20 --images 48 --json "$OUT/tp_nano.json"
step "s b64 modes" timeout 200 python3 benchmarks/train_throughput.py --arch paragonsr2_s --batch 64 --lq 64 --ssim --schedule \
  --modes eager,graphed,compiled --steps 60 --warmup 10 --images 48 --json "$OUT/tp_s.json"
for v in realtime stream photo pro; do
  step "$v b64 graphed" timeout 60 python3 benchmarks/train_throughput.py --arch paragonsr2_$v --batch 64 --lq 64 --ssim --schedule \
    --modes graphed --steps 40 --warmup 6 --images 48
done
step "v2 memory" timeout 90 python3 benchmarks/preset_memory.py --variants realtime,stream,photo,pro
step "degradation cost" timeout 60 python3 benchmarks/degradation_cost.py --json "$OUT/degradation.json"
echo "=== done $(date +%T)" >> "$LOG"
