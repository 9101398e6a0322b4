"""Delimited text split into string fields, every line's field count checked before parsing.

The counts are checked first, so that an error names its line without reading any parser's
message. Text that cannot hold a quoted field (tab-separated files are read with quoting off,
and most CSV files hold no quote character) is one record per line: a line's field count is
one more than its separators, counted for all lines at once with numpy, and pandas' C parser
then splits lines already known to be well formed. Text with quotes (a CSV whose fields hold
separators or line breaks) is split by Python's ``csv`` module, which says where each record
ends.

Blank lines (only separators, spaces and control characters) are skipped but still counted,
so line numbers are the ones an editor shows (1-based).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.errors import DataError

QUOTE = '"'
BOM = b"\xef\xbb\xbf"
SHOWN_CHARS = 60  # longest value an error message quotes in full


@dataclass(frozen=True)
class Records:
    """The non-blank records of a text, one entry each."""

    lines: np.ndarray  # int64, 1-based line on which the record starts
    widths: np.ndarray  # int64, number of fields
    last_empty: np.ndarray  # bool, the last field is empty


def excerpt(value: object) -> str:
    """``repr(value)`` for an error message, cut to about :data:`SHOWN_CHARS` characters (a
    5,000-digit number or a 1 MB id would otherwise fill the terminal)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int over Python's digit limit, a deep list
        text = f"<{type(value).__name__}>"
    if len(text) <= SHOWN_CHARS:
        return text
    length = f" ({len(value):,} characters)" if isinstance(value, str) else ""
    return f"{text[: SHOWN_CHARS - 10]}...{text[-6:]}{length}"


def cannot_read(path: Path, exc: OSError) -> DataError:
    """The error for a file or folder that exists but cannot be read (permissions, a folder
    where a file is expected, an I/O error)."""
    return DataError(f"{exc.filename or path}: cannot read ({exc.strerror or exc})")


def check_not_empty(path: Path) -> None:
    try:
        if not path.exists():
            raise DataError(f"{path}: file not found")
        if path.is_dir():
            raise DataError(f"{path}: is a folder, expected a file")
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty")
    except OSError as exc:
        raise cannot_read(path, exc) from None


def read_bytes(path: Path) -> bytes:
    """The bytes of a data file; a missing, empty or unreadable file is a DataError."""
    check_not_empty(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise cannot_read(path, exc) from None


def decode_utf8(data: bytes, path: Path, first_line: int = 1) -> str:
    """``data`` as UTF-8 text, a leading byte-order mark dropped. Invalid bytes are a DataError
    naming their line (``first_line`` is the line ``data`` starts on) and column."""
    try:
        return data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc, first_line) from None


def not_utf8(path: Path, exc: UnicodeDecodeError, first_line: int = 1) -> DataError:
    """The error for the invalid byte of ``exc`` (raised decoding ``exc.object``, which starts
    on line ``first_line``), naming the line and column an editor would show."""
    before = bytes(exc.object[: exc.start]).decode("utf-8", "replace")
    before = before.replace("\r\n", "\n").replace("\r", "\n")
    line = first_line + before.count("\n")
    column = len(before) - before.rfind("\n")  # 1-based, in characters
    byte = exc.object[exc.start]
    hint = ""
    if bytes(exc.object[:2]) in (b"\xff\xfe", b"\xfe\xff"):
        hint = "; the file looks like UTF-16: save it as UTF-8"
    return DataError(
        f"{path}: not valid UTF-8 text ({exc.reason}) at line {line}, column {column}: "
        f"byte 0x{byte:02x}{hint}"
    )


