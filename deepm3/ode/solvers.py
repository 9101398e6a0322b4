"""Integrate a batch of hidden states over gaps of different lengths, without per-row loops.

Each row ``b`` solves ``dh/dt = f(h, t)`` for ``t`` in ``[0, dt_b]``. Substituting
``t = s * dt_b`` turns every row into the same problem on ``s`` in ``[0, 1]``:

    dh/ds = dt_b * f(h, s * dt_b)

so one fixed-step loop (or one adaptive solve) serves the whole batch. A zero gap gives a zero
derivative, so the state is unchanged exactly.

The methods are one literal table, :data:`METHODS`: a fixed-grid method supplies its step
function and its drift evaluations per step, and :func:`evolve` owns the loop; an adaptive
method is delegated to torchdiffeq under its own name. Every caller (the eager reference, the
fused fast path, predictions at the target time) steps through :func:`evolve`, so a method added
to the table is available everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchdiffeq import odeint

# f(h (B, d), elapsed (B,) | None) -> (B, d). None means "elapsed = 0 in every row" (the start of
# a gap), so that a fused drift can skip its time term there without a device sync.
Drift = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
# step(drift, h (B,d), dt (B,), scale (B,1) = dt * size, start, size) -> h after one step from
# s = start to s = start + size (fractions of each row's gap).
StepFunction = Callable[
    [Drift, torch.Tensor, torch.Tensor, torch.Tensor, float, float], torch.Tensor
]


@dataclass(frozen=True)
class Method:
    """A fixed-grid method (``step`` and its drift evaluations per step), or ``step=None`` for
    the adaptive torchdiffeq solver of the same name (its evaluations are counted as they run)."""

    step: StepFunction | None
    evaluations_per_step: int = 0

    @property
    def adaptive(self) -> bool:
        """True for a method whose steps depend on the data (no fixed grid to unroll)."""
        return self.step is None


def _elapsed(dt: torch.Tensor, s: float) -> torch.Tensor | None:
    """Elapsed time (B,) at fraction ``s`` of each gap; None at the start of the gaps."""
    return None if s == 0.0 else dt * s


def _euler_step(
    drift: Drift, h: torch.Tensor, dt: torch.Tensor, scale: torch.Tensor, start: float, size: float
) -> torch.Tensor:
    return h + scale * drift(h, _elapsed(dt, start))


def _rk4_step(
    drift: Drift, h: torch.Tensor, dt: torch.Tensor, scale: torch.Tensor, start: float, size: float
) -> torch.Tensor:
    """The classical fourth-order Runge-Kutta step (the 1/6, 1/3, 1/3, 1/6 tableau)."""
    middle = _elapsed(dt, start + 0.5 * size)
    k1 = drift(h, _elapsed(dt, start))
    k2 = drift(h + 0.5 * scale * k1, middle)
    k3 = drift(h + 0.5 * scale * k2, middle)
    k4 = drift(h + scale * k3, _elapsed(dt, start + size))
    return h + scale * (k1 + 2.0 * k2 + 2.0 * k3 + k4) / 6.0


METHODS: dict[str, Method] = {
    "euler": Method(_euler_step, evaluations_per_step=1),
    "rk4": Method(_rk4_step, evaluations_per_step=4),
    "dopri5": Method(None),  # the adaptive reference
}


def fixed_step_methods() -> tuple[str, ...]:
    """Names of the fixed-grid methods, in table order (``euler``, ``rk4``)."""
    return tuple(name for name, method in METHODS.items() if not method.adaptive)


def is_adaptive(method: str) -> bool:
    """Whether ``method`` (a name in :data:`METHODS`) chooses its steps from the data."""
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; valid: {', '.join(METHODS)}")
    return METHODS[method].adaptive


def _fixed_grid(
    drift: Drift, h: torch.Tensor, dt: torch.Tensor, method: Method, steps: int
) -> tuple[torch.Tensor, int]:
    size = 1.0 / steps
    scale = dt[:, None] * size  # (B, 1): one step's length in each row's own time
    for index in range(steps):
        h = method.step(drift, h, dt, scale, index * size, size)
    return h, method.evaluations_per_step * steps


def _adaptive(
    drift: Drift, h: torch.Tensor, dt: torch.Tensor, name: str, rtol: float, atol: float
) -> tuple[torch.Tensor, int]:
    calls = 0

    def rescaled(s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        return dt[:, None] * drift(state, dt * s)

    times = torch.tensor([0.0, 1.0], dtype=h.dtype, device=h.device)
    out = odeint(rescaled, h, times, method=name, rtol=rtol, atol=atol)[-1]
    # torchdiffeq reads the end point off its interpolant, which can differ from h in the last
    # bit where the derivative is zero; keep zero gaps exact as for the fixed steps.
    return torch.where(dt[:, None] == 0, h, out), calls


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

    ``method`` names an entry of :data:`METHODS`: a fixed-grid method (``euler``, ``rk4``) takes
    ``steps`` steps per gap; an adaptive one (``dopri5``, the reference) runs torchdiffeq with
    tolerances ``rtol``/``atol``. Returns the new states (B, d) and the number of drift
    evaluations.
    """
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; valid: {', '.join(METHODS)}")
    chosen = METHODS[method]
    if chosen.adaptive:
        return _adaptive(drift, h, dt, method, rtol, atol)
    return _fixed_grid(drift, h, dt, chosen, steps)
