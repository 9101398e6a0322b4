"""Item scores from the run's network: a batch of histories, or cached states, -> (B, N + 1).

A recommendation starts from the state right after a user's last event
(:func:`~deepm3.models.contract.states_at_events`). A model that ``evolves_to_query_time`` (the
model contract's capability: DeepM3 with a flow) then evolves that state to the query time
(:func:`evolve_to`), exactly what ``predict_at=target_time`` does with a target's time; other
models score the state as it is. :class:`Scoring` also holds, for a model whose flow is solved
numerically, one twin per fixed-step ODE method (the same weights re-solved: a request's
``solver``; a closed-form flow has none), and computes the states a cache keeps (a replayed
history; new events absorbed one step each).

Count baselines have no network: their own scorer reads the batch, and they have no states.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from deepm3.data.sequences import Batch, gap_features
from deepm3.models.contract import item_scores, states_at_events
from deepm3.ode.solvers import fixed_step_methods
from deepm3.recommend.histories import History, model_inputs
from deepm3.recommend.state import UserState


def evolve_to(
    model: nn.Module, h: torch.Tensor, last: torch.Tensor, query: torch.Tensor
) -> torch.Tensor:
    """States h (B, d) right after events at ``last`` (B,) int64 seconds -> the states at
    ``query`` (B,) int64 seconds where it is later (the model's ``advance``); other rows as
    they are."""
    later = query > last
    gaps = gap_features(torch.where(later, query - last, torch.zeros_like(last)))
    return torch.where(later[:, None], model.advance(h, gaps, last)[0], h)


class Scoring:
    """The run's network (None for a count baseline, scored by ``count_scorer``) as scores,
    ``batch_size`` histories or states per forward, histories padded to ``length`` events (the
    replay window: at most the run's ``max_len``)."""

    def __init__(
        self,
        model: nn.Module | None,
        count_scorer: Callable[[Batch], torch.Tensor],
        length: int,
        batch_size: int,
    ) -> None:
        self.model, self.count_scorer = model, count_scorer
        self.length, self.batch_size = length, batch_size
        self.device = next(model.parameters()).device if model is not None else torch.device("cpu")
        self.evolves = model is not None and model.evolves_to_query_time
        # a cached state updated one event at a time (absorb); otherwise a replayed window
        self.absorbs = model is not None and model.absorbs_events
        self.own_solver: str | None = model.solver if self.evolves else None
        # with a flow solved numerically: one model per ODE method, sharing the weights (the
        # run's own first); none for a closed-form flow (own_solver None)
        self.solvers: dict[str, nn.Module] = {}
        if self.own_solver is not None:
            self.solvers[self.own_solver] = model
            for method in fixed_step_methods():
                if method != self.own_solver:
                    self.solvers[method] = model.with_solver(method)

    def _solved_by(self, solver: str | None) -> nn.Module:
        return self.solvers[solver] if solver in self.solvers else self.model

    def _scores(self, h: torch.Tensor) -> torch.Tensor:
        return item_scores(self.model, h)

    @torch.no_grad()
    def histories(self, batch: Batch, at: np.ndarray, solver: str | None) -> torch.Tensor:
        """(B, N + 1) scores of a batch of histories; rows whose ``at`` (B,) int64 is later than
        their last event are evolved to it (models with a flow; 0: no query time)."""
        batch = batch.to(self.device)
        if self.model is None:
            return self.count_scorer(batch).float()
        model = self._solved_by(solver)
        states = states_at_events(
            model, batch.items, batch.timestamps, batch.time_gaps, batch.time_scale
        )
        h = states[:, -1]
        if self.evolves and (at > 0).any():
            query = torch.as_tensor(at, device=self.device)
            h = evolve_to(model, h, batch.timestamps[:, -1], query)
        return self._scores(h)

    @torch.no_grad()
    def states(
        self, h: torch.Tensor, last: list[int], at: list[int], solver: str | None
    ) -> torch.Tensor:
        """(B, N + 1) scores of cached states h (B, d) right after events at ``last`` (B,)
        seconds, evolved to ``at`` (B,) seconds where it is later."""
        model = self._solved_by(solver)
        h = h.to(self.device)
        last_times = torch.tensor(last, device=self.device)
        query = torch.tensor(at, device=self.device)
        if (query > last_times).any():
            h = evolve_to(model, h, last_times, query)
        return self._scores(h)

    def many_histories(
        self, histories: Sequence[History], solver: str | None
    ) -> tuple[list[torch.Tensor], list[float]]:
        """Scores (N + 1,) per history, in batches of ``batch_size``, and the seconds per
        history each batch took (what solver=auto budgets with)."""
        out, seconds = [], []
        for start in range(0, len(histories), self.batch_size):
            chunk = histories[start : start + self.batch_size]
            batch, at = model_inputs(chunk, self.length)
            started = time.perf_counter()
            out.extend(self.histories(batch, at, solver).unbind(0))
            seconds.append((time.perf_counter() - started) / len(chunk))
        return out, seconds

    def many_states(
        self, entries: Sequence[UserState], at: Sequence[int], solver: str | None
    ) -> list[torch.Tensor]:
        """Scores (N + 1,) per cached entry (a model with a flow), evolved to its ``at``
        (seconds; 0 or the last event's time: not evolved), in batches of ``batch_size``."""
        out = []
        for start in range(0, len(entries), self.batch_size):
            chunk = entries[start : start + self.batch_size]
            h = torch.stack([entry.state for entry in chunk])
            last = [entry.last_time for entry in chunk]
            out.extend(self.states(h, last, at[start : start + self.batch_size], solver).unbind(0))
        return out

    @torch.no_grad()
    def replayed_states(self, histories: Sequence[History]) -> torch.Tensor:
        """(B, d) on the CPU: the state right after the last event of each history (a replay
        of its window), ``batch_size`` histories per forward."""
        out = []
        for start in range(0, len(histories), self.batch_size):
            chunk = histories[start : start + self.batch_size]
            batch = model_inputs(chunk, self.length)[0].to(self.device)
            states = states_at_events(
                self.model, batch.items, batch.timestamps, batch.time_gaps, batch.time_scale
            )
            out.append(states[:, -1].cpu())
        return torch.cat(out)  # a copy: its rows do not keep the (B, T, d) states alive

    @torch.no_grad()
    def absorbed_state(
        self, h: torch.Tensor, last: int, items: np.ndarray, times: np.ndarray
    ) -> torch.Tensor:
        """(d,) the state h (d,) right after an event at ``last`` seconds, after absorbing
        events (items, times (n,) int64) one step each, without replaying the history."""
        h = h[None].to(self.device)
        for item, stamp in zip(items.tolist(), times.tolist(), strict=True):
            previous = torch.tensor([last], device=self.device)
            gap = gap_features(torch.tensor([stamp], device=self.device) - previous)
            item_tensor = torch.tensor([item], device=self.device)
            h, last = self.model.absorb(h, item_tensor, gap, previous), stamp
        return h[0].cpu()
