#!/usr/bin/env bash
# Core comparison on one data set: every model under the same loss, data, history length and
# early stopping (configs/DATASET/MODEL.yaml), full-ranking test metrics, one seed.
#   scripts/experiments/run_core.sh DATASET [key=value ...]    (e.g. time_budget=600)
# Writes run directories under runs/DATASET/ and the table and plot under results/DATASET/.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${1:?usage: run_core.sh DATASET [key=value ...]}
shift
PY=${PY:-.venv/bin/python}
MODELS=${MODELS:-"pop last_item gru4rec sasrec tisasrec deepm3"}
RUNS=runs/$DATASET
dirs=()
for model in $MODELS; do
  config=()
  [ -f "configs/$DATASET/$model.yaml" ] && config=(--config "configs/$DATASET/$model.yaml")
  $PY -m deepm3 train --dataset "$DATASET" --model "$model" "${config[@]}" \
    --out "$RUNS/$model" progress=false "$@"
  dirs+=("$RUNS/$model")
done
$PY -m deepm3 report "${dirs[@]}" --out "results/$DATASET" \
  --title "$DATASET: test split, full ranking, one seed"
