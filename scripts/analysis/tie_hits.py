"""How much of a model's hit rate comes from test targets tied in time with the previous event.

    python scripts/analysis/tie_hits.py runs/demo/last_item runs/demo/deepm3 ...

Reads each run's ``per_user_test.csv.gz`` (its ``tied`` column: the target's timestamp equals the
last history event's) and prints the share of tied targets and HR@10 on tied and untied targets
separately. ``metrics.json`` carries the untied metrics of every run as ``test_untied``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main(run_dirs: list[str]) -> int:
    for run_dir in map(Path, run_dirs):
        per_user = pd.read_csv(run_dir / "per_user_test.csv.gz")
        tied = per_user["tied"].to_numpy(dtype=bool)
        hit = per_user["rank"].to_numpy() <= 10
        print(
            f"{run_dir.name}: tied targets {tied.mean():.3f}; HR@10 tied {hit[tied].mean():.3f}, "
            f"untied {hit[~tied].mean():.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
