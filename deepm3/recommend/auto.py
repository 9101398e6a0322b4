"""``solver=auto``: a recommend-level policy over the ODE methods of a model with a flow.

It answers every request with the cheapest fixed-step method (the fewest drift evaluations per
step in :data:`deepm3.ode.solvers.METHODS`: Euler), then re-solves with the costliest one (RK4)
the requests whose score distribution is most uncertain (normalised entropy above a threshold),
as many as the batch's latency budget allows. The cost of each method per request is a running
mean of what the recommender measured; before RK4 has been measured it is taken as Euler's times
the ratio of their evaluations per step.

Pure functions: the recommender keeps the timings and the settings, this module decides.
"""

from __future__ import annotations

import math

import torch

from deepm3.ode.solvers import METHODS, fixed_step_methods

AUTO = "auto"  # the request's solver name for this policy (not an ODE method)


def _cost(method: str) -> int:
    return METHODS[method].evaluations_per_step


FIRST = min(fixed_step_methods(), key=_cost)  # answers every request
REFINED = max(fixed_step_methods(), key=_cost)  # re-solves the uncertain ones
COST_RATIO = _cost(REFINED) / _cost(FIRST)


def normalised_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(scores) (B, N) over the finite entries, divided by log(count): (B,)
    in [0, 1]; 1 is a uniform distribution (the model cannot tell the candidates apart)."""
    finite = torch.isfinite(scores)
    log_p = torch.log_softmax(scores.masked_fill(~finite, float("-inf")), dim=-1)
    entropy = -(log_p.exp() * log_p.masked_fill(~finite, 0.0)).sum(-1)
    count = finite.sum(-1).clamp(min=2).to(scores.dtype)
    return entropy / count.log()


def running_mean(mean: float, seconds: float) -> float:
    """The next running mean of seconds per request (the first measurement starts it)."""
    return 0.8 * mean + 0.2 * seconds if mean else seconds


def to_refine(
    uncertainty: torch.Tensor,
    threshold: float,
    budget_ms: float,
    seconds_per_request: dict[str, float],
) -> list[int]:
    """Rows of a batch to re-solve with :data:`REFINED`, most uncertain first: those whose
    ``uncertainty`` (R,) is above ``threshold``, as many as ``budget_ms`` allows once the
    :data:`FIRST` pass over all R rows is paid (costs: ``seconds_per_request`` by method)."""
    ranked = torch.argsort(uncertainty, descending=True).tolist()
    chosen = [row for row in ranked if uncertainty[row] > threshold]
    first = seconds_per_request[FIRST]
    refined = seconds_per_request[REFINED] or COST_RATIO * first
    left = budget_ms / 1000 - first * len(uncertainty)
    affordable = math.floor(left / refined) if refined > 0 else len(chosen)
    return chosen[: max(0, affordable)]
