"""Downloads without a network: ``file://`` URLs to files in tmp_path.

A download is kept only when its checksum matches; otherwise neither the target nor the
``.part`` file may remain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import io
import urllib.request
from pathlib import Path

import pytest

from deepm3.data.datasets import DatasetSpec, locate
from deepm3.data.download import cache_dir, download, file_digest, verify
from deepm3.errors import DataError

PAYLOAD = b"1::1193::5::978300760\n" * 5000 + b"\x00\xff binary tail"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "server" / "ml-1m.zip"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_file_digest_matches_hashlib(source: Path) -> None:
    assert file_digest(source, "md5") == md5(PAYLOAD)
    assert file_digest(source) == sha256(PAYLOAD)
    assert file_digest(source, chunk=7) == sha256(PAYLOAD)  # chunking does not matter


def test_right_md5_produces_the_target(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "cache" / "raw" / "ml-1m" / "ml-1m.zip"
    result = download(source.as_uri(), target, md5=md5(PAYLOAD))
    assert result == target
    assert target.read_bytes() == PAYLOAD
    assert leftovers(target.parent) == ["ml-1m.zip"]  # no .part


def test_right_sha256_and_both_checksums(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "out" / "a.bin"
    download(source.as_uri(), target, sha256=sha256(PAYLOAD))
    assert target.read_bytes() == PAYLOAD
    other = tmp_path / "out" / "b.bin"
    download(source.as_uri(), other, md5=md5(PAYLOAD), sha256=sha256(PAYLOAD).upper())
    assert other.read_bytes() == PAYLOAD
    assert leftovers(tmp_path / "out") == ["a.bin", "b.bin"]


def test_wrong_md5_keeps_nothing(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "cache" / "ml-1m.zip"
    wrong = md5(b"something else")
    with pytest.raises(DataError, match="checksum") as info:
        download(source.as_uri(), target, md5=wrong)
    message = str(info.value)
    assert wrong in message and md5(PAYLOAD) in message and source.as_uri() in message
    assert not target.exists()
    assert not target.with_name("ml-1m.zip.part").exists()
    assert leftovers(target.parent) == []


def test_wrong_sha256_reports_the_sha256_that_differs(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "cache" / "ml-1m.zip"
    wrong = sha256(b"something else")
    with pytest.raises(DataError, match="checksum") as info:
        download(source.as_uri(), target, md5=md5(PAYLOAD), sha256=wrong)
    message = str(info.value)
    # The md5 matched: the message must name the checksum that failed, with both values.
    assert f"expected sha256 {wrong}, got {sha256(PAYLOAD)}" in message
    assert leftovers(target.parent) == []


def test_unreachable_url_keeps_nothing(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "ml-1m.zip"
    url = (tmp_path / "server" / "absent.zip").as_uri()
    with pytest.raises(DataError, match="cannot download") as info:
        download(url, target, md5=md5(PAYLOAD))
    assert url in str(info.value) and "--data-dir" in str(info.value)
    assert not target.exists()
    assert not target.with_name("ml-1m.zip.part").exists()
    assert leftovers(target.parent) == []


def test_malformed_url_is_a_data_error(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "x.zip"
    with pytest.raises(DataError, match="cannot download"):
        download("not a url at all", target)
    assert leftovers(target.parent) == []


class _BrokenResponse(io.BytesIO):
    """A response whose transfer is cut short after the first block."""

    headers: dict[str, str] = {"Content-Length": str(len(PAYLOAD))}

    def __init__(self, error: BaseException) -> None:
        super().__init__(PAYLOAD[: 1 << 20])
        self.error = error
        self.calls = 0

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if self.calls > 1:
            raise self.error
        return super().read(size)


@pytest.mark.parametrize(
    "error",
    [
        http.client.IncompleteRead(b"partial", 1000),  # server closed the connection early
        TimeoutError("timed out"),
        ConnectionResetError("reset by peer"),
    ],
    ids=["incomplete-read", "timeout", "reset"],
)
def test_transfer_cut_short_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: _BrokenResponse(error))
    target = tmp_path / "cache" / "ml-1m.zip"
    with pytest.raises(DataError, match="cannot download"):
        download("https://example.invalid/ml-1m.zip", target, md5=md5(PAYLOAD))
    assert leftovers(target.parent) == []


def test_interrupt_keeps_no_part_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    response = _BrokenResponse(KeyboardInterrupt())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: response)
    target = tmp_path / "cache" / "ml-1m.zip"
    with pytest.raises(KeyboardInterrupt):
        download("https://example.invalid/ml-1m.zip", target, md5=md5(PAYLOAD))
    assert response.calls == 2  # the interrupt came mid-transfer, after a block was written
    assert leftovers(target.parent) == []


def test_existing_target_with_right_checksum_is_not_fetched_again(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cache" / "ml-1m.zip"
    download(source.as_uri(), target, md5=md5(PAYLOAD))

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert download(source.as_uri(), target, md5=md5(PAYLOAD)) == target


def test_existing_target_with_wrong_checksum_is_replaced(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "cache" / "ml-1m.zip"
    target.parent.mkdir()
    target.write_bytes(b"stale or truncated")
    download(source.as_uri(), target, md5=md5(PAYLOAD))
    assert target.read_bytes() == PAYLOAD
    assert leftovers(target.parent) == ["ml-1m.zip"]


def test_stale_part_file_is_overwritten(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "cache" / "ml-1m.zip"
    target.parent.mkdir()
    target.with_name("ml-1m.zip.part").write_bytes(b"left over from a crash" * 100000)
    download(source.as_uri(), target, md5=md5(PAYLOAD))
    assert target.read_bytes() == PAYLOAD
    assert leftovers(target.parent) == ["ml-1m.zip"]


def test_verify(source: Path) -> None:
    verify(source, md5(PAYLOAD))
    verify(source, None)  # no published checksum: nothing to check
    with pytest.raises(DataError, match="checksum mismatch") as info:
        verify(source, md5(b"x"))
    assert str(source) in str(info.value) and md5(PAYLOAD) in str(info.value)


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPM3_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("DEEPM3_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "deepm3"


def _spec(url: str, checksum: str | None) -> DatasetSpec:
    return DatasetSpec(
        name="toy",
        reader=lambda path: None,
        files=("ml-1m.zip",),
        folders=("toy",),
        url=url,
        md5=checksum,
        max_len=50,
        kcore=0,
        note="test",
    )


def test_locate_without_data_dir_downloads_into_the_cache(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEEPM3_CACHE", str(tmp_path / "cache"))
    found = locate(_spec(source.as_uri(), md5(PAYLOAD)), None)
    assert found == tmp_path / "cache" / "raw" / "toy" / "ml-1m.zip"
    assert found.read_bytes() == PAYLOAD
    other = source.with_name("other.zip")
    other.write_bytes(PAYLOAD)
    with pytest.raises(DataError, match="checksum"):
        locate(_spec(other.as_uri(), md5(b"x")), None)
    assert leftovers(found.parent) == ["ml-1m.zip"]  # no other.zip, no other.zip.part


def test_locate_without_data_dir_or_url() -> None:
    with pytest.raises(DataError, match="toy has no download; pass --data-dir"):
        locate(dataclasses.replace(_spec("", None), url=None), None)


def test_unpublished_checksum_is_recorded_at_download_and_checked_later(
    tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Amazon publishes no checksum: the first download records its sha256 beside the file;
    later uses check it and refuse a file changed since, naming both digests."""
    target = tmp_path / "cache" / "reviews_Books_5.json.gz"
    download(source.as_uri(), target)
    record = target.with_name(target.name + ".sha256")
    assert leftovers(target.parent) == ["reviews_Books_5.json.gz", "reviews_Books_5.json.gz.sha256"]
    assert record.read_text().split()[:2] == [sha256(PAYLOAD), target.name]

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert download(source.as_uri(), target) == target  # recorded digest matches: reused
    target.write_bytes(PAYLOAD[:-1])
    with pytest.raises(DataError, match="differs from .* recorded in") as info:
        download(source.as_uri(), target)
    assert sha256(PAYLOAD[:-1]) in str(info.value) and sha256(PAYLOAD) in str(info.value)
