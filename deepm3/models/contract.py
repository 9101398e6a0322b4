"""What every trainable model promises, and the pieces they share.

A model maps a batch of left-padded sequences to one hidden state per position::

    forward(items (B, T) int64, timestamps (B, T) int64, time_gaps (B, T) float32,
            next_gaps (B, T) float32 | None, time_scale (B,) int64 | None)
        -> (states (B, T, d), aux: dict)

``states[:, t]`` may only depend on events ``<= t`` (causality) and never on padding. Item scores
are dot products with the model's tied item embeddings (:func:`item_scores`), so losses and
evaluation never branch on the model type. ``aux`` carries extras such as the number of
function evaluations (``nfe``) of an ODE solver. :func:`run_model` is the one place that unpacks
a :class:`~deepm3.data.sequences.Batch` into these arguments.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from deepm3.data.sequences import Batch

EPOCH_2000 = 946_684_800  # 2000-01-01 in Unix seconds
SECONDS_PER_DECADE = 10 * 365.25 * 86_400


class SequenceModel(Protocol):
    item_embedding: nn.Embedding

    def __call__(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]: ...


def run_model(model: SequenceModel, batch: Batch) -> tuple[torch.Tensor, dict]:
    """Call ``model`` on every input tensor of ``batch`` -> (states (B, T, d), aux)."""
    return model(batch.items, batch.timestamps, batch.time_gaps, batch.next_gaps, batch.time_scale)


def item_scores(states: torch.Tensor, item_embedding: nn.Embedding) -> torch.Tensor:
    """Scores of every item: states (..., d) -> (..., num_items + 1); column 0 is padding."""
    return states @ item_embedding.weight.T


def real_positions(items: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: True where an event is present (item id > 0)."""
    return items > 0


def positions_from_first_event(items: torch.Tensor, max_positions: int) -> torch.Tensor:
    """(B, T) int64 position of each event counted from the user's first event in the window.

    Independent of how much left padding a row has (padding invariance); padding gets 0.
    """
    real = real_positions(items)
    return ((real.cumsum(dim=1) - 1).clamp(min=0, max=max_positions - 1)) * real


def absolute_time_feature(timestamps: torch.Tensor) -> torch.Tensor:
    """Decades since 2000 as float32 (keeps int64 seconds exact until this point)."""
    return ((timestamps - EPOCH_2000).double() / SECONDS_PER_DECADE).float()


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters split into embedding tables and everything else."""
    embedding = sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        for p in m.parameters(recurse=False)
    )
    total = sum(p.numel() for p in model.parameters())
    return {"embedding": embedding, "other": total - embedding, "total": total}
