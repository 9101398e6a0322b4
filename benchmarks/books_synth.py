"""Write a synthetic Amazon Books-sized 5-core file in the official 2014 JSON-lines format.

    python benchmarks/books_synth.py --out /tmp/deepm3-books-synth [--lines 9000000]

The real ``reviews_Books_5.json.gz`` (8,898,041 reviews, 603,668 users, 367,982 items) cannot be
downloaded here; this file has its size and shape, so that ``deepm3 data prepare amazon-books``
can be measured at scale. Each line is one JSON object with the official keys, in the official
order::

    {"reviewerID": "A2Q0RLKX5Y3G1", "asin": "0316015849", "reviewerName": "J. Smith",
     "helpful": [2, 3], "reviewText": "...", "overall": 5.0, "summary": "...",
     "unixReviewTime": 1355616000, "reviewTime": "12 16, 2012"}

What is realistic and what is not:

- Activity is heavy-tailed (Pareto weights) for users and items alike, and every user and
  item has at least 5 reviews, so the file is a 5-core as published. Users are matched to item
  slots at random, so a few (user, item) pairs repeat (0.6% of events at 9M lines).
- Timestamps are whole days (multiples of 86400) between 1996-05-20 and 2014-07-23, denser in
  later years; each user is active over a window of a few years, so many events tie.
- Lines are grouped by ``asin`` in ascending order, as the official file is; within an item
  they are in no particular order.
- ``reviewText`` (mean ``--text-chars`` characters, log-normal lengths; default 600, an
  assumption about the real mean: a smaller value writes a smaller file faster) and
  ``summary`` are slices of a pool of words drawn from a fixed random vocabulary, with a few
  JSON escapes (``\\"``, ``\\u00e9``, ``\\n``). They only have to look like reviews to a
  parser. About 3% of lines have no ``reviewerName`` (some real lines lack it too).

Memory: the per-event arrays (user, day, rating: ~100 MB for 9M lines), never all the lines;
they are formatted and compressed one block of lines at a time (gzip level 1 by default, for
speed). Measured: 9M lines in 196 s on one busy core, a 2.87 GiB file, 614 MiB peak memory.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

FILE_NAME = "reviews_Books_5.json.gz"
DAY = 86_400
FIRST_DAY = int(np.datetime64("1996-05-20", "D").astype(np.int64))
LAST_DAY = int(np.datetime64("2014-07-23", "D").astype(np.int64))
MIN_REVIEWS = 5
# Share of each star rating in the real Books 5-core (1 to 5 stars), rounded.
STAR_SHARES = np.array([0.03, 0.04, 0.09, 0.24, 0.60])
ESCAPED_WORDS = [rb"\"great\"", rb"caf\u00e9", rb"na\u00efve", rb"\n", rb"\u2014", rb"it\u2019s"]


def activity_counts(
    total: int, num: int, tail: float, cap: int, rng: np.random.Generator
) -> np.ndarray:
    """(num,) int64 counts, each in [MIN_REVIEWS, cap], summing to ``total``, heavy-tailed.

    The reviews beyond the minimum are shared in proportion to Pareto(``tail``) weights
    (smaller ``tail``: heavier tail); shares above ``cap`` are clipped and handed to the rest.
    """
    spare = total - MIN_REVIEWS * num
    if spare < 0 or cap * num < total:
        raise ValueError(f"cannot give {num:,} users or items {MIN_REVIEWS}..{cap} of {total:,}")
    weights = rng.pareto(tail, num) + 1e-3
    shares = np.zeros(num)
    capped = np.zeros(num, dtype=bool)
    for _ in range(50):  # clip, then hand the excess to the others, until nothing exceeds cap
        free = spare - (cap - MIN_REVIEWS) * capped.sum()
        shares = np.where(capped, cap - MIN_REVIEWS, free * weights / weights[~capped].sum())
        over = ~capped & (shares > cap - MIN_REVIEWS)
        if not over.any():
            break
        capped |= over
    counts = MIN_REVIEWS + np.floor(shares).astype(np.int64)
    missing = total - int(counts.sum())
    room = np.flatnonzero(counts < cap)
    counts[rng.choice(room, size=missing, replace=False)] += 1
    return counts


def base36_ids(num: int, prefix: bytes, width: int, rng: np.random.Generator) -> list[bytes]:
    """``num`` distinct ids ``prefix`` + ``width`` base-36 digits (like ``A2Q0RLKX5Y3G1``)."""
    space = 36**width
    values = rng.choice(space // num, size=num) + np.arange(num) * (space // num)
    digits = np.empty((num, width), dtype=np.uint8)
    alphabet = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)
    for column in range(width - 1, -1, -1):
        values, digit = np.divmod(values, 36)
        digits[:, column] = alphabet[digit]
    return [prefix + row for row in digits.view(f"S{width}").ravel().tolist()]


def isbn_asins(num: int, rng: np.random.Generator) -> np.ndarray:
    """(num,) distinct ISBN-10 strings (9 digits and a check digit, ``X`` for 10), as ``S10``."""
    stride = 10**9 // num
    body = rng.choice(stride, size=num) + np.arange(num) * stride  # (num,) distinct < 10**9
    digits = np.empty((num, 10), dtype=np.uint8)
    check = np.zeros(num, dtype=np.int64)
    for column in range(8, -1, -1):
        body, digit = np.divmod(body, 10)
        digits[:, column] = ord("0") + digit
        check += (column + 1) * digit
    digits[:, 9] = np.where(check % 11 == 10, ord("X"), ord("0") + check % 11)
    return digits.view("S10").ravel()


def word_pool(size: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """A ``size``-byte stream of words from a fixed random Zipf vocabulary, space-separated.

    Returns the bytes and the (W + 1,) offsets where each word starts (the last is the end), so
    a slice between two offsets (minus its trailing space) is whole words, never half an escape.
    """
    letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", dtype=np.uint8)
    lengths = rng.integers(1, 11, size=20_000)
    words = [bytes(letters[np.minimum(rng.geometric(0.15, n) - 1, 25)]) for n in lengths.tolist()]
    words[:8] = [b"the", b"and", b"a", b"to", b"of", b"is", b"book", b"I"]
    # Punctuated words anywhere in the ranks; escapes at ranks ~300 (a few % of reviews each).
    for index in rng.choice(np.arange(10, len(words)), size=600, replace=False).tolist():
        words[index] += b"." if index % 3 else b","
    words[300 : 300 + len(ESCAPED_WORDS)] = ESCAPED_WORDS
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    probabilities = ranks**-1.07 / (ranks**-1.07).sum()
    vocabulary = [w + b" " for w in words]
    sizes = np.array([len(w) for w in vocabulary])
    count = int(size / (sizes * probabilities).sum())
    chosen = rng.choice(len(vocabulary), size=count, p=probabilities)
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(sizes[chosen], out=offsets[1:])
    step = 2**20  # words joined a million at a time: a list of them all would take ~1 GB
    parts = [
        b"".join([vocabulary[k] for k in chosen[first : first + step].tolist()])
        for first in range(0, count, step)
    ]
    return b"".join(parts), offsets


def text_slices(
    offsets: np.ndarray, count: int, mean_chars: float, rng: np.random.Generator
) -> tuple[list[int], list[int]]:
    """(start, end) byte positions of ``count`` texts of log-normal length, whole words each."""
    sigma = 1.0
    wanted = rng.lognormal(np.log(max(mean_chars, 1.0)) - sigma**2 / 2, sigma, count)
    wanted = np.minimum(wanted, 32_000)  # the real reviews stop near 32k characters
    limit = offsets[-1] - 4 * wanted.max() - 64
    starts = np.searchsorted(offsets, rng.integers(0, max(int(limit), 1), count))
    ends = np.searchsorted(offsets, offsets[starts] + wanted).clip(starts, len(offsets) - 1)
    begin = offsets[starts]
    finish = np.maximum(offsets[ends] - 1, begin)  # drop the trailing space
    return begin.tolist(), finish.tolist()


def review_days(user_counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(sum(user_counts),) int64 day numbers, grouped by user: each user is active over a window
    that starts mostly in later years (as Amazon grew) and lasts about two years."""
    num = len(user_counts)
    span = LAST_DAY - FIRST_DAY
    start = FIRST_DAY + (span * rng.beta(4.0, 1.2, num)).astype(np.int64)
    length = np.minimum(rng.exponential(700.0, num).astype(np.int64) + 1, LAST_DAY + 1 - start)
    owner = np.repeat(np.arange(num), user_counts)
    return start[owner] + (rng.random(len(owner)) * length[owner]).astype(np.int64)


