#!/usr/bin/env bash
# The GPU figures the open issues still owe (docs/design-notes.md, "Not done yet"), as two device calls
# of ≤ 10 minutes each on one H200; carry .bench/photos (python benchmarks/photos.py builds it). Each
# writes $OUT/log.txt and JSON files; the first figures are the cheapest and most wanted.
#   call 1:  bash benchmarks/device_owed.sh 1   (~9 min) tests, step ratios, checkpointing, degradation
#   call 2:  bash benchmarks/device_owed.sh 2   (~9 min) the result users feel: graph vs eager alone, A B B A
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
LOG="$OUT/log.txt"
step() { echo "=== $1 ($(date +%T))" >> "$LOG"; shift; "$@" >> "$LOG" 2>&1; echo "--- exit $? ($(date +%T))" >> "$LOG"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >> "$LOG" 2>&1
python3 -c "import torch; print('torch', torch.__version__)" >> "$LOG" 2>&1

if [ "${1:-1}" = 1 ]; then
  # #23: the graphed step = the eager one (weights' relative-norm bound), the other CUDA tests
  step "GPU tests" timeout 150 python3 -m pytest tests/test_gpu.py -q -p no:cacheprovider
  # #24: the scheduler's step ratio on vs off (nano, batch 64), alternating blocks
  D=.bench/photos
  step "init on/off" bash -c "python3 -m autosr init --gt $D/train/hr --lq $D/train/lr -o /tmp/so/on.yml --no-calibrate \
      --set train.total_iter=20000 && python3 -m autosr init --gt $D/train/hr --lq $D/train/lr -o /tmp/so/off.yml \
      --no-calibrate --set train.total_iter=20000 --set train.dynamic_loss_scheduling.enabled=false \
      --set train.training_automations.enabled=false"
  step "scheduler step ratio" timeout 150 python3 benchmarks/scheduler_profile.py /tmp/so/on.yml /tmp/so/off.yml \
    --json "$OUT/scheduler_ratio.json"
  # #20: what use_checkpointing saves and costs on the GPU (bf16, the allocator's peak)
  step "checkpointing cost" timeout 120 python3 benchmarks/checkpointing_cost.py --json "$OUT/checkpointing.json"
  # #22: the degradation's cost per batch against the step, realesrgan and bicubic
  step "degradation cost" timeout 60 python3 benchmarks/degradation_cost.py --json "$OUT/degradation.json"
  step "degradation cost (bicubic)" timeout 40 python3 benchmarks/degradation_cost.py --config bicubic \
    --json "$OUT/degradation_bicubic.json"
fi

if [ "${1:-1}" = 2 ]; then
  # #23: the result users feel of the CUDA graph, nano zero-config alone, 2 minutes, A B then B A
  step "nano graph vs eager, alone, 2 min, A B B A" timeout 580 python3 benchmarks/quality_at_time.py --time 2m \
    --rounds 2 --arch paragonsr2_nano --work /tmp/q4 --json "$OUT/q_graph_alone.json" \
    --setting "graph=" --setting "eager=env:AUTOSR_NO_CUDA_GRAPH=1"
fi
echo "=== done $(date +%T)" >> "$LOG"
