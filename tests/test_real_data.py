"""Exact statistics of the real data sets in ../shared/data (skipped only when it is absent)."""

import json
import subprocess
import sys
import time

import pytest

from deepm3.config import DataConfig, EvalConfig
from deepm3.data.prepare import prepare
from deepm3.eval.evaluator import evaluate
from deepm3.models.baselines import Popularity, training_counts

RAW = {
    "ml-100k": (943, 1682, 100_000),
    "ml-1m": (2999, 3615, 487_650),
    "amazon-beauty": (22_363, 12_101, 198_502),
    "amazon-all-beauty": (991, 85, 5269),
}


@pytest.mark.parametrize("dataset", list(RAW))
def test_raw_statistics_are_exact(real_data_dir, dataset):
    stats = prepare(DataConfig(dataset=dataset, data_dir=str(real_data_dir))).stats
    raw = stats["raw"]
    assert (raw["users"], raw["items"], raw["interactions"]) == RAW[dataset]


def test_prepare_ml1m_cli_under_30_seconds(real_data_dir, tmp_path):
    started = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepm3",
            "data",
            "prepare",
            "ml-1m",
            "--data-dir",
            str(real_data_dir / "ml-1m-subset"),
            "--json",
            "--no-cache",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    stats = json.loads(result.stdout)
    assert stats["raw"] == {"users": 2999, "items": 3615, "interactions": 487_650}
    assert len(stats["fingerprint"]) == 16 and 0 < stats["zero_gap_share"] < 1
    assert elapsed < 30


def test_cache_is_reused_and_fingerprint_is_stable(real_data_dir):
    config = DataConfig(dataset="ml-100k", data_dir=str(real_data_dir))
    first = prepare(config)
    again = prepare(config)
    fresh = prepare(config, use_cache=False)
    assert first.fingerprint == again.fingerprint == fresh.fingerprint
    other = prepare(DataConfig(dataset="ml-100k", data_dir=str(real_data_dir), kcore=10))
    assert other.fingerprint != first.fingerprint


def test_popularity_baseline_on_ml100k_full_ranking(real_data_dir):
    data = prepare(DataConfig(dataset="ml-100k", data_dir=str(real_data_dir)))
    result = evaluate(Popularity(training_counts(data)), data, "test", EvalConfig())
    # Popularity is weak but far above chance (10 / 1349 items) under full ranking.
    assert 10 / data.num_items < result.metrics["hr@10"] < 0.2
