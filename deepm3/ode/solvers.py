"""Integrate a batch of hidden states over gaps of different lengths, without per-row loops.

Each row ``b`` solves ``dh/dt = f(h, t)`` for ``t`` in ``[0, dt_b]``. Substituting
``t = s * dt_b`` turns every row into the same problem on ``s`` in ``[0, 1]``:

    dh/ds = dt_b * f(h, s * dt_b)

so one fixed-step loop (or one adaptive solve) serves the whole batch. A zero gap gives a zero
derivative, so the state is unchanged exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchdiffeq import odeint

Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # f(h (B,d), elapsed (B,)) -> (B,d)
METHODS = ("euler", "rk4", "dopri5")


def _euler(drift: Drift, h: torch.Tensor, dt: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    step = 1.0 / steps
    scale = dt[:, None] * step  # (B, 1)
    for index in range(steps):
        h = h + scale * drift(h, dt * (index * step))
    return h, steps


def _rk4(drift: Drift, h: torch.Tensor, dt: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    step = 1.0 / steps
    scale = dt[:, None] * step  # (B, 1)
    for index in range(steps):
        s = index * step
        k1 = drift(h, dt * s)
        k2 = drift(h + 0.5 * scale * k1, dt * (s + 0.5 * step))
        k3 = drift(h + 0.5 * scale * k2, dt * (s + 0.5 * step))
        k4 = drift(h + scale * k3, dt * (s + step))
        h = h + scale * (k1 + 2.0 * k2 + 2.0 * k3 + k4) / 6.0
    return h, 4 * steps


def _dopri5(
    drift: Drift, h: torch.Tensor, dt: torch.Tensor, rtol: float, atol: float
) -> tuple[torch.Tensor, int]:
    calls = 0

    def rescaled(s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return dt[:, None] * drift(state, dt * s)

    times = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
    solution = odeint(rescaled, h, times, method="dopri5", rtol=rtol, atol=atol)
    return solution[-1], calls


def evolve(
    drift: Drift,
    h: torch.Tensor,
    dt: torch.Tensor,
    method: str = "euler",
    steps: int = 1,
    rtol: float = 1e-7,
    atol: float = 1e-9,
) -> tuple[torch.Tensor, int]:
    """Move states ``h`` (B, d) forward by gaps ``dt`` (B,) under ``drift``.

    ``method``: ``euler`` and ``rk4`` take ``steps`` fixed steps per gap; ``dopri5`` is the
    adaptive reference (torchdiffeq) with tolerances ``rtol``/``atol``. Returns the new states
    (B, d) and the number of drift evaluations.
    """
    if method == "euler":
        return _euler(drift, h, dt, steps)
    if method == "rk4":
        return _rk4(drift, h, dt, steps)
    if method == "dopri5":
        out, calls = _dopri5(drift, h, dt, rtol, atol)
        # torchdiffeq reads the end point off its interpolant, which can differ from h in the
        # last bit where the derivative is zero; keep zero gaps exact as for the fixed steps.
        return torch.where(dt[:, None] == 0, h, out), calls
    raise ValueError(f"unknown ODE method {method!r}; valid: {', '.join(METHODS)}")
