"""How irregular each user's timing is, and groups of users by that irregularity.

The measure is the coefficient of variation (CV) of the gaps between a user's consecutive
events: 0 for a metronome, about 1 for a Poisson process, above 1 for bursts separated by long
pauses. It reads the evaluation histories (left-padded rows that end before the target), so
the target's own time never enters.
"""

from __future__ import annotations

import numpy as np


def coefficient_of_variation(timestamps: np.ndarray, items: np.ndarray) -> np.ndarray:
    """CV (population std / mean) of each row's gaps between consecutive real events.

    timestamps, items: (N, T) int64, left-padded (item 0 = padding); a gap is counted only
    between two adjacent real events, so padding never contributes. Returns (N,) float64.
    The std uses ddof=0 (the gaps are the whole history, not a sample of it). Rows with fewer
    than 2 gaps (fewer than 3 events) or a mean gap of 0 (every event at one time) get NaN.
    Equal timestamps give gaps of 0, which count. Raises ValueError for a negative gap (a
    history out of time order).
    """
    timestamps, items = np.asarray(timestamps), np.asarray(items)
    if timestamps.ndim != 2 or timestamps.shape != items.shape:
        raise ValueError(f"timestamps and items must be (N, T), got {timestamps.shape}")
    gaps = np.diff(timestamps, axis=1).astype(np.float64)  # (N, T - 1), int64 diff is exact
    counted = (items[:, 1:] > 0) & (items[:, :-1] > 0)  # (N, T - 1)
    if (gaps[counted] < 0).any():
        raise ValueError("timestamps decrease inside a history")
    count = counted.sum(axis=1)  # (N,)
    gaps = np.where(counted, gaps, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = gaps.sum(axis=1) / count
        variance = (np.where(counted, gaps - mean[:, None], 0.0) ** 2).sum(axis=1) / count
        cv = np.sqrt(variance) / mean
    cv[(count < 2) | ~(mean > 0)] = np.nan
    return cv


def quantile_groups(values: np.ndarray, count: int) -> np.ndarray:
    """Group labels 0..count-1 by quantiles of ``values`` (count=3: tertiles, 5: quintiles).

    values: (N,) float. Returns (N,) int64; NaN gets -1 and takes no part. With n finite
    values, a value v gets ``floor(count * below / n)`` where ``below`` is the number of finite
    values strictly smaller than v. Without ties group j holds the sorted ranks r (0-based)
    with ``j * n / count <= r < (j + 1) * n / count``: group sizes differ by at most one.
    Tied values always share a group (the one their smallest rank falls in), so a label depends
    only on the value, never on a row's position; heavy ties can leave a group smaller or empty.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {values.shape}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    finite = ~np.isnan(values)
    ordered = np.sort(values[finite])
    below = np.searchsorted(ordered, values[finite], side="left")  # values strictly smaller
    groups = np.full(len(values), -1, dtype=np.int64)
    groups[finite] = below * count // max(len(ordered), 1)
    return groups
