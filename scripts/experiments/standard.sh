#!/usr/bin/env bash
# Both standard suites, the comparison that counts (issue 19), one after the other:
# Amazon Beauty 5-core (results/amazon/amazon-beauty/standard/), then the ML-1M subset
# (results/ml1m/standard/). Days of 2 CPU cores; stop it at any time and rerun the same command:
# finished runs and trials are kept (each run's record is written the moment it ends, ready to
# commit), killed ones resume from their last checkpoint. A suite that fails stops the chain.
#   bash scripts/experiments/standard.sh                 # or: make standard
#   JOBS=2 DEVICE=cpu bash scripts/experiments/standard.sh
# Other settings (JOBS, DEVICE, STORAGE, SKIP_*): see suite.sh.
set -euo pipefail
here="$(dirname "$0")"
SUITE=amazon DATASET=amazon-beauty BUDGET=standard bash "$here/suite.sh" "$@"
SUITE=ml1m BUDGET=standard bash "$here/suite.sh" "$@"
