"""Bad input through the CLI: exit code 2, one clear line on stderr naming the file and the line
or column, no traceback, and nothing left in the cache."""

from __future__ import annotations

import gzip
import json
import re
import zipfile
from pathlib import Path

import pytest

from deepm3.cli import main
from deepm3.data.download import cache_dir

GOOD_DAT = "1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n"


def cache_files() -> set[Path]:
    root = cache_dir()
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def fails(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run ``deepm3 args``; check the failure contract and return the error message."""
    before = cache_files()
    prepared_before = set((cache_dir() / "prepared").glob("*"))
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err  # exactly one line, nothing else on stderr
    assert lines[0].startswith("deepm3: error: ")
    assert captured.out == ""
    assert set((cache_dir() / "prepared").glob("*")) == prepared_before
    assert cache_files() == before  # no partial cache, no temporary file, no download
    return lines[0].removeprefix("deepm3: error: ")


def prepare_args(dataset: str | Path, data_dir: Path | None = None, *overrides: str) -> list[str]:
    # --data-dir goes first: see test_overrides_after_data_dir_option for why.
    args = ["data", "prepare"]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return [*args, str(dataset), *overrides]


def ml1m_dir(tmp_path: Path, text: str) -> Path:
    (tmp_path / "ratings.dat").write_text(text)
    return tmp_path


def write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write("".join(line + "\n" for line in lines))
    return path


def review(user: str = "A1", item: str = "B1", stamp: object = 1300000000) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "overall": 5.0, "unixReviewTime": stamp})


# --------------------------------------------------------------------------------------------
# Sanity: the same command succeeds on good input (so each failure below is about the input).


# GOOD_DAT plus a third event for user 1: prepare refuses data where no user can be evaluated
# (GOOD_DAT itself stays as it is: the bad-line tests count their line numbers from it).
EVALUABLE_DAT = GOOD_DAT + "1::914::3::978301968\n"


def test_good_input_succeeds_and_writes_the_cache(tmp_path: Path, capsys) -> None:
    data_dir = ml1m_dir(tmp_path, EVALUABLE_DAT)
    before = cache_files()
    assert main(prepare_args("ml-1m", data_dir, "kcore=0")) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "2 / 4 / 4" in captured.out  # raw users / items / events
    assert len(cache_files() - before) == 1


def test_overrides_after_data_dir_option(tmp_path: Path, capsys) -> None:
    data_dir = ml1m_dir(tmp_path, EVALUABLE_DAT)
    code = main(["data", "prepare", "ml-1m", "--data-dir", str(data_dir), "kcore=0"])
    assert code == 0
    assert "2 / 4 / 4" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# Missing files and folders


def test_missing_generic_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "absent.csv"
    assert fails(capsys, prepare_args(path)) == f"{path}: file not found"


def test_missing_generic_csv_with_overrides(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sub" / "events.csv"
    message = fails(capsys, prepare_args(path, None, "user_col=uid", "time_col=ts"))
    assert message == f"{path}: file not found"


def test_missing_path_without_a_known_suffix(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events"
    message = fails(capsys, prepare_args(path))
    assert message.startswith(f"{path}: file not found")


def test_unknown_data_set_name(capsys) -> None:
    message = fails(capsys, prepare_args("ml-2m", Path(".")))
    assert "unknown data set 'ml-2m'" in message and "ml-1m" in message


def test_missing_data_dir(tmp_path: Path, capsys) -> None:
    absent = tmp_path / "absent"
    assert fails(capsys, prepare_args("ml-1m", absent)) == f"data directory not found: {absent}"


def test_data_dir_without_the_expected_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Animation\n")
    (tmp_path / "ml-1m").mkdir()
    message = fails(capsys, prepare_args("ml-1m", tmp_path))
    assert message.startswith(f"{tmp_path}: no raw file for ml-1m")
    assert "ratings.dat" in message and "ml-1m.zip" in message


def test_amazon_data_dir_without_the_expected_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "reviews_Beauty_5.json.gz").write_bytes(b"")  # another category
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{tmp_path}: no raw file for amazon-books")
    assert "Books_5.json.gz" in message


# --------------------------------------------------------------------------------------------
# Empty files


def test_empty_ratings_dat(tmp_path: Path, capsys) -> None:
    data_dir = ml1m_dir(tmp_path, "")
    assert (
        fails(capsys, prepare_args("ml-1m", data_dir))
        == f"{data_dir / 'ratings.dat'}: file is empty"
    )


def test_blank_ratings_dat(tmp_path: Path, capsys) -> None:
    data_dir = ml1m_dir(tmp_path, "\n\n  \n")
    assert (
        fails(capsys, prepare_args("ml-1m", data_dir))
        == f"{data_dir / 'ratings.dat'}: file is empty"
    )


def test_empty_generic_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("")
    assert fails(capsys, prepare_args(path)) == f"{path}: file is empty"


def test_generic_csv_with_only_a_header(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n")
    assert fails(capsys, prepare_args(path)) == f"{path}: no data rows"


def test_empty_amazon_json(tmp_path: Path, capsys) -> None:
    path = write_gz(tmp_path / "Books_5.json.gz", [])
    assert fails(capsys, prepare_args("amazon-books", tmp_path)) == f"{path}: no data rows"


# --------------------------------------------------------------------------------------------
# Malformed lines


@pytest.mark.parametrize(
    ("text", "line", "found"),
    [
        (GOOD_DAT + "1::2::3\n", 4, "; the last one is missing or empty"),  # too few
        ("1::2::3\n" + GOOD_DAT, 1, ", found 3"),  # too few, on the first line
        (GOOD_DAT + "1::2::3::4::5\n", 4, ", found 5"),  # too many
        ("1::2::3::4::5\n" + GOOD_DAT, 1, ", found 5"),  # too many, on the first line
        (GOOD_DAT + "\n\n1::2::3::4::5\n", 6, ", found 5"),  # blank lines still count
    ],
)
def test_wrong_field_count_in_ratings_dat(
    tmp_path: Path, capsys, text: str, line: int, found: str
) -> None:
    data_dir = ml1m_dir(tmp_path, text)
    message = fails(capsys, prepare_args("ml-1m", data_dir))
    assert message == (
        f"{data_dir / 'ratings.dat'}: line {line}: expected 4 fields separated by '\\t'{found}"
    )


def test_wrong_field_count_in_generic_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i1,5\nu2,i2,6,7\n")
    message = fails(capsys, prepare_args(path))
    assert message == (
        f"{path}: line 3: expected 3 fields separated by ',' (as many as the header), found 4"
    )


def test_wrong_field_count_in_amazon_ratings_csv(tmp_path: Path, capsys) -> None:
    (tmp_path / "ratings_Books.csv").write_text("A1,B1,5.0,1300000000\nA2,B2,4.0\n")
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{tmp_path / 'ratings_Books.csv'}: line 2: expected 4 fields")


def test_missing_column_in_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item,timestamp\nu1,i1,5\n")
    message = fails(capsys, prepare_args(path))
    assert message.startswith(f"{path}: line 1 (header): missing column(s) 'item_id'")
    assert "found: 'user_id', 'item', 'timestamp'" in message


def test_missing_custom_column_in_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("uid,iid,timestamp\nu1,i1,5\n")
    message = fails(capsys, prepare_args(path, None, "user_col=uid", "item_col=iid", "time_col=ts"))
    assert message.startswith(f"{path}: line 1 (header): missing column(s) 'ts'")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("abc", "'abc'"), ("-5", "'-5'"), ("1.5", "'1.5'"), ("", "''"), ("nan", "'nan'")],
    ids=["non-numeric", "negative", "fractional", "empty", "nan"],
)
def test_bad_timestamp_in_generic_csv(tmp_path: Path, capsys, value: str, shown: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"user_id,item_id,timestamp\nu1,i1,5\nu1,i2,6\nu2,i3,{value}\n")
    message = fails(capsys, prepare_args(path))
    assert message == (
        f"{path}: line 4: column 'timestamp': expected a non-negative whole number of seconds, "
        f"got {shown}"
    )


@pytest.mark.parametrize("value", ["12x", "-978300760", "978300760.25"])
def test_bad_timestamp_in_ratings_dat(tmp_path: Path, capsys, value: str) -> None:
    data_dir = ml1m_dir(tmp_path, GOOD_DAT + f"3::4::5::{value}\n")
    message = fails(capsys, prepare_args("ml-1m", data_dir))
    assert message == (
        f"{data_dir / 'ratings.dat'}: line 4: column 'timestamp': expected a non-negative whole "
        f"number of seconds, got '{value}'"
    )


def test_bad_rating_in_ratings_dat(tmp_path: Path, capsys) -> None:
    data_dir = ml1m_dir(tmp_path, GOOD_DAT + "3::4::five::978300760\n")
    message = fails(capsys, prepare_args("ml-1m", data_dir))
    assert message == (
        f"{data_dir / 'ratings.dat'}: line 4: column 'rating': expected a number, got 'five'"
    )


def test_empty_user_in_generic_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.tsv"
    path.write_text("user_id\titem_id\ttimestamp\nu1\ti1\t5\n \ti2\t6\n")
    assert fails(capsys, prepare_args(path)) == f"{path}: line 3: column 'user_id' is empty"


def test_bad_timestamp_in_recbole_inter(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.inter"
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3.0\n1\t3\t3.5\n")
    message = fails(capsys, prepare_args(path))
    assert message.startswith(f"{path}: line 3: column 'timestamp'")


# --------------------------------------------------------------------------------------------
# Amazon JSON


def test_invalid_json_line(tmp_path: Path, capsys) -> None:
    path = write_gz(
        tmp_path / "Books_5.json.gz", [review(), '{"reviewerID": "A2", "asin"', review()]
    )
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert re.fullmatch(re.escape(f"{path}: line 2: not valid JSON (") + r".+\)", message)


def test_json_line_that_is_not_an_object(tmp_path: Path, capsys) -> None:
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), "[1, 2]"])
    assert fails(capsys, prepare_args("amazon-books", tmp_path)) == (
        f"{path}: line 2: expected a JSON object"
    )


@pytest.mark.parametrize("field", ["reviewerID", "asin", "unixReviewTime"])
def test_missing_field_in_amazon_json(tmp_path: Path, capsys, field: str) -> None:
    broken = json.loads(review())
    del broken[field]
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), review(), json.dumps(broken)])
    assert fails(capsys, prepare_args("amazon-books", tmp_path)) == (
        f"{path}: line 3: missing field {field!r}"
    )


def test_missing_field_in_amazon_2023_json(tmp_path: Path, capsys) -> None:
    good = {"user_id": "A1", "parent_asin": "P1", "rating": 5.0, "timestamp": 1588687728923}
    bad = {"user_id": "A1", "parent_asin": "P2", "rating": 5.0}
    path = write_gz(tmp_path / "Books.jsonl.gz", [json.dumps(good), json.dumps(bad)])
    assert fails(capsys, prepare_args("amazon-books", tmp_path)) == (
        f"{path}: line 2: missing field 'timestamp'"
    )


@pytest.mark.parametrize(
    ("stamp", "shown"),
    [("1300000000", "'1300000000'"), (-1, "-1"), (1.5, "1.5"), (None, "None"), (1e20, "1e+20")],
)
def test_bad_timestamp_in_amazon_json(tmp_path: Path, capsys, stamp: object, shown: str) -> None:
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), review(stamp=stamp)])
    assert fails(capsys, prepare_args("amazon-books", tmp_path)) == (
        f"{path}: line 2: field 'unixReviewTime': expected a non-negative whole number of "
        f"seconds, got {shown}"
    )


@pytest.mark.parametrize("user", [None, "", "  ", ["A1"]])
def test_bad_user_id_in_amazon_json(tmp_path: Path, capsys, user: object) -> None:
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), review(user=user)])
    assert fails(capsys, prepare_args("amazon-books", tmp_path)) == (
        f"{path}: line 2: field 'reviewerID': expected a non-empty id, got {user!r}"
    )


def test_amazon_file_that_is_not_gzip(tmp_path: Path, capsys) -> None:
    path = tmp_path / "Books_5.json.gz"
    path.write_text(review() + "\n")
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{path}: cannot read compressed file")


def test_truncated_amazon_gzip(tmp_path: Path, capsys) -> None:
    path = write_gz(tmp_path / "Books_5.json.gz", [review(item=f"B{i}") for i in range(2000)])
    path.write_bytes(path.read_bytes()[:-40])
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{path}: cannot read compressed file")


def test_corrupt_amazon_gzip(tmp_path: Path, capsys) -> None:
    path = write_gz(tmp_path / "Books_5.json.gz", [review(item=f"B{i}") for i in range(2000)])
    data = bytearray(path.read_bytes())
    for offset in range(40, 80):  # scramble deflate data after the header
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{path}: cannot read compressed file")


# --------------------------------------------------------------------------------------------
# Archives


def test_ml1m_zip_with_a_wrong_checksum(tmp_path: Path, capsys) -> None:
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as archive:
        archive.writestr("ml-1m/ratings.dat", GOOD_DAT)
    message = fails(capsys, prepare_args("ml-1m", tmp_path))
    assert message.startswith(f"{tmp_path / 'ml-1m.zip'}: checksum mismatch: expected md5 ")


def test_not_utf8_generic_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"user_id,item_id,timestamp\nu\xff\xfe1,i1,5\n")
    message = fails(capsys, prepare_args(path))
    assert message.startswith(f"{path}: not valid UTF-8 text")


def test_unclosed_quote_in_generic_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text('user_id,item_id,timestamp\nu1,i1,5\n\n"u2,i2,6\nu3,i3,7\n')
    assert fails(capsys, prepare_args(path)) == (
        f"{path}: line 4: a quote opened here is never closed"
    )


def test_multi_character_separator_is_a_clear_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.txt"
    path.write_text("user_id;;item_id;;timestamp\nu1;;i1;;5\n")
    assert fails(capsys, prepare_args(path, None, "sep=;;")) == (
        f"{path}: sep must be a single character (or \\t), got ';;'"
    )


def test_file_of_an_unknown_kind(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"PAR1")
    message = fails(capsys, prepare_args(path))
    assert message.startswith(f"{path}: not a known kind of raw file; accepted names: ")
    assert "ratings.dat" in message and "*.csv" in message


def test_wrong_field_count_after_a_quoted_line_break(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text('user_id,item_id,timestamp\n"u\n1",i1,5\nu2,i2,6,7\n')
    assert fails(capsys, prepare_args(path)) == (
        f"{path}: line 4: expected 3 fields separated by ',' (as many as the header), found 4"
    )
