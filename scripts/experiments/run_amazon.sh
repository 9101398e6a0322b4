#!/usr/bin/env bash
# The Amazon 5-core experiment suite -> results/amazon/ (Books) or results/amazon/<dataset>/.
#   DEVICE=auto bash scripts/experiments/run_amazon.sh                  # Amazon Books (default)
#   DATASET=amazon-beauty BUDGET=quick bash scripts/experiments/run_amazon.sh
# DATASET: amazon-books, amazon-beauty, amazon-sports, amazon-all-beauty or a .csv/.inter file.
# Books is read from $DEEPM3_DATA_DIR (Books_5.json.gz or reviews_Books_5.json.gz) or downloaded;
# when neither works the suite says so in one line. Other settings: see suite.sh.
SUITE=amazon exec bash "$(dirname "$0")/suite.sh" "$@"
