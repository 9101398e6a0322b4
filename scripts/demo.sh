#!/usr/bin/env bash
# The main job on a fresh machine: prepare MovieLens-1M, fit the popularity and last-item
# baselines, train DeepM3 (Euler) and SASRec for the same fixed number of epochs with the same
# data, loss, lr and seed (configs/demo/), side by side on one CPU thread each, evaluate all four
# with full ranking on the test split, and write the table and plot under results/demo/.
# Epochs, not seconds: the table does not depend on how fast or busy the machine is, only the
# time does. Before training it times a few batches of each model and prints an estimate; every
# epoch's line then shows the time left.
# Uses $DEEPM3_DATA_DIR (the Makefile points it at ../shared/data when that exists), else
# downloads the official ml-1m.zip (md5-checked).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=runs/demo
TRAINED=(deepm3 sasrec)
export PYTHONUNBUFFERED=1 # epoch lines appear as they happen, through the pipes below
rm -rf "$RUNS"
mkdir -p "$RUNS"
echo "make demo: MovieLens-1M; pop and last_item are counted, then DeepM3 and SASRec train side"
echo "by side (configs/demo/), and all four are ranked against every item on the test split."
$PY -m deepm3 data prepare ml-1m
for model in pop last_item; do
  $PY -m deepm3 train --dataset ml-1m --model "$model" --out "$RUNS/$model"
done

train() { # train MODEL [options]: one trained model with its demo config
  $PY -m deepm3 train --dataset ml-1m --model "$1" --config "configs/demo/$1.yaml" "${@:2}"
}

# Both estimates run at once, as the trainings will, so each is timed under the same sharing.
echo "Timing a few training batches and one validation of each model here..."
pids=()
for model in "${TRAINED[@]}"; do
  train "$model" --estimate >"$RUNS/$model.estimate" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
longest=0
for model in "${TRAINED[@]}"; do
  line=$(cat "$RUNS/$model.estimate")
  echo "  $line"
  seconds=${line##*(} # the line ends in "(N s)"
  seconds=${seconds% s)}
  if [[ ! $seconds =~ ^[0-9]+$ ]]; then
    echo "demo.sh: no seconds at the end of the estimate: $line" >&2
    exit 1
  fi
  if ((seconds > longest)); then longest=$seconds; fi
done
echo "Training both at once: about $((longest / 60)) min $((longest % 60)) s at the speed just"
echo "measured (the slower model sets the pace; other work started meanwhile slows it down)."

# progress=false: two runs share the terminal, so epoch lines only (each with the time left)
pids=()
for model in "${TRAINED[@]}"; do
  (train "$model" --out "$RUNS/$model" progress=false 2>&1 | sed -u "s/^/[$model] /") &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
$PY -m deepm3 report "$RUNS"/{pop,last_item,sasrec,deepm3} --out results/demo \
  --title "Demo: MovieLens-1M, test split, full ranking (fixed epochs)"
echo "make demo took $((SECONDS / 60)) min $((SECONDS % 60)) s."
