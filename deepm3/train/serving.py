"""What recommending needs from a run, kept in its directory: ``serving.npz``.

A run directory answers requests on a machine without its training data: ``deepm3 recommend``,
``serve`` and ``export`` read from this file the item vocabulary (raw ids in index order),
``max_len``, the count baselines' fit (item and transition counts: pop and last_item only) and
example inputs for the export's parity check (the first test rows). The training data is read
only for the histories of known users, where it is on the machine. A run recorded before this
file existed rebuilds the same contents from its data (:func:`serving_data`).

The file is an ``.npz`` read without pickle (ids as UTF-8 bytes and offsets, as the prepared
cache stores them), written under a temporary name and renamed; a damaged one is a DataError
that names it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepm3.data.cache import DAMAGED, pack_ids, unpack_ids
from deepm3.data.prepare import Prepared
from deepm3.data.sequences import SequenceTable, evaluation_table
from deepm3.errors import ConfigError, DataError
from deepm3.models import COUNT_BASELINES
from deepm3.models.baselines import TrainingCounts, training_counts

FORMAT = 1
EXAMPLE_ROWS = 64  # test rows kept: the export checks parity at batch sizes up to this


@dataclass(frozen=True)
class ServingData:
    """A run's item vocabulary and what its scorer is built from, without the events."""

    item_ids: np.ndarray  # (num_items + 1,) object array of str raw ids; index 0 (padding) ""
    max_len: int  # events the model reads
    fingerprint: str  # of the prepared data the run was trained on
    counts: TrainingCounts | None  # the count baselines' fit; None for a trained network
    examples: SequenceTable  # up to EXAMPLE_ROWS test rows: real example inputs for export

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1


def serving_data(data: Prepared, model_name: str) -> ServingData:
    """What model ``model_name`` needs of ``data`` to recommend (and to be exported)."""
    counts = None
    if model_name in COUNT_BASELINES:
        counts = training_counts(data)
        if not COUNT_BASELINES[model_name].reads_transitions:
            counts = dataclasses.replace(counts, transitions=np.zeros((0, 3), dtype=np.int64))
    examples = evaluation_table(data, "test", first=EXAMPLE_ROWS)
    return ServingData(data.events.item_ids, data.max_len, data.fingerprint, counts, examples)


def save_serving(path: Path, serving: ServingData) -> None:
    """Write ``serving`` to ``path`` atomically; a ConfigError naming it when that fails."""
    ids, offsets = pack_ids(serving.item_ids)
    arrays = {"item_ids": ids, "item_ids_offsets": offsets}
    if serving.counts is not None:
        arrays["item_counts"] = serving.counts.items
        arrays["transitions"] = serving.counts.transitions
    for field in dataclasses.fields(SequenceTable):
        value = getattr(serving.examples, field.name)
        if value is not None:
            arrays[f"example_{field.name}"] = value
    meta = {"format": FORMAT, "max_len": serving.max_len, "fingerprint": serving.fingerprint}
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with open(handle, "wb") as out:
            np.savez_compressed(out, **arrays, meta=np.array(json.dumps(meta)))
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def load_serving(path: Path) -> ServingData:
    """The contents of a run's ``serving.npz``; a DataError naming it when it is damaged."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            serving = _read(dict(stored.items()))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except DAMAGED as exc:
        raise DataError(
            f"{path}: damaged, not a serving file this version reads ({type(exc).__name__}); "
            "delete it to rebuild it from the run's data"
        ) from None
    return serving


def _read(stored: dict[str, np.ndarray]) -> ServingData:
    """ServingData from the arrays of the file, checked; ValueError or KeyError when not."""
    meta = json.loads(str(stored["meta"]))
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
    item_ids = unpack_ids(stored["item_ids"], stored["item_ids_offsets"])
    size = len(item_ids)
    counts = None
    if "item_counts" in stored:
        counts = TrainingCounts(stored["item_counts"], stored["transitions"])
        pairs = counts.transitions
        if len(counts.items) != size or pairs.ndim != 2 or pairs.shape[1] != 3:
            raise ValueError("the counts do not match the items")
        if len(pairs) and (pairs[:, :2].min() < 0 or pairs[:, :2].max() >= size):
            raise ValueError("a transition names an item outside the vocabulary")
    columns = {
        field.name: stored.get(f"example_{field.name}")
        for field in dataclasses.fields(SequenceTable)
    }
    examples = SequenceTable(**columns)
    max_len = int(meta["max_len"])
    if examples.items.ndim != 2 or examples.items.shape[1] != max_len:
        raise ValueError("the example inputs do not match max_len")
    if examples.items.size and (examples.items.min() < 0 or examples.items.max() >= size):
        raise ValueError("an example names an item outside the vocabulary")
    return ServingData(item_ids, max_len, str(meta["fingerprint"]), counts, examples)
