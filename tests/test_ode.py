"""Solvers and the vector field against closed forms."""

import math

import pytest
import torch

from deepm3.ode.field import VectorField, lipschitz_upper_bound, measured_lipschitz
from deepm3.ode.solvers import METHODS, Method, evolve, fixed_step_methods, is_adaptive


def decay(h, elapsed):
    return -h


def errors_for(method, steps_list, dtype=torch.float64):
    h0 = torch.ones(3, 2, dtype=dtype)
    dt = torch.tensor([0.5, 1.0, 2.0], dtype=dtype)
    exact = torch.exp(-dt)[:, None] * h0
    return [
        float((evolve(decay, h0, dt, method, steps)[0] - exact).abs().max()) for steps in steps_list
    ]


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("rk4", 4)])
def test_observed_order_of_convergence_on_decay(method, order):
    errors = errors_for(method, [8, 16, 32, 64])
    observed = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert all(abs(o - order) < 0.25 for o in observed), observed


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("rk4", 4)])
def test_order_on_a_linear_system_with_rotation(method, order):
    # dh/dt = A h with A = [[0, -1], [1, 0]]: exact solution is a rotation by angle t.
    matrix = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    h0 = torch.tensor([[1.0, 0.0], [0.3, -0.7]], dtype=torch.float64)
    dt = torch.tensor([1.0, 2.5], dtype=torch.float64)

    def exact(h, t):
        c, s = torch.cos(t), torch.sin(t)
        return torch.stack([c * h[:, 0] - s * h[:, 1], s * h[:, 0] + c * h[:, 1]], 1)

    errors = []
    for steps in (8, 16, 32):
        out, _ = evolve(lambda h, e: h @ matrix.T, h0, dt, method, steps)
        errors.append(float((out - exact(h0, dt)).abs().max()))
    observed = [math.log2(a / b) for a, b in zip(errors, errors[1:], strict=False)]
    assert all(abs(o - order) < 0.3 for o in observed), observed


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_in_the_table_solves_decay(method):
    h0 = torch.ones(3, 2, dtype=torch.float64)
    dt = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    out, calls = evolve(decay, h0, dt, method, 64, rtol=1e-8, atol=1e-10)
    assert torch.allclose(out, torch.exp(-dt)[:, None] * h0, atol=1e-2, rtol=0)
    assert calls > 0


def test_an_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: euler, rk4, dopri5"):
        evolve(decay, torch.ones(1, 2), torch.ones(1), "heun")


@pytest.mark.parametrize("method", list(METHODS))
def test_the_table_says_which_methods_choose_their_steps_from_the_data(method):
    # what every module asks the table, checked against what evolve does: a fixed-step method
    # makes the same evaluations for any data and follows ``steps``; an adaptive one ignores
    # ``steps`` and makes more evaluations on a stiffer problem
    h0 = torch.ones(2, 2, dtype=torch.float64)
    dt = torch.tensor([0.5, 1.0], dtype=torch.float64)

    def calls(rate: float, steps: int) -> int:
        return evolve(lambda h, e: -rate * h, h0, dt, method, steps, rtol=1e-8, atol=1e-10)[1]

    if is_adaptive(method):
        assert calls(1.0, 2) == calls(1.0, 5) < calls(20.0, 2)
    else:
        assert calls(1.0, 2) == calls(20.0, 2) < calls(1.0, 5)


def test_fixed_step_methods_follow_the_table(monkeypatch):
    assert fixed_step_methods() == ("euler", "rk4")
    assert not is_adaptive("rk4") and is_adaptive("dopri5")
    monkeypatch.setitem(METHODS, "midpoint", Method(METHODS["euler"].step, 1))
    monkeypatch.setitem(METHODS, "bosh3", Method(None))
    assert fixed_step_methods() == ("euler", "rk4", "midpoint") and is_adaptive("bosh3")
    with pytest.raises(ValueError, match="unknown ODE method 'heun'; valid: euler, rk4"):
        is_adaptive("heun")


def test_dopri5_matches_closed_form_and_counts_evaluations():
    h0 = torch.ones(3, 2, dtype=torch.float64)
    dt = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    out, calls = evolve(decay, h0, dt, "dopri5", rtol=1e-8, atol=1e-10)
    assert torch.allclose(out, torch.exp(-dt)[:, None] * h0, atol=1e-5, rtol=0)
    assert calls > 6
    assert evolve(decay, h0, dt, "euler", 3)[1] == 3 and evolve(decay, h0, dt, "rk4", 3)[1] == 12


