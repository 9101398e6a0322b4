"""From raw interactions to sorted, re-indexed, filtered event sequences.

Rules, applied in this order (each counted in the statistics):

1. ``min_rating``: keep events whose rating is at least this (implicit feedback).
2. Stable sort by ``(user, timestamp, tie key)``. With ``tie_order=file`` (the default) the tie
   key is the original row, so events that share a timestamp keep the order in which the file
   lists them; with ``tie_order=shuffle`` it is a seeded random permutation, so no model can
   read the file's order of tied events. Nothing later reorders events.
3. ``dedup``: a repeated ``(user, item)`` pair keeps its ``first`` or ``last`` occurrence, or
   all of them (``none``, the default: re-consumption is real behaviour).
4. k-core: drop users and items with fewer than ``k`` events, ``iterative`` until stable or
   ``single`` pass (counts taken once, as in the SASRec preprocessing script).
5. Re-index users and items from 1 in order of first appearance in the sorted table; 0 is padding.
Timestamps stay int64 seconds throughout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepm3.config import DEDUP_RULES, KCORE_MODES, TIE_ORDERS, check_choice
from deepm3.errors import DataError


@dataclass(frozen=True)
class Events:
    """Sorted events grouped by user. Users are 1..num_users, items 1..num_items.

    items, timestamps: (E,) int64; offsets: (num_users + 2,) int64, events of user ``u`` are
    ``offsets[u]:offsets[u + 1]`` (user 0 is empty padding).
    """

    items: np.ndarray
    timestamps: np.ndarray
    offsets: np.ndarray
    user_ids: np.ndarray  # (num_users + 1,) raw ids (object array of str), index 0 = ""
    item_ids: np.ndarray  # (num_items + 1,) raw ids (object array of str), index 0 = ""

    @property
    def num_users(self) -> int:
        return len(self.user_ids) - 1

    @property
    def num_items(self) -> int:
        return len(self.item_ids) - 1

    def lengths(self) -> np.ndarray:
        """(num_users + 1,) events per user, 0 for the padding user."""
        return np.diff(self.offsets)


def counts(frame: pd.DataFrame) -> dict[str, int]:
    return {
        "users": int(frame["user"].nunique()),
        "items": int(frame["item"].nunique()),
        "interactions": int(len(frame)),
    }


def stable_sort(frame: pd.DataFrame, tie_order: str = "file", tie_seed: int = 0) -> pd.DataFrame:
    """Sort by (user in order of first appearance, timestamp, tie key); see the module doc."""
    check_choice("tie_order", tie_order, TIE_ORDERS)
    user_codes, _ = pd.factorize(frame["user"], sort=False)
    ties = np.arange(len(frame))
    if tie_order == "shuffle":
        ties = np.random.default_rng(tie_seed).permutation(len(frame))
    order = np.lexsort((ties, frame["timestamp"].to_numpy(), user_codes))
    return frame.iloc[order].reset_index(drop=True)


def k_core(frame: pd.DataFrame, k: int, mode: str) -> pd.DataFrame:
    """Keep users and items with at least ``k`` events (``iterative`` or ``single`` pass)."""
    check_choice("kcore_mode", mode, KCORE_MODES)
    if k <= 1:
        return frame
    while True:
        user_counts = frame["user"].map(frame["user"].value_counts())
        item_counts = frame["item"].map(frame["item"].value_counts())
        keep = ((user_counts >= k) & (item_counts >= k)).to_numpy()
        if keep.all():
            return frame
        frame = frame[keep]
        if mode == "single":
            return frame


def preprocess(
    frame: pd.DataFrame,
    min_rating: float | None = None,
    dedup: str = "none",
    kcore: int = 0,
    kcore_mode: str = "iterative",
    tie_order: str = "file",
    tie_seed: int = 0,
) -> tuple[Events, dict[str, object]]:
    """Apply the rules in the module docstring; return events and counts of each step."""
    check_choice("dedup", dedup, DEDUP_RULES)
    stats: dict[str, object] = {"raw": counts(frame)}
    if min_rating is not None:
        if frame["rating"].isna().all():
            raise DataError("min_rating is set but this data set has no ratings")
        before = len(frame)
        frame = frame[frame["rating"] >= min_rating]
        stats["dropped_by_min_rating"] = before - len(frame)
    frame = stable_sort(frame, tie_order, tie_seed)
    duplicated = frame.duplicated(["user", "item"], keep=False if dedup == "none" else dedup)
    stats["duplicate_events"] = int(frame.duplicated(["user", "item"]).sum())
    if dedup != "none":
        frame = frame[~duplicated.to_numpy()]
        stats["dropped_as_duplicates"] = int(duplicated.sum())
    before = len(frame)
    frame = k_core(frame, kcore, kcore_mode)
    stats["dropped_by_kcore"] = before - len(frame)
    if len(frame) == 0:
        raise DataError("no interactions left after filtering; lower kcore or min_rating")
    return _reindex(frame.reset_index(drop=True)), stats


def _reindex(frame: pd.DataFrame) -> Events:
    user_codes, user_ids = pd.factorize(frame["user"], sort=False)
    item_codes, item_ids = pd.factorize(frame["item"], sort=False)
    lengths = np.bincount(user_codes, minlength=len(user_ids))
    offsets = np.zeros(len(user_ids) + 2, dtype=np.int64)
    offsets[2:] = np.cumsum(lengths)
    return Events(
        items=(item_codes + 1).astype(np.int64),
        timestamps=frame["timestamp"].to_numpy(dtype=np.int64),
        offsets=offsets,
        user_ids=id_array(user_ids),
        item_ids=id_array(item_ids),
    )


def id_array(ids: np.ndarray | pd.Index | list[str]) -> np.ndarray:
    """(len(ids) + 1,) object array of ``str``: "" (padding), then ``ids``. Not a fixed-width
    ``<U`` array: there every entry takes 4 bytes per character of the longest id, so one 1 MB
    id among 1,500 would take 6 GB."""
    array = np.empty(len(ids) + 1, dtype=object)
    array[0] = ""
    array[1:] = [str(value) for value in ids]
    return array


def zero_gap_share(events: Events) -> float:
    """Share of consecutive same-user event pairs with identical timestamps."""
    gaps = np.diff(events.timestamps)
    same_user = np.ones(len(gaps), dtype=bool)
    starts = events.offsets[1:-1]
    same_user[starts[(starts > 0) & (starts < len(events.timestamps))] - 1] = False
    if not same_user.any():
        return 0.0
    return float((gaps[same_user] == 0).mean())
