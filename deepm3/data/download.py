"""Fetch an official file once, verified by checksum, into a cache folder.

The file is written to ``<name>.part`` and renamed only after its checksum matches; a mismatch
or a broken transfer removes the partial file and raises a clear error. Where no checksum is
published (Amazon reviews), the sha256 of the first download is recorded next to the file
(``<name>.sha256``) and checked on every later use, so a changed file is never read silently.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from deepm3.errors import DataError


def cache_dir() -> Path:
    """``$DEEPM3_CACHE`` or ``~/.cache/deepm3``."""
    return Path(os.environ.get("DEEPM3_CACHE", Path.home() / ".cache" / "deepm3"))


def make_cache_folder(folder: Path) -> Path:
    """Create ``folder`` (inside the cache) with its parents; a file in the way or a folder
    that cannot be written is a DataError naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
        raise PermissionError(13, "Permission denied", str(folder))
    except (FileExistsError, NotADirectoryError):
        places = (folder, *folder.parents)
        blocking = next((p for p in places if p.exists() and not p.is_dir()), folder)
        raise DataError(
            f"{blocking}: is a file, but the cache (DEEPM3_CACHE, default ~/.cache/deepm3) "
            f"needs a folder there; cache: {cache_dir()}"
        ) from None
    except OSError as exc:
        raise DataError(
            f"{exc.filename or folder}: cannot create or write the cache folder "
            f"({exc.strerror or exc}); set DEEPM3_CACHE to a writable folder"
        ) from None


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``target`` unless it is already there with the right checksum."""
    target = Path(target)
    record = target.with_name(target.name + ".sha256")
    if md5 is None and sha256 is None and record.is_file():
        sha256 = record.read_text().split()[0]  # recorded at the first download
    if target.exists():
        mismatch = _mismatch(target, md5, sha256)
        if mismatch is None:
            return target
        if record.is_file() and mismatch[0] == "sha256":
            raise DataError(
                f"{target}: sha256 {mismatch[2]} differs from {mismatch[1]} recorded in {record} "
                "at its download; delete both files to download it again"
            )
    make_cache_folder(target.parent)
    partial = target.with_name(target.name + ".part")
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                desc = f"download {target.name}"
                with tqdm(total=total, unit="B", unit_scale=True, desc=desc) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # OSError covers URLError, HTTPError and timeouts; ValueError a malformed URL;
            # HTTPException a transfer cut short (IncompleteRead).
            raise DataError(
                f"cannot download {url} ({exc}); download it by hand and pass its folder with "
                "--data-dir or DEEPM3_DATA_DIR"
            ) from None
        mismatch = _mismatch(partial, md5, sha256)
        if mismatch is not None:
            algorithm, expected, got = mismatch
            raise DataError(
                f"checksum mismatch for {url}: expected {algorithm} {expected}, got {got}; "
                "nothing was kept"
            )
        if md5 is None and sha256 is None:  # nothing published: record what we got
            record.write_text(f"{file_digest(partial)}  {target.name}  {url}\n")
        partial.replace(target)
    finally:
        # Whatever happened (including Ctrl-C), never leave a partial file behind.
        partial.unlink(missing_ok=True)
    return target


def _mismatch(path: Path, md5: str | None, sha256: str | None) -> tuple[str, str, str] | None:
    """``(algorithm, expected, actual)`` for the first checksum that differs, else None."""
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None:
            actual = file_digest(path, algorithm)
            if actual != expected.lower():
                return algorithm, expected, actual
    return None


def verify(path: Path, md5: str | None) -> None:
    """Raise if ``path`` does not have the published md5 (used for archives a user supplies)."""
    mismatch = _mismatch(path, md5, None)
    if mismatch is not None:
        raise DataError(
            f"{path}: checksum mismatch: expected md5 {md5}, got {mismatch[2]}; this is not the "
            "official file (download it again, or pass the folder it unpacks to)"
        )
