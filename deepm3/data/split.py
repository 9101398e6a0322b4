"""Train/validation/test splits, as positions inside each user's sorted sequence.

A split is three arrays of shape (num_users + 1,):

* ``train_len[u]``: the first ``train_len[u]`` events of user ``u`` are training data;
* ``valid_pos[u]`` / ``test_pos[u]``: the position of the validation / test target, or -1.
  The history for a target at position ``p`` is every event before ``p``.

Leave-one-out (default): the last event is the test target, the second last the validation
target; users with fewer than 3 events keep all their events for training and are not evaluated.

Temporal (global): two cut times split the overall time range by ``valid_share`` and
``test_share``. Training uses events before the first cut; a user's validation target is their
first event in the validation window and their test target their first event after the second
cut; the history always holds every earlier event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepm3.config import SPLITS, check_choice
from deepm3.data.preprocess import Events
from deepm3.errors import DataError


@dataclass(frozen=True)
class Split:
    train_len: np.ndarray
    valid_pos: np.ndarray
    test_pos: np.ndarray


def leave_one_out(events: Events) -> Split:
    lengths = events.lengths()  # (num_users + 1,), the padding user first
    evaluated = lengths >= 3
    train_len = np.where(evaluated, lengths - 2, lengths)
    valid_pos = np.where(evaluated, lengths - 2, -1)
    test_pos = np.where(evaluated, lengths - 1, -1)
    return Split(train_len.astype(np.int64), valid_pos.astype(np.int64), test_pos.astype(np.int64))


def temporal(events: Events, valid_share: float, test_share: float) -> Split:
    if not (0 < valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise DataError("temporal split needs 0 < temporal_valid, temporal_test and their sum < 1")
    first, last = int(events.timestamps.min()), int(events.timestamps.max())
    span = last - first
    valid_cut = last - int(span * (valid_share + test_share))
    test_cut = last - int(span * test_share)
    num_users = events.num_users
    train_len = np.zeros(num_users + 1, dtype=np.int64)
    valid_pos = np.full(num_users + 1, -1, dtype=np.int64)
    test_pos = np.full(num_users + 1, -1, dtype=np.int64)
    for user in range(1, num_users + 1):
        times = events.timestamps[events.offsets[user] : events.offsets[user + 1]]
        train_len[user] = np.searchsorted(times, valid_cut, side="left")
        first_valid = train_len[user]
        if first_valid < len(times) and times[first_valid] < test_cut and first_valid > 0:
            valid_pos[user] = first_valid
        first_test = np.searchsorted(times, test_cut, side="left")
        if first_test < len(times) and first_test > 0:
            test_pos[user] = first_test
    return Split(train_len, valid_pos, test_pos)


def make_split(events: Events, kind: str, valid_share: float, test_share: float) -> Split:
    check_choice("split", kind, SPLITS)
    if kind == "temporal":
        return temporal(events, valid_share, test_share)
    return leave_one_out(events)


def check_evaluable(events: Events, split: Split, kind: str) -> None:
    """Refuse a split that leaves no user a validation or no user a test target: training
    selects on the one and reports the other, so it could only fail later, and for a reason
    that is hard to see from there. The message gives the counts that explain why."""
    has_valid = int((split.valid_pos[1:] >= 0).sum())
    has_test = int((split.test_pos[1:] >= 0).sum())
    if has_valid and has_test:
        return
    size = f"{events.num_users:,} users and {len(events.items):,} events after filtering"
    if kind != "temporal":
        long_enough = int((events.lengths()[1:] >= 3).sum())
        raise DataError(
            f"no user can be evaluated: {size}, {long_enough} users with >= 3 events "
            "(leave-one-out needs a training, a validation and a test event per user)"
        )
    first, last = int(events.timestamps.min()), int(events.timestamps.max())
    times = "all share one timestamp" if first == last else f"span {first}..{last} s"
    raise DataError(
        f"no user can be evaluated: {size} ({times}); the temporal split gives {has_valid} "
        f"users a validation event and {has_test} a test event (each after an earlier event)"
    )
