"""Exotic and damaged data through ``deepm3 data prepare``.

Each kind of input that once crashed a reader or was read wrongly either fails with the contract
of ``tests/test_bad_input.py`` (exit 2, one stderr line naming the file and the line, nothing
partial in the cache), is read correctly (a byte-order mark), or is rebuilt (a damaged cache).
Then Hypothesis generates damaged files for every reader and checks the same contract.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tempfile
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bad_input import cache_files, fails, prepare_args, review, write_gz

import deepm3.data.prepare as prepare_module
from deepm3.cli import main
from deepm3.config import DataConfig
from deepm3.data import jsonlines
from deepm3.data.amazon import read_amazon_json
from deepm3.data.delimited import excerpt
from deepm3.data.download import cache_dir
from deepm3.data.movielens import read_ml1m, read_ml100k
from deepm3.data.prepare import prepare
from deepm3.data.tabular import read_atomic, read_table
from deepm3.errors import DataError

# Two users with three events each: every user can be evaluated (leave-one-out).
DAT = (
    "1::1193::5::978300760\n1::661::3::978302109\n1::914::3::978301968\n"
    "2::1357::5::978298709\n2::3068::4::978299000\n2::1537::4::978299620\n"
)
BOM = b"\xef\xbb\xbf"
HUGE = "9" * 5000  # over Python's 4,300-digit limit on int <-> str conversion
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def run(args: list[str]) -> tuple[int, str, str]:
    """``deepm3 args``: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def stats(args: list[str]) -> dict:
    """The statistics that ``deepm3 data prepare --json`` prints (it must succeed)."""
    code, out, err = run([*args, "--json"])
    assert code == 0, err
    return json.loads(out)


Rows = list[tuple[str, str, str, str]]  # (user, item, rating, timestamp) as written


def table_lines(rows: Rows, sep: str) -> list[str]:
    return [sep.join(row) for row in rows]


def good_rows(users: int = 3, events: int = 3) -> Rows:
    """(user, item, rating, timestamp) rows, every user evaluable."""
    return [
        (str(u), str(10 + (u * events + e) % 7), "4", str(978300000 + 60 * e))
        for u in range(1, users + 1)
        for e in range(events)
    ]


