"""How much of a model's hit rate comes from test targets tied in time with the previous event.

    DEEPM3_DATA_DIR=../shared/data python scripts/analysis/tie_hits.py runs/demo/last_item ...

Reads each run's ``per_user_test.csv`` and config, and prints the share of test targets whose
timestamp equals the previous event's, and HR@10 on tied and untied targets separately.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deepm3.data.prepare import prepare  # noqa: E402
from deepm3.train.run import load_run_config  # noqa: E402


def main(run_dirs: list[str]) -> int:
    for run_dir in map(Path, run_dirs):
        name, config = load_run_config(run_dir)
        data = prepare(config.data)
        per_user = pd.read_csv(run_dir / "per_user_test.csv")
        users = per_user["user"].to_numpy()
        target = data.events.offsets[users] + data.split.test_pos[users]
        tied = data.events.timestamps[target] == data.events.timestamps[target - 1]
        hit = per_user["rank"].to_numpy() <= 10
        print(
            f"{name}: tied targets {tied.mean():.3f}; HR@10 tied {hit[tied].mean():.3f}, "
            f"untied {hit[~tied].mean():.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
