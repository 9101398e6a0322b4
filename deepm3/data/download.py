"""Fetch an official file once, verified by checksum, into a cache folder.

The file is written to ``<name>.part`` and renamed only after its checksum matches; a mismatch
or a broken transfer removes the partial file and raises a clear error.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from deepm3.errors import DataError


def cache_dir() -> Path:
    """``$DEEPM3_CACHE`` or ``~/.cache/deepm3``."""
    return Path(os.environ.get("DEEPM3_CACHE", Path.home() / ".cache" / "deepm3"))


def file_digest(path: Path, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``target`` unless it is already there with the right checksum."""
    target = Path(target)
    if target.exists() and _matches(target, md5, sha256):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {target.name}") as bar:
                while block := response.read(1 << 20):
                    out.write(block)
                    bar.update(len(block))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot download {url} ({exc}); download it by hand and pass its folder with "
            "--data-dir or DEEPM3_DATA_DIR"
        ) from None
    if not _matches(partial, md5, sha256):
        got = file_digest(partial, "md5" if md5 else "sha256")
        partial.unlink(missing_ok=True)
        raise DataError(
            f"checksum mismatch for {url}: expected {md5 or sha256}, got {got}; nothing was kept"
        )
    partial.replace(target)
    return target


def _matches(path: Path, md5: str | None, sha256: str | None) -> bool:
    if md5 is not None and file_digest(path, "md5") != md5:
        return False
    return sha256 is None or file_digest(path, "sha256") == sha256


def verify(path: Path, md5: str | None) -> None:
    """Raise if ``path`` does not have the published md5 (used for archives a user supplies)."""
    if md5 is not None and file_digest(path, "md5") != md5:
        raise DataError(f"{path}: checksum mismatch: expected md5 {md5}, got "
                        f"{file_digest(path, 'md5')}")


def extract(archive: Path, folder: Path) -> Path:
    """Unpack a zip archive next to itself (once)."""
    marker = folder / ".extracted"
    if not marker.exists():
        try:
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(folder)
        except zipfile.BadZipFile:
            raise DataError(f"{archive}: not a valid zip archive") from None
        marker.touch()
    return folder
