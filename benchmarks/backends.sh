#!/usr/bin/env bash
# Trials per hour of the digits study: local backend vs Ray Tune at concurrency 1 and 2,
# one CPU (one torch thread) per trial, the same random-sampler configurations in each run.
# Usage: bash benchmarks/backends.sh [TRIALS]   (writes under ${OUT:-/tmp/nas-hpo-bench})
set -euo pipefail
trials=${1:-6}
out=${OUT:-/tmp/nas-hpo-bench}
rm -rf "$out" && mkdir -p "$out"
common=(--sampler random --seed 0 --trials "$trials" --storage "$out/bench.journal"
        --artifacts "$out/art" -q)
run() {  # name, args...
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  hpo run "${common[@]}" --name "$name" "$@" > "$out/$name.log" 2>&1
  end=$(date +%s.%N)
  python3 - "$name" "$start" "$end" "$trials" "$out/bench.journal" <<'PY'
import sys
import optuna
from hpo.records import timing_summary
from hpo.storage import open_storage
name, start, end, trials, storage = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
study = optuna.load_study(study_name=name, storage=open_storage(storage))
t = timing_summary(study.get_trials())
wall = end - start
print(f"{name:14s} wall {wall:6.1f} s  trials/hour {3600 * trials / wall:6.1f}  "
      f"median trial {t['evaluate_s']:5.1f} s  median cycle-minus-trial {t['overhead_s']:6.3f} s")
PY
}
run local-1thread --threads 1
run ray-c1 --backend ray --concurrency 1 --cpus-per-trial 1
run ray-c2 --backend ray --concurrency 2 --cpus-per-trial 1
