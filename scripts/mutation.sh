#!/usr/bin/env bash
# Mutation testing (mutmut) of the modules that compute published numbers, configured in
# pyproject.toml ([tool.mutmut]: the modules mutated and the fast test selection run against
# each mutant). Writes results/mutation/score.json and score.md: killed / total per module.
#
#   make mutation                 # fresh run (about 4 minutes on 2 cores)
#   FRESH=0 bash scripts/mutation.sh   # reuse mutmut's cache in mutants/ (only changed code)
#   mutmut show NAME / mutmut browse   # inspect a surviving mutant afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
OUT=${OUT:-results/mutation}
JOBS=${JOBS:-2}
FRESH=${FRESH:-1}

if ! "$PY" -c "import mutmut" 2>/dev/null; then
    echo "mutmut is not installed in $BIN: run 'make install' (it is in the dev extra)" >&2
    exit 2
fi
if [ "$FRESH" = 1 ]; then
    rm -rf mutants
fi
mkdir -p "$OUT"
log=$(mktemp)
started=$(date +%s)
# mutmut draws a progress line per mutant; keep it out of the terminal, show the tail on failure
if ! "$BIN/mutmut" run --max-children "$JOBS" >"$log" 2>&1; then
    tail -c 3000 "$log" >&2
    exit 1
fi
seconds=$(($(date +%s) - started))
rm -f "$log"
"$PY" scripts/mutation_report.py --seconds "$seconds" --out "$OUT"
