"""The vector field ``f(h, t)`` that moves a user's hidden state between events.

``f`` is a two-layer MLP on ``[h, time features]``, where the time features are the elapsed
time inside the current gap and a per-row context (the absolute time of the previous event).
Lipschitz control (in ``h``):

* ``spectral``: each weight matrix is divided by its exact largest singular value (computed once
  per model call, not per step) and the activation is tanh (1-Lipschitz), so ``f`` is at most
  ``L``-Lipschitz in ``h`` with ``L = lipschitz_constant``.
* ``bounded``: ``f = L * tanh(MLP)``: every coordinate of the drift per unit time is at most ``L``.
* ``none``: a plain MLP.

:func:`measured_lipschitz` reports the constant of a (trained) field from its Jacobians.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LIPSCHITZ_MODES = ("spectral", "bounded", "none")
NUM_TIME_FEATURES = 2  # elapsed time in the gap, absolute time of the gap's start


@dataclass(frozen=True)
class FieldWeights:
    """The field's effective weights for one model call (already normalised)."""

    w_in: torch.Tensor  # (width, hidden + NUM_TIME_FEATURES)
    b_in: torch.Tensor  # (width,)
    w_out: torch.Tensor  # (hidden, width)
    b_out: torch.Tensor  # (hidden,)
    mode: str
    constant: float


def apply_field(
    weights: FieldWeights, h: torch.Tensor, elapsed: torch.Tensor, context: torch.Tensor
) -> torch.Tensor:
    """Evaluate ``f``: h (B, d), elapsed (B,), context (B,) -> drift (B, d)."""
    features = torch.cat([h, elapsed[:, None], context[:, None]], dim=1)  # (B, d + 2)
    hidden = torch.tanh(nn.functional.linear(features, weights.w_in, weights.b_in))
    out = nn.functional.linear(hidden, weights.w_out, weights.b_out)
    if weights.mode == "spectral":
        return weights.constant * out
    if weights.mode == "bounded":
        return weights.constant * torch.tanh(out)
    return out


class VectorField(nn.Module):
    """Parameters of ``f``; call :meth:`weights` once per model call, then :func:`apply_field`."""

    def __init__(self, hidden_size: int, width: int, mode: str, constant: float) -> None:
        super().__init__()
        if mode not in LIPSCHITZ_MODES:
            raise ValueError(f"lipschitz must be one of {', '.join(LIPSCHITZ_MODES)}")
        self.mode = mode
        self.constant = float(constant)
        self.inner = nn.Linear(hidden_size + NUM_TIME_FEATURES, width)
        self.outer = nn.Linear(width, hidden_size)
        # Start near the identity flow: a small drift keeps early training stable.
        nn.init.normal_(self.outer.weight, std=0.01)
        nn.init.zeros_(self.outer.bias)

    def weights(self) -> FieldWeights:
        w_in, w_out = self.inner.weight, self.outer.weight
        if self.mode == "spectral":
            # Exact spectral norms; only the h-columns of w_in matter for the constant in h, but
            # normalising the whole matrix is simpler and still a valid (tighter) bound.
            w_in = w_in / torch.linalg.matrix_norm(w_in, ord=2).clamp_min(1.0)
            w_out = w_out / torch.linalg.matrix_norm(w_out, ord=2).clamp_min(1.0)
        return FieldWeights(w_in, self.inner.bias, w_out, self.outer.bias, self.mode, self.constant)

    def forward(
        self, h: torch.Tensor, elapsed: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        return apply_field(self.weights(), h, elapsed, context)


@torch.no_grad()
def lipschitz_upper_bound(field: VectorField) -> float:
    """Product of layer spectral norms (times L, and tanh's slope 1): an upper bound in h."""
    weights = field.weights()
    hidden = weights.w_out.shape[0]
    bound = torch.linalg.matrix_norm(weights.w_in[:, :hidden], ord=2) * torch.linalg.matrix_norm(
        weights.w_out, ord=2
    )
    return float(bound * (field.constant if field.mode != "none" else 1.0))


def measured_lipschitz(
    field: VectorField,
    states: torch.Tensor,
    elapsed: torch.Tensor | None = None,
    context: torch.Tensor | None = None,
) -> float:
    """Largest spectral norm of the Jacobian ``df/dh`` over the given states (B, d).

    A lower bound of the true constant, measured rather than assumed; with
    :func:`lipschitz_upper_bound` it brackets the field's Lipschitz constant.
    """
    states = states.detach()
    count = states.shape[0]
    elapsed = torch.zeros(count) if elapsed is None else elapsed
    context = torch.zeros(count) if context is None else context
    weights = field.weights()
    worst = 0.0
    for row in range(count):

        def single(h: torch.Tensor, row: int = row) -> torch.Tensor:
            return apply_field(weights, h[None], elapsed[row : row + 1], context[row : row + 1])[0]

        jacobian = torch.autograd.functional.jacobian(single, states[row])
        worst = max(worst, float(torch.linalg.matrix_norm(jacobian, ord=2)))
    return worst
