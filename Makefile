# The commands a newcomer needs. Each creates .venv (Python 3.11) when missing and installs the
# package with the pinned constraints (torch==2.13.0 CPU wheel: no CUDA build is pulled).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real data beside the checkout (read in place, never copied); otherwise official downloads.
# An explicit DEEPM3_DATA_DIR in the environment wins.
DEEPM3_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export DEEPM3_DATA_DIR

.PHONY: demo test test-slow lint bench install mutation standard

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

demo: install
	bash scripts/demo.sh

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check deepm3 tests benchmarks
	$(BIN)/ruff format --check deepm3 tests benchmarks

bench: install
	$(BIN)/python benchmarks/speed.py --quick --threads 1

# Both standard suites (Beauty, then the ML-1M subset): days of 2 CPU cores, resumable; rerun
# to continue (scripts/experiments/standard.sh).
standard: install
	PY=$(BIN)/python bash scripts/experiments/standard.sh

# Mutation testing of the modules that compute published numbers (not part of `make test`):
# writes results/mutation/score.json and score.md (about 4 minutes on 2 cores).
mutation: install
	PY=$(BIN)/python bash scripts/mutation.sh
