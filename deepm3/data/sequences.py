"""Padded batches of irregular event sequences.

Sequences are left-padded to ``max_len`` (item 0, timestamp 0). Time gaps are the seconds
between consecutive events of a user (int64), turned into model input as
``log1p(gap_seconds / 3600)`` (log of one plus hours, float32); the first event and padding get
gap 0. Training is sequence-to-sequence: every position predicts the next event.

Training rows are windows of ``max_len + 1`` training events (inputs and next-item targets).
``train_windows=last`` keeps one window per user, the most recent; ``all`` cuts the whole training
history into windows whose ends lie ``window_stride`` events apart (default ``max_len``, so every
training target is predicted exactly once and every event is reachable), identically for every
model. No window reaches past a user's training events.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from deepm3.data.prepare import Prepared

SECONDS_PER_HOUR = 3600.0


def gap_features(gap_seconds: torch.Tensor) -> torch.Tensor:
    """The documented gap transform: ``log1p(hours)`` as float32. Shape is preserved."""
    return torch.log1p(gap_seconds.double().clamp_min(0) / SECONDS_PER_HOUR).float()


@dataclass(frozen=True)
class Batch:
    """A batch of B users, T = max_len positions.

    users: (B,) int64; items: (B, T) int64, 0 = padding; timestamps: (B, T) int64 seconds;
    time_gaps: (B, T) float32 ``log1p(hours since previous event)``;
    next_gaps: (B, T) float32 transformed gap from each event to the one it predicts (the next
    input, or the target after the last input); 0 at padding. Only models that predict at the
    target's time read it;
    time_scale: (B,) int64 the user's time unit in seconds: the smallest non-zero gap between
    the user's training events (1 when there is none); used by TiSASRec only;
    targets: (B, T) int64 next items (training) or None;
    target: (B,) int64 the item to rank (evaluation) or None;
    target_time: (B,) int64 seconds of the target event (evaluation) or None.
    """

    users: torch.Tensor
    items: torch.Tensor
    timestamps: torch.Tensor
    time_gaps: torch.Tensor
    next_gaps: torch.Tensor
    time_scale: torch.Tensor
    targets: torch.Tensor | None = None
    target: torch.Tensor | None = None
    target_time: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            **{
                f.name: (
                    None
                    if getattr(self, f.name) is None
                    else getattr(self, f.name).to(device, non_blocking=True)
                )
                for f in fields(self)
            }
        )


def trim_padding(batch: Batch) -> Batch:
    """``batch`` without its leading columns that are padding in every row (one column kept at
    least). Every model is invariant to left padding (``tests/test_models.py``), so outputs at
    real positions are unchanged, while the work follows the batch's longest row instead of
    ``max_len``: on Beauty (``max_len`` 50) 88% of a padded window is padding."""
    real = (batch.items > 0).any(0)
    first = int(real.to(torch.uint8).argmax()) if bool(real.any()) else batch.items.shape[1] - 1
    if first == 0:
        return batch
    return replace(
        batch,
        **{
            f.name: getattr(batch, f.name)[:, first:]
            for f in fields(batch)
            if getattr(batch, f.name) is not None and getattr(batch, f.name).ndim == 2
        },
    )


def _pad_windows(
    values: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int
) -> np.ndarray:
    """(N, max_len) left-padded windows ``values[max(start, end - max_len):end]``."""
    count = len(starts)
    out = np.zeros((count, max_len), dtype=values.dtype)
    window_start = np.maximum(starts, ends - max_len)
    lengths = ends - window_start
    columns = np.arange(max_len)
    mask = columns[None, :] >= (max_len - lengths)[:, None]
    source = window_start[:, None] + columns[None, :] - (max_len - lengths)[:, None]
    out[mask] = values[source[mask]]
    return out


def _gaps(timestamps: np.ndarray, items: np.ndarray) -> np.ndarray:
    """(N, T) int64 seconds since the previous real event; 0 for the first and for padding."""
    gaps = np.zeros_like(timestamps)
    gaps[:, 1:] = timestamps[:, 1:] - timestamps[:, :-1]
    real_previous = np.zeros_like(items, dtype=bool)
    real_previous[:, 1:] = items[:, :-1] > 0
    gaps[~real_previous] = 0
    return gaps


@dataclass(frozen=True)
class SequenceTable:
    """All padded rows of one role (training, validation or test), as numpy arrays."""

    users: np.ndarray  # (N,)
    items: np.ndarray  # (N, T)
    timestamps: np.ndarray  # (N, T)
    gaps: np.ndarray  # (N, T) int64 seconds
    next_times: np.ndarray  # (N, T) time of the event each position predicts
    time_scale: np.ndarray  # (N,) the user's time unit, seconds
    targets: np.ndarray | None  # (N, T) for training
    target: np.ndarray | None  # (N,) for evaluation
    target_time: np.ndarray | None  # (N,)

    def __len__(self) -> int:
        return len(self.users)

    def lengths(self) -> np.ndarray:
        """(N,) int64 real (non-padding) positions per row."""
        return (self.items > 0).sum(1)

    def batch(self, rows: np.ndarray) -> Batch:
        def tensor(array: np.ndarray | None) -> torch.Tensor | None:
            return None if array is None else torch.from_numpy(np.ascontiguousarray(array[rows]))

        items = tensor(self.items)
        ahead = torch.from_numpy(self.next_times[rows] - self.timestamps[rows]) * (items > 0)
        return Batch(
            users=tensor(self.users),
            items=items,
            timestamps=tensor(self.timestamps),
            time_gaps=gap_features(torch.from_numpy(self.gaps[rows])),
            next_gaps=gap_features(ahead),
            time_scale=tensor(self.time_scale),
            targets=tensor(self.targets),
            target=tensor(self.target),
            target_time=tensor(self.target_time),
        )

    def take(self, rows: np.ndarray) -> SequenceTable:
        """The table of ``rows`` only, in that order."""
        return replace(
            self,
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                for f in fields(self)
            },
        )

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: np.random.Generator | None = None
    ) -> Iterator[Batch]:
        order = np.arange(len(self))
        if shuffle:
            order = (generator or np.random.default_rng()).permutation(len(self))
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size])


def window_ends(train_len: np.ndarray, max_len: int, windows: str, stride: int | None):
    """Users and end positions (exclusive) of the training windows, as two (N,) int64 arrays.

    Every user with at least 2 training events gets the window ending at its last training
    event; with ``windows="all"`` also those ending ``stride``, ``2 * stride``, ... events
    earlier while at least 2 events remain.
    """
    users = np.flatnonzero(train_len >= 2)
    lengths = train_len[users]
    stride = stride or max_len
    count = 1 + (lengths - 2) // stride if windows == "all" else np.ones_like(lengths)
    back = flat_ranges(np.zeros_like(count), count)  # 0, 1, .., count - 1 per user
    return np.repeat(users, count), np.repeat(lengths, count) - back * stride


def training_table(
    data: Prepared, windows: str = "all", stride: int | None = None
) -> SequenceTable:
    """Training windows (see the module docstring): each holds up to ``max_len + 1`` events,
    inputs (all but the last) and next-item targets (all but the first)."""
    users, ends = window_ends(data.split.train_len, data.max_len, windows, stride)
    starts = data.events.offsets[users]
    window = data.max_len + 1
    items = _pad_windows(data.events.items, starts, starts + ends, window)
    timestamps = _pad_windows(data.events.timestamps, starts, starts + ends, window)
    inputs, input_times = items[:, :-1], timestamps[:, :-1]
    targets = items[:, 1:].copy()
    targets[inputs == 0] = 0  # no target for padded inputs
    return SequenceTable(
        users,
        inputs,
        input_times,
        _gaps(input_times, inputs),
        timestamps[:, 1:],
        personal_time_scales(data)[users],
        targets,
        None,
        None,
    )


def personal_time_scales(data: Prepared) -> np.ndarray:
    """(num_users + 1,) int64 each user's smallest non-zero gap between training events, in
    seconds (1 when the user has none): TiSASRec's personal time unit, from training data only."""
    train_len = data.split.train_len
    times = data.events.timestamps[flat_ranges(data.events.offsets[: len(train_len)], train_len)]
    owner = np.repeat(np.arange(len(train_len)), train_len)
    gaps = np.diff(times)
    usable = (owner[1:] == owner[:-1]) & (gaps > 0)
    largest = np.iinfo(np.int64).max
    scales = np.full(len(train_len), largest, dtype=np.int64)
    np.minimum.at(scales, owner[1:][usable], gaps[usable])
    return np.where(scales == largest, 1, scales)


