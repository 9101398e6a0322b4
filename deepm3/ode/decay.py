"""A closed-form flow between events (``model.ode=decay``): exponential relaxation.

Over a gap the state obeys the linear ODE ``dh/dt = rate * (c - h)`` (per coordinate), whose
coefficients are read once, at the start of the gap, from the state right after the last event
``h0``, and held fixed over the gap::

    c    = tanh(W_c h0 + b_c)                       (d,)  the equilibrium, inside (-1, 1)^d
    rate = L * sigmoid(W_r h0 + b_r)                (d,)  each in (0, L) (at most L, rounded)

Its exact solution after a gap ``g`` (in the units of ``time_gaps``, ``log1p(hours)``, as the
ODE field's flow reads them) is ``h(g) = c + (h0 - c) * exp(-rate * g)``: no solver, no
solver error, one matrix product per gap. Reading the coefficients from the state (not from
the last event's input) keeps the state a sufficient summary of the past: a cached state
evolves to any query time, and absorbs a new event, with nothing else stored.

The Lipschitz constant is known by construction (``L = model.lipschitz_constant``):

* the field ``f(h) = rate * (c - h)`` has Jacobian ``-diag(rate)`` in ``h``, so it is
  ``L``-Lipschitz (``max rate < L``), as the spectral ODE field is;
* the flow map over a gap ``g``, ``h -> c + (h - c) * exp(-rate * g)``, has Jacobian
  ``diag(exp(-rate * g))``: ``exp(-L g) |h - h'| <= |phi(h) - phi(h')| <= |h - h'|``. It never
  expands distances, and it is invertible;
* a convex combination of ``h0`` and ``c``: a state inside the GRU's box ``(-1, 1)^d`` stays
  inside it, whatever the gap.

Like the ODE field's constant, this bounds the flow in the state it moves, not the map from
``h0`` through the coefficients (which, as the GRU cell, nothing constrains).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

INITIAL_RATE = 0.1  # a share of L: a slow start, near the identity flow, as the ODE field's


@dataclass(frozen=True)
class DecayWeights:
    """The coefficient layer for one model call: ``[W_c; W_r]`` (2d, d), ``[b_c; b_r]`` (2d,)
    and the rate bound ``L``."""

    weight: torch.Tensor
    bias: torch.Tensor
    max_rate: float


def decay_coefficients(weights: DecayWeights, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """States h (B, d) right after an event -> equilibrium c (B, d) in (-1, 1) and rate (B, d)
    in (0, L) (a saturated sigmoid rounds to L, never above), fixed over the gap that follows."""
    target, rate = nn.functional.linear(h, weights.weight, weights.bias).chunk(2, dim=-1)
    return torch.tanh(target), weights.max_rate * torch.sigmoid(rate)


def relax(
    h: torch.Tensor, target: torch.Tensor, rate: torch.Tensor, gaps: torch.Tensor
) -> torch.Tensor:
    """The exact solution of ``dh/dt = rate * (target - h)`` after gaps (B,): h, target, rate
    (B, d) -> (B, d). A zero gap returns h exactly, a gap long enough returns target exactly
    (``lerp`` is exact at both ends)."""
    retention = torch.exp(rate * -gaps[:, None])  # (B, d) in (0, 1]: what is left of h - target
    return torch.lerp(target, h, retention)


def decay_flow(weights: DecayWeights, h: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    """Evolve states h (B, d) right after an event over gaps (B,): coefficients from h, then
    :func:`relax` -> (B, d)."""
    target, rate = decay_coefficients(weights, h)
    return relax(h, target, rate, gaps)


class DecayFlow(nn.Module):
    """Parameters of the closed-form flow; call :meth:`weights` once per model call, then
    :func:`decay_flow`."""

    def __init__(self, hidden_size: int, max_rate: float) -> None:
        super().__init__()
        self.max_rate = float(max_rate)
        self.coefficients = nn.Linear(hidden_size, 2 * hidden_size)
        with torch.no_grad():  # every rate starts at INITIAL_RATE * L
            self.coefficients.bias[hidden_size:] = math.log(INITIAL_RATE / (1 - INITIAL_RATE))

    def weights(self) -> DecayWeights:
        return DecayWeights(self.coefficients.weight, self.coefficients.bias, self.max_rate)

    def forward(self, h: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
        return decay_flow(self.weights(), h, gaps)
