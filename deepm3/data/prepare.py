"""Prepare a data set once: read, preprocess, split, fingerprint, cache.

The cache key is the raw file's sha256 plus every preprocessing setting and the format version,
so a changed file or setting never reuses a stale cache. The cache file is written to a
temporary name and renamed at the end: a failure leaves no partial cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepm3.config import DataConfig
from deepm3.data.datasets import get_spec, is_generic, locate, resolve_data_dir
from deepm3.data.download import cache_dir, file_digest
from deepm3.data.formats import reader_for
from deepm3.data.preprocess import Events, preprocess, zero_gap_share
from deepm3.data.split import Split, make_split
from deepm3.data.tabular import read_table
from deepm3.errors import DataError

FORMAT_VERSION = 1
GENERIC_MAX_LEN = 50


@dataclass(frozen=True)
class Prepared:
    """A prepared data set: events, split, and what produced them."""

    name: str
    events: Events
    split: Split
    max_len: int
    stats: dict
    fingerprint: str

    @property
    def num_items(self) -> int:
        return self.events.num_items

    @property
    def num_users(self) -> int:
        return self.events.num_users


def dataset_defaults(dataset: str) -> dict[str, int]:
    """``max_len`` and ``kcore`` the data set uses when the config leaves them unset."""
    if is_generic(dataset):
        return {"max_len": GENERIC_MAX_LEN, "kcore": 0}
    spec = get_spec(dataset)
    return {"max_len": spec.max_len, "kcore": spec.kcore}


def resolved(config: DataConfig) -> DataConfig:
    """``config`` with data-set defaults filled in (what the run actually used)."""
    defaults = dataset_defaults(config.dataset)
    return dataclasses.replace(
        config,
        max_len=config.max_len if config.max_len is not None else defaults["max_len"],
        kcore=config.kcore if config.kcore is not None else defaults["kcore"],
    )


def _raw_path(config: DataConfig) -> Path:
    if is_generic(config.dataset):
        path = Path(config.dataset)
        if path.is_dir():
            raise DataError(
                f"{path}: is a folder; name the file, or pass a data set name "
                "(ml-1m, amazon-books, ...) with --data-dir"
            )
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        return path
    return locate(get_spec(config.dataset), resolve_data_dir(config.data_dir))


def _read(config: DataConfig, path: Path):
    if not is_generic(config.dataset):
        return get_spec(config.dataset).reader(path)
    reader = reader_for(path)  # a raw file named by path
    if reader is not read_table:
        return reader(path)
    # A generic table: its columns and separator come from the config.
    return read_table(
        path, config.user_col, config.item_col, config.time_col, config.rating_col, config.sep
    )


def fingerprint(events: Events, split: Split) -> str:
    """First 16 hex digits of the sha256 of the prepared arrays."""
    digest = hashlib.sha256()
    for array in (events.items, events.timestamps, events.offsets, *dataclasses.astuple(split)):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _statistics(events: Events, split: Split, stats: dict) -> dict:
    lengths = events.lengths()[1:]
    return {
        **stats,
        "filtered": {
            "users": events.num_users,
            "items": events.num_items,
            "interactions": int(len(events.items)),
        },
        "avg_seq_len": round(float(lengths.mean()), 3),
        "median_seq_len": float(np.median(lengths)),
        "zero_gap_share": round(zero_gap_share(events), 5),
        "users_not_evaluated": int((split.test_pos[1:] < 0).sum()),
        "time_span": [int(events.timestamps.min()), int(events.timestamps.max())],
    }


def _settings(config: DataConfig) -> dict:
    keys = (
        "min_rating",
        "dedup",
        "kcore",
        "kcore_mode",
        "tie_order",
        "tie_seed",
        "split",
        "temporal_valid",
        "temporal_test",
        "user_col",
        "item_col",
        "time_col",
        "rating_col",
        "sep",
    )
    return {key: getattr(config, key) for key in keys}


def prepare(config: DataConfig, use_cache: bool = True) -> Prepared:
    """Read, preprocess and split the data set that ``config`` names (cached)."""
    config = resolved(config)
    path = _raw_path(config)
    raw_sha = file_digest(path)
    settings = _settings(config)
    key = hashlib.sha256(
        json.dumps([FORMAT_VERSION, raw_sha, settings], sort_keys=True).encode()
    ).hexdigest()[:16]
    name = (
        Path(config.dataset).stem if is_generic(config.dataset) else get_spec(config.dataset).name
    )
    cache_file = cache_dir() / "prepared" / f"{name}-{key}.npz"
    if use_cache and cache_file.is_file():
        return _load(cache_file, config.max_len)
    events, stats = preprocess(
        _read(config, path),
        config.min_rating,
        config.dedup,
        config.kcore,
        config.kcore_mode,
        config.tie_order,
        config.tie_seed,
    )
    split = make_split(events, config.split, config.temporal_valid, config.temporal_test)
    stats = _statistics(events, split, stats)
    stats.update(
        {
            "dataset": name,
            "source": str(path),
            "raw_sha256": raw_sha,
            "settings": settings,
            "fingerprint": fingerprint(events, split),
        }
    )
    prepared = Prepared(name, events, split, config.max_len, stats, stats["fingerprint"])
    if use_cache:
        _save(cache_file, prepared)
    return prepared


def _save(path: Path, prepared: Prepared) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        with open(temporary, "wb") as out:
            np.savez(
                out,
                **{
                    f"events_{f.name}": getattr(prepared.events, f.name)
                    for f in dataclasses.fields(Events)
                },
                **{
                    f"split_{f.name}": getattr(prepared.split, f.name)
                    for f in dataclasses.fields(Split)
                },
                meta=np.array(json.dumps({"name": prepared.name, "stats": prepared.stats})),
            )
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _load(path: Path, max_len: int) -> Prepared:
    with np.load(path, allow_pickle=False) as data:
        events = Events(**{f.name: data[f"events_{f.name}"] for f in dataclasses.fields(Events)})
        split = Split(**{f.name: data[f"split_{f.name}"] for f in dataclasses.fields(Split)})
        meta = json.loads(str(data["meta"]))
    stats = meta["stats"]
    return Prepared(meta["name"], events, split, max_len, stats, stats["fingerprint"])
