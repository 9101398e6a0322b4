"""Shared fixtures: an isolated cache, the real data folder (when present) and synthetic data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from synthetic import REPO, write_synthetic_csv

from deepm3.config import DataConfig
from deepm3.data.prepare import Prepared, prepare


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


@pytest.fixture(scope="session")
def synthetic_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The raw CSV behind ``synthetic`` (for tests that recompute something from raw events)."""
    return write_synthetic_csv(tmp_path_factory.mktemp("synthetic") / "synthetic.csv")


@pytest.fixture(scope="session")
def synthetic(synthetic_events: Path) -> Prepared:
    return prepare(DataConfig(dataset=str(synthetic_events), max_len=20))
