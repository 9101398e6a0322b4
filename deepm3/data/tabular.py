"""Generic delimited files: CSV/TSV with named columns, and RecBole atomic ``.inter`` files.

Every reader in ``deepm3.data`` returns the same frame, in file order:

    user       str     raw user id
    item       str     raw item id
    timestamp  int64   seconds since the epoch (never float: float32 loses seconds)
    rating     float64 NaN where the source has no rating

Errors name the file and the line (1-based, as an editor shows it) or the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.data.delimited import excerpt, read_delimited, unique_names
from deepm3.errors import DataError


def interactions_frame(
    users: list | np.ndarray,
    items: list | np.ndarray,
    timestamps: np.ndarray,
    ratings: np.ndarray | None = None,
) -> pd.DataFrame:
    """Assemble the common frame; ``timestamps`` must already be validated int64 seconds."""
    count = len(users)
    return pd.DataFrame(
        {
            "user": _as_text(users),
            "item": _as_text(items),
            "timestamp": np.asarray(timestamps, dtype=np.int64),
            "rating": (
                np.full(count, np.nan) if ratings is None else np.asarray(ratings, dtype=np.float64)
            ),
        }
    )


def _as_text(values: list | np.ndarray) -> np.ndarray:
    """An object array of Python ``str``. (``np.asarray(..).astype(str)`` would build a
    fixed-width unicode array first: ~50x slower and 4 bytes per character of the longest id.)"""
    return pd.Series(np.asarray(values, dtype=object), copy=False).astype(str).to_numpy()


def _line_of(values: pd.Series, row: int, first_line: int) -> int:
    """File line of position ``row``: ``first_line`` plus the row's label (see read_delimited)."""
    label = values.index[row]
    return first_line + (int(label) if isinstance(label, (int, np.integer)) else row)


def _numbers(values: pd.Series) -> np.ndarray:
    """float64 values of strings or numbers (surrounding spaces allowed); NaN where invalid."""
    numeric = pd.to_numeric(values, errors="coerce")
    return np.asarray(numeric, dtype=np.float64)


def parse_timestamps(
    values: pd.Series, path: Path, column: str, first_line: int, divisor: int = 1
) -> np.ndarray:
    """Validate a column of timestamps and return int64 seconds.

    ``values`` holds strings or numbers; each must be a non-negative whole number (``881250949``
    or ``881250949.0``). ``divisor`` converts milliseconds (1000) to seconds, rounding down.
    ``first_line`` is the file line of the row labelled 0 (``read_delimited`` labels rows so
    that blank lines it dropped do not shift the line numbers).
    """
    numeric = _numbers(values)
    with np.errstate(invalid="ignore"):
        bad = ~(np.isfinite(numeric) & (numeric >= 0) & (numeric < 2**53))
        bad |= np.floor(np.where(bad, 0.0, numeric)) != np.where(bad, 0.0, numeric)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {_line_of(values, row, first_line)}: column {column!r}: expected a "
            f"non-negative whole number of {'milliseconds' if divisor == 1000 else 'seconds'}, "
            f"got {excerpt(str(values.iloc[row]).strip())}"
        )
    # Whole numbers below 2**53 are exact in float64, so this conversion loses nothing.
    seconds = numeric.astype(np.int64)
    return seconds // divisor


def parse_ratings(values: pd.Series, path: Path, column: str, first_line: int) -> np.ndarray:
    numeric = _numbers(values)
    bad = ~np.isfinite(numeric)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {_line_of(values, row, first_line)}: column {column!r}: expected a "
            f"number, got {excerpt(str(values.iloc[row]).strip())}"
        )
    return numeric


def _check_header(frame: pd.DataFrame, path: Path, wanted: dict[str, str | None]) -> None:
    """Every wanted column present exactly once (a repeated one is ambiguous), then the names
    made unique like pandas (``a``, ``a.1``) so that each column is selected alone."""
    names = [str(c) for c in frame.columns]
    wanted_names = [col for col in wanted.values() if col is not None]
    missing = [col for col in wanted_names if col not in names]
    if missing:
        raise DataError(
            f"{path}: line 1 (header): missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"found: {', '.join(excerpt(c) for c in names[:20])}"
            + (f" and {len(names) - 20} more" if len(names) > 20 else "")
        )
    for col in wanted_names:
        places = [str(i + 1) for i, name in enumerate(names) if name == col]
        if len(places) > 1:
            raise DataError(
                f"{path}: line 1 (header): column {col!r} appears {len(places)} times "
                f"(columns {', '.join(places)}); which one to read is ambiguous"
            )
    frame.columns = unique_names(names)


def frame_from_columns(
    frame: pd.DataFrame,
    path: Path,
    user: str,
    item: str,
    time: str,
    rating: str | None,
    first_line: int,
) -> pd.DataFrame:
    """The common frame from string columns; ``first_line`` is the line of the row labelled 0."""
    ids = {}
    for col in (user, item):
        values = frame[col].astype(str).str.strip()
        empty = (values == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(
                f"{path}: line {_line_of(frame[col], row, first_line)}: column {col!r} is empty"
            )
        ids[col] = values.to_numpy()
    timestamps = parse_timestamps(frame[time], path, time, first_line)
    ratings = parse_ratings(frame[rating], path, rating, first_line) if rating else None
    return interactions_frame(ids[user], ids[item], timestamps, ratings)


def read_table(
    path: Path,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    rating_col: str | None = None,
    sep: str | None = None,
) -> pd.DataFrame:
    """A CSV/TSV file with a header naming the user, item and timestamp columns."""
    path = Path(path)
    if sep is None:
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    # A tab typed on a command line (sep=\t) arrives as backslash + t.
    sep = {"\\t": "\t", "tab": "\t", "TAB": "\t"}.get(sep, sep)
    if len(sep) != 1:
        raise DataError(f"{path}: sep must be a single character (or \\t), got {sep!r}")
    frame = read_delimited(path, sep, None, unique=False)
    _check_header(frame, path, {"u": user_col, "i": item_col, "t": time_col, "r": rating_col})
    return frame_from_columns(frame, path, user_col, item_col, time_col, rating_col, 2)


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic ``.inter`` file: tab-separated, header ``name:type`` per column."""
    path = Path(path)
    frame = read_delimited(path, "\t", None, unique=False)
    frame.columns = [str(c).split(":", 1)[0].strip() for c in frame.columns]
    rating = "rating" if "rating" in frame.columns else None
    wanted = {"u": "user_id", "i": "item_id", "t": "timestamp", "r": rating}
    _check_header(frame, path, wanted)
    return frame_from_columns(frame, path, "user_id", "item_id", "timestamp", rating, 2)
