#!/usr/bin/env bash
# The GPU speed check of DeepM3's accelerated recurrence (deepm3/models/accelerated.py), prepared to
# run once on a lent GPU machine with nothing to install, from the checkout (~8 minutes):
#
#   bash benchmarks/gpu.sh [DATA_DIR] [--data-dir DIR] [--device cuda] [--out FILE]
#                          [--repeats N] [--time-limit SECONDS] [--quick] [--no-tests]
#
# 0. On CUDA, with pytest installed: the CUDA tests of tests/test_accelerate.py (the graphed
#    recurrence equals the eager loop); a failure is reported and the benchmark goes on.
# 1. benchmarks/speed.py: every model and accelerated variant at B in {1, 64, 256}, T in
#    {50, 200} (the targets' settings first): training step and inference, ratios to SASRec, to
#    the eager loop and Euler/RK4, and the three targets of the GPU path; it stops starting new
#    measurements after --time-limit seconds (default 240) and records what it skipped.
# 2. benchmarks/epoch_speed.py: one ML-1M training epoch per model, in seconds, when the data is
#    found: DATA_DIR, else $DEEPM3_DATA_DIR, else shared/data or ../shared/data; skipped with a
#    message otherwise (never downloaded).
# Both write into one JSON, benchmarks/results/<card>.json by default (card: the sanitised
# torch.cuda.get_device_name), and the printed tables go to the same path with .log.
# --quick (for a CPU check: `bash benchmarks/gpu.sh --device cpu --quick --out /tmp/x.json`,
# 1-3 minutes on 2 cores): fewer models, B in {1, 16}, T = 50, 2 repeats, 2 batches per epoch.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda quick=0 tests=1 out="" data_dir="" repeats="" time_limit=240
while (($#)); do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --data-dir) data_dir=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --time-limit) time_limit=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --no-tests) tests=0; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
    -*) echo "gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) data_dir=$1; shift ;;
  esac
done

if [[ -z ${PYTHON:-} ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"
for candidate in "$data_dir" "${DEEPM3_DATA_DIR:-}" shared/data ../shared/data; do
  if [[ -n $candidate && -d $candidate ]]; then data_dir=$candidate; break; fi
done

if [[ -z $out ]]; then
  card=$("$PYTHON" -c "import sys; sys.path.insert(0, 'benchmarks')
from variants import card_name
from deepm3.train.device import select_device
print(card_name(select_device('$device')))")
  out=benchmarks/results/$card.json
fi
mkdir -p "$(dirname "$out")"
log=${out%.json}.log

if ((quick)); then
  models=sasrec,deepm3-euler,deepm3-euler-eager,deepm3-euler-compiled,deepm3-euler-graph,deepm3-rk4
  speed_args=(--batches 1,16 --lengths 50 --repeats "${repeats:-2}")
  epoch_args=(--models sasrec,deepm3-euler,deepm3-euler-compiled,deepm3-euler-graph
    --max-batches 2)
else
  # the targets' variants first: a run cut short by --time-limit still has them
  models=sasrec,deepm3-euler,deepm3-euler-graph,deepm3-euler-graph-compiled,deepm3-euler-compiled
  models+=,deepm3-euler-eager,deepm3-rk4,deepm3-rk4-graph,deepm3-rk4-graph-compiled
  models+=,deepm3-rk4-compiled,deepm3-rk4-eager,tisasrec,gru4rec,deepm3-dopri5
  models+=,deepm3-euler-bounded,deepm3-euler-none,deepm3-no-ode
  speed_args=(--batches 1,64,256 --lengths 50,200 --repeats "${repeats:-5}")
  epoch_models=sasrec,deepm3-euler,deepm3-euler-graph,deepm3-rk4,deepm3-rk4-graph,tisasrec
  epoch_models+=,gru4rec,deepm3-euler-graph-compiled,deepm3-euler-compiled
  epoch_args=(--models "$epoch_models" --time-limit 75)
fi

started=$SECONDS
{
  echo "gpu.sh: device $device, out $out, data ${data_dir:-none}, $("$PYTHON" -c \
    'import torch; print("torch", torch.__version__)')"
  if [[ $device == cuda* ]] && ((tests)); then
    if "$PYTHON" -c 'import pytest' 2>/dev/null; then
      "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/test_accelerate.py -k cuda \
        || echo "gpu.sh: CUDA tests FAILED (above); the benchmark goes on"
    else
      echo "gpu.sh: no pytest here: tests/test_accelerate.py not run"
    fi
  fi
  "$PYTHON" benchmarks/speed.py --device "$device" --models "$models" "${speed_args[@]}" \
    --time-limit "$time_limit" --out "$out"
  "$PYTHON" benchmarks/epoch_speed.py --device "$device" --data-dir "$data_dir" \
    "${epoch_args[@]}" --merge-into "$out"
  echo "gpu.sh: done in $((SECONDS - started)) s; $out and $log"
} 2>&1 | tee "$log"