def test_zero_gaps_leave_the_state_unchanged():
    field = VectorField(4, 8, "none", 1.0)
    h = torch.randn(5, 4)
    dt = torch.tensor([0.0, 0.7, 0.0, 1.2, 0.0])
    context = torch.zeros(5)
    # the drift itself is non-zero on the zero-gap rows: the gap, not the field, keeps them still
    assert (field(h, torch.zeros(5), context)[dt == 0].abs().sum(dim=1) > 0).all()
    for method in METHODS:
        out, _ = evolve(lambda s, e: field(s, e, context), h, dt, method, 2)
        assert torch.equal(out[dt == 0], h[dt == 0])
        assert not torch.allclose(out[dt > 0], h[dt > 0])


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_batched_evolution_equals_a_per_row_loop(method):
    torch.manual_seed(0)
    field = VectorField(6, 16, "spectral", 2.0).double()
    h = torch.randn(7, 6, dtype=torch.float64)
    dt = torch.rand(7, dtype=torch.float64) * 3
    context = torch.rand(7, dtype=torch.float64)
    batched, _ = evolve(lambda s, e: field(s, e, context), h, dt, method, 3)
    for row in range(7):
        single, _ = evolve(
            lambda s, e, r=row: field(s, e, context[r : r + 1]),
            h[row : row + 1],
            dt[row : row + 1],
            method,
            3,
        )
        assert torch.allclose(batched[row], single[0], atol=1e-6 if method == "dopri5" else 1e-12)


@pytest.mark.parametrize("mode", ["spectral", "bounded", "none"])
def test_gradcheck_through_the_solvers(mode):
    torch.manual_seed(1)
    field = VectorField(3, 5, mode, 1.5).double()
    h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    dt = torch.tensor([0.4, 1.1], dtype=torch.float64, requires_grad=True)
    context = torch.zeros(2, dtype=torch.float64)
    for method in ("euler", "rk4"):
        assert torch.autograd.gradcheck(
            lambda h, dt, m=method: evolve(lambda s, e: field(s, e, context), h, dt, m, 2)[0],
            (h, dt),
        )


def test_spectral_mode_keeps_the_measured_constant_below_l():
    torch.manual_seed(2)
    for constant in (0.5, 1.0, 3.0):
        field = VectorField(16, 32, "spectral", constant)
        with torch.no_grad():  # large weights that spectral normalisation has to tame
            field.inner.weight.mul_(20)
            field.outer.weight.normal_(std=2.0)
        states = torch.randn(20, 16) * 3
        measured = measured_lipschitz(field, states, torch.rand(20), torch.rand(20))
        assert 0 < measured <= constant * (1 + 1e-5)
        assert measured <= lipschitz_upper_bound(field) * (1 + 1e-5) <= constant * (1 + 1e-5)
    unconstrained = VectorField(16, 32, "none", 1.0)
    with torch.no_grad():
        unconstrained.inner.weight.mul_(20)
        unconstrained.outer.weight.normal_(std=2.0)
    assert measured_lipschitz(unconstrained, torch.zeros(3, 16), torch.zeros(3), torch.zeros(3)) > 3


def test_measured_lipschitz_needs_and_uses_the_time_inputs():
    torch.manual_seed(3)
    field = VectorField(6, 12, "none", 1.0)
    with torch.no_grad():
        field.inner.weight.mul_(5)
        field.outer.weight.normal_()
    states = torch.randn(4, 6)
    with pytest.raises(TypeError):
        measured_lipschitz(field, states)  # no silent zeros for elapsed time and context
    at_zero = measured_lipschitz(field, states, torch.zeros(4), torch.zeros(4))
    at_data = measured_lipschitz(field, states, torch.full((4,), 0.8), torch.full((4,), 2.5))
    assert abs(at_data - at_zero) > 1e-3 * at_zero  # the time features move the Jacobian


def test_bounded_mode_bounds_the_drift_not_its_lipschitz_constant():
    field = VectorField(4, 8, "bounded", 0.5)
    with torch.no_grad():
        field.inner.weight.mul_(100)
        field.outer.weight.mul_(1000)
        field.inner.bias.zero_()
        field.outer.bias.zero_()
    zeros = torch.zeros(1)
    assert field(torch.randn(30, 4) * 10, torch.zeros(30), torch.zeros(30)).abs().max() <= 0.5
    assert measured_lipschitz(field, torch.zeros(1, 4), zeros, zeros) > 100 * 0.5


def test_bounded_mode_bounds_the_drift():
    field = VectorField(8, 8, "bounded", 0.25)
    with torch.no_grad():
        field.outer.weight.normal_(std=50.0)
    drift = field(torch.randn(50, 8) * 10, torch.rand(50), torch.rand(50))
    assert drift.abs().max() <= 0.25


def test_inference_reuses_the_normalised_weights_until_a_parameter_changes():
    field = VectorField(4, 6, "spectral", 1.0)
    with torch.no_grad():
        first = field.weights()
        assert field.weights() is first  # cached without autograd
        field.inner.weight.mul_(3.0)  # in place, as an optimiser step or load_state_dict
        changed = field.weights()
    assert changed is not first
    fresh = field.weights()  # with autograd: recomputed, and gradients reach the parameters
    assert fresh is not changed and torch.allclose(fresh.w_in, changed.w_in)
    fresh.w_in.sum().backward()
    assert field.inner.weight.grad is not None
