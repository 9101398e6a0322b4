"""Prepare a data set once: read, preprocess, split, fingerprint, cache.

The cache key is the raw file's sha256 plus every preprocessing setting and the format version,
so a changed file or setting never reuses a stale cache. The cache file is written to a
temporary name and renamed at the end: a failure leaves no partial cache. A cache file that
cannot be read back (truncated, overwritten, its arrays not matching their fingerprint) is
rebuilt from the raw file, with a one-line notice on stderr.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepm3.config import DataConfig
from deepm3.data.cache import DAMAGED, fingerprint, load_cache, save_cache
from deepm3.data.datasets import (
    DATA_DIR_VARIABLE,
    get_spec,
    is_generic,
    locate,
    resolve_data_dir,
)
from deepm3.data.delimited import cannot_read
from deepm3.data.download import cache_dir, file_digest
from deepm3.data.formats import reader_for
from deepm3.data.preprocess import Events, preprocess, zero_gap_share
from deepm3.data.split import Split, check_evaluable, make_split
from deepm3.data.tabular import read_table
from deepm3.errors import DataError

FORMAT_VERSION = 2  # 2: ids stored as UTF-8 bytes and offsets (see deepm3.data.cache)
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


def source_name(path: Path, data_dir: Path | None) -> str:
    """The raw file as results name it: its path inside the data directory
    (``ml-1m-subset/ratings.dat``), else its file name; never a machine's absolute path (the
    file's content is named by ``raw_sha256`` and the prepared data by its fingerprint)."""
    if data_dir is not None:
        try:
            return path.resolve().relative_to(data_dir.resolve()).as_posix()
        except ValueError:
            pass
    return path.name


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
    return locate(get_spec(config.dataset), data_dir(config))


def available(config: DataConfig) -> DataConfig | None:
    """``config`` pointed at its raw file where that is on this machine, else None; nothing is
    downloaded. A file named by path must exist; a named data set is looked for in
    ``DEEPM3_DATA_DIR``, then in the config's own ``data_dir`` (where a run found it)."""
    if is_generic(config.dataset):
        return config if Path(config.dataset).is_file() else None
    folders = [folder for folder in (os.environ.get(DATA_DIR_VARIABLE), config.data_dir) if folder]
    for folder in folders:
        try:
            if Path(folder).is_dir():
                locate(get_spec(config.dataset), Path(folder))
                return dataclasses.replace(config, data_dir=folder)
        except (DataError, OSError):
            continue
    return None


def data_dir(config: DataConfig) -> Path | None:
    return resolve_data_dir(config.data_dir)


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
    try:
        path = _raw_path(config)
        raw_sha = file_digest(path)
    except OSError as exc:  # a file or folder that exists but cannot be read
        raise cannot_read(Path(config.dataset), exc) from None
    settings = _settings(config)
    key = hashlib.sha256(
        json.dumps([FORMAT_VERSION, raw_sha, settings], sort_keys=True).encode()
    ).hexdigest()[:16]
    name = (
        Path(config.dataset).stem if is_generic(config.dataset) else get_spec(config.dataset).name
    )
    cache_file = cache_dir() / "prepared" / f"{name}-{key}.npz"
    source = source_name(path, None if is_generic(config.dataset) else data_dir(config))
    if use_cache and _exists(cache_file):
        try:
            name, events, split, stats = load_cache(cache_file)
            stats = {**stats, "source": source}  # caches written before naming by data folder
            return Prepared(name, events, split, config.max_len, stats, stats["fingerprint"])
        except DAMAGED as exc:
            reason = str(exc).splitlines()[0].split(". ")[0][:100] if str(exc) else ""
            print(
                f"deepm3: note: {cache_file}: cached data unreadable "
                f"({type(exc).__name__}: {reason}); rebuilding it from {path}",
                file=sys.stderr,
            )
    prepared = _build(config, path, name, raw_sha, settings, source)
    if use_cache:
        save_cache(cache_file, prepared.name, prepared.events, prepared.split, prepared.stats)
    return prepared


def _exists(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a cache folder that cannot be listed: rebuilt; save_cache says why
        return False


def _build(
    config: DataConfig, path: Path, name: str, raw_sha: str, settings: dict, source: str
) -> Prepared:
    """Read, preprocess and split; errors about the data (not a line) name the file."""
    try:
        frame = _read(config, path)
    except OSError as exc:
        raise cannot_read(path, exc) from None
    try:
        events, stats = preprocess(
            frame,
            config.min_rating,
            config.dedup,
            config.kcore,
            config.kcore_mode,
            config.tie_order,
            config.tie_seed,
        )
        split = make_split(events, config.split, config.temporal_valid, config.temporal_test)
        check_evaluable(events, split, config.split)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    stats = _statistics(events, split, stats)
    stats.update(
        {
            "dataset": name,
            "source": source,
            "raw_sha256": raw_sha,
            "settings": settings,
            "fingerprint": fingerprint(events, split),
        }
    )
    return Prepared(name, events, split, config.max_len, stats, stats["fingerprint"])
