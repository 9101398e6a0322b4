"""The Books-sized generator and the fast Amazon JSON reader.

The reader's fast path (one regular expression per block, :mod:`deepm3.data.jsonlines`) must
give exactly what ``json.loads`` gives on every line it accepts and leave every other line to
``json.loads``; the generator must write official-format 5-core files.
"""

from __future__ import annotations

import collections
import gzip
import importlib.util
import itertools
import json
import random
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REAL_DATA
from synthetic import REPO

from deepm3.data import amazon, jsonlines
from deepm3.data.amazon import LAYOUT_2014, read_amazon_json
from deepm3.errors import DataError

KEYS_2014 = [
    "reviewerID",
    "asin",
    "reviewerName",
    "helpful",
    "reviewText",
    "overall",
    "summary",
    "unixReviewTime",
    "reviewTime",
]


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "books_synth", REPO / "benchmarks" / "books_synth.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


books_synth = _load_generator()


@pytest.fixture(scope="module")
def small_books(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("books") / books_synth.FILE_NAME
    books_synth.write_reviews(path, lines=5000, users=600, items=400, seed=3, text_chars=300)
    return path


def reference(path: Path) -> pd.DataFrame:
    """The straightforward parse: text mode, one ``json.loads`` per non-blank line."""
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                rating = record.get("overall", record.get("rating"))
                rows.append(
                    (
                        str(record["reviewerID"]).strip(),
                        str(record["asin"]).strip(),
                        int(record["unixReviewTime"]),
                        np.nan if rating is None else float(rating),
                    )
                )
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    return frame.astype({"timestamp": np.int64, "rating": np.float64})


def write_lines(path: Path, lines: list[str], newline: str = "\n") -> Path:
    data = "".join(line + newline for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def review(user: str = "A1", item: str = "B1", text: str = "fine", **fields) -> str:
    """A line in the official 2014 layout; ``fields`` replace values (given as JSON text)."""
    values = {
        "reviewerID": json.dumps(user),
        "asin": json.dumps(item),
        "reviewerName": '"J. Doe"',
        "helpful": "[0, 1]",
        "reviewText": json.dumps(text),
        "overall": "5.0",
        "summary": '"Nice"',
        "unixReviewTime": "1300000000",
        "reviewTime": '"03 13, 2011"',
        **fields,
    }
    return "{" + ", ".join(f'"{key}": {value}' for key, value in values.items()) + "}"


# ---------------------------------------------------------------------------------------------
# The generator


def test_generated_file_is_an_official_5_core(small_books: Path) -> None:
    with gzip.open(small_books, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    assert len(records) == 5000
    for record in records:
        assert [key for key in KEYS_2014 if key in record] == list(record)
        assert set(KEYS_2014) - set(record) <= {"reviewerName"}
        stamp = record["unixReviewTime"]
        assert stamp % 86_400 == 0
        day = datetime.fromtimestamp(stamp, timezone.utc)
        assert datetime(1996, 1, 1, tzinfo=timezone.utc) <= day
        assert day < datetime(2015, 1, 1, tzinfo=timezone.utc)
        assert record["reviewTime"] == f"{day.month:02d} {day.day}, {day.year}"
        assert record["overall"] in (1.0, 2.0, 3.0, 4.0, 5.0)
        assert 0 <= record["helpful"][0] <= record["helpful"][1]
    users = collections.Counter(r["reviewerID"] for r in records)
    items = collections.Counter(r["asin"] for r in records)
    assert (len(users), len(items)) == (600, 400)
    assert min(users.values()) >= 5 and min(items.values()) >= 5
    asins = [r["asin"] for r in records]
    assert asins == sorted(asins)  # grouped by item, in ascending asin, as published
    texts = " ".join(r["reviewText"] for r in records)
    assert '"' in texts and "\u00e9" in texts  # escapes the parser must handle


def test_generator_is_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    for path in (first, second):
        books_synth.write_reviews(path, lines=600, users=60, items=40, seed=7, text_chars=50)
    assert first.read_bytes() == second.read_bytes()


# ---------------------------------------------------------------------------------------------
# The reader equals the straightforward parse


def test_reader_equals_reference_on_generated_file(small_books: Path) -> None:
    frame = read_amazon_json(small_books)
    pd.testing.assert_frame_equal(frame, reference(small_books))
    assert all(type(value) is str for value in frame["user"])


def test_generated_file_takes_the_fast_path(small_books: Path) -> None:
    blocks = list(jsonlines.text_blocks(small_books))
    assert all(jsonlines.scan_block(text, LAYOUT_2014) is not None for text in blocks)


@pytest.mark.skipif(REAL_DATA is None, reason="../shared/data not present")
def test_reader_equals_reference_on_real_2018_file() -> None:
    path = REAL_DATA / "amazon-all-beauty-2018" / "All_Beauty_5.json.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    pd.testing.assert_frame_equal(read_amazon_json(path), reference(path))
    # Its lines are in another layout: the fast path accepts none, json.loads reads them all.
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        assert all(jsonlines.scan_block(line, LAYOUT_2014) is None for line in handle)


@pytest.mark.parametrize("block_bytes", [64, 1000, 4096])
def test_small_blocks_mixing_both_paths_equal_reference(
    tmp_path: Path, small_books: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    """Blocks smaller than a line, blank lines, CRLF, a lone CR and escaped ids (json.loads
    path) between fast blocks: the same rows, in file order, as the reference."""
    with gzip.open(small_books, "rt", encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in itertools.islice(handle, 300)]
    lines[40] = review(user="A\\u00e9")  # an escape in an id: line by line
    lines[41] = ""
    lines[90] = review(user=" A2 ", item="B 3") + "\r" + review(user="A3")  # lone CR
    lines[150] = review(user=17, item="B9")  # a numeric id
    path = write_lines(tmp_path / "reviews_Books_5.json.gz", lines, "\r\n")
    monkeypatch.setattr(jsonlines, "BLOCK_BYTES", block_bytes)
    frame = read_amazon_json(path)
    pd.testing.assert_frame_equal(frame, reference(path))
    assert frame["user"].iloc[89:91].tolist() == ["A2", "A3"]  # line 42 is blank


@pytest.mark.parametrize("block_bytes", [200, 2**20])
def test_error_line_numbers_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    lines = [review(user=f"A{i}") for i in range(500)]
    lines[100] = ""
    lines[377] = review(unixReviewTime="1.5")
    path = write_lines(tmp_path / "reviews_Books_5.json.gz", lines)
    monkeypatch.setattr(jsonlines, "BLOCK_BYTES", block_bytes)
    with pytest.raises(DataError, match=r"reviews_Books_5\.json\.gz: line 378: field "):
        read_amazon_json(path)
    lines[377] = review(reviewText='"a "quoted" word"')
    write_lines(path, lines)
    with pytest.raises(DataError, match=r": line 378: not valid JSON \("):
        read_amazon_json(path)


def test_invalid_utf8_after_good_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [review(user=f"A{i}") for i in range(50)]
    lines[30] = '{"reviewerID": "A1", "asin": '  # an error before the bad byte is found first
    data = "".join(line + "\n" for line in lines).encode() + b'{"x": "\xff"}\n'
    path = tmp_path / "Books.jsonl"
    path.write_bytes(data)
    monkeypatch.setattr(jsonlines, "BLOCK_BYTES", 10**6)
    with pytest.raises(DataError, match=r": line 31: not valid JSON"):
        read_amazon_json(path)
    lines[30] = review()
    path.write_bytes("".join(line + "\n" for line in lines).encode() + b'{"x": "\xff"}\n')
    with pytest.raises(DataError, match=r"not valid UTF-8 text \(invalid start byte\)"):
        read_amazon_json(path)


# ---------------------------------------------------------------------------------------------
# The fast path agrees with json.loads


def fast_fields(line: str) -> tuple | None:
    """(user, item, rating, seconds) as the fast path reads ``line``, or None if it refuses."""
    columns = jsonlines.scan_block(line, LAYOUT_2014)
    if columns is None:
        return None
    user, item, rating, seconds = (column[0] for column in columns)
    return user, item, repr(amazon._number(rating)), int(seconds)


def loads_fields(line: str) -> tuple | None:
    """The same fields by ``json.loads``, or None if it is not JSON in the 2014 layout."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    rating = repr(amazon._rating(record["overall"]))  # repr: -0.0 is not 0.0
    return record["reviewerID"], record["asin"], rating, record["unixReviewTime"]


TRICKY_ACCEPTED = [
    review(text='He said "hi" \\ / back\\slash\ttab\nnewline'),
    review(reviewText=json.dumps("caf\u00e9 \u2014 \U0001f600", ensure_ascii=False)),  # raw
    review(reviewText=r'"\u00e9\ud83d\ude00 \ud800 \/ \b\f\n\r\t \\\\ \\\" end"'),
    review(reviewText=r'"\\"'),  # a lone escaped backslash: the string ends after it
    review(summary='"ends with a backslash \\\\"'),
    review(reviewerID=json.dumps(" A \u00e9 raw ", ensure_ascii=False), item="0000000000"),
    review(overall="5"),
    review(overall="-0"),
    review(overall="4.5e0"),
    review(overall="1E+2"),
    review(helpful="[10, 12]"),
    review(reviewText='""'),
    review(unixReviewTime="0"),
    review(unixReviewTime=str(2**53 + 1)),  # accepted by the scan, refused by the reader
    review() + "\r\n",  # a CRLF line end
]
TRICKY_REFUSED = [
    review() + "\n\n",  # a blank line after it
    review(reviewText='"a "quoted" word"'),  # invalid JSON
    review(reviewText='"bad escape \\x"'),
    review(reviewText='"short \\u12 escape"'),
    review(reviewText='"raw \x01 control"'),
    review(reviewText='"raw \t tab"'),
    review(reviewText='"open'),
    review(user='A\\"1'),  # an escape in an id: for json.loads
    review(overall='"5.0"'),  # valid JSON, another type: for json.loads
    review(overall="05"),
    review(overall="5."),
    review(overall="NaN"),
    review(unixReviewTime="1300000000.0"),
    review(unixReviewTime="-1"),
    review(helpful="[0, 1, 2]"),
    review()[:-1] + ', "extra": 1}',
    review()[:-1] + ", }",
    review().replace(", ", ",  ", 1),
    review() + " x",
    review().replace('"asin"', '"asin\\u0020"'),
    review().replace('"reviewerID"', '"reviewerId"'),
    "[" + review() + "]",
    review() + "\r" + review(),  # a lone CR: two lines for open()
]


@pytest.mark.parametrize("line", TRICKY_ACCEPTED)
def test_fast_path_accepts_and_agrees_with_json_loads(line: str) -> None:
    assert fast_fields(line) is not None
    assert fast_fields(line) == loads_fields(line)


@pytest.mark.parametrize("line", TRICKY_REFUSED)
def test_fast_path_refuses(line: str) -> None:
    assert fast_fields(line) is None


def test_fast_path_agrees_with_json_loads_on_mutated_lines() -> None:
    """Random edits with JSON's special characters: whatever the fast path accepts,
    ``json.loads`` accepts too and reads the same fields."""
    rng = random.Random(0)
    alphabet = ['"', "\\", ",", ":", "{", "}", "[", "]", " ", "u", "0", "e", ".", "\t", "\x01"]
    seeds = [line for line in TRICKY_ACCEPTED if "\r" not in line]
    accepted = 0
    for _ in range(20_000):
        chars = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(chars))
            edit = rng.random()
            if edit < 0.4:
                chars[position] = rng.choice(alphabet)
            elif edit < 0.7:
                chars.insert(position, rng.choice(alphabet))
            else:
                del chars[position]
        line = "".join(chars)
        fast = fast_fields(line)
        if fast is not None:
            accepted += 1
            assert fast == loads_fields(line), line
    assert accepted > 1000  # the test exercises acceptance, not only refusal


def test_plain_characters_are_exactly_json_string_characters() -> None:
    import re

    plain = re.compile(jsonlines.PLAIN_CHARS[:-1])  # one character, without the star
    for code in range(0x110000):
        expected = code >= 0x20 and chr(code) not in '"\\'
        assert bool(plain.fullmatch(chr(code))) == expected, hex(code)


# ---------------------------------------------------------------------------------------------
# Decompression reads gzip files as the gzip module does

MEMBER = gzip.compress(b'{"a": 1}\n' * 1000)
GZIP_CASES = {
    "one member": MEMBER,
    "two members": MEMBER + gzip.compress(b"more\n"),
    "zero padding after a member": MEMBER + b"\x00" * 1000 + MEMBER + b"\x00" * 5,
    "compressible": gzip.compress(b"\x00" * 300_000),  # 300 kB from ~300 bytes
    "trailing garbage": MEMBER + b"garbage",
    "cut short": MEMBER[:-40],
    "header only": MEMBER[:12],
    "not gzip": b'{"a": 1}\n',
    "one byte": b"\x1f",
    "padding first": b"\x00\x00" + MEMBER,
}


def gzip_module_result(path: Path) -> bytes | str:
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError) as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("case", list(GZIP_CASES))
@pytest.mark.parametrize("block_bytes", [7, 4096, 2**20])
def test_decompression_matches_the_gzip_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, block_bytes: int
) -> None:
    path = tmp_path / "file.json.gz"
    path.write_bytes(GZIP_CASES[case])
    monkeypatch.setattr(jsonlines, "_GZIP_INPUT", 1000)  # many reads per member
    try:
        ours: bytes | str = b"".join(jsonlines.byte_blocks(path, block_bytes))
    except (OSError, EOFError) as exc:
        ours = f"{type(exc).__name__}: {exc}"
    assert ours == gzip_module_result(path)


def test_corrupt_gzip_is_a_data_error(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(review().encode() + b"\n"))
    data[-8] ^= 0xFF  # the CRC-32 of the member
    path = tmp_path / "reviews_Books_5.json.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"json\.gz: cannot read compressed file \(.+\)$"):
        read_amazon_json(path)
