"""Every supported file format, on small files written here: exact values, dtypes and file order.

Each reader must return the frame ``user(str), item(str), timestamp(int64 s), rating(float64)``
in file order (sorting is the preprocessing's job, not the reader's).
"""

from __future__ import annotations

import ast
import gzip
import json
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import deepm3.data
from deepm3.config import DataConfig
from deepm3.data.amazon import read_amazon_json, read_amazon_ratings_csv
from deepm3.data.datasets import DATASETS, get_spec, locate
from deepm3.data.delimited import read_delimited
from deepm3.data.formats import READERS, find_reader, read_amazon, read_raw, reader_for
from deepm3.data.movielens import read_ml1m, read_ml100k
from deepm3.data.prepare import prepare
from deepm3.data.tabular import read_atomic, read_table
from deepm3.errors import DataError

# (user, item, rating, unix seconds). Not sorted by time, with a tie (u1: 1300000000 twice) and
# a user (u2) whose events are listed out of time order, so any sorting in a reader shows up.
ROWS = [
    ("A1U", "0001", 5.0, 1300000000),
    ("A2U", "0002", 3.0, 1200000000),
    ("A1U", "0003", 4.0, 1100000000),
    ("A1U", "0002", 1.0, 1300000000),
    ("A2U", "0001", 2.0, 1000000000),
]


def assert_frame(frame: pd.DataFrame, rows: list[tuple], ratings: bool = True) -> None:
    """Exact columns, dtypes, values and order."""
    assert list(frame.columns) == ["user", "item", "timestamp", "rating"]
    assert frame["timestamp"].dtype == np.int64
    assert frame["rating"].dtype == np.float64
    assert all(isinstance(v, str) for v in frame["user"]) and all(
        isinstance(v, str) for v in frame["item"]
    )
    assert frame["user"].tolist() == [r[0] for r in rows]
    assert frame["item"].tolist() == [r[1] for r in rows]
    assert frame["timestamp"].tolist() == [r[3] for r in rows]
    if ratings:
        assert frame["rating"].tolist() == [r[2] for r in rows]
    else:
        assert frame["rating"].isna().all()


