"""What every trainable model promises, and the pieces they share.

A model maps a batch of left-padded sequences to one hidden state per position::

    forward(items (B, T) int64, timestamps (B, T) int64, time_gaps (B, T) float32,
            next_gaps (B, T) float32 | None, time_scale (B,) int64 | None)
        -> (states (B, T, d), aux: dict)

``states[:, t]`` may only depend on events ``<= t`` (causality) and never on padding. Item scores
are dot products of the model's ``readout(states)`` with its tied item embeddings
(:func:`item_scores`; the training loss scores the same ``readout(states)``), so losses and
evaluation never branch on the model type. The readout is the identity for models whose
states are scored as they are; a recurrent model may normalise them there, after its
recurrence (:mod:`deepm3.models.readout`). ``aux`` carries extras such as the number of
function evaluations (``nfe``) of an ODE solver. :func:`run_model` is the one place that unpacks
a :class:`~deepm3.data.sequences.Batch` into these arguments, and :func:`states_at_events` the
one place that calls a model without ``next_gaps`` (the states right after each event).

Every model declares two capabilities. ``evolves_to_query_time``: True for a model with a
learned flow in time (DeepM3 with ``ode=ode`` or ``ode=decay``, timeattn with ``flow=decay``),
which then also offers :class:`EvolvingModel`'s methods (evolve a state to a later time, and,
for a flow solved numerically, re-solve with another ODE method; ``solver`` None: a closed-form
flow, nothing to re-solve). ``absorbs_events``: True for a model whose state right after an
event summarises the past, so that :meth:`EvolvingModel.absorb` takes one new event in one step
(DeepM3 with a flow); False for a model whose output reads every event of its window (attention):
a server keeps the window and replays it. Code that uses a trained model (recommend, export,
serve) asks these, never the model's type or its private parts.
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
    # True: a learned flow in time, and the methods of EvolvingModel; a class attribute or a
    # property (DeepM3 answers from its options: ode=none has no flow)
    evolves_to_query_time: bool
    # True: absorb() updates a cached state with one new event; False: replay the window
    absorbs_events: bool

    def __call__(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]: ...

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """States (..., d) -> the vectors scored against the item table (..., d)."""
        ...


class EvolvingModel(SequenceModel, Protocol):
    """What a model with ``evolves_to_query_time`` True offers besides the contract."""

    # the ODE method it solves its flow with (a name in deepm3.ode.solvers.METHODS); None for a
    # flow in closed form (exact: no method to choose)
    solver: str | None

    def with_solver(self, method: str) -> EvolvingModel:
        """A twin sharing every weight that solves the same flow with ``method`` (a model whose
        ``solver`` is a method only)."""
        ...

    def advance(
        self, h: torch.Tensor, gaps: torch.Tensor, last_times: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """States h (B, d) right after events at ``last_times`` (B,) int64, evolved over
        transformed gaps (B,) float -> (states (B, d), function evaluations)."""
        ...

    def absorb(
        self,
        h: torch.Tensor,
        items: torch.Tensor,
        gaps: torch.Tensor,
        previous_times: torch.Tensor,
    ) -> torch.Tensor:
        """One new event per row (items (B,) int64, transformed gaps (B,) since the previous
        event at ``previous_times`` (B,) int64) -> states (B, d) right after it; only a model
        that ``absorbs_events``."""
        ...


def run_model(model: SequenceModel, batch: Batch) -> tuple[torch.Tensor, dict]:
    """Call ``model`` on every input tensor of ``batch`` -> (states (B, T, d), aux)."""
    return model(batch.items, batch.timestamps, batch.time_gaps, batch.next_gaps, batch.time_scale)


def states_at_events(
    model: SequenceModel,
    items: torch.Tensor,
    timestamps: torch.Tensor,
    time_gaps: torch.Tensor,
    time_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """items, timestamps (B, T) int64, time_gaps (B, T) float, time_scale (B,) int64 -> states
    (B, T, d) right after each event: no ``next_gaps``, so a model that predicts at the target's
    time does not evolve toward one (a recommendation evolves to its own query time)."""
    states, _ = model(items, timestamps, time_gaps, None, time_scale)
    return states


def item_scores(model: SequenceModel, states: torch.Tensor) -> torch.Tensor:
    """Scores of every item: the model's states (..., d) -> (..., num_items + 1),
    ``model.readout(states)`` against the item table, in the table's precision (float32 for
    bfloat16 states under autocast); column 0 is padding."""
    table = model.item_embedding.weight
    return model.readout(states.to(table.dtype)) @ table.T


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