def _load(source: Path | str, text: str | None, path: Path) -> str:
    """The text to split: decoded, line ends made ``\\n``, ending with one."""
    if text is None:
        text = decode_utf8(read_bytes(Path(source)), path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def _plain_records(text: str, sep: str) -> tuple[Records, str]:
    """Records of a text without quoting: one per line, counted with numpy (``sep`` is ASCII).
    Also the text to split, where the separators of blank lines are spaces: the parser splits
    blank lines too, and one with more separators than the header has fields would stop it."""
    data = np.frombuffer(text.encode(), dtype=np.uint8)
    ends = np.flatnonzero(data == ord("\n"))  # every line ends with one (see _load)
    starts = np.concatenate(([0], ends[:-1] + 1))
    separators = np.flatnonzero(data == ord(sep))
    widths = np.diff(np.searchsorted(separators, ends), prepend=0) + 1
    visible = (data > ord(" ")) & (data != ord(sep))
    # Each segment includes its line's newline, so none is empty (as reduceat requires).
    content = np.logical_or.reduceat(visible, starts)
    last_empty = data[np.maximum(ends - 1, 0)] == ord(sep)
    keep = np.flatnonzero(content)
    blank = separators[~content[np.searchsorted(ends, separators)]]
    if len(blank):
        data = data.copy()
        data[blank] = ord(" ")
        text = data.tobytes().decode()
    return Records(keep + 1, widths[keep], last_empty[keep]), text


def _split_plain(text: str, sep: str, width: int, records: Records) -> pd.DataFrame:
    """Fields of the non-blank lines; lines may be shorter than ``width`` (padded with "")."""
    # Blank lines are kept as rows, so row i is line i + 1.
    rows = pd.read_csv(
        io.StringIO(text),
        sep=sep,
        header=None,
        names=range(width),
        dtype=str,
        na_filter=False,
        engine="c",
        skip_blank_lines=False,
        quoting=csv.QUOTE_NONE,
    )
    return rows.take(records.lines - 1)


def _split_quoted(text: str, sep: str, path: Path) -> tuple[list[list[str]], Records]:
    """Fields and records of a text with quoting, split by the ``csv`` module."""
    # An extra empty line: it comes back as an empty record unless an open quote swallows it.
    reader = csv.reader(io.StringIO(text + "\n", newline=""), delimiter=sep)
    lines, rows, line = [], [], 1
    for fields in reader:
        lines.append(line)
        rows.append(fields)
        line = reader.line_num + 1
    if rows[-1]:
        raise DataError(f"{path}: line {lines[-1]}: a quote opened here is never closed")
    keep = [i for i, fields in enumerate(rows) if any(field.strip() for field in fields)]
    rows = [rows[i] for i in keep]
    records = Records(
        np.asarray(lines, dtype=np.int64)[keep],
        np.asarray([len(fields) for fields in rows], dtype=np.int64),
        np.asarray([fields[-1] == "" for fields in rows], dtype=bool),
    )
    return rows, records


def _check_widths(path: Path, sep: str, names: list[str] | None, records: Records) -> int:
    """The number of fields per record: ``len(names)``, else the header's. Without names a
    shorter record is padded; with names only a short first line shows a wrong layout, later
    ones lack their last value."""
    if len(records.lines) == 0:
        raise DataError(f"{path}: no data rows (only blank lines and control characters)")
    expected = len(names) if names is not None else int(records.widths[0])
    wrong = records.widths > expected
    missing = np.zeros_like(wrong)
    if names is not None:
        wrong[0] |= records.widths[0] < expected
        missing = ~wrong & ((records.widths < expected) | records.last_empty)
    bad = np.flatnonzero(wrong | missing)
    if len(bad) == 0:
        return expected
    row = int(bad[0])
    what = f"{path}: line {records.lines[row]}: expected {expected} fields separated by {sep!r}"
    if missing[row]:
        raise DataError(f"{what}; the last one is missing or empty")
    header = " (as many as the header)" if names is None else ""
    raise DataError(f"{what}{header}, found {records.widths[row]}")


def read_delimited(
    source: Path | str,
    sep: str,
    names: list[str] | None,
    path_for_errors: Path | None = None,
    text: str | None = None,
    unique: bool = True,
) -> pd.DataFrame:
    """Read a delimited file (or ``text``) as string fields, checking each line's field count.

    With ``names=None`` the first non-blank line is a header (names stripped of spaces, made
    unique like pandas: ``a``, ``a.1``, unless ``unique`` is False: a caller that checks for
    repeated names itself); no line may have more fields than it, and shorter ones
    are padded with "". Otherwise every line must have exactly ``len(names)`` fields, the last
    one not empty. Quotes are honoured unless ``sep`` is a tab. Returns a frame of ``str``
    columns whose row labels are the file line minus 1 (no header) or minus 2 (header): pass
    ``first_line`` 1 or 2 to the parsers in :mod:`deepm3.data.tabular`.
    """
    path = Path(path_for_errors or source)
    text = _load(source, text, path)
    if sep.isascii() and (sep == "\t" or QUOTE not in text):
        records, text = _plain_records(text, sep)
        width = _check_widths(path, sep, names, records)
        fields = _split_plain(text, sep, width, records)
    else:
        rows, records = _split_quoted(text, sep, path)
        width = _check_widths(path, sep, names, records)
        fields = pd.DataFrame(rows, dtype=object).fillna("")  # pads short rows with ""
    lines, first_line = records.lines, 1
    if names is None:
        names = [str(name).strip() for name in fields.iloc[0]]
        names = unique_names(names) if unique else names
        fields, lines, first_line = fields.iloc[1:], lines[1:], 2
    if len(fields) == 0:
        raise DataError(f"{path}: no data rows")
    fields.columns = list(names)
    fields.index = lines - first_line
    return fields


def unique_names(columns: list[str]) -> list[str]:
    """Column names made unique the way pandas does it (``a``, ``a.1``, ...)."""
    seen: dict[str, int] = {}
    result = []
    for name in columns:
        count = seen.get(name, 0)
        seen[name] = count + 1
        result.append(name if count == 0 else f"{name}.{count}")
    return result
