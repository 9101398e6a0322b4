"""The closed-form flow (``model.ode=decay``): the exact solution of its linear ODE, a zero gap
and a huge one, its Lipschitz bound, and DeepM3 running it between its GRU steps."""

import pytest
import torch

from deepm3.errors import ConfigError
from deepm3.models import build_model, model_options
from deepm3.ode.decay import DecayFlow, decay_coefficients, decay_flow

SIZE = 6


def flow(max_rate: float = 2.0, scale: float = 1.0, seed: int = 0) -> DecayFlow:
    """A float64 flow with normal weights times ``scale`` and zero biases: rates spread over
    (0, max_rate), not only near the slow start."""
    torch.manual_seed(seed)
    module = DecayFlow(SIZE, max_rate).double()
    with torch.no_grad():
        module.coefficients.weight.normal_(0.0, scale)
        module.coefficients.bias.zero_()
    return module


def states(rows: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return spread * (2 * torch.rand(rows, SIZE, generator=generator, dtype=torch.float64) - 1)


def test_the_flow_equals_a_fine_euler_solve_of_its_linear_ode():
    """``dh/dt = rate * (c - h)`` with c and rate read from the state at the gap's start and
    held fixed, stepped by explicit Euler (100,000 steps per gap): within 1e-5."""
    weights = flow().weights()
    h = states(8, seed=1)
    gaps = torch.tensor([0.0, 0.01, 0.3, 1.0, 1.7, 2.5, 3.2, 4.0], dtype=torch.float64)
    target, rate = decay_coefficients(weights, h)
    assert rate.min() < 0.5 and rate.max() > 1.5  # slow and fast coordinates alike
    steps = 100_000
    euler, step = h.clone(), gaps[:, None] / steps
    for _ in range(steps):
        euler = euler + step * rate * (target - euler)
    assert (euler - h).abs().max() > 0.5  # the gaps move the state a long way
    torch.testing.assert_close(decay_flow(weights, h, gaps), euler, rtol=0, atol=1e-5)


def test_a_zero_gap_leaves_the_state_unchanged_exactly():
    h = states(16, seed=2, spread=3.0)  # outside the GRU's box too
    for dtype in (torch.float64, torch.float32):
        weights = flow().to(dtype).weights()
        moved = decay_flow(weights, h.to(dtype), torch.zeros(16, dtype=dtype))
        assert torch.equal(moved, h.to(dtype))


def test_a_huge_gap_reaches_the_equilibrium():
    weights = flow().weights()
    h = states(16, seed=3)
    target, rate = decay_coefficients(weights, h)
    assert rate.min() > 1e-3  # every coordinate relaxes within the gap below
    reached = decay_flow(weights, h, torch.full((16,), 1e5, dtype=torch.float64))
    torch.testing.assert_close(reached, target, rtol=0, atol=1e-12)
    assert target.abs().max() < 1  # inside the GRU's box (-1, 1)^d
    assert (reached - h).abs().max() > 0.5


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_rates_are_positive_and_bounded_whatever_the_weights(scale):
    """In (0, L); a saturated sigmoid rounds to L at most, never above."""
    weights = flow(max_rate=0.7, scale=scale).weights()
    _, rate = decay_coefficients(weights, states(64, seed=4, spread=2.0))
    assert rate.min() > 0 and rate.max() <= 0.7
    if scale > 1:  # saturated: the bound is reached, never passed
        assert rate.max() == 0.7


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_the_lipschitz_bound_holds_on_random_states(scale):
    """With c and rate fixed over a gap g (read from an anchor state): the field
    ``rate * (c - h)`` is L-Lipschitz in h (its Jacobian, by autograd, has spectral norm <= L),
    and the flow map never expands distances nor shrinks them below ``exp(-L g)``."""
    limit = 1.5
    weights = flow(max_rate=limit, scale=scale).weights()
    anchors = states(32, seed=5)
    target, rate = decay_coefficients(weights, anchors)
    gaps = 5 * torch.rand(32, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    first, second = states(32, seed=7, spread=3.0), states(32, seed=8, spread=3.0)

    def moved(h: torch.Tensor) -> torch.Tensor:  # the flow map with the anchors' coefficients
        retention = torch.exp(-rate * gaps[:, None])
        return target + (h - target) * retention

    ratio = (moved(first) - moved(second)).norm(dim=1) / (first - second).norm(dim=1)
    assert (ratio <= 1 + 1e-12).all() and (ratio >= torch.exp(-limit * gaps) - 1e-12).all()
    slopes = []
    for row in range(32):

        def field(h: torch.Tensor, row: int = row) -> torch.Tensor:
            return rate[row] * (target[row] - h)

        jacobian = torch.autograd.functional.jacobian(field, first[row])
        slopes.append(float(torch.linalg.matrix_norm(jacobian, ord=2)))
    assert max(slopes) <= limit
    # and the flow of the model is that map: from each anchor itself
    torch.testing.assert_close(decay_flow(weights, anchors, gaps), moved(anchors))


def decay_model(implementation: str = "fast", **values) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"hidden_size": SIZE, "dropout": 0.0, "ode": "decay", **values}
    options["implementation"] = implementation
    return build_model("deepm3", 20, model_options("deepm3", options), 8).double().eval()


def by_hand(model, h: torch.Tensor, gaps: torch.Tensor) -> torch.Tensor:
    """The relaxation written out from the model's parameters."""
    weight, bias = model.decay.coefficients.weight, model.decay.coefficients.bias
    pre = h @ weight.T + bias
    target = torch.tanh(pre[:, :SIZE])
    rate = model.options.lipschitz_constant * torch.sigmoid(pre[:, SIZE:])
    return target + (h - target) * torch.exp(-rate * gaps[:, None])


@pytest.mark.parametrize("implementation", ["fast", "eager"])
def test_the_recurrence_is_a_gru_at_events_and_the_closed_form_between(implementation):
    """Each event: the state after the previous event relaxes over the gap (coefficients read
    from that state), then the GRU cell reads the item and the gap; padding keeps the state."""
    model = decay_model(implementation, lipschitz_constant=3.0)
    generator = torch.Generator().manual_seed(9)
    items = torch.randint(1, 21, (3, 8), generator=generator)
    items[1, :3] = 0  # left padding
    gaps = 4 * torch.rand(3, 8, generator=generator, dtype=torch.float64)
    gaps[:, 0], gaps[1, :4], gaps[:, 5] = 0, 0, 0  # a step where every gap is zero
    timestamps = torch.full((3, 8), 10**9) * (items > 0)
    with torch.no_grad():
        states, aux = model(items, timestamps, gaps, None)
        h = torch.zeros(3, SIZE, dtype=torch.float64)
        for t in range(8):
            step_input = torch.cat([model.item_embedding(items[:, t]), gaps[:, t, None]], 1)
            after = model.cell(step_input, by_hand(model, h, gaps[:, t]))
            h = torch.where(items[:, t, None] > 0, after, h)
            torch.testing.assert_close(states[:, t], h, rtol=0, atol=1e-12)
    assert aux["nfe"] == 0  # no solver


def test_advance_and_absorb_follow_the_closed_form():
    model = decay_model(lipschitz_constant=0.5)
    h = states(4, seed=10)
    gaps = torch.tensor([0.0, 0.5, 2.0, 40.0], dtype=torch.float64)
    last = torch.tensor([0, 10**9, 10**9, 10**9])
    with torch.no_grad():
        advanced, evaluations = model.advance(h, gaps, last)
        torch.testing.assert_close(advanced, by_hand(model, h, gaps), rtol=0, atol=1e-12)
        assert evaluations == 0 and torch.equal(advanced[0], h[0])
        items = torch.tensor([3, 4, 5, 6])
        step_input = torch.cat([model.item_embedding(items), gaps[:, None]], 1)
        expected = model.cell(step_input, by_hand(model, h, gaps))
        torch.testing.assert_close(model.absorb(h, items, gaps, last), expected)


def test_the_rate_bound_is_the_lipschitz_constant_and_no_solver_is_read():
    model = decay_model(lipschitz_constant=0.25, solver="rk4", steps=3)
    assert model.decay.max_rate == 0.25 and model.field is None
    assert model.evolves_to_query_time and model.solver is None
    with pytest.raises(ValueError, match="ode=decay has no ODE"):
        model.with_solver("rk4")


@pytest.mark.parametrize("implementation", ["compile", "cuda_graph", "compiled_cuda_graph"])
def test_static_loops_refuse_the_closed_form(implementation):
    with pytest.raises(ConfigError, match="ode=decay runs with implementation=fast or eager"):
        model_options("deepm3", {"ode": "decay", "implementation": implementation})
    with pytest.raises(ConfigError, match="model.ode must be one of ode, decay, none"):
        model_options("deepm3", {"ode": "exp"})