def stored_zip(path: Path, member: str, text: str, flags: int = 0, method: int = 0) -> Path:
    """A zip archive with one stored member, then its headers patched: ``flags`` or-ed into the
    general-purpose bits (bit 0: encrypted), ``method`` as compression method when not 0 (9:
    deflate64, which Python's zipfile cannot read)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(member, text)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    for header, flag_at, method_at in ((0, 6, 8), (central, 8, 10)):
        data[header + flag_at] |= flags
        if method:
            data[header + method_at : header + method_at + 2] = method.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


# Each reader: (file name, how to turn rows into text, the line of the first row).
def _dat(rows: Rows) -> str:
    return "".join(line + "\n" for line in table_lines(rows, "::"))


def _udata(rows: Rows) -> str:
    return "".join(line + "\n" for line in table_lines(rows, "\t"))


def _csv(rows: Rows) -> str:
    lines = table_lines([(u, i, t) for u, i, _, t in rows], ",")
    return "user_id,item_id,timestamp\n" + "".join(line + "\n" for line in lines)


def _tsv(rows: Rows) -> str:
    return _csv(rows).replace(",", "\t")


def _inter(rows: Rows) -> str:
    return INTER_HEADER + "".join(line + "\n" for line in table_lines(rows, "\t"))


def _jsonl(rows: Rows) -> str:
    # The timestamp as written (json would refuse to write an int over the digit limit).
    stamped = (review(u, i, 0).replace(": 0}", f": {t}}}") for u, i, _, t in rows)
    return "".join(line + "\n" for line in stamped)


TEXT_READERS = {
    "ratings.dat": (_dat, 1),
    "u.data": (_udata, 1),
    "events.csv": (_csv, 2),
    "events.tsv": (_tsv, 2),
    "events.inter": (_inter, 2),
    "Books_5.jsonl": (_jsonl, 1),
}


def args_for(path: Path) -> list[str]:
    """``data prepare`` arguments that read ``path`` with its reader (a raw file named by path
    uses the reader of its name), every event kept."""
    return prepare_args(path, None, "kcore=0")


# --------------------------------------------------------------------------------------------
# Exotic data: deep nesting, numbers over Python's digit limit, archives zipfile cannot read,
# repeated columns, long ids, bytes that are not UTF-8


@pytest.mark.parametrize("where", ["line", "field"])
def test_deeply_nested_json_names_the_line(tmp_path: Path, capsys, where: str) -> None:
    nested = "[" * 100_000 if where == "line" else '{"reviewerID": ' + "[" * 100_000
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), nested, review()])
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message == f"{path}: line 2: JSON nested too deeply to read"


@pytest.mark.parametrize("field", ["unixReviewTime", "overall", "reviewerID"])
def test_json_integer_over_the_digit_limit(tmp_path: Path, capsys, field: str) -> None:
    record = json.loads(review())
    record[field] = 0
    line = json.dumps(record).replace(f'"{field}": 0', f'"{field}": {HUGE}')
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), review(), line])
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message == f"{path}: line 3: JSON number too long to read (over 4,300 digits)"


def test_long_json_values_are_shown_cut_short(tmp_path: Path, capsys) -> None:
    stamp = int("9" * 400)  # readable, but no timestamp
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), review(stamp=stamp)])
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{path}: line 2: field 'unixReviewTime': expected a non-negative")
    assert message.endswith("got 99999999999999999999999999999999999999999999999999...999999")
    user = ["x" * 1_000_000]
    path = write_gz(tmp_path / "Books_5.json.gz", [review(), review(user=user)])
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message.startswith(f"{path}: line 2: field 'reviewerID': expected a non-empty id, got")
    assert len(message) < len(str(path)) + 150


def test_json_rating_too_large_for_a_float_is_no_rating(tmp_path: Path) -> None:
    path = tmp_path / "Books_5.json.gz"
    lines = [review(item=f"B{i}") for i in range(3)]
    lines[1] = lines[1].replace('"overall": 5.0', '"overall": ' + "9" * 400)
    write_gz(path, lines)
    frame = read_amazon_json(path)
    assert np.isnan(frame["rating"].to_numpy()[1]) and frame["rating"].to_numpy()[0] == 5.0


@pytest.mark.parametrize("name", TEXT_READERS)
def test_timestamp_over_the_digit_limit(tmp_path: Path, capsys, name: str) -> None:
    to_text, first = TEXT_READERS[name]
    rows = good_rows()
    rows[4] = (*rows[4][:3], HUGE)
    path = tmp_path / name
    path.write_text(to_text(rows))
    message = fails(capsys, args_for(path))
    if name.endswith(".jsonl"):
        assert message == f"{path}: line 5: JSON number too long to read (over 4,300 digits)"
        return
    assert message == (
        f"{path}: line {first + 4}: column 'timestamp': expected a non-negative whole number "
        f"of seconds, got {excerpt(HUGE)}"
    )
    assert message.endswith("...99999' (5,000 characters)") and len(message) < 300


@pytest.mark.parametrize(
    ("archive", "member"), [("ml-1m.zip", "ml-1m/ratings.dat"), ("ml-100k.zip", "ml-100k/u.data")]
)
@pytest.mark.parametrize(
    ("flags", "method", "expected"),
    [
        (1, 0, "the member is encrypted; unpack it and pass its folder"),
        (0, 9, "compression method 9 is not supported (only stored, deflate, bzip2 and lzma"),
        (0, 6, "compression method 6 is not supported"),  # implode
    ],
    ids=["encrypted", "deflate64", "implode"],
)
def test_zip_member_that_zipfile_cannot_read(
    tmp_path: Path, capsys, archive: str, member: str, flags: int, method: int, expected: str
) -> None:
    text = DAT if archive == "ml-1m.zip" else DAT.replace("::", "\t")
    path = stored_zip(tmp_path / archive, member, text, flags, method)
    message = fails(capsys, args_for(path))
    assert message.startswith(f"{path / member}: {expected}")


@pytest.mark.parametrize("archive", ["ml-1m.zip", "ml-100k.zip"])
def test_zip_member_with_damaged_data(tmp_path: Path, capsys, archive: str) -> None:
    member = "ml-1m/ratings.dat" if archive == "ml-1m.zip" else "ml-100k/u.data"
    path = tmp_path / archive
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr(member, DAT * 50)
    data = bytearray(path.read_bytes())
    for offset in range(60, 90):  # inside the compressed data of the one member
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    message = fails(capsys, args_for(path))
    assert message.startswith(f"{path / member}: damaged archive member (")


@pytest.mark.parametrize(
    ("header", "column", "places"),
    [
        ("user_id:token\titem_id:token\tuser_id:float\ttimestamp:float", "user_id", "1, 3"),
        ("user_id:token\titem_id:token\ttimestamp:float\ttimestamp:float", "timestamp", "3, 4"),
        (
            "user_id:token\titem_id:token\trating:float\trating:token\ttimestamp:float",
            "rating",
            "3, 4",
        ),
    ],
)
def test_inter_header_with_a_repeated_column(
    tmp_path: Path, capsys, header: str, column: str, places: str
) -> None:
    path = tmp_path / "events.inter"
    width = header.count("\t") + 1
    path.write_text(header + "\n" + "\t".join(["1"] * width) + "\n")
    assert fails(capsys, args_for(path)) == (
        f"{path}: line 1 (header): column {column!r} appears 2 times (columns {places}); "
        "which one to read is ambiguous"
    )


def test_csv_header_with_a_repeated_wanted_column(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,user_id\nu1,i1,5,u2\n")
    assert fails(capsys, args_for(path)) == (
        f"{path}: line 1 (header): column 'user_id' appears 2 times (columns 1, 4); "
        "which one to read is ambiguous"
    )
    other = tmp_path / "other.csv"  # a repeated column that is not read stays allowed
    other.write_text(
        "note,user_id,item_id,timestamp,note\n"
        + "".join(f"a,u{u},i{e},{e},b\n" for u in range(2) for e in range(3))
    )
    assert stats(args_for(other))["raw"]["users"] == 2


def test_a_one_megabyte_id_is_read_in_little_memory(tmp_path: Path) -> None:
    """Ids are object arrays: a fixed-width ``<U`` array would give each of the 200 items 4 MB
    (4 bytes per character of the longest id), 800 MB in all."""
    long_id = "x" * 1_000_000
    path = tmp_path / "long.csv"
    rows = [
        (f"u{(i + j) % 50}", long_id if i == 0 else f"i{i}", str(1000 + 3 * i + j))
        for i in range(200)
        for j in range(3)
    ]
    path.write_text("user_id,item_id,timestamp\n" + "".join(",".join(r) + "\n" for r in rows))
    tracemalloc.start()
    try:
        first = prepare(DataConfig(dataset=str(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 60 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert first.events.item_ids.dtype == object and long_id in set(first.events.item_ids)
    again = prepare(DataConfig(dataset=str(path)))  # from the cache
    assert again.events.item_ids.tolist() == first.events.item_ids.tolist()
    assert again.fingerprint == first.fingerprint


def test_json_id_that_is_not_valid_unicode(tmp_path: Path, capsys) -> None:
    """A lone surrogate escape is valid JSON but no text: pandas would merge every such id."""
    path = tmp_path / "odd.jsonl"
    lines = [
        review(user=user, item=f"B{e}", stamp=1000 + e)
        for user in ("\x00", "\ud800", "A\udfff")
        for e in range(3)
    ]
    path.write_text("".join(line + "\n" for line in lines))
    assert fails(capsys, args_for(path)) == (
        f"{path}: line 4: field 'reviewerID': id '\\ud800' is not valid Unicode (a lone "
        "surrogate escape)"
    )


def test_odd_but_valid_ids_survive_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    users = ["\x00", "x\u2028y", "é\U0001f600", "a\tb"]
    lines = [review(user=user, item=f"B{e}", stamp=1000 + e) for user in users for e in range(3)]
    path.write_text("".join(line + "\n" for line in lines))
    first = prepare(DataConfig(dataset=str(path)))
    again = prepare(DataConfig(dataset=str(path)))
    assert again.events.user_ids.tolist() == ["", *users]
    assert again.fingerprint == first.fingerprint


@pytest.mark.parametrize("name", [n for n in TEXT_READERS if n != "ratings.dat"])
def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path, capsys, name: str) -> None:
    to_text, first = TEXT_READERS[name]
    data = to_text(good_rows()).encode().split(b"\n")
    data[first + 3] = data[first + 3][:2] + b"\xff" + data[first + 3][2:]  # row 5, column 3
    path = tmp_path / name
    path.write_bytes(BOM + b"\r\n".join(data))
    message = fails(capsys, args_for(path))
    assert message == (
        f"{path}: not valid UTF-8 text (invalid start byte) at line {first + 4}, column 3: "
        "byte 0xff"
    )


def test_bytes_that_are_not_utf8_in_a_later_json_block(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jsonlines, "BLOCK_BYTES", 1000)
    lines = [review(user=f"A{i}").encode() for i in range(100)]
    lines[70] = lines[70].replace(b"A70", b"A\r7\xc3")  # a lone CR ends a line, too
    path = tmp_path / "Books_5.json.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"\n".join(lines) + b"\n")
    message = fails(capsys, prepare_args("amazon-books", tmp_path))
    assert message == (
        f"{path}: not valid UTF-8 text (invalid continuation byte) at line 72, column 2: byte 0xc3"
    )


def test_utf16_file_gets_a_hint(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text(_csv(good_rows()), encoding="utf-16")
    message = fails(capsys, args_for(path))
    assert message.startswith(f"{path}: not valid UTF-8 text (invalid start byte) at line 1,")
    assert message.endswith("; the file looks like UTF-16: save it as UTF-8")


@pytest.mark.parametrize("name", ["events.csv", "events.tsv", "events.inter", "u.data"])
def test_blank_line_of_more_separators_than_fields(tmp_path: Path, name: str) -> None:
    """Found by the generated tests below: a line of separators only is blank (skipped), even
    with more separators than the header has fields (the parser used to stop there)."""
    to_text, first = TEXT_READERS[name]
    lines = to_text(good_rows()).splitlines()
    sep = "," if name.endswith(".csv") else "\t"
    lines.insert(first + 1, sep * 6)
    lines.insert(first + 3, f"\x00{sep}{sep} {sep}{sep}{sep}{sep}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    assert stats(args_for(path))["raw"] == {"users": 3, "items": 7, "interactions": 9}


# Every reader's file kind, archives and compressed files among them.
FILE_KINDS = [*TEXT_READERS, "ml-1m.zip", "ml-100k.zip", "Books_5.json.gz"]


def good_text(reader: str) -> str:
    to_text = TEXT_READERS.get(reader, (_jsonl, 1))[0]
    if reader.endswith(".zip"):
        to_text = _dat if reader == "ml-1m.zip" else _udata
    return to_text(good_rows())


@pytest.mark.parametrize("reader", FILE_KINDS)
def test_a_file_name_in_upper_case_is_read_by_its_reader(tmp_path: Path, reader: str) -> None:
    """``EVENTS.CSV`` is a table, as ``events.csv`` is (names are matched ignoring case)."""
    (tmp_path / "lower").mkdir()
    (tmp_path / "upper").mkdir()
    lower = write_reader_file(tmp_path / "lower", reader, good_text(reader).encode(), 0)
    upper = tmp_path / "upper" / reader.upper()
    upper.write_bytes(lower.read_bytes())
    expected = {"users": 3, "items": 7, "interactions": 9}
    assert stats(args_for(lower))["raw"] == expected
    assert stats(args_for(upper))["raw"] == expected


WHITESPACE_LINES = st.text(alphabet=" \t\x0b\x0c\x1f", min_size=1, max_size=6)


@pytest.mark.parametrize("reader", FILE_KINDS)
def test_whitespace_only_lines_are_skipped_by_every_reader(
    tmp_path_factory: pytest.TempPathFactory, reader: str
) -> None:
    """A line of spaces and tabs is blank: every reader skips it (ratings.dat once refused
    a tab-only line as a stray tab), and the data read is the same as without it."""

    @settings(max_examples=8, deadline=None, database=None)
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        lines = good_text(reader).splitlines()
        for _ in range(data.draw(st.integers(1, 3))):
            lines.insert(data.draw(st.integers(0, len(lines))), data.draw(WHITESPACE_LINES))
        folder = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
        path = write_reader_file(folder, reader, ("\n".join(lines) + "\n").encode(), 0)
        assert stats(args_for(path))["raw"] == {"users": 3, "items": 7, "interactions": 9}

    check()


# --------------------------------------------------------------------------------------------
# Valid input read wrongly before: a byte-order mark in the MovieLens files


def test_bom_at_the_start_of_ratings_dat(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_bytes(BOM + DAT.encode())
    result = stats(prepare_args("ml-1m", tmp_path, "kcore=0"))
    assert result["raw"] == {"users": 2, "items": 6, "interactions": 6}
    events = prepare(DataConfig(dataset="ml-1m", data_dir=str(tmp_path), kcore=0)).events
    assert events.user_ids.tolist() == ["", "1", "2"]


def test_bom_at_the_start_of_u_data_in_the_zip(tmp_path: Path) -> None:
    path = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-100k/u.data", BOM + DAT.replace("::", "\t").encode())
    assert stats(args_for(path))["raw"]["users"] == 2
    assert read_ml100k(path)["user"].tolist()[:1] == ["1"]


def test_bom_in_the_real_files_keeps_the_user_count(tmp_path: Path, real_data_dir: Path) -> None:
    ratings = tmp_path / "ratings.dat"  # a copy in tmp_path only: the data is not ours to copy
    ratings.write_bytes(BOM + (real_data_dir / "ml-1m-subset" / "ratings.dat").read_bytes())
    assert read_ml1m(ratings)["user"].nunique() == 2999
    rows = (real_data_dir / "ml-100k" / "ml-100k.inter").read_bytes().split(b"\n", 1)[1]
    with zipfile.ZipFile(tmp_path / "ml-100k.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ml-100k/u.data", BOM + rows)
    frame = read_ml100k(tmp_path / "ml-100k.zip")
    assert frame["user"].nunique() == 943 and len(frame) == 100_000


# --------------------------------------------------------------------------------------------
# Degenerate data: nobody to evaluate


def test_no_user_with_three_events(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    path.write_text(_csv(good_rows(users=4, events=2)))
    assert fails(capsys, args_for(path)) == (
        f"{path}: no user can be evaluated: 4 users and 8 events after filtering, 0 users with "
        ">= 3 events (leave-one-out needs a training, a validation and a test event per user)"
    )


def test_temporal_split_when_every_event_shares_one_timestamp(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    rows = [(u, i, r, "978300000") for u, i, r, _ in good_rows(users=3, events=4)]
    path.write_text(_csv(rows))
    assert fails(capsys, prepare_args(path, None, "split=temporal")) == (
        f"{path}: no user can be evaluated: 3 users and 12 events after filtering (all share "
        "one timestamp); the temporal split gives 0 users a validation event and 0 a test event "
        "(each after an earlier event)"
    )


def test_temporal_split_without_test_users(tmp_path: Path, capsys) -> None:
    path = tmp_path / "events.csv"
    rows = [("u1", "i1", "", "100"), ("u2", "i2", "", "200"), ("u1", "i3", "", "1000")]
    path.write_text(_csv(rows))
    message = fails(capsys, prepare_args(path, None, "split=temporal"))
    assert "0 users a validation event and 1 a test event" in message


# --------------------------------------------------------------------------------------------
# Cache and places


def test_cache_that_is_a_file(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    path = tmp_path / "events.csv"
    path.write_text(_csv(good_rows()))
    for cache in (blocker, blocker / "deeper"):
        monkeypatch.setenv("DEEPM3_CACHE", str(cache))
        code, out, err = run(args_for(path))
        assert (code, out) == (2, "") and len(err.splitlines()) == 1
        assert err.startswith(f"deepm3: error: {blocker}: is a file, but the cache (DEEPM3_CACHE")
        assert blocker.read_text() == "not a folder"


def _prepared_file(before: set[Path]) -> Path:
    (created,) = set((cache_dir() / "prepared").glob("*.npz")) - before
    return created


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other arrays"])
def test_damaged_cache_is_rebuilt_with_a_notice(tmp_path: Path, damage: str) -> None:
    path = tmp_path / f"cached-{damage.replace(' ', '-')}.csv"
    path.write_text(_csv(good_rows(users=5)))
    before = set((cache_dir() / "prepared").glob("*.npz"))
    first = stats(args_for(path))
    cached = _prepared_file(before)
    data = cached.read_bytes()
    if damage == "truncated":
        cached.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        cached.write_bytes(bytes(range(256)) * 40)
    elif damage == "empty":
        cached.write_bytes(b"")
    else:  # a well-formed archive whose arrays do not match its fingerprint
        with np.load(cached) as arrays:
            content = dict(arrays)
        content["events_items"] = content["events_items"][::-1].copy()
        with open(cached, "wb") as out:
            np.savez(out, **content)
    code, out, err = run([*args_for(path), "--json"])
    assert code == 0 and json.loads(out)["fingerprint"] == first["fingerprint"]
    (notice,) = err.splitlines()
    assert notice.startswith(f"deepm3: note: {cached}: cached data unreadable (")
    assert notice.endswith(f"); rebuilding it from {path}")
    code, out, err = run([*args_for(path), "--json"])  # rebuilt: read without a notice
    assert (code, err) == (0, "") and json.loads(out)["fingerprint"] == first["fingerprint"]
    assert not list(cached.parent.glob("*.tmp"))


def test_unreadable_data_file(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.csv"
    path.write_text(_csv(good_rows()))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(prepare_module, "file_digest", refuse)
    assert fails(capsys, args_for(path)) == f"{path}: cannot read (Permission denied)"


@pytest.mark.parametrize(
    ("name", "reader"),
    [
        ("ratings.dat", read_ml1m),
        ("events.csv", read_table),
        ("events.inter", read_atomic),
        ("ml-1m.zip", read_ml1m),
        ("Books_5.json.gz", read_amazon_json),
    ],
)
def test_each_reader_names_a_file_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, reader
) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(zipfile, "ZipFile", refuse)
    monkeypatch.setattr(jsonlines, "open", refuse, raising=False)
    with pytest.raises(DataError) as caught:
        reader(path)
    assert str(caught.value).startswith(f"{path}: cannot read")
    assert "Permission denied" in str(caught.value)


def test_data_folder_that_cannot_be_listed(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ratings.dat").write_text(DAT)
    is_file = Path.is_file

    def refuse(self: Path) -> bool:
        if self.parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(self))
        return is_file(self)

    monkeypatch.setattr(Path, "is_file", refuse)
    message = fails(capsys, prepare_args("ml-1m", tmp_path))
    assert message == f"{tmp_path / 'ratings.dat'}: cannot read (Permission denied)"


def test_places_that_are_files_or_folders_by_mistake(tmp_path: Path, capsys) -> None:
    not_a_dir = tmp_path / "data"
    not_a_dir.write_text("x")
    assert fails(capsys, prepare_args("ml-1m", not_a_dir)) == (
        f"{not_a_dir}: is a file; the data directory must be a folder"
    )
    folder = tmp_path / "events.csv"
    folder.mkdir()
    assert fails(capsys, prepare_args(folder)).startswith(f"{folder}: is a folder")
    (tmp_path / "ml-1m.zip").mkdir()
    with pytest.raises(DataError, match=r"ml-1m\.zip: is a folder, expected a file"):
        read_ml1m(tmp_path / "ml-1m.zip")


# --------------------------------------------------------------------------------------------
# Generated damage: every reader, random lines and bytes, one contract

READERS = [*TEXT_READERS, "Books_5.json.gz", "ml-1m.zip", "ml-100k.zip"]
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
FIELD_TEXT = st.sampled_from(
    [
        "1",
        "0",
        "-1",
        "1.5",
        "1e400",
        "nan",
        "",
        " ",
        '"',
        "'",
        "::",
        ":",
        "\t",
        ",",
        "\\",
        "\x00",
        "\x1b",
        "\u2028",
        "\ufeff",
        "\ud7ff",
        "é",
        "x" * 3000,
        HUGE,
        "[",
        "{",
        "}",
        "null",
    ]
)
FIELD = st.one_of(FIELD_TEXT, st.text(max_size=12), st.integers(-(10**30), 10**30).map(str))
# JSON values written as text: numbers json cannot write or read, deep nesting, odd escapes.
JSON_TOKENS = st.sampled_from(
    [
        HUGE,
        "-" + HUGE,
        "1" + "0" * 400,
        "1e999",
        "NaN",
        "-Infinity",
        "[" * 3000,
        '"\\ud800"',
        '"\\u0000"',
        "true",
        "{}",
        '"',
        "",
    ]
)
JSON_VALUES = st.one_of(FIELD, st.floats(), st.none(), st.integers(), st.lists(st.integers()))


@st.composite
def damaged_lines(draw, reader: str) -> list[str]:
    """Good rows for ``reader``, some replaced by rows of odd fields or by random text."""
    to_text = TEXT_READERS.get(reader, (_jsonl, 1))[0]
    if reader.endswith(".zip"):
        to_text = _dat if reader == "ml-1m.zip" else _udata
    lines = to_text(good_rows(users=draw(st.integers(1, 4)))).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(lines)))  # before the header, too
        kind = draw(st.sampled_from(["fields", "text", "json"]))
        if kind == "fields":
            fields = draw(st.lists(FIELD, min_size=0, max_size=6))
            sep = draw(st.sampled_from(["::", "\t", ","]))
            line = sep.join(fields)
        elif kind == "text":
            line = draw(st.text(max_size=40))
        else:
            record = json.loads(review())
            record[draw(st.sampled_from(list(record)))] = "@"
            token = draw(st.one_of(JSON_TOKENS, JSON_VALUES.map(json.dumps)))
            line = json.dumps(record).replace('"@"', token)
        lines.insert(at, line)
    return lines


@st.composite
def damaged_bytes(draw, reader: str) -> bytes:
    """A file's bytes: damaged lines in some encoding, or raw bytes, a BOM or not, maybe cut."""
    kind = draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "random", "flipped"]))
    if kind == "random":
        data = draw(st.binary(max_size=300))
    else:
        lines = draw(damaged_lines(reader))
        text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines) + "\n"
        codec = "utf-8" if kind == "flipped" else kind
        data = text.encode(codec, "replace")
        if kind == "flipped" and data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if draw(st.booleans()):
        data = BOM + data
    if data and draw(st.integers(0, 4)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


def write_reader_file(folder: Path, reader: str, data: bytes, damage_archive: int) -> Path:
    """``data`` as the file ``reader`` names (compressed or archived as its name says); an
    archive then damaged: ``damage_archive`` > 0 flips the byte there, < 0 cuts that many."""
    path = folder / reader
    if reader.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif reader.endswith(".zip"):
        member = "ml-1m/ratings.dat" if reader == "ml-1m.zip" else "ml-100k/u.data"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(member, data)
    else:
        path.write_bytes(data)
    if damage_archive and reader.endswith((".gz", ".zip")):
        raw = bytearray(path.read_bytes())
        if damage_archive > 0:  # one byte flipped
            raw[damage_archive % len(raw)] ^= 0xA5
        else:  # cut short
            raw = raw[: len(raw) + damage_archive]
        path.write_bytes(bytes(raw))
    return path


def check_contract(folder: Path, reader: str, data: bytes, damage_archive: int) -> None:
    """``data prepare`` on the file: success, or exit 2 with one line naming the file (and
    nothing left in the cache); never a traceback."""
    path = write_reader_file(Path(tempfile.mkdtemp(dir=folder)), reader, data, damage_archive)
    before = cache_files()
    code, out, err = run(args_for(path))
    assert "Traceback" not in err + out
    assert code in (0, 2), err
    added = cache_files() - before
    assert not [p for p in added if p.suffix != ".npz"]  # no temporary or partial file
    if code == 0:
        assert len(added) <= 1 and err == ""
        return
    (line,) = err.splitlines()
    assert line.startswith(f"deepm3: error: {path}"), line
    assert out == "" and not added


def check_bad_line(folder: Path, reader: str, data: st.DataObject) -> None:
    """A surely bad row (wrong field count, a number over the digit limit, a byte that is not
    UTF-8) among good ones: the error names the file and that row's line."""
    to_text, first = TEXT_READERS.get(reader, (_jsonl, 1))
    if reader.endswith(".zip"):
        to_text, first = (_dat if reader == "ml-1m.zip" else _udata), 1
    rows = good_rows(users=data.draw(st.integers(1, 4), label="users"))
    lines = to_text(rows).encode().splitlines()
    at = data.draw(st.integers(first - 1, len(lines)), label="index")
    kind = data.draw(st.sampled_from(["fields", "digits", "byte"]), label="kind")
    line = lines[min(at, len(lines) - 1)]
    if kind == "fields":
        bad = line + (b"::1" if reader in ("ratings.dat", "ml-1m.zip") else b"\t1,1")
        bad = b"[1]" if "json" in reader else bad
    elif kind == "digits":
        bad = line.rsplit(b"978", 1)[0] + HUGE.encode() + (b"}" if "json" in reader else b"")
    else:
        bad = line[:1] + b"\xff" + line[1:]
    if reader in ("ratings.dat", "ml-1m.zip", "ml-100k.zip") and kind == "byte":
        bad = line + b"\t\xff"  # latin-1 files have no invalid byte: a stray field instead
    lines.insert(at, bad)
    path = write_reader_file(Path(tempfile.mkdtemp(dir=folder)), reader, b"\n".join(lines), 0)
    code, out, err = run(args_for(path))
    assert code == 2, err
    (message,) = err.splitlines()
    assert message.startswith(f"deepm3: error: {path}")
    assert f"line {at + 1}" in message, message


def _generated(
    check: Callable[[Path, str, st.DataObject], None], max_examples: int
) -> Callable[..., None]:
    """A test of ``check`` on every reader, ``max_examples`` generated cases each."""

    @pytest.mark.parametrize("reader", READERS)
    @settings(max_examples=max_examples, **SETTINGS)
    @given(data=st.data())
    def test(tmp_path: Path, reader: str, data: st.DataObject) -> None:
        check(tmp_path, reader, data)

    test.__doc__ = check.__doc__
    return test


def check_damaged_file(folder: Path, reader: str, data: st.DataObject) -> None:
    """Random damage to a file of ``reader``: the contract holds (see check_contract)."""
    content = data.draw(damaged_bytes(reader), label="content")
    damage = data.draw(st.sampled_from([0, 0, 0, 11, 25, 40, -1, -9, -30]), label="damage")
    check_contract(folder, reader, content, damage)


# 20 + 10 generated cases per reader by default; 300 + 300 with -m slow.
test_generated_damage_meets_the_contract = _generated(check_damaged_file, 20)
test_generated_bad_line_is_named = _generated(check_bad_line, 10)
test_generated_damage_meets_the_contract_deeply = pytest.mark.slow(
    _generated(check_damaged_file, 300)
)
test_generated_bad_line_is_named_deeply = pytest.mark.slow(_generated(check_bad_line, 300))
