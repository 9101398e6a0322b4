"""The shared gap encoding (model.gap_encoding): its features by hand, and the models' option."""

import math

import pytest
import torch

from deepm3.data.sequences import gap_features
from deepm3.models import build_model, model_options
from deepm3.models.gap_encoding import NUM_FEATURES, encode_gaps, gap_seconds

NUM_ITEMS, MAX_LEN = 30, 12


def by_hand(seconds: float) -> list[float]:
    """The documented features of one gap, written out independently of the module."""
    row = [math.log(1 + seconds / 3600)]
    for period in (3600, 24 * 3600, 7 * 24 * 3600):
        row += [math.sin(2 * math.pi * seconds / period), math.cos(2 * math.pi * seconds / period)]
    return row + [1.0 if seconds < 30 * 60 else 0.0]


def test_features_of_a_few_gaps_match_the_hand_computation():
    gaps = [0, 10 * 60, 2 * 3600, 3 * 24 * 3600]
    got = encode_gaps(torch.tensor([gaps]))  # (1, 4, F)
    assert got.shape == (1, 4, NUM_FEATURES)
    expected = torch.tensor([[by_hand(g) for g in gaps]], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert got[0, :, -1].tolist() == [1.0, 1.0, 0.0, 0.0]  # 0 s and 10 min: the same sitting


@pytest.mark.parametrize("seconds", [0, 1, 1799, 1801, 10 * 60, 2 * 3600, 3 * 86400, 4e7])
def test_the_models_transformed_gaps_give_back_the_real_seconds(seconds):
    """Models receive log1p(hours) as float32; the encoding inverts it, so the 30-minute
    threshold is real time (29:59 and 30:01 fall on their sides) and the features match up to
    a week (beyond, float32 leaves the hour's phase seconds off: 1.3 years -> about 20 s)."""
    transformed = gap_features(torch.tensor([float(seconds)]))  # float32, as in a Batch
    recovered = gap_seconds(transformed)
    assert abs(recovered.item() - seconds) <= 1e-6 * seconds + 1e-3
    if seconds > 7 * 86400:
        return
    torch.testing.assert_close(
        encode_gaps(recovered), encode_gaps(torch.tensor([float(seconds)])), rtol=0, atol=1e-4
    )


def make(name: str, seed: int = 0, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    options = model_options(name, {"hidden_size": 16, "dropout": 0.0, **extra})
    return build_model(name, NUM_ITEMS, options, MAX_LEN).double().eval()


def batch():
    generator = torch.Generator().manual_seed(3)
    items = torch.randint(1, NUM_ITEMS + 1, (3, MAX_LEN), generator=generator)
    steps = torch.tensor([0, 60, 600, 2000, 7200, 86400])[
        torch.randint(0, 6, (3, MAX_LEN), generator=generator)
    ]
    timestamps = 10**9 + steps.cumsum(1)
    seconds = torch.cat([torch.zeros(3, 1, dtype=torch.long), timestamps.diff(dim=1)], 1)
    return items, timestamps, gap_features(seconds).double()


def forward(model, items, timestamps, time_gaps):
    """States (B, T, d); every user's time unit 60 s (TiSASRec reads it, the others do not)."""
    return model(items, timestamps, time_gaps, time_scale=torch.full((len(items),), 60))[0]


@pytest.mark.parametrize("name", ["deepm3", "timeattn", "tisasrec"])
def test_the_default_is_the_model_without_the_option(name):
    items, timestamps, time_gaps = batch()
    without, default = make(name), make(name, gap_encoding="none")
    assert default.options.gap_encoding == "none" and default.gap_encoding is None
    assert without.state_dict().keys() == default.state_dict().keys()
    assert not any("gap_encoding" in key for key in default.state_dict())
    with torch.no_grad():
        assert torch.equal(
            forward(without, items, timestamps, time_gaps),
            forward(default, items, timestamps, time_gaps),
        )


@pytest.mark.parametrize("name", ["deepm3", "timeattn", "tisasrec"])
def test_the_option_changes_outputs_through_the_gaps(name):
    items, timestamps, time_gaps = batch()
    off, on = make(name), make(name, gap_encoding="shared")
    # the encoding is drawn after every other weight: at one seed the rest are the same bits
    shared = on.state_dict()
    assert all(torch.equal(value, shared[key]) for key, value in off.state_dict().items())
    with torch.no_grad():
        plain = forward(off, items, timestamps, time_gaps)
        encoded = forward(on, items, timestamps, time_gaps)
        # with its projection zeroed the encoded model is the plain one (same other weights)
        on.gap_encoding.project.weight.zero_()
        on.gap_encoding.project.bias.zero_()
        encoding = on.gap_encoding.state_dict(prefix="gap_encoding.")
        on.load_state_dict({**off.state_dict(), **encoding})
        zeroed = forward(on, items, timestamps, time_gaps)
    assert not torch.allclose(plain, encoded)
    torch.testing.assert_close(zeroed, plain, rtol=0, atol=1e-12)


def test_deepm3_absorbs_one_event_as_its_forward_pass_reads_it():
    """The one-event step (serving) adds the same encoding as the batch forward pass."""
    model = make("deepm3", gap_encoding="shared")
    items, timestamps, time_gaps = batch()
    with torch.no_grad():
        states, _ = model(items, timestamps, time_gaps)
        h = torch.zeros(3, 16, dtype=torch.float64)
        previous = torch.zeros(3, dtype=torch.long)
        for t in range(MAX_LEN):
            h = model.absorb(h, items[:, t], time_gaps[:, t], previous)
            previous = timestamps[:, t]
            torch.testing.assert_close(h, states[:, t], rtol=0, atol=1e-9)
