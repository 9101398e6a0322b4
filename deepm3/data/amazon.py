"""Amazon review data in each of its published formats, streamed.

| release | file                        | user       | item               | time (unit)        |
|---------|-----------------------------|------------|--------------------|--------------------|
| 2014    | ``reviews_<Cat>_5.json.gz`` | reviewerID | asin               | unixReviewTime (s) |
| 2014    | ``ratings_<Cat>.csv``       | column 1   | column 2           | column 4 (s)       |
| 2018    | ``<Cat>_5.json.gz``         | reviewerID | asin               | unixReviewTime (s) |
| 2023    | ``<Cat>.jsonl.gz``          | user_id    | parent_asin (asin) | timestamp (ms)     |

JSON files are streamed in blocks of lines (Books 5-core has ~9M lines, ~8 GB of text), keeping
only the four fields, each distinct id stored once: memory grows with the events, not the file.
Blocks in the official 2014 layout are read by one exact regular-expression pass
(:mod:`deepm3.data.jsonlines`), any other line with ``json.loads``, with the same results.
2023 millisecond timestamps are floored to seconds; events that then share a second keep their
file order (the tie rule of :mod:`deepm3.data.preprocess`).
"""

from __future__ import annotations

import io
import json
import re
import sys
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.data.delimited import check_not_empty, excerpt, not_utf8, read_delimited
from deepm3.data.jsonlines import COUNT, NUMBER, PLAIN_CHARS, STRING, scan_block, text_blocks
from deepm3.data.tabular import frame_from_columns, interactions_frame
from deepm3.errors import DataError

# (user key, item keys in order of preference, time key, milliseconds?)
JSON_SCHEMAS = {
    "2014/2018": ("reviewerID", ("asin",), "unixReviewTime", False),
    "2023": ("user_id", ("parent_asin", "asin"), "timestamp", True),
}

# A line of the official 2014 files, key for key (some lack reviewerName). Groups, in order:
# reviewerID and asin (strings without escapes), overall, unixReviewTime.
LAYOUT_2014 = re.compile(
    rf'^\{{"reviewerID": "({PLAIN_CHARS})", "asin": "({PLAIN_CHARS})", '
    rf'(?:"reviewerName": {STRING}, )?"helpful": \[{NUMBER}, {NUMBER}\], '
    rf'"reviewText": {STRING}, "overall": ({NUMBER}), "summary": {STRING}, '
    rf'"unixReviewTime": ({COUNT}), "reviewTime": {STRING}\}}\r?$',
    re.MULTILINE,
)


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


def _unicode(text: str) -> bool:
    """False for a string with a lone surrogate (a JSON escape such as ``\\ud800``): no UTF-8
    form, and pandas' hash tables take all such strings for one (two users would merge)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rating(value: object) -> float:
    """A rating as float; NaN when it is not a number or a number too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return np.nan
    try:
        return float(value)
    except (ValueError, OverflowError):
        return np.nan


def _number(token: str) -> float:
    """The float of a JSON number token, as ``_rating(json.loads(token))`` gives it (an integer
    token goes through int, so ``-0`` is 0.0, not -0.0)."""
    if any(mark in token for mark in ".eE"):
        return float(token)
    return float(int(token))


