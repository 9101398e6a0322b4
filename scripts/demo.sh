#!/usr/bin/env bash
# The main job on a fresh machine: prepare MovieLens-1M, train DeepM3 (Euler) and SASRec under
# the same ~4-minute CPU budget each, fit the popularity and last-item baselines, evaluate all
# with full ranking on the test split, and write the table and plot under results/demo/.
# Uses $DEEPM3_DATA_DIR (the Makefile points it at ../shared/data when that exists), else
# downloads the official ml-1m.zip (md5-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=runs/demo
rm -rf "$RUNS"
$PY -m deepm3 data prepare ml-1m
for model in pop last_item; do
  $PY -m deepm3 train --dataset ml-1m --model "$model" --out "$RUNS/$model"
done
for model in deepm3 sasrec; do
  $PY -m deepm3 train --dataset ml-1m --model "$model" --config "configs/demo/$model.yaml" \
    --out "$RUNS/$model"
done
$PY -m deepm3 report "$RUNS"/{pop,last_item,sasrec,deepm3} --out results/demo \
  --title "Demo: MovieLens-1M, test split, full ranking (CPU budget)"
