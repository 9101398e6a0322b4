"""Count-based baselines, fitted on the training events only and scored like any model.

* ``pop``: items ranked by how often they occur in training.
* ``last_item``: first-order transitions: items ranked by how often they followed the user's
  last item in training, popularity breaking ties (a small weight that never outranks a
  transition count).

Both are built from :class:`TrainingCounts`, which a run directory keeps (``serving.npz``), so
a count baseline answers requests without its training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch

from deepm3.data.prepare import Prepared
from deepm3.data.sequences import Batch, flat_ranges, training_item_counts


@dataclass(frozen=True)
class TrainingCounts:
    """What the count baselines are fitted on, counted over the training events."""

    items: np.ndarray  # (num_items + 1,) int64 occurrences of each item (0: padding)
    transitions: np.ndarray  # (P, 3) int64 (previous item, next item, count), one row per pair

    @property
    def num_items(self) -> int:
        return len(self.items) - 1


def training_counts(data: Prepared) -> TrainingCounts:
    """Item occurrences and consecutive-pair counts inside each user's training prefix."""
    train_len = data.split.train_len
    rows = flat_ranges(data.events.offsets[: len(train_len)], train_len)
    items = data.events.items[rows]
    # Consecutive pairs inside one user's training prefix (not across users).
    user_of = np.repeat(np.arange(len(train_len)), train_len)
    same_user = user_of[1:] == user_of[:-1]
    size = data.num_items + 1
    pairs = items[:-1][same_user] * size + items[1:][same_user]
    codes, counts = np.unique(pairs, return_counts=True)
    transitions = np.stack([codes // size, codes % size, counts], axis=1).astype(np.int64)
    return TrainingCounts(training_item_counts(data).astype(np.int64), transitions.reshape(-1, 3))


class Popularity:
    """Scores (B, num_items + 1) = training counts, the same for every user."""

    reads_transitions = False

    def __init__(self, counts: TrainingCounts) -> None:
        self.scores = torch.from_numpy(counts.items.astype(np.float32))

    def __call__(self, batch: Batch) -> torch.Tensor:
        scores = self.scores.to(batch.items.device)
        return scores.expand(batch.items.shape[0], -1)


class LastItem:
    """Scores (B, num_items + 1) = transition counts from the last history item."""

    reads_transitions = True

    def __init__(self, counts: TrainingCounts) -> None:
        size = counts.num_items + 1
        previous, following, number = counts.transitions.T
        self.transitions = scipy.sparse.csr_matrix(
            (number.astype(np.float32), (previous, following)), shape=(size, size)
        )
        popularity = counts.items.astype(np.float32)
        self.tie_break = torch.from_numpy(popularity / (popularity.max() + 1.0))

    def __call__(self, batch: Batch) -> torch.Tensor:
        last = batch.items[:, -1].cpu().numpy()
        counts = torch.from_numpy(self.transitions[last].toarray())
        return (counts + self.tie_break).to(batch.items.device)
