#!/usr/bin/env bash
# Any experiment suite (SUITE=ml1m|amazon): search, core seeds, analyses and report.
# Called by run_phase2.sh (MovieLens-1M -> results/ml1m/) and run_amazon.sh (Amazon 5-core ->
# results/amazon/). BUDGET=smoke|quick|standard|full (deepm3/suite/budgets.py); DATASET=<data set or
# file> (amazon: amazon-books by default); DEVICE=auto|cpu|cuda|mps; JOBS=auto|N;
# SKIP_SEARCH=1 SKIP_CORE=1 SKIP_LIPSCHITZ=1 SKIP_PAPER=1 SKIP_ANALYSES=1 SKIP_REPORT=1 skip
# stages; STORAGE=<database URL> shares the Optuna studies between machines; OUT=<results>,
# RUNS=<working runs with checkpoints>. Extra arguments go to 'deepm3 suite SUITE'.
# Data: $DEEPM3_DATA_DIR (../shared/data when it exists) or the official download.
# Resumable: rerun the same command; finished runs are skipped, killed ones resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if [ -z "${DEEPM3_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export DEEPM3_DATA_DIR=$(cd ../shared/data && pwd)
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
skip=()
for stage in search core lipschitz paper analyses report; do
  var="SKIP_${stage^^}"
  [ "${!var:-0}" = 1 ] && skip+=("$stage")
done
args=(suite "${SUITE:?SUITE=ml1m|amazon}" --budget "${BUDGET:-quick}" --device "${DEVICE:-auto}"
  --jobs "${JOBS:-auto}")
[ -n "${DATASET:-}" ] && args+=(--dataset "$DATASET")
[ ${#skip[@]} -gt 0 ] && args+=(--skip "$(IFS=,; echo "${skip[*]}")")
[ -n "${STORAGE:-}" ] && args+=(--storage "$STORAGE")
[ -n "${OUT:-}" ] && args+=(--out "$OUT")
[ -n "${RUNS:-}" ] && args+=(--runs "$RUNS")
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} exec $PY -m deepm3 "${args[@]}" "$@"
