#!/usr/bin/env bash
# The GPU check of issue 26, one prepared script that fits in about 8 minutes on one GPU:
#   1. the GPU tests (tests/test_gpu.py: search, family, resume and training on CUDA);
#   2. the supernet benchmark at the Experiment 1 and digits shapes, fp32 and bf16, the
#      per-edge reference and the fast path alternating in one run;
#   3. the seed's Experiment 1 on the FULL Fashion-MNIST training set, search seeds 0, 1, 2
#      side by side on the one GPU (studies/fashion-mnist-exp1-full.yaml), then Table 1.
# Needs torch with CUDA, numpy, scipy, scikit-learn, pandas, PyYAML and pytest; no Optuna or
# Ray. Fashion-MNIST travels with the code in the git-ignored data/fashion-mnist/ (copy the
# four .gz files of /usr/share/datasets/fashion-mnist there). Results go to $OUT (default
# runs/gpu-check/). GPU_CHECK_SMOKE=1: a few seconds on a CPU, to check the script itself.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 NAS_HPO_DATA=${NAS_HPO_DATA:-$PWD/data}
DEVICE=cuda STUDY=studies/fashion-mnist-exp1-full.yaml STEPS=20 SEEDS="0 1 2"
if [ "${GPU_CHECK_SMOKE:-0}" = 1 ]; then
  DEVICE=cpu STUDY=tests/studies/tiny.yaml STEPS=2 SEEDS="0 1"
fi
log() { echo "== $(date +%T) $*" | tee -a "$OUT/check.log"; }

log "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/check.log"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  'available', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/check.log"

log "1. GPU tests"
timeout 90 python -m pytest --noconftest -q -p no:cacheprovider tests/test_gpu.py 2>&1 \
  | tail -5 | tee -a "$OUT/check.log"

log "2. supernet benchmark (images/s; per-edge reference vs fast path, alternating)"
timeout 120 python - "$DEVICE" "$STEPS" <<'EOF' 2>&1 | tee -a "$OUT/check.log" "$OUT/bench.jsonl"
import json, sys
from search_core.bench import compare_supernets
from search_core.config import SearchSpace
device, steps = sys.argv[1], int(sys.argv[2])
shapes = {"exp1": (SearchSpace(channels=16), 28), "digits": (SearchSpace(channels=8), 8)}
for name, (space, image) in shapes.items():
    for precision in ("fp32", "bf16"):
        ref, fast = compare_supernets(space, image=image, batch=64, steps=steps, warmup=3,
                                      device=device, precision=precision, threads=1)
        print(json.dumps({"shape": name, "precision": precision, "device": fast.device,
                          "per_edge": round(ref.images_per_s, 1),
                          "fast": round(fast.images_per_s, 1),
                          "ratio": round(fast.images_per_s / ref.images_per_s, 2)}))
EOF

log "3. full-data Experiment 1, seeds $SEEDS side by side"
pids=()
for s in $SEEDS; do
  timeout 300 python benchmarks/full_search.py --study "$STUDY" --seeds "$s" --device "$DEVICE" \
    --threads 4 --artifacts "$OUT/art" --out "$OUT/full-s$s.jsonl" > "$OUT/full-s$s.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || log "a search exited with $? (see $OUT/full-s*.log)"; done
tail -n 3 "$OUT"/full-s*.log | tee -a "$OUT/check.log"
cat "$OUT"/full-s*.jsonl > "$OUT/full.jsonl" 2>/dev/null
python benchmarks/full_search.py --study "$STUDY" --seeds "" --out "$OUT/full.jsonl" 2>&1 \
  | tee -a "$OUT/check.log" "$OUT/table.md"
log "done"