def _record(line: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {number}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{path}: line {number}: JSON nested too deeply to read") from None
    except ValueError:  # an integer over Python's limit on digits converted to int
        raise DataError(
            f"{path}: line {number}: JSON number too long to read (over "
            f"{sys.get_int_max_str_digits():,} digits)"
        ) from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line {number}: expected a JSON object")
    return record


def _values(record: dict, fields: tuple, path: Path, number: int) -> tuple[str, str, int, float]:
    """(user, item, seconds, rating) of one review, checked; errors name the line."""
    user_key, item_keys, time_key, millis = fields
    item_key = item_keys[0] if item_keys[0] in record else item_keys[-1]
    user, item, stamp = record.get(user_key), record.get(item_key), record.get(time_key)
    # The usual review, in a few type checks; anything else takes the checks below.
    if type(stamp) is int and 0 <= stamp < 2**53 and type(user) is str and type(item) is str:
        user, item = user.strip(), item.strip()
        if user and item and _unicode(user) and _unicode(item):
            rating = _rating(record.get("overall", record.get("rating")))
            return user, item, stamp // 1000 if millis else stamp, rating
    item_key = next((k for k in item_keys if k in record), None)
    for key in (user_key, item_key or item_keys[0], time_key):
        if key not in record:
            raise DataError(f"{path}: line {number}: missing field {key!r}")
    if not _whole_number(stamp):
        raise DataError(
            f"{path}: line {number}: field {time_key!r}: expected a non-negative whole "
            f"number of {'milliseconds' if millis else 'seconds'}, got {excerpt(stamp)}"
        )
    ids = []
    for key in (user_key, item_key):
        value = _identifier(record[key])
        if value is None:
            raise DataError(
                f"{path}: line {number}: field {key!r}: expected a non-empty id, "
                f"got {excerpt(record[key])}"
            )
        if not _unicode(value):
            raise DataError(
                f"{path}: line {number}: field {key!r}: id {excerpt(value)} is not valid "
                "Unicode (a lone surrogate escape)"
            )
        ids.append(value)
    stamp = int(stamp)
    rating = _rating(record.get("overall", record.get("rating")))
    return ids[0], ids[1], stamp // 1000 if millis else stamp, rating


class _Events:
    """Reviews collected block by block. Each distinct id is stored once; events hold codes."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, int]] = {"user": {}, "item": {}}  # raw id -> code
        self.names: dict[str, list[str]] = {"user": [], "item": []}  # code -> id (stripped)
        self.blocks: list[tuple[np.ndarray, ...]] = []  # (users, items, seconds, ratings)
        self.rows: list[tuple[str, str, int, float]] = []  # checked rows of the current block

    def add_row(self, row: tuple[str, str, int, float]) -> None:
        self.rows.append(row)

    def end_block(self) -> None:
        if self.rows:
            users, items, seconds, ratings = zip(*self.rows, strict=True)
            self.rows = []
            self._add(users, items, np.array(seconds, dtype=np.int64), np.array(ratings))

    def add_tokens(
        self, users: list[str], items: list[str], ratings: list[str], seconds: list[str]
    ) -> bool:
        """Add a block's columns as :data:`LAYOUT_2014` captures them, in its group order: ids
        without escapes, ratings as JSON numbers, seconds as digits. False, adding nothing,
        when a line needs the line-by-line path (an id blank once stripped, 2**53 s or more)."""
        for kind, raw in (("user", users), ("item", items)):
            if not all(key.strip() for key in set(raw).difference(self.codes[kind])):
                return False
        try:  # a number too large for these conversions: the line-by-line path decides
            stamps = np.fromiter(map(int, seconds), dtype=np.int64, count=len(seconds))
            numbers = {token: _number(token) for token in set(ratings)}
        except (OverflowError, ValueError):
            return False
        if stamps.max() >= 2**53:
            return False
        values = np.fromiter(
            map(numbers.__getitem__, ratings), dtype=np.float64, count=len(ratings)
        )
        self._add(users, items, stamps, values)
        return True

    def _add(self, users, items, seconds: np.ndarray, ratings: np.ndarray) -> None:
        encoded = (self._encode("user", users), self._encode("item", items))
        self.blocks.append((*encoded, seconds, ratings))

    def _encode(self, kind: str, raw) -> np.ndarray:
        codes, names = self.codes[kind], self.names[kind]
        for key in set(raw).difference(codes):
            codes[key] = len(names)
            names.append(key.strip())
        return np.fromiter(map(codes.__getitem__, raw), dtype=np.int32, count=len(raw))

    def frame(self, path: Path) -> pd.DataFrame:
        if not self.blocks:
            raise DataError(f"{path}: no data rows")
        users, items, seconds, ratings = (
            np.concatenate(parts) for parts in zip(*self.blocks, strict=True)
        )
        self.blocks = []
        return interactions_frame(
            np.array(self.names["user"], dtype=object)[users],
            np.array(self.names["item"], dtype=object)[items],
            seconds,
            ratings,
        )


def _lines(text: str) -> list[str]:
    """The lines of a block as ``open()`` splits them (at LF, CRLF or a lone CR)."""
    if "\r" in text:
        return list(io.StringIO(text, newline=None))
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines


def _read_lines(
    text: str, events: _Events, fields: tuple | None, path: Path, number: int
) -> tuple[tuple | None, int]:
    """Add a block's reviews one line at a time (``json.loads``); returns the fields (found on
    line 1 when not given) and the file line after the block."""
    for line in _lines(text):
        if line.strip():
            record = _record(line, path, number)
            if fields is None:
                fields = JSON_SCHEMAS["2023" if "user_id" in record else "2014/2018"]
            events.add_row(_values(record, fields, path, number))
        number += 1
    events.end_block()
    return fields, number


def read_amazon_json(path: Path, schema: str | None = None) -> pd.DataFrame:
    """Stream a JSON-lines review file (2014, 2018 or 2023 format; detected from line 1).

    Blocks of lines in the official 2014 layout are read by one exact regular-expression pass
    (see :mod:`deepm3.data.jsonlines`), any other block line by line with ``json.loads``.
    """
    path = Path(path)
    check_not_empty(path)
    events = _Events()
    fields = JSON_SCHEMAS[schema] if schema else None
    number = 1  # file line of the next line
    try:
        with closing(text_blocks(path)) as blocks:
            for text in blocks:
                if fields in (None, JSON_SCHEMAS["2014/2018"]):
                    columns = scan_block(text, LAYOUT_2014)
                    if columns and events.add_tokens(*columns):
                        fields = JSON_SCHEMAS["2014/2018"]  # line 1 has no user_id
                        number += len(columns[0])
                        continue
                fields, number = _read_lines(text, events, fields, path, number)
    except (OSError, EOFError, zlib.error) as exc:
        what = "compressed file" if path.suffix.lower() == ".gz" else "file"
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataError(f"{path}: cannot read {what} ({detail})") from None
    except UnicodeDecodeError as exc:  # raised at the start of the line that holds the byte
        raise not_utf8(path, exc, number) from None
    return events.frame(path)


def read_amazon_ratings_csv(path: Path) -> pd.DataFrame:
    """The 2014 ratings-only CSV: ``user,item,rating,timestamp`` with no header."""
    path = Path(path)
    fields = read_delimited(path, ",", ["user", "item", "rating", "timestamp"])
    return frame_from_columns(fields, path, "user", "item", "timestamp", "rating", 1)
