#!/usr/bin/env bash
# Core comparison on one data set: every model with the shipped per-data-set settings
# (deepm3/defaults/DATASET/), the same loss, data, history length and early stopping, several
# seeds, full-ranking test metrics; then the table, plot and run records under results/DATASET/.
#   scripts/experiments/run_core.sh DATASET [key=value ...]
#   SEEDS="0 1 2" JOBS=2 ROWS="pop last_item gru4rec ..." scripts/experiments/run_core.sh ml-100k
# Runs go to runs/DATASET/<row>-s<seed>. Resumable: a finished run is skipped, a killed one
# resumes from its last.pt. Count baselines are deterministic and run once.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${1:?usage: run_core.sh DATASET [key=value ...]}
shift
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
ROWS=${ROWS:-"pop last_item gru4rec sasrec tisasrec deepm3 deepm3-noode"}
RUNS=${RUNS:-runs/$DATASET}
OUT=${OUT:-results/$DATASET}

# row label -> model and extra settings
row_args() {
  case "$1" in
    deepm3-noode) echo "deepm3 ode=none" ;;
    deepm3-rk4) echo "deepm3 solver=rk4" ;;
    *) echo "$1" ;;
  esac
}

jobs_file=$(mktemp)
for row in $ROWS; do
  read -r model extra <<<"$(row_args "$row")"
  seeds=$SEEDS
  case "$model" in pop | last_item) seeds=0 ;; esac
  for seed in $seeds; do
    dir="$RUNS/$row-s$seed"
    [ -f "$dir/metrics.json" ] && continue
    if [ -f "$dir/config.json" ]; then
      echo "$PY -m deepm3 train --resume $dir > $dir.out 2>&1" >>"$jobs_file"
    else
      echo "$PY -m deepm3 train --dataset $DATASET --model $model --out $dir seed=$seed \
progress=false num_threads=1 $extra $* > $dir.out 2>&1" >>"$jobs_file"
    fi
  done
done
mkdir -p "$RUNS"
# one single-thread process per core: faster in total than one multi-thread job
xargs -P "$JOBS" -I{} sh -c '{}' <"$jobs_file"
rm -f "$jobs_file"
dirs=()
for row in $ROWS; do
  for dir in "$RUNS/$row"-s*/; do dirs+=("${dir%/}"); done  # folders only, not the .out logs
done
$PY -m deepm3 report "${dirs[@]}" --out "$OUT" \
  --title "$DATASET: test split, full ranking, mean ± sd over seeds"
