#!/usr/bin/env bash
# Everything the device run verifies, in one call: detect vs nvidia-smi, measured preset memory,
# throughput (eager and compiled), the GPU tests, and a real `autosr init` + `autosr train`.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
log() { echo "=== $*"; }
{
log nvidia-smi; nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv
log detect; python -m autosr.cli detect --json | tee "$OUT/detect.json"
log memory; python benchmarks/preset_memory.py --write && tar czf "$OUT/presets.tgz" presets
for spec in "paragonsr2_nano 512" "paragonsr2_s 128"; do
  set -- $spec
  log "throughput $1 batch $2 eager"; python benchmarks/train_throughput.py --arch $1 --batch $2 --lq 64 --steps 50
  log "throughput $1 batch $2 compile"; python benchmarks/train_throughput.py --arch $1 --batch $2 --lq 64 --steps 50 --compile
done
log gpu-tests; python -m pytest -q -s tests/test_gpu.py 2>&1 | tail -8
log init+train
python - <<'PY'
from autosr.synthetic import write_pairs
write_pairs("/tmp/e2e", 64, scale=2, size=(512, 512), seed=5)
PY
python -m autosr.cli init --gt /tmp/e2e/hr --lq /tmp/e2e/lr -o /tmp/e2e/auto.yml --arch paragonsr2_nano
grep -E "batch_size_per_gpu|accum_iter|amp_bf16|use_compile|lr:" /tmp/e2e/auto.yml
python -m autosr.cli train /tmp/e2e/auto.yml --out /tmp/e2e/runs --set train.total_iter=400 --set val.val_freq=200 --set logger.print_freq=100 2>&1 | tail -12
tail -3 /tmp/e2e/runs/*/metrics.jsonl
} 2>&1 | tee "$OUT/log.txt"
