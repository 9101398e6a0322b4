#!/usr/bin/env bash
# The calibration ladder: one model on one data set, from today's recipe to one that reaches the
# published number under our protocol, one change per rung (configs/calibration/<data>/<model>/
# r*.yaml, cumulative), each rung 3 seeds. Every rung's records and table land in
# results/<suite>/<data>/standard/ladder/<rung>/ (deepm3 report).
#
#   DATASET=amazon-beauty MODEL=sasrec JOBS=2 bash scripts/experiments/calibrate.sh [RUNG ...]
#
# Then writes results/<suite>/<data>/standard/calibration.md: every rung of every model against
# the published numbers (deepm3 calibration). Resumable: a finished seed is skipped, a killed
# one resumes from its last.pt; rerun the same command. Seeds run as parallel single-thread processes (JOBS of them).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ -z "${DEEPM3_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export DEEPM3_DATA_DIR=$(cd ../shared/data && pwd)
fi
export OMP_NUM_THREADS=1 PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
DATASET=${DATASET:-amazon-beauty}
MODEL=${MODEL:-sasrec}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-2}
CONFIGS=configs/calibration/$DATASET/$MODEL
RUNS=${RUNS:-runs/calibration/$DATASET/$MODEL}
OUT=${OUT:-results/amazon/$DATASET/standard/ladder/$MODEL}
rungs=("$@")
[ ${#rungs[@]} -eq 0 ] && rungs=($(ls "$CONFIGS" | sed 's/\.yaml$//'))

one() {  # one seed of one rung: train, resume or skip
  local rung=$1 seed=$2 dir="$RUNS/$1/$MODEL-s$2"
  if [ -f "$dir/metrics.json" ]; then return 0; fi
  if [ -f "$dir/last.pt" ]; then
    $PY -m deepm3 train --resume "$dir" > "$dir.out" 2>&1
  else
    mkdir -p "$(dirname "$dir")"
    $PY -m deepm3 train --dataset "$DATASET" --model "$MODEL" --config "$CONFIGS/$rung.yaml" \
      --out "$dir" --overwrite seed="$seed" num_threads=1 progress=false > "$dir.out" 2>&1
  fi
  echo "done $rung seed $seed: $(grep -o '"ndcg@10": [0-9.]*' "$dir/metrics.json" | sed -n 2p)"
}
export -f one
export PY DATASET MODEL CONFIGS RUNS
for rung in "${rungs[@]}"; do
  for seed in $SEEDS; do echo "$rung $seed"; done
done | xargs -P "$JOBS" -n 2 bash -c 'one "$0" "$1"'
for rung in "${rungs[@]}"; do
  dirs=()
  for seed in $SEEDS; do
    [ -f "$RUNS/$rung/$MODEL-s$seed/metrics.json" ] && dirs+=("$RUNS/$rung/$MODEL-s$seed")
  done
  [ ${#dirs[@]} -gt 0 ] && $PY -m deepm3 report "${dirs[@]}" --out "$OUT/$rung" \
    --title "Calibration ladder, $DATASET, $MODEL, $rung ($(head -1 "$CONFIGS/$rung.yaml" | sed 's/^# //'))"
done
# every model's rungs on this data set against the published numbers
$PY -m deepm3 calibration "$(dirname "$OUT")" --dataset "$DATASET" \
  --out "$(dirname "$(dirname "$OUT")")/calibration.md" > /dev/null
