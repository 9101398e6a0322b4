"""Count-based baselines, fitted on the training events only and scored like any model.

* ``pop``: items ranked by how often they occur in training.
* ``last_item``: first-order transitions: items ranked by how often they followed the user's
  last item in training, popularity breaking ties (a small weight that never outranks a
  transition count).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch

from deepm3.data.prepare import Prepared
from deepm3.data.sequences import Batch, flat_ranges, training_item_counts


class Popularity:
    """Scores (B, num_items + 1) = training counts, the same for every user."""

    def __init__(self, data: Prepared) -> None:
        self.scores = torch.from_numpy(training_item_counts(data).astype(np.float32))

    def __call__(self, batch: Batch) -> torch.Tensor:
        scores = self.scores.to(batch.items.device)
        return scores.expand(batch.items.shape[0], -1)


class LastItem:
    """Scores (B, num_items + 1) = transition counts from the last history item."""

    def __init__(self, data: Prepared) -> None:
        train_len = data.split.train_len
        rows = flat_ranges(data.events.offsets[: len(train_len)], train_len)
        items = data.events.items[rows]
        # Consecutive pairs inside one user's training prefix (not across users).
        user_of = np.repeat(np.arange(len(train_len)), train_len)
        same_user = user_of[1:] == user_of[:-1]
        size = data.num_items + 1
        self.transitions = scipy.sparse.csr_matrix(
            (
                np.ones(int(same_user.sum()), dtype=np.float32),
                (items[:-1][same_user], items[1:][same_user]),
            ),
            shape=(size, size),
        )
        popularity = training_item_counts(data).astype(np.float32)
        self.tie_break = torch.from_numpy(popularity / (popularity.max() + 1.0))

    def __call__(self, batch: Batch) -> torch.Tensor:
        last = batch.items[:, -1].cpu().numpy()
        counts = torch.from_numpy(self.transitions[last].toarray())
        return (counts + self.tie_break).to(batch.items.device)
