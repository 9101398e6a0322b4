"""Shared fixtures: an isolated cache, the real data folder (when present) and synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepm3.config import DataConfig
from deepm3.data.prepare import Prepared, prepare

REPO = Path(__file__).resolve().parent.parent


def _real_data_dir() -> Path | None:
    for candidate in (os.environ.get("DEEPM3_DATA_DIR"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


REAL_DATA = _real_data_dir()
needs_real_data = pytest.mark.skipif(REAL_DATA is None, reason="../shared/data not present")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test session writes its prepared-data cache to a fresh folder."""
    os.environ["DEEPM3_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    if REAL_DATA is None:
        pytest.skip("../shared/data not present")
    return REAL_DATA


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


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    path = write_synthetic_csv(tmp_path_factory.mktemp("synthetic") / "synthetic.csv")
    return prepare(DataConfig(dataset=str(path), max_len=20))
