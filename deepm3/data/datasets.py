"""The literal registry of known data sets and how their raw files are found or fetched.

A data directory (``--data-dir`` or ``$DEEPM3_DATA_DIR``) may hold the raw file itself or a
subfolder named after the data set (so ``../shared/data`` and ``../shared/data/ml-1m-subset``
both work). Without one, the official file is downloaded into :func:`cache_dir` and checked.
Any other ``DATASET`` that names an existing file is read by the reader that its name calls
for in :data:`deepm3.data.formats.READERS` (a ``.csv``/``.tsv`` table takes its columns from
the ``data`` config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deepm3.data.download import cache_dir, download, verify
from deepm3.data.formats import Reader, read_raw
from deepm3.errors import DataError

SNAP_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
MCAULEY_2018 = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_v2/categoryFilesSmall"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's raw file lives; its reader comes from the name (formats.READERS)."""

    name: str
    files: tuple[str, ...]  # accepted raw file names, in order of preference
    folders: tuple[str, ...]  # subfolders of a data dir that may hold them
    url: str | None  # official download
    md5: str | None  # published checksum of the download (None: not published)
    max_len: int  # default history length
    kcore: int  # default k-core
    note: str
    # Names too generic to identify the data set (``interactions.csv``): accepted only in a
    # folder named after it (one of ``folders``), never loose in an unrelated data dir.
    named_folder_only: tuple[str, ...] = ()
    # Reads a file that ``locate`` found. Every data set keeps the default; a test may stub it.
    reader: Reader = read_raw


def _amazon(name: str, category: str, release_2018: bool = False) -> DatasetSpec:
    files_2014 = (f"reviews_{category}_5.json.gz", f"ratings_{category}.csv")
    files_later = (f"{category}_5.json.gz", f"{category}.jsonl.gz")
    url = (
        f"{MCAULEY_2018}/{category}_5.json.gz"
        if release_2018
        else f"{SNAP_2014}/reviews_{category}_5.json.gz"
    )
    return DatasetSpec(
        name=name,
        files=(*files_2014, *files_later, "interactions.csv"),
        folders=(name, f"{name}-2018", category.lower()),
        url=url,
        md5=None,
        max_len=50,
        kcore=5,
        note=f"Amazon {category} reviews (5-core)",
        named_folder_only=("interactions.csv",),
    )


DATASETS: dict[str, DatasetSpec] = {
    "ml-1m": DatasetSpec(
        name="ml-1m",
        files=("ratings.dat", "ml-1m.zip"),
        folders=("ml-1m", "ml-1m-subset"),
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        max_len=200,
        kcore=5,
        note="MovieLens-1M ratings (GroupLens licence: no redistribution)",
    ),
    "ml-100k": DatasetSpec(
        name="ml-100k",
        files=("ml-100k.inter", "u.data", "ml-100k.zip"),
        folders=("ml-100k",),
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        max_len=200,
        kcore=5,
        note="MovieLens-100K ratings (GroupLens licence: no redistribution)",
    ),
    "amazon-books": _amazon("amazon-books", "Books"),
    "amazon-beauty": _amazon("amazon-beauty", "Beauty"),
    "amazon-sports": _amazon("amazon-sports", "Sports_and_Outdoors"),
    "amazon-all-beauty": _amazon("amazon-all-beauty", "All_Beauty", release_2018=True),
}
ALIASES = {"amazon": "amazon-books", "ml1m": "ml-1m", "ml100k": "ml-100k"}
GENERIC_SUFFIXES = (".csv", ".tsv", ".tab", ".inter", ".txt")
DATA_DIR_VARIABLE = "DEEPM3_DATA_DIR"  # the folder of raw files when none is given


def get_spec(dataset: str) -> DatasetSpec:
    name = ALIASES.get(dataset, dataset)
    if name in DATASETS:
        return DATASETS[name]
    if "/" in dataset or os.sep in dataset or Path(dataset).suffix:
        raise DataError(
            f"{dataset}: file not found (and not a known data set: {', '.join(DATASETS)})"
        )
    raise DataError(
        f"unknown data set {dataset!r}; valid: {', '.join(DATASETS)} "
        "(or the path of a .csv/.tsv/.inter file)"
    )


def is_generic(dataset: str) -> bool:
    return (
        dataset not in DATASETS
        and dataset not in ALIASES
        and (Path(dataset).suffix.lower() in GENERIC_SUFFIXES or Path(dataset).exists())
    )


def resolve_data_dir(data_dir: str | None) -> Path | None:
    value = data_dir or os.environ.get(DATA_DIR_VARIABLE)
    return Path(value) if value else None


def locate(spec: DatasetSpec, data_dir: Path | None) -> Path:
    """The raw file for ``spec``: in ``data_dir`` (or a named subfolder), else downloaded."""
    if data_dir is not None:
        if data_dir.exists() and not data_dir.is_dir():
            raise DataError(f"{data_dir}: is a file; the data directory must be a folder")
        if not data_dir.is_dir():
            raise DataError(f"data directory not found: {data_dir}")
        for folder in (data_dir, *(data_dir / sub for sub in spec.folders)):
            for name in spec.files:
                candidate = folder / name
                if name in spec.named_folder_only and folder.resolve().name not in spec.folders:
                    continue
                if candidate.is_file():
                    if candidate.suffix.lower() == ".zip":
                        verify(candidate, spec.md5)
                    return candidate
        raise DataError(
            f"{data_dir}: no raw file for {spec.name}; expected one of "
            f"{', '.join(spec.files)} in it or in a subfolder named "
            f"{' or '.join(spec.folders)}"
        )
    if spec.url is None:
        raise DataError(f"{spec.name} has no download; pass --data-dir")
    target = cache_dir() / "raw" / spec.name / spec.url.rsplit("/", 1)[1]
    return download(spec.url, target, md5=spec.md5)
