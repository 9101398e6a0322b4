"""Synthetic interaction data for tests (imported by conftest and test modules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def write_synthetic_csv(
    path: Path,
    num_users: int = 60,
    num_items: int = 40,
    seed: int = 0,
    min_len: int = 5,
    max_len: int = 30,
) -> Path:
    """A CSV (user_id,item_id,timestamp) with irregular gaps, ties and a sequential pattern:
    each user mostly walks item -> item + 1, so sequence models can learn something."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        length = int(rng.integers(min_len, max_len + 1))
        item = int(rng.integers(1, num_items + 1))
        time = int(rng.integers(10**9, 10**9 + 10**6))
        for _ in range(length):
            rows.append((f"u{user}", f"i{item}", time))
            item = (
                item % num_items + 1 if rng.random() < 0.8 else int(rng.integers(1, num_items + 1))
            )
            time += int(rng.choice([0, 60, 3600, 86400 * int(rng.integers(1, 30))]))
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    return path


# A tiny model: what the serving tests train in a second or two
SMALL_RUN = ["hidden_size=8", "max_len=10", "batch_size=8", "progress=false", "num_threads=1"]


def small_run(folder: Path, model: str = "deepm3", settings: tuple[str, ...] = ()) -> Path:
    """``folder/model``: ``model`` trained for one epoch with :data:`SMALL_RUN` on a 40-user
    synthetic CSV written into ``folder``."""
    from deepm3.config import load_config
    from deepm3.train.run import run

    csv = write_synthetic_csv(folder / "events.csv", num_users=40)
    config = load_config(
        None, [*SMALL_RUN, "epochs=1", *settings], base={"data": {"dataset": str(csv)}}
    )
    run(model, config, folder / model)
    return folder / model
