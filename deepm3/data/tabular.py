"""Generic delimited files: CSV/TSV with named columns, and RecBole atomic ``.inter`` files.

Every reader in ``deepm3.data`` returns the same frame, in file order:

    user       str     raw user id
    item       str     raw item id
    timestamp  int64   seconds since the epoch (never float: float32 loses seconds)
    rating     float64 NaN where the source has no rating

Errors name the file and the line (1-based, as an editor shows it) or the column.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.errors import DataError

FRAME_COLUMNS = ("user", "item", "timestamp", "rating")


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
            "user": np.asarray(users, dtype=object).astype(str),
            "item": np.asarray(items, dtype=object).astype(str),
            "timestamp": np.asarray(timestamps, dtype=np.int64),
            "rating": (
                np.full(count, np.nan) if ratings is None else np.asarray(ratings, dtype=np.float64)
            ),
        }
    )


def check_not_empty(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")


def parse_timestamps(
    values: pd.Series, path: Path, column: str, first_line: int, divisor: int = 1
) -> np.ndarray:
    """Validate a column of timestamps and return int64 seconds.

    ``values`` holds strings or numbers; each must be a non-negative whole number (``881250949``
    or ``881250949.0``). ``divisor`` converts milliseconds (1000) to seconds, rounding down.
    ``first_line`` is the file line of ``values.iloc[0]``.
    """
    text = values.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(numeric) | (numeric < 0) | (np.floor(numeric) != numeric) | (numeric > 2**53)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {first_line + row}: column {column!r}: expected a non-negative whole "
            f"number of {'milliseconds' if divisor == 1000 else 'seconds'}, got {text.iloc[row]!r}"
        )
    # Whole numbers below 2**53 are exact in float64, so this conversion loses nothing.
    seconds = numeric.astype(np.int64)
    return seconds // divisor


def parse_ratings(values: pd.Series, path: Path, column: str, first_line: int) -> np.ndarray:
    numeric = pd.to_numeric(values.astype(str).str.strip(), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = np.isnan(numeric)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{path}: line {first_line + row}: column {column!r}: expected a number, "
            f"got {values.iloc[row]!r}"
        )
    return numeric


def read_delimited(
    source: Path | str,
    sep: str,
    names: list[str] | None,
    path_for_errors: Path | None = None,
    text: str | None = None,
) -> pd.DataFrame:
    """Read a delimited file as strings, checking every line has the expected field count.

    With ``names=None`` the first line is a header. Returns a frame of ``str`` columns.
    """
    path = Path(path_for_errors or source)
    if text is None:
        check_not_empty(Path(source))
    buffer = io.StringIO(text) if text is not None else source
    try:
        frame = pd.read_csv(
            buffer,
            sep=sep,
            header=None if names is not None else 0,
            names=names,
            dtype=str,
            keep_default_na=False,
            engine="c",
            skip_blank_lines=True,
            quoting=3 if sep in ("\t",) else 0,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed line: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid text ({exc.reason})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    # Too few fields leave empty strings at the end of a row: report the first such line.
    if names is not None:
        short = (frame[names[-1]] == "").to_numpy()
        if short.any():
            row = int(np.flatnonzero(short)[0])
            raise DataError(
                f"{path}: line {row + 1}: expected {len(names)} fields separated by {sep!r}"
            )
    return frame


def _require_columns(frame: pd.DataFrame, path: Path, wanted: dict[str, str | None]) -> None:
    missing = [col for col in wanted.values() if col is not None and col not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"found: {', '.join(map(str, frame.columns))}"
        )


def frame_from_columns(
    frame: pd.DataFrame, path: Path, user: str, item: str, time: str, rating: str | None,
    first_line: int,
) -> pd.DataFrame:
    for col in (user, item):
        empty = (frame[col].astype(str).str.strip() == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise DataError(f"{path}: line {first_line + row}: column {col!r} is empty")
    timestamps = parse_timestamps(frame[time], path, time, first_line)
    ratings = parse_ratings(frame[rating], path, rating, first_line) if rating else None
    return interactions_frame(frame[user].to_numpy(), frame[item].to_numpy(), timestamps, ratings)


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
    if path.suffix == ".inter":
        return read_atomic(path)
    if sep is None:
        sep = "\t" if path.suffix in (".tsv", ".tab") else ","
    frame = read_delimited(path, sep, None)
    frame.columns = [str(c).strip() for c in frame.columns]
    _require_columns(frame, path, {"u": user_col, "i": item_col, "t": time_col, "r": rating_col})
    return frame_from_columns(frame, path, user_col, item_col, time_col, rating_col, 2)


def read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic ``.inter`` file: tab-separated, header ``name:type`` per column."""
    path = Path(path)
    frame = read_delimited(path, "\t", None)
    frame.columns = [str(c).split(":", 1)[0].strip() for c in frame.columns]
    rating = "rating" if "rating" in frame.columns else None
    _require_columns(frame, path, {"u": "user_id", "i": "item_id", "t": "timestamp"})
    return frame_from_columns(frame, path, "user_id", "item_id", "timestamp", rating, 2)