def day_labels(days: np.ndarray) -> dict[int, bytes]:
    """``reviewTime`` of each distinct day: zero-padded month, unpadded day (``12 6, 2012``)."""
    unique = np.unique(days)
    dates = unique.astype("datetime64[D]")
    years = dates.astype("datetime64[Y]").astype(np.int64) + 1970
    months = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    return {
        int(d): b"%02d %d, %d" % (m, dd, y)
        for d, m, dd, y in zip(
            unique.tolist(), months.tolist(), day_of_month.tolist(), years.tolist(), strict=True
        )
    }


def reviewer_names(num: int, rng: np.random.Generator) -> list[bytes]:
    """``"reviewerName": "...", `` per user; empty for ~3% of users (the key is then absent)."""
    first = [b"John", b"Mary", b"A. Reader", b"Book Lover", b'J. \\"Jim\\" Doe', b"Kate"]
    last = [b"Smith", b"Lee", b"Garc\\u00eda", b"Brown", b"", b"O'Neil"]
    pick_first = rng.integers(0, len(first), num).tolist()
    pick_last = rng.integers(0, len(last), num).tolist()
    missing = (rng.random(num) < 0.03).tolist()
    return [
        b"" if gone else b'"reviewerName": "%s %s", ' % (first[f], last[s])
        for f, s, gone in zip(pick_first, pick_last, missing, strict=True)
    ]


