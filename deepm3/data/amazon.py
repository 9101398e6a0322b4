"""Amazon review data in each of its published formats, streamed line by line.

| release | file                        | user       | item               | time (unit)        |
|---------|-----------------------------|------------|--------------------|--------------------|
| 2014    | ``reviews_<Cat>_5.json.gz`` | reviewerID | asin               | unixReviewTime (s) |
| 2014    | ``ratings_<Cat>.csv``       | column 1   | column 2           | column 4 (s)       |
| 2018    | ``<Cat>_5.json.gz``         | reviewerID | asin               | unixReviewTime (s) |
| 2023    | ``<Cat>.jsonl.gz``          | user_id    | parent_asin (asin) | timestamp (ms)     |

JSON files are read one line at a time (Books 5-core has ~9M lines), keeping only the four
fields. 2023 millisecond timestamps are floored to seconds; events that then share a second keep
their file order (the tie rule of :mod:`deepm3.data.preprocess`).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.data.delimited import check_not_empty, read_delimited
from deepm3.data.tabular import frame_from_columns, interactions_frame
from deepm3.errors import DataError

# (user key, item keys in order of preference, time key, milliseconds?)
JSON_SCHEMAS = {
    "2014/2018": ("reviewerID", ("asin",), "unixReviewTime", False),
    "2023": ("user_id", ("parent_asin", "asin"), "timestamp", True),
}


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line
    except (OSError, EOFError, zlib.error) as exc:
        what = "compressed file" if path.suffix == ".gz" else "file"
        raise DataError(f"{path}: cannot read {what} ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 text ({exc.reason})") from None


def _whole_number(value: object) -> bool:
    """A JSON number that is a whole number in [0, 2**53) (exact in float64, fits int64)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value < 2**53
        and float(value).is_integer()
    )


def _identifier(value: object) -> str | None:
    """A user or item id as text; None when it is not a non-empty string or an integer."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text or None


def _rating(value: object) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return np.nan
    return np.nan


def read_amazon_json(path: Path, schema: str | None = None) -> pd.DataFrame:
    """Stream a JSON-lines review file (2014, 2018 or 2023 format; detected from line 1)."""
    path = Path(path)
    check_not_empty(path)
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    ratings: list[float] = []
    fields = None
    for number, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number}: expected a JSON object")
        if fields is None:
            name = schema or ("2023" if "user_id" in record else "2014/2018")
            fields = JSON_SCHEMAS[name]
        user_key, item_keys, time_key, millis = fields
        item_key = next((k for k in item_keys if k in record), None)
        for key in (user_key, item_key or item_keys[0], time_key):
            if key not in record:
                raise DataError(f"{path}: line {number}: missing field {key!r}")
        stamp = record[time_key]
        if not _whole_number(stamp):
            raise DataError(
                f"{path}: line {number}: field {time_key!r}: expected a non-negative whole "
                f"number of {'milliseconds' if millis else 'seconds'}, got {stamp!r}"
            )
        ids = []
        for key in (user_key, item_key):
            value = _identifier(record[key])
            if value is None:
                raise DataError(
                    f"{path}: line {number}: field {key!r}: expected a non-empty id, "
                    f"got {record[key]!r}"
                )
            ids.append(value)
        stamp = int(stamp)
        users.append(ids[0])
        items.append(ids[1])
        times.append(stamp // 1000 if millis else stamp)
        ratings.append(_rating(record.get("overall", record.get("rating"))))
    if not users:
        raise DataError(f"{path}: no data rows")
    return interactions_frame(users, items, np.asarray(times, dtype=np.int64), np.asarray(ratings))


def read_amazon_ratings_csv(path: Path) -> pd.DataFrame:
    """The 2014 ratings-only CSV: ``user,item,rating,timestamp`` with no header."""
    path = Path(path)
    fields = read_delimited(path, ",", ["user", "item", "rating", "timestamp"])
    return frame_from_columns(fields, path, "user", "item", "timestamp", "rating", 1)


def read_amazon(path: Path) -> pd.DataFrame:
    """Any Amazon review file, by the reader that :data:`deepm3.data.formats.READERS` gives its
    name (see the table in the module docstring)."""
    from deepm3.data.formats import find_reader  # here, not at the top: formats imports us

    path = Path(path)
    reader = find_reader(path.name)
    if reader not in (read_amazon_json, read_amazon_ratings_csv):
        raise DataError(
            f"{path}: not an Amazon review file; expected reviews_<Cat>_5.json.gz, "
            "ratings_<Cat>.csv, <Cat>_5.json.gz or <Cat>.jsonl.gz"
        )
    return reader(path)
