"""MovieLens readers, on the official files unchanged.

* ML-1M: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, latin-1) inside the official
  ``ml-1m.zip`` or its unpacked folder.
* ML-100K: ``u.data`` (tab-separated, no header) inside ``ml-100k.zip`` or its folder, or the
  RecBole atomic form ``ml-100k.inter``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import pandas as pd

from deepm3.data.delimited import check_not_empty, read_delimited
from deepm3.data.tabular import frame_from_columns, read_atomic
from deepm3.errors import DataError

RATING_FIELDS = ["user", "item", "rating", "timestamp"]


def _read_member(path: Path, member: str) -> tuple[str, Path]:
    """Text of ``member`` from a zip archive, and a display path for errors."""
    check_not_empty(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/" + member) or n == member]
            if not names:
                raise DataError(f"{path}: archive has no {member}")
            data = archive.read(names[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a valid zip archive ({exc})") from None
    return data.decode("latin-1"), path / names[0]


def _frame(fields: pd.DataFrame, shown: Path) -> pd.DataFrame:
    return frame_from_columns(fields, shown, "user", "item", "timestamp", "rating", 1)


def read_ml1m(path: Path) -> pd.DataFrame:
    """Read ML-1M ratings from ``ratings.dat`` or ``ml-1m.zip``."""
    path = Path(path)
    if path.suffix == ".zip":
        text, shown = _read_member(path, "ratings.dat")
    else:
        check_not_empty(path)
        text, shown = path.read_bytes().decode("latin-1"), path
    if not text.strip():
        raise DataError(f"{shown}: file is empty")
    # '::' is a two-character separator; the C parser needs one character, and '\t' never
    # occurs in the file. A line with a stray tab would show up as a wrong field count.
    if "\t" in text:
        line = text[: text.index("\t")].count("\n") + 1
        raise DataError(f"{shown}: line {line}: unexpected tab character")
    fields = read_delimited(shown, "\t", RATING_FIELDS, text=text.replace("::", "\t"))
    return _frame(fields, shown)


def read_ml100k(path: Path) -> pd.DataFrame:
    """Read ML-100K from ``u.data``, ``ml-100k.zip`` or the RecBole ``ml-100k.inter``."""
    path = Path(path)
    if path.suffix == ".inter":
        return read_atomic(path)
    if path.suffix == ".zip":
        text, shown = _read_member(path, "u.data")
        return _frame(read_delimited(shown, "\t", RATING_FIELDS, text=text), shown)
    return _frame(read_delimited(path, "\t", RATING_FIELDS), path)
