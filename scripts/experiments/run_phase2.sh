#!/usr/bin/env bash
# The MovieLens-1M experiment suite -> results/ml1m/ (settings: see suite.sh).
#   DEVICE=auto BUDGET=quick JOBS=auto bash scripts/experiments/run_phase2.sh
SUITE=ml1m exec bash "$(dirname "$0")/suite.sh" "$@"