def evaluation_table(data: Prepared, role: str, first: int | None = None) -> SequenceTable:
    """One row per evaluated user: the last ``max_len`` events before the target (only the
    ``first`` users evaluated, when given)."""
    positions = {"valid": data.split.valid_pos, "test": data.split.test_pos}[role]
    users = np.flatnonzero(positions >= 0)[:first]
    starts = data.events.offsets[users]
    ends = starts + positions[users]
    items = _pad_windows(data.events.items, starts, ends, data.max_len)
    timestamps = _pad_windows(data.events.timestamps, starts, ends, data.max_len)
    target_time = data.events.timestamps[ends]
    next_times = np.concatenate([timestamps[:, 1:], target_time[:, None]], axis=1)
    return SequenceTable(
        users,
        items,
        timestamps,
        _gaps(timestamps, items),
        next_times,
        personal_time_scales(data)[users],
        None,
        data.events.items[ends],
        target_time,
    )


def history_table(
    items: list[np.ndarray],
    timestamps: list[np.ndarray],
    max_len: int,
    time_scale: np.ndarray,
    query_times: np.ndarray,
) -> SequenceTable:
    """One row per given history (recommendation requests): its last ``max_len`` events.

    items, timestamps: per row, (L_i,) int64 arrays in time order (L_i >= 1); time_scale (N,)
    int64 each row's time unit; query_times (N,) int64 the time each row predicts for (its
    last event's time when there is no query time), so the last position's ``next_gaps`` is
    the gap from the last event to the query.
    """
    lengths = np.array([len(row) for row in items], dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    padded_items = _pad_windows(np.concatenate(items), starts, ends, max_len)
    padded_times = _pad_windows(np.concatenate(timestamps), starts, ends, max_len)
    next_times = np.concatenate([padded_times[:, 1:], query_times[:, None]], axis=1)
    return SequenceTable(
        np.zeros(len(items), dtype=np.int64),
        padded_items,
        padded_times,
        _gaps(padded_times, padded_items),
        next_times,
        time_scale,
        None,
        None,
        None,
    )


def history_items(data: Prepared, users: np.ndarray, role: str) -> tuple[np.ndarray, np.ndarray]:
    """Every item before each user's target (not truncated), as (row index, item) pairs.

    Used to mask already-seen items in evaluation. Returns two (M,) int64 arrays.
    """
    positions = {"valid": data.split.valid_pos, "test": data.split.test_pos}[role]
    lengths = positions[users]
    rows = np.repeat(np.arange(len(users)), lengths)
    return rows, data.events.items[flat_ranges(data.events.offsets[users], lengths)]


def training_item_counts(data: Prepared) -> np.ndarray:
    """(num_items + 1,) how often each item occurs in the training events."""
    train_len = data.split.train_len
    rows = flat_ranges(data.events.offsets[: len(train_len)], train_len)
    return np.bincount(data.events.items[rows], minlength=data.num_items + 1)


def flat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``range(start, start + length)`` for each pair, without a loop."""
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(starts, lengths) + within


def with_history(
    table: SequenceTable,
    items: np.ndarray,
    timestamps: np.ndarray,
    target_time: np.ndarray | None = None,
) -> SequenceTable:
    """``table`` (an evaluation table) with new (N, T) histories, e.g. perturbed ones.

    Gaps and next times are rebuilt from the new times; the target stays, and so does its time
    unless ``target_time`` (N,) replaces it. Users and their time units are kept.
    """
    if items.shape != table.items.shape or timestamps.shape != table.items.shape:
        raise ValueError(f"histories must keep the shape {table.items.shape}")
    target_time = table.target_time if target_time is None else target_time
    next_times = np.concatenate([timestamps[:, 1:], target_time[:, None]], axis=1)
    return SequenceTable(
        table.users,
        items,
        timestamps,
        _gaps(timestamps, items),
        next_times,
        table.time_scale,
        None,
        table.target,
        target_time,
    )
