"""What DeepM3 feeds its vector field: the previous event's time (no wrap-around) and the real
field inputs used to measure the Lipschitz constant."""

import pytest
import torch

from deepm3.models import build_model, model_options
from deepm3.models.contract import absolute_time_feature
from deepm3.models.deepm3 import previous_event_time

NUM_ITEMS = 30


def model(implementation: str = "fast", **overrides):
    torch.manual_seed(0)
    values = {"hidden_size": 12, "field_width": 16, "dropout": 0.0, "lipschitz": "none"}
    options = model_options("deepm3", {**values, **overrides, "implementation": implementation})
    return build_model("deepm3", NUM_ITEMS, options, 8).double().eval()


def batch(seed: int = 0):
    """Two left-padded rows (full and length 5) with irregular gaps, as (B, T) tensors."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (2, 8), generator=generator)
    seconds = torch.randint(1, 5 * 86_400, (2, 8), generator=generator)
    timestamps = 10**9 + seconds.cumsum(1)
    items[1, :3], timestamps[1, :3] = 0, 0
    gaps = torch.log1p((timestamps - timestamps.roll(1, 1)).clamp_min(0).double() / 3600)
    gaps[:, 0], gaps[1, :4] = 0, 0  # a row's first event has no gap before it
    next_gaps = torch.cat([gaps[:, 1:], torch.full((2, 1), 0.7, dtype=gaps.dtype)], dim=1)
    next_gaps[items == 0] = 0
    return items, timestamps, gaps, next_gaps


def test_previous_event_time_has_no_wrap_around():
    items, timestamps, _, _ = batch()
    real = items > 0
    context = previous_event_time(timestamps, real)
    later = timestamps.clone()
    later[:, -1] += 10**8  # only the window's last timestamp moves
    assert torch.equal(context, previous_event_time(later, real))
    assert (context[:, 0] == 0).all() and (context[1, :4] == 0).all()  # nothing before
    torch.testing.assert_close(
        context[:, 1:][real[:, :-1]], absolute_time_feature(timestamps[:, :-1])[real[:, :-1]]
    )


@pytest.mark.parametrize("implementation", ["fast", "eager"])
def test_the_first_output_ignores_the_last_timestamp(implementation):
    # A gap at position 0 (from a caller that knows the event before the window) is evolved
    # with the context "no previous event": never with the time of the window's last event.
    items, timestamps, gaps, _ = batch()
    gaps[:, 0] = 1.5
    network = model(implementation)
    later = timestamps.clone()
    later[:, -1] += 10**8
    first = network(items, timestamps, gaps)[0][0, 0]
    torch.testing.assert_close(network(items, later, gaps)[0][0, 0], first, rtol=0, atol=0)


def test_time_scale_is_accepted_and_ignored():
    items, timestamps, gaps, next_gaps = batch()
    network = model()
    plain = network(items, timestamps, gaps, next_gaps)[0]
    scaled = network(items, timestamps, gaps, next_gaps, torch.tensor([60, 3600]))[0]
    assert torch.equal(plain, scaled)


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_field_inputs_are_points_of_real_trajectories(solver):
    items, timestamps, gaps, next_gaps = batch()
    network = model(solver=solver, steps=2)
    network.train()
    states, elapsed, context = network.field_inputs(items, timestamps, gaps, next_gaps)
    assert network.training  # the mode is restored
    followed = (items > 0) & (next_gaps > 0)
    count = int(followed.sum())
    assert states.shape == (count, 12) and elapsed.shape == context.shape == (count,)
    gaps_after = next_gaps[followed]
    assert ((elapsed > 0) & (elapsed < gaps_after)).all()  # inside the gap that follows
    torch.testing.assert_close(context, absolute_time_feature(timestamps[followed]))
    # Predicting at "target time" = the drawn elapsed time evolves the same state to the same
    # point, with the same context: the triples are where the field really runs.
    target = model(solver=solver, steps=2, predict_at="target_time")
    target.load_state_dict(network.state_dict())
    drawn = torch.zeros_like(next_gaps)
    drawn[followed] = elapsed
    torch.testing.assert_close(target(items, timestamps, gaps, drawn)[0][followed], states)
    assert network.field_inputs(items, timestamps, gaps, next_gaps, max_points=3)[0].shape[0] == 3
