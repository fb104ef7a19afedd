#!/usr/bin/env bash
# GPU paths, checked on a lent GPU machine (not part of CI). Usage:
#   bash benchmarks/gpu_check.sh throughput OUT   # ~3 min: DETR-R50 layout (800 px) and the tiny
#       default, fp32 / bf16 steps/s and peak memory, 2 and 4 processes sharing the GPU, and
#       with two GPUs a 2-worker DDP job (benchmarks/gpu_check.py; OUT/gpu_check.md)
#   bash benchmarks/gpu_check.sh train OUT        # the embedded default's run in fp32 and fp16
#   bash benchmarks/gpu_check.sh search OUT       # a search packing two trials on one GPU
#   bash benchmarks/gpu_check.sh search-ddp OUT   # two GPUs: a search of 2-worker DDP trials
# The project's wheels are carried in .whl/ (and Ray's in .raypart/): the machine is offline.
set -euo pipefail
what=$1; out=$2
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DETR_SEARCH_CACHE=/tmp/cache
if [ "$what" != search ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
if [ "$what" = throughput ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
  python3 benchmarks/gpu_check.py all "$out"
elif [ "$what" = train ]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
  for cfg in detr_core/defaults/run.yaml benchmarks/gpu_fp16.yaml; do
    name=$(basename "$cfg" .yaml)
    /usr/bin/time -f "wall %e s" python3 -m detr_core.train --config "$cfg" \
      --output-dir "/tmp/run_$name" > "$out/train_$name.log" 2>&1 || true
    grep -E "train_runtime|test metrics|IoU mean|mAP@.5 |missed|best eval|wall|Error" \
      "$out/train_$name.log" | tail -12
  done
else
  cat .raypart/ray.part.* > /tmp/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site /tmp/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl
  if [ "$what" = search-ddp ]; then  # the dashboard stays on: Train frees stopped trials' GPUs
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
    /usr/bin/time -f "wall %e s" python3 search/run.py --space benchmarks/gpu_ddp_space.yaml \
      --storage /tmp/results > "$out/search.log" 2>&1 || true
    tail -8 "$out/search.log"
    cp /tmp/results/gpu_ddp/REPORT.md /tmp/results/gpu_ddp/trials.csv "$out/" 2>/dev/null || true
    exit 0
  fi
  /usr/bin/time -f "wall %e s" python3 search/run.py --space benchmarks/gpu_space.yaml \
    --storage /tmp/results --no-dashboard > "$out/search.log" 2>&1 || true
  tail -5 "$out/search.log"
  python3 - "$out" <<'PY'
import json, sys, pathlib
rows = []
for trial in sorted(pathlib.Path("/tmp/results/gpu_packing").glob("train_detr_*")):
    lines = [json.loads(l) for l in (trial / "result.json").read_text().splitlines() if l]
    if lines:
        first, last = lines[0], lines[-1]
        rows.append((trial.name[:19], last.get("device"), last["step"],
                     round(last["timestamp"] - last["time_total_s"]), last["timestamp"],
                     round(min(r["eval_loss_bbox"] for r in lines), 4)))
for r in rows:
    print("trial %s device=%s last_step=%s start=%s end=%s best_bbox=%s" % r)
starts = sorted((r[3], r[4]) for r in rows)
overlap = any(a[1] > b[0] for a, b in zip(starts, starts[1:]))
print("trials overlapped in time on one GPU:", overlap)
(pathlib.Path(sys.argv[1]) / "packing.json").write_text(json.dumps(rows, indent=1))
PY
  cp /tmp/results/gpu_packing/REPORT.md "$out/" 2>/dev/null || true
fi
