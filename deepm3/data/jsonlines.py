"""JSON-lines files read fast: whole lines in large blocks, and an exact scanner for a layout.

A review file of Amazon Books size (~9M lines, ~8 GB of text once decompressed) is read in
blocks of whole lines (:func:`text_blocks`); a background thread decompresses the next block
while the caller parses this one (zlib releases the GIL, so the two overlap on two cores).

:func:`scan_block` reads a few fields of every line of a block in one regular-expression pass
(no ``json.loads``, no dict per line) when every line matches a caller's whole-line pattern
built from the JSON tokens below. Such a pattern is a fixed sequence of distinct keys whose
values are tokens of the JSON grammar, with no line end anywhere (so a match never spans two
lines), hence:

- a matching line is valid JSON and a JSON object: ``json.loads`` would accept it;
- each key appears once, so ``json.loads`` gives it the one value that was captured;
- a string token ends at its first unescaped quote and a number at its first non-digit, so a
  token matches in one way only, and a captured field is exactly that token.

A captured id must be a string without escapes (:data:`PLAIN_CHARS` between quotes), so its
raw text is its value. A block with any line that does not match (another layout, a blank
line, an escape in an id, an error to report with its line number) is left to the caller's
``json.loads`` path.
"""

from __future__ import annotations

import gzip
import queue
import re
import threading
import zlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

BLOCK_BYTES = 8 * 2**20
_GZIP_INPUT = 2**20  # compressed bytes per zlib call
_READ_AHEAD = 3  # blocks decompressed ahead of the parser (memory: ~4 x BLOCK_BYTES)
_BOM = b"\xef\xbb\xbf"

# JSON tokens, as regular expressions for whole-line patterns (no whitespace inside them).
# String characters without escapes: anything but '"', '\\' and the controls U+0000-U+001F,
# which JSON forbids raw. (Written as positive ranges: twice as fast in Python's re.)
PLAIN_CHARS = r"[ !#-\[\]-\U0010FFFF]*"
STRING = rf'"{PLAIN_CHARS}(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{{4}}){PLAIN_CHARS})*"'
NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
COUNT = r"(?:0|[1-9][0-9]*)"  # a non-negative integer


def scan_block(text: str, pattern: re.Pattern[str]) -> list[list[str]] | None:
    r"""The groups that ``pattern`` (a MULTILINE ``^...$`` whole-line pattern) captures on the
    lines of ``text``, one list per group with one entry per line; None unless every line of
    ``text`` matches. A lone ``\r`` is refused as well: Python's universal newlines (which the
    caller's line numbers follow) end a line there; a ``\r\n`` line end is the pattern's."""
    if "\r" in text and text.count("\r") != text.count("\r\n"):
        return None
    pieces = pattern.split(text)  # [gap, groups of match 1..., gap, groups of match 2..., gap]
    step = pattern.groups + 1
    gaps = pieces[::step]
    # Every line matched iff nothing comes before the first match, exactly one line end
    # between two matches, and at most one line end after the last.
    if len(gaps) < 2 or gaps[0] or gaps[-1] not in ("", "\n"):
        return None
    if len(gaps) > 2 and set(gaps[1:-1]) != {"\n"}:
        return None
    return [pieces[group::step] for group in range(1, step)]


def _gunzip(handle: BinaryIO, size: int) -> Iterator[bytes]:
    """The decompressed bytes of a gzip file in blocks of at least ``size`` bytes (the last
    may be shorter), read as the ``gzip`` module reads one: members one after another, zero
    padding allowed after a member, the same error for a file that is not gzip or is cut short.

    Unlike ``gzip`` (8 KiB of input per zlib call) each call gets :data:`_GZIP_INPUT` bytes:
    zlib runs without the GIL, so a few long calls overlap with the parsing thread, where many
    short ones would each wait for it to let go of the GIL.
    """
    data, first, out, held = b"", True, [], 0
    while True:
        while True:  # the start of a member, after any zero padding; or the end of the file
            data = data if first else data.lstrip(b"\x00")
            more = b"" if len(data) >= 2 else handle.read(_GZIP_INPUT)
            if not more:
                break
            data += more
        if not data and not first:
            break
        if data[:2] != b"\x1f\x8b":
            raise gzip.BadGzipFile(f"Not a gzipped file ({data[:2]!r})")
        first, member = False, zlib.decompressobj(wbits=31)  # 31: gzip header and CRC checked
        while not member.eof:
            if not data:
                data = handle.read(_GZIP_INPUT)
                if not data:
                    raise EOFError(
                        "Compressed file ended before the end-of-stream marker was reached"
                    )
            piece = member.decompress(data, size)  # at most size bytes out: no zip bomb
            data = member.unconsumed_tail
            out.append(piece)
            held += len(piece)
            if held >= size:
                yield b"".join(out)
                out, held = [], 0
        data = member.unused_data
    if held:
        yield b"".join(out)


def _raw_blocks(path: Path, size: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        if path.suffix.lower() == ".gz":
            yield from _gunzip(handle, size)
        else:
            yield from iter(lambda: handle.read(size), b"")


def byte_blocks(path: Path, size: int | None = None) -> Iterator[bytes]:
    """The file's bytes (decompressed for ``.gz``) in blocks of ``size`` (default
    :data:`BLOCK_BYTES`), read ahead by a background thread; an error reading the file is
    raised here, after the blocks before it."""
    size = size or BLOCK_BYTES
    ahead: queue.Queue = queue.Queue(maxsize=_READ_AHEAD)
    stop = threading.Event()

    def put(item: bytes | Exception) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for block in _raw_blocks(path, size):
                put(block)
                if stop.is_set():
                    return
            put(b"")  # the end
        except Exception as exc:  # handed to the reading thread, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="deepm3-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, Exception):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def text_blocks(path: Path, size: int | None = None) -> Iterator[str]:
    """The file as UTF-8 text in blocks of whole lines (a leading byte-order mark dropped).

    Invalid UTF-8 raises ``UnicodeDecodeError``, after the whole lines before the bad byte; its
    ``object`` is the line that holds it (from its start), ``start`` the byte's offset there.
    """
    pending: list[bytes] = []  # the start of a line that goes on in the next block
    first = True
    with closing(byte_blocks(path, size)) as blocks:
        for block in blocks:
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                pending.append(block)
                continue
            data = b"".join([*pending, block[:cut]])
            pending = [block[cut:]]
            if first:
                data, first = data.removeprefix(_BOM), False
            yield from _decoded(data)
    data = b"".join(pending)
    if data:
        yield from _decoded(data.removeprefix(_BOM) if first else data)


def _decoded(data: bytes) -> Iterator[str]:
    """``data`` decoded; on an invalid byte, the whole lines before its line, then the error,
    its offsets made relative to the start of that line (the caller knows the line number)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut = data.rfind(b"\n", 0, exc.start) + 1
        if cut:
            yield data[:cut].decode("utf-8")
        end = data.find(b"\n", exc.start)
        rest = data[cut : len(data) if end < 0 else end]
        raise UnicodeDecodeError(
            exc.encoding, rest, exc.start - cut, exc.end - cut, exc.reason
        ) from None
    yield text
