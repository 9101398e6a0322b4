"""Test-time perturbations of evaluation histories: what a model loses when time or order goes.

Every function takes left-padded (N, T) arrays, ``items`` int (0 = padding) and ``timestamps``
int seconds (0 at padding), real events right-aligned as :func:`deepm3.data.sequences.
evaluation_table` builds them, and returns new ``(items, timestamps)`` int64 arrays of the same
shape in the same layout; inputs are never modified. Random ones take a ``numpy.random.
Generator``: same generator state, same output. None touches the target or its time; the caller
rebuilds gaps (``_gaps``) and next times (with the unchanged ``target_time``) from the result.

Time only (items and order kept): :func:`shuffle_gaps`, :func:`mean_gaps`,
:func:`zero_timestamps`, :func:`jitter_timestamps` with ``resort=False``.
Order (times of positions kept, items move): :func:`shuffle_order`.
Both: :func:`jitter_timestamps` with ``resort=True``, and :func:`drop_events` (removes events).
All are vectorised over rows (random sort keys, no per-row loops).
"""

from __future__ import annotations

import numpy as np


def _real_events(items: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """(N, T) bool mask of real events, after checking the layout described above."""
    if items.ndim != 2 or items.shape != timestamps.shape:
        raise ValueError(f"items and timestamps must be (N, T), got {items.shape}")
    if not (np.issubdtype(items.dtype, np.integer) and np.issubdtype(timestamps.dtype, np.integer)):
        raise ValueError("items and timestamps must be integer arrays")
    real = items > 0
    if (items < 0).any() or (real[:, :-1] & ~real[:, 1:]).any():
        raise ValueError("rows must be left-padded: padding (item 0) only before real events")
    if (timestamps[~real] != 0).any():
        raise ValueError("padding positions must have timestamp 0")
    return real


def _gaps_between_events(timestamps: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(N, T) int64 gap before each real event that has a real predecessor, 0 elsewhere."""
    gaps = np.zeros(timestamps.shape, dtype=np.int64)
    gaps[:, 1:] = np.diff(timestamps.astype(np.int64), axis=1)
    gaps[:, 1:][~(real[:, 1:] & real[:, :-1])] = 0  # a view: writes into gaps
    return gaps


def _first_times(timestamps: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(N,) int64 time of each row's first real event (0 for an empty row)."""
    first = np.minimum(real.shape[1] - real.sum(axis=1), real.shape[1] - 1)
    return np.where(real.any(axis=1), timestamps[np.arange(len(real)), first], 0).astype(np.int64)


def _reorder(
    items: np.ndarray, timestamps: np.ndarray, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays with each row's columns taken in ``order`` (N, T), as int64."""
    return (
        np.take_along_axis(items, order, axis=1).astype(np.int64),
        np.take_along_axis(timestamps, order, axis=1).astype(np.int64),
    )


def shuffle_gaps(
    items: np.ndarray, timestamps: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Permute each row's gaps between events; items, their order and the first time stay.

    Times are rebuilt as the first event's time plus the cumulative permuted gaps, so each
    row keeps its first and last time (the total span), its multiset of gaps and its order,
    and stays non-decreasing when it was. Each permutation is uniform (argsort of uniform keys).
    """
    real = _real_events(items, timestamps)
    gaps = _gaps_between_events(timestamps, real)  # (N, T), nonzero only inside the block
    is_gap = np.zeros_like(real)
    is_gap[:, 1:] = real[:, 1:] & real[:, :-1]
    # Gap positions form each row's rightmost block; key -1 keeps everything else in front.
    keys = np.where(is_gap, rng.random(real.shape), -1.0)
    shuffled = np.take_along_axis(gaps, np.argsort(keys, axis=1, kind="stable"), axis=1)
    times = _first_times(timestamps, real)[:, None] + np.cumsum(shuffled, axis=1)
    return items.astype(np.int64), np.where(real, times, 0).astype(np.int64)


def mean_gaps(items: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every gap of a row set to the row's mean gap, rounded to whole seconds (half to even).

    The first event keeps its time and event k (0-based) gets ``first + k * gap`` with
    ``gap = rint((last - first) / (L - 1))`` for L real events, so the gaps are exactly equal
    and the span differs from the original by at most ``(L - 1) / 2`` seconds. Rows with fewer
    than 2 events are unchanged. Deterministic.
    """
    real = _real_events(items, timestamps)
    length = real.sum(axis=1)  # (N,)
    first = _first_times(timestamps, real)
    span = timestamps[:, -1].astype(np.int64) - first  # the last column is the last event
    gap = np.rint(span / np.maximum(length - 1, 1)).astype(np.int64)  # (N,)
    position = np.arange(real.shape[1])[None, :] - (real.shape[1] - length)[:, None]  # k
    times = first[:, None] + position * gap[:, None]
    return items.astype(np.int64), np.where(real, times, 0).astype(np.int64)


def zero_timestamps(items: np.ndarray, timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's "drop" perturbation: every timestamp set to 0, every event kept.

    Not event dropout (that is :func:`drop_events`). All gaps between events become 0, and a
    model that reads absolute times sees 1970-01-01. The target's time is not this function's:
    if the caller keeps it, the gap from the last event to the target becomes the target's
    absolute time in seconds.
    """
    _real_events(items, timestamps)
    return items.astype(np.int64), np.zeros(timestamps.shape, dtype=np.int64)


def shuffle_order(
    items: np.ndarray,
    timestamps: np.ndarray,
    rng: np.random.Generator,
    window: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle which item sits at which event; each position keeps its time.

    ``window=None`` permutes all of a row's events uniformly. ``window=w`` permutes only inside
    consecutive windows of w events counted back from the most recent: the last w events are
    one window, the w before them the next, and the oldest window may be shorter. Timestamps
    are returned unchanged (still sorted when they were); padding stays in place.
    """
    real = _real_events(items, timestamps)
    if window is not None and window < 1:
        raise ValueError(f"window must be at least 1 or None, got {window}")
    columns = real.shape[1]
    if window is None:
        windows = np.zeros(columns, dtype=np.float64)
    else:
        windows = ((columns - 1 - np.arange(columns)) // window).astype(np.float64)
    # Window g gets keys in [-g, 1 - g): windows keep their columns, order inside is random.
    keys = np.where(real, rng.random(real.shape) - windows[None, :], -np.inf)
    order = np.argsort(keys, axis=1, kind="stable")
    shuffled, _ = _reorder(items, timestamps, order)
    return shuffled, timestamps.astype(np.int64)


def jitter_timestamps(
    timestamps: np.ndarray,
    items: np.ndarray,
    sigma_seconds: float,
    rng: np.random.Generator,
    resort: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Add N(0, sigma_seconds**2) noise to every real timestamp; returns (items, timestamps).

    Note the argument order (timestamps first, like ``_gaps``) differs from the other
    perturbations; the result is ``(items, timestamps)`` like theirs. Jittered times are
    rounded to whole seconds (half to even) and clipped at 0. ``sigma_seconds=0`` returns the
    input.

    ``resort=True``: events are re-sorted by their new times (stable, so equal times keep
    their order), so times are non-decreasing and items may change order.
    ``resort=False``: order kept, times may decrease. The pipeline then computes negative
    int64 gaps (``sequences._gaps``, and ``next_times - timestamps`` for next gaps), which
    ``gap_features`` clamps to 0 (``clamp_min(0)``): a backwards step reads as two events at one
    time. TiSASRec's intervals take absolute differences from the row's earliest time, and
    DeepM3's absolute-time context reads the jittered times as they are.
    """
    real = _real_events(items, timestamps)
    if not sigma_seconds >= 0:
        raise ValueError(f"sigma_seconds must be non-negative, got {sigma_seconds}")
    noise = rng.normal(0.0, sigma_seconds, size=real.shape)  # float64: exact below 2**53 s
    jittered = np.clip(np.rint(timestamps + noise), 0, None).astype(np.int64)
    jittered = np.where(real, jittered, 0)
    if not resort:
        return items.astype(np.int64), jittered
    keys = np.where(real, jittered, -1)  # jittered >= 0, so padding stays in front
    return _reorder(items, jittered, np.argsort(keys, axis=1, kind="stable"))


def drop_events(
    items: np.ndarray, timestamps: np.ndarray, p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Event dropout: remove each real event except a row's last with probability p.

    Kept events keep their order, items and times and are moved right (left padding grows);
    the most recent event always stays, so a non-empty row never empties (an empty row stays
    empty). ``p=0`` returns the input; ``p=1`` keeps only the last event.
    """
    real = _real_events(items, timestamps)
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    keep = real & (rng.random(real.shape) >= p)
    keep[:, -1] = real[:, -1]  # the last column holds each non-empty row's last event
    order = np.argsort(keep, axis=1, kind="stable")  # dropped and padding first, in order
    kept = np.take_along_axis(keep, order, axis=1)
    moved_items, moved_times = _reorder(items, timestamps, order)
    return np.where(kept, moved_items, 0), np.where(kept, moved_times, 0)