def write_reviews(
    path: Path,
    lines: int,
    users: int,
    items: int,
    seed: int,
    text_chars: float,
    level: int = 1,
    block: int = 50_000,
) -> None:
    """Write the file (see the module docstring); via a temporary name, so a failure leaves none."""
    rng = np.random.default_rng(seed)
    user_counts = activity_counts(lines, users, 1.6, max(lines // 400, 4 * lines // users), rng)
    item_counts = activity_counts(lines, items, 1.3, max(lines // 1200, 4 * lines // items), rng)
    days = review_days(user_counts, rng)
    # Users matched to item slots at random: slot j of the file gets event order[j].
    order = rng.permutation(lines)
    event_user = np.repeat(np.arange(users, dtype=np.int32), user_counts)[order]
    event_day = days[order]
    del order, days
    stars = (rng.choice(5, size=lines, p=STAR_SHARES) + 1).astype(np.int8)
    asins = isbn_asins(items, rng)
    item_order = np.argsort(asins)  # the file lists items in ascending asin
    asin_list = asins[item_order].tolist()
    slot_item = np.repeat(np.arange(items), item_counts[item_order])
    user_ids = base36_ids(users, b"A", 12, rng)
    names = reviewer_names(users, rng)
    labels = day_labels(event_day)
    pool, offsets = word_pool(min(48 * 2**20, 2**20 + 4 * lines * int(text_chars + 24)), rng)
    temporary = path.with_name(path.name + ".partial")
    with (
        open(temporary, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=level, mtime=0) as out,
    ):
        for first in range(0, lines, block):
            last = min(first + block, lines)
            count = last - first
            text_from, text_to = text_slices(offsets, count, text_chars, rng)
            summary_from, summary_to = text_slices(offsets, count, 24.0, rng)
            votes = rng.geometric(0.35, count) - 1
            helpful = rng.binomial(votes, 0.75)
            rows = zip(
                slot_item[first:last].tolist(),
                event_user[first:last].tolist(),
                event_day[first:last].tolist(),
                stars[first:last].tolist(),
                helpful.tolist(),
                votes.tolist(),
                text_from,
                text_to,
                summary_from,
                summary_to,
                strict=True,
            )
            out.write(
                b"".join(
                    [
                        b'{"reviewerID": "%s", "asin": "%s", %s"helpful": [%d, %d], '
                        b'"reviewText": "%s", "overall": %d.0, "summary": "%s", '
                        b'"unixReviewTime": %d, "reviewTime": "%s"}\n'
                        % (
                            user_ids[u],
                            asin_list[i],
                            names[u],
                            h,
                            v,
                            pool[t0:t1],
                            s,
                            pool[s0:s1],
                            d * DAY,
                            labels[d],
                        )
                        for i, u, d, s, h, v, t0, t1, s0, s1 in rows
                    ]
                )
            )
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help=f"folder for {FILE_NAME}")
    parser.add_argument("--lines", type=int, default=9_000_000)
    parser.add_argument("--users", type=int, help="default: 603,000 per 9M lines")
    parser.add_argument("--items", type=int, help="default: 368,000 per 9M lines")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--text-chars", type=float, default=600.0, help="mean reviewText length (default 600)"
    )
    parser.add_argument("--level", type=int, default=1, help="gzip level (1: fastest)")
    args = parser.parse_args(argv)
    # The real Books 5-core has ~15 reviews per user and ~24 per item.
    args.users = args.users or max(round(args.lines * 603 / 9000), 1)
    args.items = args.items or max(round(args.lines * 368 / 9000), 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / FILE_NAME
    started = time.perf_counter()
    write_reviews(path, args.lines, args.users, args.items, args.seed, args.text_chars, args.level)
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    print(
        f"{path}: {args.lines:,} lines, {args.users:,} users, {args.items:,} items, "
        f"{size / 2**20:,.1f} MiB in {seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
