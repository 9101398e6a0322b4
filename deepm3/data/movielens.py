"""MovieLens readers, on the official files unchanged.

* ML-1M: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``, latin-1) inside the official
  ``ml-1m.zip`` or its unpacked folder.
* ML-100K: ``u.data`` (tab-separated, no header) inside ``ml-100k.zip`` or its folder, or the
  RecBole atomic form ``ml-100k.inter``.

A UTF-8 byte-order mark at the start of a file (an editor may add one) is dropped, as the CSV
and JSON readers drop it; decoded as latin-1 it would become part of the first user id. An
archive member that zipfile cannot read (encrypted, compressed by a method it lacks, damaged)
is an error naming the member: unpack it and pass the folder.
"""

from __future__ import annotations

import lzma
import re
import zipfile
import zlib
from pathlib import Path

import pandas as pd

from deepm3.data.delimited import BOM, cannot_read, check_not_empty, read_bytes, read_delimited
from deepm3.data.tabular import frame_from_columns, read_atomic
from deepm3.errors import DataError

RATING_FIELDS = ["user", "item", "rating", "timestamp"]
WHITESPACE_LINE = re.compile(r"^[^\S\n]+$", re.MULTILINE)  # spaces, tabs, ... and nothing else


def _latin1(data: bytes) -> str:
    return data.removeprefix(BOM).decode("latin-1")


def _read_member(path: Path, member: str) -> tuple[str, Path]:
    """Text of ``member`` from a zip archive, and a display path for errors."""
    check_not_empty(path)
    try:
        archive = zipfile.ZipFile(path)
    except PermissionError as exc:
        raise cannot_read(path, exc) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a valid zip archive ({exc})") from None
    with archive:
        names = [n for n in archive.namelist() if n.endswith("/" + member) or n == member]
        if not names:
            raise DataError(f"{path}: archive has no {member}")
        shown = path / names[0]
        info = archive.getinfo(names[0])
        if info.flag_bits & 0x1:
            raise DataError(f"{shown}: the member is encrypted; unpack it and pass its folder")
        try:
            data = archive.read(info)
        except NotImplementedError:  # a method zipfile lacks (deflate64, implode, ...)
            raise DataError(
                f"{shown}: compression method {info.compress_type} is not supported (only "
                "stored, deflate, bzip2 and lzma are); unpack it and pass its folder"
            ) from None
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as exc:
            raise DataError(f"{shown}: damaged archive member ({exc})") from None
    return _latin1(data), shown


def _frame(fields: pd.DataFrame, shown: Path) -> pd.DataFrame:
    return frame_from_columns(fields, shown, "user", "item", "timestamp", "rating", 1)


def read_ml1m(path: Path) -> pd.DataFrame:
    """Read ML-1M ratings from ``ratings.dat`` or ``ml-1m.zip``."""
    path = Path(path)
    if path.suffix.lower() == ".zip":
        text, shown = _read_member(path, "ratings.dat")
    else:
        text, shown = _latin1(read_bytes(path)), path
    if not text.strip():
        raise DataError(f"{shown}: file is empty")
    # '::' is a two-character separator; the C parser needs one character, and '\t' never
    # occurs in the file. A line with a stray tab would show up as a wrong field count; a
    # whitespace-only line is blank, skipped as every reader skips it (its tabs hold no data).
    if "\t" in text:
        text = WHITESPACE_LINE.sub("", text)
    if "\t" in text:
        line = text[: text.index("\t")].count("\n") + 1
        raise DataError(f"{shown}: line {line}: unexpected tab character")
    fields = read_delimited(shown, "\t", RATING_FIELDS, text=text.replace("::", "\t"))
    return _frame(fields, shown)


def read_ml100k(path: Path) -> pd.DataFrame:
    """Read ML-100K from ``u.data``, ``ml-100k.zip`` or the RecBole ``ml-100k.inter``."""
    path = Path(path)
    if path.suffix.lower() == ".inter":
        return read_atomic(path)
    if path.suffix.lower() == ".zip":
        text, shown = _read_member(path, "u.data")
        return _frame(read_delimited(shown, "\t", RATING_FIELDS, text=text), shown)
    return _frame(read_delimited(path, "\t", RATING_FIELDS), path)