def write_gz_lines(path: Path, records: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return path


def reviews_2014(rows=ROWS) -> list[dict]:
    return [
        {
            "reviewerID": user,
            "asin": item,
            "reviewerName": "J. Doe",
            "helpful": [0, 0],
            "reviewText": 'Good, with a "quote", a comma and\\na newline.',
            "overall": rating,
            "summary": "Fine",
            "unixReviewTime": stamp,
            "reviewTime": "03 13, 2011",
        }
        for user, item, rating, stamp in rows
    ]


def reviews_2018(rows=ROWS) -> list[dict]:
    return [
        {
            "overall": rating,
            "verified": True,
            "reviewTime": "03 13, 2011",
            "reviewerID": user,
            "asin": item,
            "style": {"Format:": " Paperback"},
            "reviewerName": "J. Doe",
            "reviewText": "Text",
            "summary": "Five Stars",
            "unixReviewTime": stamp,
            "vote": "2",
        }
        for user, item, rating, stamp in rows
    ]


# 2023: milliseconds, floored to seconds; parent_asin preferred over asin.
ROWS_2023 = [
    # user, parent_asin, asin, rating, milliseconds
    ("AGX1", "P100", "V101", 5.0, 1588687728923),
    ("AGX2", "P200", "V201", 3.0, 1588687728000),
    ("AGX1", "P200", "V202", 4.0, 1588687728999),  # same second as line 1 after flooring
    ("AGX2", "P100", "V100", 1.0, 999),  # below one second: floors to 0
]


def reviews_2023() -> list[dict]:
    return [
        {
            "rating": rating,
            "title": "Great",
            "text": "Nice book",
            "images": [],
            "asin": asin,
            "parent_asin": parent,
            "user_id": user,
            "timestamp": millis,
            "helpful_vote": 0,
            "verified_purchase": True,
        }
        for user, parent, asin, rating, millis in ROWS_2023
    ]


EXPECTED_2023 = [
    ("AGX1", "P100", 5.0, 1588687728),
    ("AGX2", "P200", 3.0, 1588687728),
    ("AGX1", "P200", 4.0, 1588687728),
    ("AGX2", "P100", 1.0, 0),
]


def write_amazon(folder: Path, name: str) -> Path:
    """Write ROWS (or the 2023 rows) in the format that ``name`` implies."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if name.startswith("reviews_"):
        return write_gz_lines(path, reviews_2014())
    if name.startswith("ratings_"):
        path.write_text("".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS))
        return path
    if name.endswith("_5.json.gz"):
        return write_gz_lines(path, reviews_2018())
    if name.endswith(".jsonl.gz"):
        return write_gz_lines(path, reviews_2023())
    raise AssertionError(name)


AMAZON_FILES = ["reviews_Books_5.json.gz", "ratings_Books.csv", "Books_5.json.gz", "Books.jsonl.gz"]


def expected_rows(name: str) -> list[tuple]:
    return EXPECTED_2023 if name.endswith(".jsonl.gz") else ROWS


# --------------------------------------------------------------------------------------------
# Amazon


@pytest.mark.parametrize("name", AMAZON_FILES)
def test_amazon_each_format_exact_values_in_file_order(tmp_path: Path, name: str) -> None:
    path = write_amazon(tmp_path, name)
    assert_frame(read_amazon(path), expected_rows(name))


def test_amazon_2014_json_reader_directly(tmp_path: Path) -> None:
    path = write_gz_lines(tmp_path / "reviews_Books_5.json.gz", reviews_2014())
    assert_frame(read_amazon_json(path), ROWS)


def test_amazon_2014_ratings_csv_reader_directly(tmp_path: Path) -> None:
    path = tmp_path / "ratings_Books.csv"
    # Windows line ends and a trailing blank line must not change anything.
    path.write_bytes("".join(f"{u},{i},{r},{t}\r\n" for u, i, r, t in ROWS).encode() + b"\r\n")
    assert_frame(read_amazon_ratings_csv(path), ROWS)


def test_amazon_2023_milliseconds_are_floored_not_rounded(tmp_path: Path) -> None:
    path = write_gz_lines(tmp_path / "Books.jsonl.gz", reviews_2023())
    frame = read_amazon(path)
    # 1588687728923 ms and 1588687728999 ms are both in second 1588687728 (round would give +1).
    assert frame["timestamp"].tolist() == [ms // 1000 for *_, ms in ROWS_2023]
    assert frame["timestamp"].tolist() == [1588687728, 1588687728, 1588687728, 0]
    # parent_asin, not asin, is the item.
    assert frame["item"].tolist() == ["P100", "P200", "P200", "P100"]


def test_amazon_2023_falls_back_to_asin_without_parent_asin(tmp_path: Path) -> None:
    records = reviews_2023()
    del records[1]["parent_asin"]
    frame = read_amazon(write_gz_lines(tmp_path / "Books.jsonl.gz", records))
    assert frame["item"].tolist() == ["P100", "V201", "P200", "P100"]


def test_amazon_2018_missing_rating_is_nan_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    records = reviews_2018()
    del records[2]["overall"]
    path = tmp_path / "Books_5.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n\n")
    frame = read_amazon(path)
    assert frame["user"].tolist() == [r[0] for r in ROWS]
    assert np.isnan(frame["rating"].iloc[2])
    assert frame["rating"].drop(index=2).tolist() == [r[2] for i, r in enumerate(ROWS) if i != 2]


def test_amazon_uncompressed_jsonl_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "Books.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reviews_2023()))
    assert_frame(read_amazon(path), EXPECTED_2023)


def test_amazon_json_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "Books_5.json.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in reviews_2018()).encode())
    assert_frame(read_amazon(path), ROWS)


def test_amazon_large_numeric_ids_keep_every_digit(tmp_path: Path) -> None:
    rows = [(10**17 + 1, 2**60 + 3, 5.0, 1300000000)]
    records = [
        {"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t} for u, i, r, t in rows
    ]
    frame = read_amazon(write_gz_lines(tmp_path / "Books_5.json.gz", records))
    assert frame["user"].tolist() == ["100000000000000001"]
    assert frame["item"].tolist() == [str(2**60 + 3)]


def test_amazon_unknown_file_name_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "books.parquet"
    path.write_bytes(b"x")
    with pytest.raises(DataError, match=r"books\.parquet: not an Amazon review file"):
        read_amazon(path)


@pytest.mark.parametrize("name", AMAZON_FILES)
@pytest.mark.parametrize("subfolder", ["", "amazon-books", "amazon-books-2018", "books"])
def test_locate_finds_each_amazon_books_file(tmp_path: Path, name: str, subfolder: str) -> None:
    folder = tmp_path / subfolder if subfolder else tmp_path
    path = write_amazon(folder, name)
    (tmp_path / "unrelated.txt").write_text("x")
    found = locate(get_spec("amazon-books"), tmp_path)
    assert found == path
    assert_frame(get_spec("amazon-books").reader(found), expected_rows(name))


def test_locate_amazon_prefers_the_data_dir_then_named_subfolders(tmp_path: Path) -> None:
    in_sub = write_amazon(tmp_path / "amazon-books", "Books_5.json.gz")
    assert locate(get_spec("amazon-books"), tmp_path) == in_sub
    in_root = write_amazon(tmp_path, "Books.jsonl.gz")
    assert locate(get_spec("amazon"), tmp_path) == in_root  # alias, root first


def test_locate_does_not_take_a_loose_interactions_csv_for_another_data_set(
    tmp_path: Path,
) -> None:
    # A generic interactions.csv is only trusted inside a folder named after the data set:
    # --data-dir .../amazon-beauty must not be read as Amazon Books.
    beauty = tmp_path / "amazon-beauty"
    beauty.mkdir()
    (beauty / "interactions.csv").write_text("user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(DataError, match="no raw file for amazon-books"):
        locate(get_spec("amazon-books"), beauty)
    assert locate(get_spec("amazon-beauty"), beauty) == beauty / "interactions.csv"
    assert locate(get_spec("amazon-beauty"), tmp_path) == beauty / "interactions.csv"


def test_locate_rejects_a_missing_data_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data directory not found"):
        locate(get_spec("amazon-books"), tmp_path / "absent")


@pytest.mark.parametrize("name", AMAZON_FILES)
def test_prepare_amazon_books_end_to_end(tmp_path: Path, name: str) -> None:
    path = write_amazon(tmp_path / "amazon-books", name)
    rows = expected_rows(name)
    if name.endswith(".jsonl.gz"):  # a third event for AGX1: prepare needs a user to evaluate
        extra = {**reviews_2023()[0], "parent_asin": "P300", "timestamp": 1588687729000}
        write_gz_lines(path, [*reviews_2023(), extra])
        rows = [*rows, ("AGX1", "P300", 5.0, 1588687729)]
    prepared = prepare(
        DataConfig(dataset="amazon-books", data_dir=str(tmp_path), kcore=0), use_cache=False
    )
    events = prepared.events
    # Sorted by (user in order of first appearance, time, file line).
    order = sorted(
        range(len(rows)),
        key=lambda i: ([r[0] for r in rows].index(rows[i][0]), rows[i][3], i),
    )
    expected_users = list(dict.fromkeys(rows[i][0] for i in order))
    expected_items = list(dict.fromkeys(rows[i][1] for i in order))
    assert events.user_ids.tolist() == ["", *expected_users]
    assert events.item_ids.tolist() == ["", *expected_items]
    assert events.items.tolist() == [expected_items.index(rows[i][1]) + 1 for i in order]
    assert events.timestamps.tolist() == [rows[i][3] for i in order]
    assert events.timestamps.dtype == np.int64
    lengths = [sum(r[0] == u for r in rows) for u in expected_users]
    assert events.offsets.tolist() == [0, 0, *np.cumsum(lengths).tolist()]
    assert prepared.name == "amazon-books"
    assert prepared.stats["raw"] == {
        "users": len(expected_users),
        "items": len(expected_items),
        "interactions": len(rows),
    }
    # named inside the data directory, never by this machine's absolute path
    assert prepared.stats["source"] == f"amazon-books/{name}"


def test_prepare_amazon_books_cache_gives_the_same_result(tmp_path: Path) -> None:
    write_amazon(tmp_path, "reviews_Books_5.json.gz")
    config = DataConfig(dataset="amazon-books", data_dir=str(tmp_path), kcore=0)
    first = prepare(config)
    second = prepare(config)  # from the cache
    assert second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.events.items, first.events.items)
    np.testing.assert_array_equal(second.events.timestamps, first.events.timestamps)


# --------------------------------------------------------------------------------------------
# Real raw Amazon 2018 file


def test_real_amazon_all_beauty_2018_parses(real_data_dir: Path) -> None:
    path = real_data_dir / "amazon-all-beauty-2018" / "All_Beauty_5.json.gz"
    frame = read_amazon(path)
    assert len(frame) == 5269
    assert frame["user"].nunique() == 991
    assert frame["item"].nunique() == 85
    assert frame["timestamp"].dtype == np.int64 and frame["rating"].dtype == np.float64
    # First line of the file, verbatim.
    assert frame.iloc[0].tolist() == ["A3CIUOJXQ5VDQ2", "B0000530HU", 1472688000, 5.0]
    assert frame["rating"].isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()
    first = datetime.fromtimestamp(int(frame["timestamp"].min()), timezone.utc).date()
    last = datetime.fromtimestamp(int(frame["timestamp"].max()), timezone.utc).date()
    assert (str(first), str(last)) == ("2004-09-21", "2018-08-23")
    # The same file, found by name in the data folder.
    assert locate(get_spec("amazon-all-beauty"), real_data_dir) == path


def test_real_ml100k_inter_parses(real_data_dir: Path) -> None:
    frame = read_ml100k(real_data_dir / "ml-100k" / "ml-100k.inter")
    assert (len(frame), frame["user"].nunique(), frame["item"].nunique()) == (100000, 943, 1682)
    # The first line of the official u.data: 196 242 3 881250949.
    assert frame.iloc[0].tolist() == ["196", "242", 881250949, 3.0]
    assert frame["timestamp"].dtype == np.int64


# --------------------------------------------------------------------------------------------
# MovieLens

ML_ROWS = [
    ("1", "1193", 5.0, 978300760),
    ("1", "661", 3.0, 978302109),
    ("2", "1357", 5.0, 978298709),
    ("1", "914", 3.0, 978300760),  # tie with line 1
    ("10", "3408", 4.0, 0),
]
ML1M_TEXT = "".join(f"{u}::{i}::{int(r)}::{t}\n" for u, i, r, t in ML_ROWS)
U_DATA_TEXT = "".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in ML_ROWS)


def test_ml1m_ratings_dat(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text(ML1M_TEXT)
    assert_frame(read_ml1m(path), ML_ROWS)


def test_ml1m_zip_made_like_the_official_archive(tmp_path: Path) -> None:
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-1m/README", "readme")
        archive.writestr("ml-1m/movies.dat", "1193::One Flew Over the Cuckoo's Nest::Drama\n")
        archive.writestr("ml-1m/ratings.dat", ML1M_TEXT)
        archive.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
    assert_frame(read_ml1m(path), ML_ROWS)


def test_ml1m_zip_errors_name_the_member_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", ML1M_TEXT + "7::8::x::9\n")
    with pytest.raises(DataError, match=r"ml-1m\.zip/ml-1m/ratings\.dat: line 6: column 'rating'"):
        read_ml1m(path)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("ml-1m/movies.dat", "x")
    with pytest.raises(DataError, match=r"other\.zip: archive has no ratings\.dat"):
        read_ml1m(other)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really a zip")
    with pytest.raises(DataError, match=r"broken\.zip: not a valid zip archive"):
        read_ml1m(broken)
    with pytest.raises(DataError, match=r"absent\.zip: file not found"):
        read_ml1m(tmp_path / "absent.zip")


def test_locate_rejects_an_ml1m_zip_with_a_wrong_checksum(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as archive:
        archive.writestr("ml-1m/ratings.dat", ML1M_TEXT)
    with pytest.raises(DataError) as info:
        locate(get_spec("ml-1m"), tmp_path)
    message = str(info.value)
    assert "ml-1m.zip" in message and "checksum mismatch" in message
    assert "c4d9eecfca2ab87c1945afe126590906" in message  # the published md5


def test_locate_ml1m_unpacked_folder_and_subset_folder(tmp_path: Path) -> None:
    for folder in ("ml-1m", "ml-1m-subset"):
        data_dir = tmp_path / folder.replace("-", "_")
        (data_dir / folder).mkdir(parents=True)
        (data_dir / folder / "ratings.dat").write_text(ML1M_TEXT)
        found = locate(get_spec("ml1m"), data_dir)
        assert found == data_dir / folder / "ratings.dat"
        assert_frame(get_spec("ml-1m").reader(found), ML_ROWS)


def test_ml100k_u_data(tmp_path: Path) -> None:
    path = tmp_path / "u.data"
    path.write_text(U_DATA_TEXT)
    assert_frame(read_ml100k(path), ML_ROWS)


def test_ml100k_zip(tmp_path: Path) -> None:
    path = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ml-100k/ua.base", "9\t9\t9\t9\n")
        archive.writestr("ml-100k/u.data", U_DATA_TEXT)
    assert_frame(read_ml100k(path), ML_ROWS)


ATOMIC_TEXT = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    + "".join(f"{u}\t{i}\t{int(r)}\t{t}\n" for u, i, r, t in ML_ROWS[:3])
    # RecBole declares timestamps float: a whole "x.0" is accepted as x.
    + "".join(f"{u}\t{i}\t{r}\t{t}.0\n" for u, i, r, t in ML_ROWS[3:])
)


def test_recbole_atomic_inter(tmp_path: Path) -> None:
    path = tmp_path / "ml-100k.inter"
    path.write_text(ATOMIC_TEXT)
    assert_frame(read_ml100k(path), ML_ROWS)
    assert_frame(read_atomic(path), ML_ROWS)
    assert_frame(read_raw(path), ML_ROWS)  # the table sends .inter to the atomic reader


def test_recbole_atomic_inter_without_rating_and_other_column_order(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_text(
        "timestamp:float\titem_id:token\tuser_id:token\n"
        + "".join(f"{t}\t{i}\t{u}\n" for u, i, _, t in ML_ROWS)
    )
    assert_frame(read_atomic(path), ML_ROWS, ratings=False)


# --------------------------------------------------------------------------------------------
# Generic CSV / TSV


def test_generic_csv_with_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "ts,score,iid,uid,comment\n"
        + "".join(f'{t},{r},{i},{u},"a, b"\n' for u, i, r, t in ML_ROWS)
    )
    frame = read_table(path, user_col="uid", item_col="iid", time_col="ts", rating_col="score")
    assert_frame(frame, ML_ROWS)
    no_rating = read_table(path, user_col="uid", item_col="iid", time_col="ts")
    assert_frame(no_rating, ML_ROWS, ratings=False)


def test_generic_tsv_and_explicit_separator(tmp_path: Path) -> None:
    tsv = tmp_path / "events.tsv"
    tsv.write_text("user\titem\ttime\n" + "".join(f"{u}\t{i}\t{t}\n" for u, i, _, t in ML_ROWS))
    assert_frame(read_table(tsv, "user", "item", "time"), ML_ROWS, ratings=False)
    semi = tmp_path / "events.txt"
    semi.write_text("u;i;t;r\n" + "".join(f"{u};{i};{t};{r}\n" for u, i, r, t in ML_ROWS))
    assert_frame(read_table(semi, "u", "i", "t", "r", sep=";"), ML_ROWS)


def test_generic_csv_ids_stay_text_and_blank_lines_do_not_shift_line_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.csv"
    # Leading zeros and "NA" are ids, not numbers or missing values.
    path.write_text("user_id,item_id,timestamp\n007,NA,5\n\n\n007,0042,6\n\nbad,x,oops\n")
    with pytest.raises(DataError, match=r"events\.csv: line 7: column 'timestamp'.*'oops'"):
        read_table(path)
    path.write_text("user_id,item_id,timestamp\n007,NA,5\n\n007,0042,6\n")
    frame = read_table(path)
    assert frame["user"].tolist() == ["007", "007"]
    assert frame["item"].tolist() == ["NA", "0042"]
    assert frame["timestamp"].tolist() == [5, 6]


def test_generic_csv_with_prepare(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("uid,iid,ts\n" + "".join(f"{u},{i},{t}\n" for u, i, _, t in ML_ROWS))
    prepared = prepare(
        DataConfig(dataset=str(path), user_col="uid", item_col="iid", time_col="ts"),
        use_cache=False,
    )
    # user "1": 978300760 (1193), 978300760 (914, tie: file order), 978302109 (661).
    assert prepared.events.user_ids.tolist() == ["", "1", "2", "10"]
    first_user = prepared.events.item_ids[prepared.events.items[0:3]].tolist()
    assert first_user == ["1193", "914", "661"]
    assert prepared.events.timestamps.tolist() == [978300760, 978300760, 978302109, 978298709, 0]


def test_generic_tab_separator_typed_on_the_command_line(tmp_path: Path, capsys) -> None:
    from deepm3.cli import main

    path = tmp_path / "events.txt"
    path.write_text(
        "user_id\titem_id\ttimestamp\n" + "".join(f"{u}\t{i}\t{t}\n" for u, i, _, t in ML_ROWS)
    )
    # The shell passes sep=\t as a backslash and a t.
    assert_frame(read_table(path, sep="\\t"), ML_ROWS, ratings=False)
    assert main(["data", "prepare", "--no-cache", str(path), "sep=\\t"]) == 0
    assert "3 / 5 / 5" in capsys.readouterr().out  # raw users / items / events


def test_an_official_raw_file_named_directly_uses_its_own_reader(real_data_dir):
    path = real_data_dir / "amazon-all-beauty-2018" / "All_Beauty_5.json.gz"
    stats = prepare(DataConfig(dataset=str(path), kcore=0)).stats
    assert stats["raw"] == {"users": 991, "items": 85, "interactions": 5269}


# --------------------------------------------------------------------------------------------
# The one table from file names to readers


@pytest.mark.parametrize(
    ("name", "reader"),
    [
        ("ratings.dat", read_ml1m),
        ("ml-1m.zip", read_ml1m),
        ("u.data", read_ml100k),
        ("ml-100k.zip", read_ml100k),
        ("ml-100k.inter", read_atomic),
        ("events.inter", read_atomic),
        ("reviews_Books_5.json.gz", read_amazon_json),
        ("ratings_Books.csv", read_amazon_ratings_csv),
        ("Books_5.json.gz", read_amazon_json),
        ("Books.jsonl.gz", read_amazon_json),
        ("Books.jsonl", read_amazon_json),
        ("interactions.csv", read_table),
        ("ratings.csv", read_table),  # a generic table, not Amazon's ratings_<Cat>.csv
        ("events.tsv", read_table),
        ("events.txt", read_table),
    ],
)
def test_the_table_gives_each_file_name_its_reader(name: str, reader) -> None:
    assert reader_for(Path(name)) is reader


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_accepted_file_of_every_data_set_is_read_through_the_table(dataset: str) -> None:
    spec = DATASETS[dataset]
    assert spec.reader is read_raw  # no data set brings a reader of its own
    for name in spec.files:
        assert find_reader(name) is not None, f"{dataset}: {name} is not in formats.READERS"


def test_an_unknown_file_name_is_a_clear_error_listing_the_accepted_names(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"x")
    assert find_reader(path.name) is None
    with pytest.raises(DataError) as info:
        read_raw(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a known kind of raw file; accepted names: ")
    assert all(pattern in message for pattern, _ in READERS)


@pytest.mark.parametrize("name", AMAZON_FILES)
def test_read_raw_reads_each_amazon_file_like_read_amazon(tmp_path: Path, name: str) -> None:
    path = write_amazon(tmp_path, name)
    assert_frame(read_raw(path), expected_rows(name))


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every import statement of a source file."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):  # relative imports made absolute
                base = ".".join(filter(None, ["deepm3.data" * (child.level > 0), child.module]))
                found.append((base, inside))
                found.extend((f"{base}.{alias.name}", inside) for alias in child.names)
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


DATA_FOLDER = Path(deepm3.data.__file__).parent
HEAVY_OPTIONAL = ("onnx", "onnxruntime", "uvicorn", "optuna")  # may be imported where used


@pytest.mark.parametrize("module", ["amazon", "movielens", "tabular", "delimited", "jsonlines"])
def test_no_reader_imports_the_table_of_readers(module: str) -> None:
    # formats imports the readers; a reader importing formats back would be a cycle.
    imported = {name for name, _ in _imports(DATA_FOLDER / f"{module}.py")}
    assert "deepm3.data.formats" not in imported


def test_every_data_module_imports_at_its_top() -> None:
    late = [
        f"{path.name}: {name}"
        for path in sorted(DATA_FOLDER.glob("*.py"))
        for name, inside in _imports(path)
        if inside and name.split(".")[0] not in HEAVY_OPTIONAL
    ]
    assert late == []


# --------------------------------------------------------------------------------------------
# Splitting delimited text: line numbers and field counts without any parser's messages


def test_lines_after_a_quoted_line_break_keep_their_own_numbers(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text('user_id,item_id,timestamp\n"u\n1",i1,5\nu2,i2,oops\n')
    with pytest.raises(DataError, match=r"events\.csv: line 4: column 'timestamp'.*'oops'"):
        read_table(path)
    path.write_text('user_id,item_id,timestamp\n"u\n1",i1,5\nu2,i2,6,7\n')
    with pytest.raises(DataError, match=r"events\.csv: line 4: expected 3 fields .*, found 4"):
        read_table(path)


@pytest.mark.parametrize("quoted", [False, True], ids=["no-quotes", "with-quotes"])
def test_field_count_errors_are_the_same_with_or_without_quotes(quoted: bool) -> None:
    first = '"1",2,3,4\n' if quoted else "1,2,3,4\n"
    names = ["a", "b", "c", "d"]
    cases = [
        (first + "5,6,7,8,9\n", "line 2: expected 4 fields separated by ',', found 5"),
        (first + "\n5,6,7\n", "line 3: expected 4 fields separated by ','; the last one is"),
        (first + "5,6,7,\n", "line 2: expected 4 fields separated by ','; the last one is"),
        ("1,2,3\n" + first, "line 1: expected 4 fields separated by ',', found 3"),
    ]
    for text, message in cases:
        with pytest.raises(DataError, match=re.escape(f"f.csv: {message}")):
            read_delimited(Path("f.csv"), ",", names, text=text)


def test_blank_lines_anywhere_are_skipped_but_counted() -> None:
    text = "\n \t \n1\t2\r\n\t\n3\t4\n\n"
    fields = read_delimited(Path("f.tsv"), "\t", ["a", "b"], text=text)
    assert fields.values.tolist() == [["1", "2"], ["3", "4"]]
    assert fields.index.tolist() == [2, 4]  # lines 3 and 5, minus 1
    header = read_delimited(Path("f.csv"), ",", None, text="\n\n a ,b,a\n1,2,3\n")
    assert list(header.columns) == ["a", "b", "a.1"]
    assert header.index.tolist() == [2]  # line 4, minus 2


def test_quotes_follow_csv_rules_but_not_in_tab_separated_files() -> None:
    text = 'a,b\n"x, ""y""",2\n5" tv,3\n'
    fields = read_delimited(Path("f.csv"), ",", None, text=text)
    assert fields.values.tolist() == [['x, "y"', "2"], ['5" tv', "3"]]
    tabs = read_delimited(Path("f.tsv"), "\t", ["a", "b"], text='"x\t2\n5\t"y"\n')
    assert tabs.values.tolist() == [['"x', "2"], ["5", '"y"']]


def test_a_header_table_pads_short_lines_and_rejects_long_ones() -> None:
    fields = read_delimited(Path("f.csv"), ",", None, text="a,b,c\n1,2\n")
    assert fields.values.tolist() == [["1", "2", ""]]
    with pytest.raises(DataError, match=r"line 3: .* \(as many as the header\), found 4"):
        read_delimited(Path("f.csv"), ",", None, text='a,b,c\n"1",2,3\n1,2,3,4\n')
