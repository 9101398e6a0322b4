"""The fast DeepM3 recurrence equals the eager reference in outputs and gradients, for every
ODE method in the solver table (and for one added to it)."""

import pytest
import torch

from deepm3.models import build_model, model_options
from deepm3.ode.solvers import METHODS, Method, fixed_step_methods, is_adaptive

NUM_ITEMS = 50
ADAPTIVE = [name for name in METHODS if is_adaptive(name)]


def batch(size: int = 16, length: int = 30, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (size, length), generator=generator)
    seconds = torch.randint(0, 3 * 86_400, (size, length), generator=generator)
    seconds[torch.rand(size, length, generator=generator) < 0.5] = 0  # ties
    seconds[:, 5] = 0  # a time step at which every row's gap is zero
    timestamps = 10**9 + seconds.cumsum(1)
    lengths = torch.randint(1, length + 1, (size,), generator=generator)
    pad = torch.arange(length)[None] < (length - lengths)[:, None]
    items[pad], timestamps[pad], seconds[pad] = 0, 0, 0
    gaps = torch.log1p(seconds.double() / 3600).float()
    return items, timestamps, gaps, torch.rand(size, length, generator=generator)


def run_both(inputs, length: int, **overrides):
    """Outputs, every parameter gradient and the NFE of the eager and fast implementations."""
    results = {}
    for implementation in ("eager", "fast"):
        torch.manual_seed(0)
        values = {"hidden_size": 24, "field_width": 20, "dropout": 0.0, **overrides}
        options = model_options("deepm3", {**values, "implementation": implementation})
        model = build_model("deepm3", NUM_ITEMS, options, length)
        states, aux = model(*inputs)
        weights = torch.randn(states.shape, generator=torch.Generator().manual_seed(1))
        (states * weights).sum().backward()
        results[implementation] = (
            states.detach(),
            {name: p.grad.clone() for name, p in model.named_parameters()},
            aux["nfe"],
        )
    return results["eager"], results["fast"]


def assert_agree(eager, fast, tolerance: float, solved: bool = True) -> None:
    """Outputs and gradients within ``tolerance``; ``solved``: a flow solved by evaluations
    (the closed form makes none)."""
    scale = eager[0].abs().max()
    assert ((fast[0] - eager[0]).abs().max() / scale) < tolerance
    for name, gradient in eager[1].items():
        relative = (fast[1][name] - gradient).abs().max() / gradient.abs().max().clamp_min(1e-12)
        assert relative < tolerance, (name, float(relative))
    if solved:
        assert fast[2] < eager[2]  # the all-zero-gap step was skipped, and counted as such
    else:
        assert fast[2] == eager[2] == 0


@pytest.mark.parametrize("solver", fixed_step_methods())
@pytest.mark.parametrize("lipschitz", ["spectral", "bounded", "none"])
@pytest.mark.parametrize("predict_at", ["last_event", "target_time"])
def test_fast_and_eager_agree_in_outputs_and_gradients(solver, lipschitz, predict_at):
    eager, fast = run_both(
        batch(),
        30,
        solver=solver,
        steps=2,
        lipschitz=lipschitz,
        lipschitz_constant=2.0,
        predict_at=predict_at,
    )
    assert_agree(eager, fast, 1e-5)


@pytest.mark.parametrize("predict_at", ["last_event", "target_time"])
def test_the_closed_form_flow_runs_both_implementations_alike(predict_at):
    eager, fast = run_both(batch(), 30, ode="decay", lipschitz_constant=2.0, predict_at=predict_at)
    assert_agree(eager, fast, 1e-5, solved=False)
    assert eager[1]["decay.coefficients.weight"].abs().max() > 0  # the flow is trained


@pytest.mark.parametrize("solver", ADAPTIVE)
@pytest.mark.parametrize("lipschitz", ["spectral", "bounded", "none"])
def test_adaptive_solvers_run_the_fast_path_too(solver, lipschitz):
    # The fused drift rounds differently, so the adaptive step sizes may differ slightly: the
    # two paths agree to the solver's tolerance, not to float32 rounding.
    eager, fast = run_both(
        batch(size=6, length=12),
        12,
        solver=solver,
        lipschitz=lipschitz,
        lipschitz_constant=2.0,
        rtol=1e-6,
        atol=1e-7,
    )
    assert_agree(eager, fast, 1e-4)


def _midpoint_step(drift, h, dt, scale, start, size):
    middle = h + 0.5 * scale * drift(h, dt * start)
    return h + scale * drift(middle, dt * (start + 0.5 * size))


def test_a_method_added_to_the_table_runs_in_both_implementations(monkeypatch):
    monkeypatch.setitem(METHODS, "midpoint", Method(_midpoint_step, evaluations_per_step=2))
    inputs = batch(size=8, length=20)
    eager, fast = run_both(inputs, 20, solver="midpoint", steps=3, lipschitz="none")
    assert_agree(eager, fast, 1e-5)
    assert eager[2] == 20 * 2 * 3  # every event, 2 evaluations per step, 3 steps per gap
    euler, _ = run_both(inputs, 20, solver="euler", steps=3, lipschitz="none")
    assert not torch.allclose(eager[0], euler[0])  # the new method, not a fallback, ran
