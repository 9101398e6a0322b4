"""The fast DeepM3 recurrence equals the eager reference in outputs and gradients."""

import pytest
import torch

from deepm3.models import build_model, model_options

NUM_ITEMS = 50


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


@pytest.mark.parametrize("solver", ["euler", "rk4"])
@pytest.mark.parametrize("lipschitz", ["spectral", "bounded", "none"])
@pytest.mark.parametrize("predict_at", ["last_event", "target_time"])
def test_fast_and_eager_agree_in_outputs_and_gradients(solver, lipschitz, predict_at):
    inputs = batch()
    results = {}
    for implementation in ("eager", "fast"):
        torch.manual_seed(0)
        options = model_options(
            "deepm3",
            {
                "hidden_size": 24,
                "field_width": 20,
                "solver": solver,
                "steps": 2,
                "lipschitz": lipschitz,
                "lipschitz_constant": 2.0,
                "predict_at": predict_at,
                "dropout": 0.0,
                "implementation": implementation,
            },
        )
        model = build_model("deepm3", NUM_ITEMS, options, 30)
        states, aux = model(*inputs)
        weights = torch.randn_like(states)
        (states * weights).sum().backward()
        results[implementation] = (
            states.detach(),
            {name: p.grad.clone() for name, p in model.named_parameters()},
            aux["nfe"],
        )
    eager, fast = results["eager"], results["fast"]
    scale = eager[0].abs().max()
    assert ((fast[0] - eager[0]).abs().max() / scale) < 1e-5
    for name, gradient in eager[1].items():
        relative = (fast[1][name] - gradient).abs().max() / gradient.abs().max().clamp_min(1e-12)
        assert relative < 1e-5, name
    assert fast[2] < eager[2]  # the all-zero-gap step was skipped, and counted as such


def test_dopri5_uses_the_reference_path_in_both_modes():
    inputs = batch(size=3, length=6)
    outputs = []
    for implementation in ("eager", "fast"):
        torch.manual_seed(0)
        options = model_options(
            "deepm3",
            {
                "hidden_size": 8,
                "solver": "dopri5",
                "dropout": 0.0,
                "implementation": implementation,
            },
        )
        outputs.append(build_model("deepm3", NUM_ITEMS, options, 6)(*inputs)[0])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
