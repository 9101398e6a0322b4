"""The one table from raw file names to their readers.

Every place that picks a reader for a file looks it up here: a data set's accepted files
(``DatasetSpec.files`` only lists names, in order of preference), an official raw file named
by path, and a generic table. Supporting a new format means one line in :data:`READERS`.

Imports point one way: this module imports the readers (amazon, movielens, tabular), and no
reader imports it; :func:`read_amazon`, which picks among the Amazon readers by this table,
lives here for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path

import pandas as pd

from deepm3.data.amazon import read_amazon_json, read_amazon_ratings_csv
from deepm3.data.movielens import read_ml1m, read_ml100k
from deepm3.data.tabular import read_atomic, read_table
from deepm3.errors import DataError

Reader = Callable[[Path], pd.DataFrame]

# (file-name pattern, reader); the first pattern that matches the name wins. Official names
# come first; the suffix patterns after them also take renamed copies and generic tables.
READERS: tuple[tuple[str, Reader], ...] = (
    ("ratings.dat", read_ml1m),  # MovieLens-1M
    ("ml-1m.zip", read_ml1m),
    ("u.data", read_ml100k),  # MovieLens-100K
    ("ml-100k.zip", read_ml100k),
    ("*.inter", read_atomic),  # RecBole atomic files, ml-100k.inter among them
    ("reviews_*_5.json.gz", read_amazon_json),  # Amazon 2014
    ("ratings_*.csv", read_amazon_ratings_csv),  # Amazon 2014, ratings only
    ("*_5.json.gz", read_amazon_json),  # Amazon 2018
    ("*.jsonl.gz", read_amazon_json),  # Amazon 2023
    ("*.json.gz", read_amazon_json),
    ("*.jsonl", read_amazon_json),
    ("*.json", read_amazon_json),
    ("interactions.csv", read_table),  # a prepared user_id,item_id,timestamp table
    ("*.csv", read_table),  # generic tables: columns and separator from the config
    ("*.tsv", read_table),
    ("*.tab", read_table),
    ("*.txt", read_table),
)


def find_reader(name: str) -> Reader | None:
    """The reader of a file called ``name``, or None when no pattern matches; the name is
    matched ignoring case (``EVENTS.CSV`` is a table, as on a case-insensitive disk)."""
    name = name.lower()
    return next((reader for pattern, reader in READERS if fnmatchcase(name, pattern)), None)


def reader_for(path: Path) -> Reader:
    """The reader of the raw file ``path``; a DataError lists the accepted names."""
    reader = find_reader(Path(path).name)
    if reader is None:
        accepted = ", ".join(pattern for pattern, _ in READERS)
        raise DataError(f"{path}: not a known kind of raw file; accepted names: {accepted}")
    return reader


def read_raw(path: Path) -> pd.DataFrame:
    """Read a raw file with the reader its name calls for (see :data:`READERS`)."""
    return reader_for(path)(Path(path))


def read_amazon(path: Path) -> pd.DataFrame:
    """Any Amazon review file, by the reader that :data:`READERS` gives its name (see the table
    of releases in :mod:`deepm3.data.amazon`)."""
    path = Path(path)
    reader = find_reader(path.name)
    if reader not in (read_amazon_json, read_amazon_ratings_csv):
        raise DataError(
            f"{path}: not an Amazon review file; expected reviews_<Cat>_5.json.gz, "
            "ratings_<Cat>.csv, <Cat>_5.json.gz or <Cat>.jsonl.gz"
        )
    return reader(path)
