"""The prepared-data cache file: one ``.npz`` per data set and settings, read without pickle.

Ids are stored as one UTF-8 byte array plus offsets, not as fixed-width ``<U`` arrays (where one
long id makes every entry as wide as it). A file is written under a temporary name and renamed,
so a failure leaves nothing partial; reading checks it down to the fingerprint of its arrays, so
a damaged file raises one of :data:`DAMAGED` and the caller rebuilds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from deepm3.data.download import make_cache_folder
from deepm3.data.preprocess import Events, id_array
from deepm3.data.split import Split
from deepm3.errors import DataError

# What reading a damaged file can raise (np.load, the zip layer, the arrays, the JSON meta).
DAMAGED = (OSError, EOFError, ValueError, KeyError, TypeError, MemoryError, zipfile.BadZipFile)
DAMAGED = (*DAMAGED, zlib.error)


def fingerprint(events: Events, split: Split) -> str:
    """First 16 hex digits of the sha256 of the prepared arrays."""
    digest = hashlib.sha256()
    for array in (events.items, events.timestamps, events.offsets, *dataclasses.astuple(split)):
        digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def pack_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids as one UTF-8 byte array and (n + 1,) offsets: no pickle, no fixed-width strings."""
    encoded = [str(value).encode("utf-8") for value in ids]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(value) for value in encoded])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def unpack_ids(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    blob = data.astype(np.uint8, copy=False).tobytes()
    bounds = offsets.tolist()
    if bounds[0] != 0 or bounds[-1] != len(blob) or (np.diff(offsets) < 0).any():
        raise ValueError("id offsets do not match the id bytes")
    ids = [blob[a:b].decode("utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return id_array(ids[1:])


def save_cache(path: Path, name: str, events: Events, split: Split, stats: dict) -> None:
    """Write the cache file (``stats`` must hold the ``fingerprint`` of events and split)."""
    make_cache_folder(path.parent)
    arrays = {f"split_{f.name}": getattr(split, f.name) for f in dataclasses.fields(Split)}
    for f in dataclasses.fields(Events):
        value = getattr(events, f.name)
        if f.name.endswith("_ids"):
            arrays[f"events_{f.name}"], arrays[f"events_{f.name}_offsets"] = pack_ids(value)
        else:
            arrays[f"events_{f.name}"] = value
    meta = np.array(json.dumps({"name": name, "stats": stats}))
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with open(handle, "wb") as out:
            np.savez(out, **arrays, meta=meta)
        os.replace(temporary, path)
    except OSError as exc:
        raise DataError(
            f"{exc.filename or path}: cannot write the cache ({exc.strerror or exc}); set "
            "DEEPM3_CACHE to a writable folder"
        ) from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def load_cache(path: Path) -> tuple[str, Events, Split, dict]:
    """(name, events, split, stats) of a cache file; one of :data:`DAMAGED` when the file is not
    what :func:`save_cache` wrote (checked down to the fingerprint of the arrays)."""
    with np.load(path, allow_pickle=False) as data:
        fields = {}
        for f in dataclasses.fields(Events):
            key = f"events_{f.name}"
            ids = f.name.endswith("_ids")
            fields[f.name] = unpack_ids(data[key], data[f"{key}_offsets"]) if ids else data[key]
        events = Events(**fields)
        split = Split(**{f.name: data[f"split_{f.name}"] for f in dataclasses.fields(Split)})
        meta = json.loads(str(data["meta"]))
    stats = meta["stats"]
    if fingerprint(events, split) != stats["fingerprint"]:
        raise ValueError("the arrays do not match their fingerprint")
    if len(events.user_ids) != len(events.offsets) - 1 or len(events.item_ids) <= int(
        events.items.max(initial=0)
    ):
        raise ValueError("the ids do not match the events")
    return meta["name"], events, split, stats
