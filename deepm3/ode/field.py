"""The vector field ``f(h, t)`` that moves a user's hidden state between events.

``f`` is a two-layer MLP on ``[h, time features]``, where the time features are the elapsed
time inside the current gap and a per-row context (the absolute time of the previous event).
The Lipschitz modes (:func:`lipschitz_output` applies the output transform of each):

* ``spectral``: each weight matrix is divided by its exact largest singular value (computed once
  per model call, not per step) and the activation is tanh (1-Lipschitz), so ``f = L * MLP`` is
  at most ``L``-Lipschitz in ``h`` with ``L = lipschitz_constant``.
* ``bounded``: ``f = L * tanh(MLP)`` bounds the drift's *size*, not its Lipschitz constant:
  every coordinate of ``f`` lies in ``(-L, L)``, so a state moves at most ``L`` per unit time in
  each coordinate, whatever the weights. The slope in ``h`` is at most ``L`` times the MLP's,
  which nothing constrains: large weights give an arbitrarily steep (if bounded) field.
* ``none``: ``f = MLP``, a plain MLP.

:func:`measured_lipschitz` reports the constant of a (trained) field from its Jacobians, at real
inputs (states, elapsed times and contexts taken from data).
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


def first_layer_columns(
    weights: FieldWeights,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``w_in`` split by input, in the order :func:`apply_field` concatenates them:
    h (W, d), elapsed (W,), context (W,); contiguous, so that a fused caller's matrix products
    do not re-copy a strided slice at every evaluation."""
    size = weights.w_out.shape[0]
    w_in = weights.w_in
    return w_in[:, :size].contiguous(), w_in[:, size].contiguous(), w_in[:, size + 1].contiguous()


def lipschitz_output(weights: FieldWeights, out: torch.Tensor) -> torch.Tensor:
    """The mode's output transform of the MLP's output (B, d): spectral ``L * out``, bounded
    ``L * tanh(out)``, none ``out``."""
    if weights.mode == "spectral":
        return weights.constant * out
    if weights.mode == "bounded":
        return weights.constant * torch.tanh(out)
    return out


def field_head(weights: FieldWeights, pre: torch.Tensor) -> torch.Tensor:
    """``f`` from its first layer's pre-activation (B, W): tanh, second layer and the Lipschitz
    output transform -> drift (B, d). Shared by :func:`apply_field` and fused callers."""
    out = torch.addmm(weights.b_out, torch.tanh(pre), weights.w_out.T)
    return lipschitz_output(weights, out)


def apply_field(
    weights: FieldWeights, h: torch.Tensor, elapsed: torch.Tensor | None, context: torch.Tensor
) -> torch.Tensor:
    """Evaluate ``f``: h (B, d), elapsed (B,) (None: 0), context (B,) -> drift (B, d)."""
    elapsed = torch.zeros_like(context) if elapsed is None else elapsed
    features = torch.cat([h, elapsed[:, None], context[:, None]], dim=1)  # (B, d + 2)
    return field_head(weights, nn.functional.linear(features, weights.w_in, weights.b_in))


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
        """The effective weights. Without autograd (inference) the spectral normalisation, two
        exact matrix norms (~0.7 ms each on a CPU at width 128), is computed once and reused
        until a parameter changes in place (an optimiser step, ``load_state_dict``), moves or is
        replaced; under autograd it is always recomputed, so gradients flow through it."""
        tracing = torch.jit.is_tracing() or torch.compiler.is_compiling()  # graphs read params
        if torch.is_grad_enabled() or self.mode != "spectral" or tracing:
            return self._weights()
        params = (self.inner.weight, self.inner.bias, self.outer.weight, self.outer.bias)
        key = tuple((id(p), p.data_ptr(), p._version, p.dtype, p.device) for p in params)
        cached = getattr(self, "_cached_weights", None)
        if cached is None or cached[0] != key:
            cached = (key, self._weights())
            object.__setattr__(self, "_cached_weights", cached)  # not a module attribute
        return cached[1]

    def _weights(self) -> FieldWeights:
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


class FrozenField(nn.Module):
    """A field's effective weights, normalised once and kept as buffers: what an exported graph
    reads (ONNX has no SVD for the spectral norm, and inference never changes the weights)."""

    def __init__(self, field: VectorField) -> None:
        super().__init__()
        with torch.no_grad():
            weights = field._weights()
        for name in ("w_in", "b_in", "w_out", "b_out"):
            self.register_buffer(name, getattr(weights, name).detach().clone())
        self.mode, self.constant = field.mode, field.constant

    def weights(self) -> FieldWeights:
        return FieldWeights(self.w_in, self.b_in, self.w_out, self.b_out, self.mode, self.constant)


@torch.no_grad()
def lipschitz_upper_bound(field: VectorField) -> float:
    """Product of layer spectral norms (times L, and tanh's slope 1): an upper bound in h."""
    weights = field.weights()
    w_h = first_layer_columns(weights)[0]
    bound = torch.linalg.matrix_norm(w_h, ord=2) * torch.linalg.matrix_norm(weights.w_out, ord=2)
    return float(bound * (field.constant if field.mode != "none" else 1.0))


def measured_lipschitz(
    field: VectorField, states: torch.Tensor, elapsed: torch.Tensor, context: torch.Tensor
) -> float:
    """Largest spectral norm of the Jacobian ``df/dh`` at the given inputs.

    states (N, d), elapsed (N,), context (N,): real field inputs, e.g. from
    :meth:`~deepm3.models.deepm3.DeepM3.field_inputs`; the time features change the Jacobian, so
    zeros in their place would measure the field somewhere it never runs. A lower bound of the
    true constant, measured rather than assumed; with :func:`lipschitz_upper_bound` it brackets
    the field's Lipschitz constant.
    """
    states, elapsed, context = states.detach(), elapsed.detach(), context.detach()
    weights = field.weights()
    worst = 0.0
    for row in range(states.shape[0]):

        def single(h: torch.Tensor, row: int = row) -> torch.Tensor:
            return apply_field(weights, h[None], elapsed[row : row + 1], context[row : row + 1])[0]

        jacobian = torch.autograd.functional.jacobian(single, states[row])
        worst = max(worst, float(torch.linalg.matrix_norm(jacobian, ord=2)))
    return worst
