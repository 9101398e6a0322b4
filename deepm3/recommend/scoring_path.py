"""What ``deepm3 export`` exports, and how its parity with the eager model is measured.

:class:`ScoringPath` is the run's scoring path as one module of raw tensors
(:data:`INPUTS` -> scores (B, N + 1)), computing gaps and the flow to the query time itself, so
an exported file runs without this package; :func:`parity` compares any exported form of it
with the scores the recommender ranks, on real inputs (:func:`example_inputs`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from deepm3.data.sequences import Batch, gap_features
from deepm3.errors import ConfigError
from deepm3.models import MODELS
from deepm3.models.contract import item_scores, states_at_events
from deepm3.ode.field import FrozenField
from deepm3.ode.solvers import fixed_step_methods, is_adaptive
from deepm3.recommend.recommender import Recommender
from deepm3.recommend.scoring import evolve_to

INPUTS = ("items", "timestamps", "time_scale", "query_times")
PARITY_BATCHES = (1, 64)
PARITY_LIMIT = 1e-5
Exported = Callable[..., np.ndarray]  # numpy inputs in INPUTS order -> scores (B, N + 1)


def seconds_since_previous(items: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
    """(B, T) int64 seconds since the previous real event; 0 for a first event and padding
    (the data pipeline's gaps, in torch so that the export computes them itself)."""
    gaps = torch.zeros_like(timestamps)
    previous_real = items[:, :-1] > 0
    gaps[:, 1:] = (timestamps[:, 1:] - timestamps[:, :-1]) * previous_real
    return gaps


class ScoringPath(nn.Module):
    """items, timestamps (B, T) int64, time_scale, query_times (B,) int64 -> scores (B, N + 1):
    the scores :class:`~deepm3.recommend.recommender.Recommender` ranks, for one batch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.flows = model.evolves_to_query_time
        if self.flows and model.solver is not None:  # an ODE field: a copy reading its
            # normalised weights as constants (a closed-form flow has no normalisation to freeze)
            model = copy.copy(model)
            model._modules = dict(model._modules)
            model.field = FrozenField(model.field)
        self.model = model

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_scale: torch.Tensor,
        query_times: torch.Tensor,
    ) -> torch.Tensor:
        time_gaps = gap_features(seconds_since_previous(items, timestamps))
        h = states_at_events(self.model, items, timestamps, time_gaps, time_scale)[:, -1]
        if self.flows:
            h = evolve_to(self.model, h, timestamps[:, -1], query_times)
        return item_scores(self.model, h)


def example_inputs(recommender: Recommender, batch: int) -> tuple[Batch, torch.Tensor]:
    """Real inputs: the first ``batch`` test histories (repeated when there are fewer; the run
    directory keeps the first of them, :mod:`deepm3.train.serving`), and query times (B,) int64,
    every other row 3 days after its last event."""
    table = recommender.serving.examples
    if not len(table):
        raise ConfigError("the run's data has no test users to take example inputs from")
    data = table.batch(np.arange(batch) % len(table))
    last = data.timestamps[:, -1]
    return data, torch.where(torch.arange(batch) % 2 == 0, last + 3 * 86_400, last)


def tensors(data: Batch, query: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return data.items, data.timestamps, data.time_scale, query


def scoring_path(recommender: Recommender, solver: str | None = None) -> ScoringPath:
    """The run's model (re-solved with ``solver``) wrapped for export, in eval mode on the CPU;
    refuses what cannot be exported."""
    model = recommender.solvers.get(solver, recommender.model)
    if model is None:
        raise ConfigError(
            f"{recommender.name} is a count baseline with no network to export; "
            f"export a trained model ({', '.join(MODELS)})"
        )
    if model.evolves_to_query_time and model.solver is not None and is_adaptive(model.solver):
        fixed = fixed_step_methods()
        raise ConfigError(
            f"solver {model.solver} chooses its steps from the data and cannot be exported; "
            f"export with solver={' or '.join(fixed)} (the same weights: --solver {fixed[0]})"
        )
    return ScoringPath(model.to("cpu")).eval()


def parity(run: Exported, recommender: Recommender, solver: str | None) -> dict[str, float]:
    """Max abs difference between an exported scoring path ``run`` (numpy inputs in
    :data:`INPUTS` order -> scores) and the recommender's own eager scores
    (:meth:`~deepm3.recommend.scoring.Scoring.histories`, what ``deepm3 recommend`` ranks), per
    batch size."""
    out = {}
    for batch in PARITY_BATCHES:
        data, query = example_inputs(recommender, batch)
        later = (query > data.timestamps[:, -1]).numpy()
        at = np.where(later, query.numpy(), 0)
        eager = recommender.scoring.histories(data, at, solver).numpy()
        exported = run(*(x.numpy() for x in tensors(data, query)))
        out[f"B={batch}"] = float(np.abs(exported - eager).max())
    return out
