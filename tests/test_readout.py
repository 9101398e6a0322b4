"""The readout of GRU4Rec and DeepM3 (hidden_dropout, output_norm): off by default, acting on
the scored state only, and the same on every scoring path."""

import numpy as np
import pytest
import torch

from deepm3.errors import ConfigError
from deepm3.models import build_model, describe_options, model_options
from deepm3.models.contract import item_scores, states_at_events
from deepm3.recommend.scoring import Scoring, evolve_to

NUM_ITEMS, MAX_LEN, SIZE = 25, 8, 6
RECURRENT = ("gru4rec", "deepm3")


def make(name: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    built = model_options(name, {"hidden_size": SIZE, "dropout": 0.0, **options})
    return build_model(name, NUM_ITEMS, built, MAX_LEN).double()


def batch(seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (4, MAX_LEN), generator=generator)
    items[1, :3] = 0  # left padding
    timestamps = 10**9 + torch.randint(0, 5, (4, MAX_LEN), generator=generator).cumsum(1) * 3600
    timestamps[items == 0] = 0
    gaps = torch.rand(4, MAX_LEN, generator=generator, dtype=torch.float64) * (items > 0)
    return items, timestamps, gaps


@pytest.mark.parametrize("name", RECURRENT)
def test_the_new_options_are_off_by_default_and_score_the_state_as_it_is(name):
    """Defaults: no new parameters (a checkpoint from before loads strictly), and the scores,
    in training mode too, are the raw state against the item table, bit for bit, without
    touching the global random stream."""
    assert {describe_options(name)[k] for k in ("hidden_dropout", "output_norm")} == {0.0, "none"}
    model = make(name).train()
    assert not [key for key in model.state_dict() if key.startswith("head.")]
    states, _ = model(*batch())
    before = torch.random.get_rng_state()
    scores = item_scores(model, states)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(scores, states @ model.item_embedding.weight.T)


@pytest.mark.parametrize("name", RECURRENT)
def test_output_norm_scores_the_layer_normalised_state(name):
    """output_norm=layer: at initialisation (gain 1, bias 0) each scored state is the raw
    state standardised over its d coordinates; the recurrence is unchanged."""
    plain, normed = make(name).eval(), make(name, output_norm="layer").eval()
    normed.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus the norm
    inputs = batch()
    states, _ = plain(*inputs)
    assert torch.equal(normed(*inputs)[0], states)  # the recurrence never reads the readout
    mean = states.mean(-1, keepdim=True)
    variance = ((states - mean) ** 2).mean(-1, keepdim=True)
    standardised = (states - mean) / torch.sqrt(variance + 1e-5)
    expected = standardised @ plain.item_embedding.weight.T
    scores = item_scores(normed, states)
    torch.testing.assert_close(scores, expected)
    assert not torch.allclose(scores, item_scores(plain, states))


@pytest.mark.parametrize("name", RECURRENT)
def test_hidden_dropout_acts_in_training_mode_only_and_on_the_scored_state(name):
    model = make(name, hidden_dropout=0.5)
    states = torch.randn(3, MAX_LEN, SIZE, dtype=torch.float64)
    assert torch.equal(model.eval().readout(states), states)
    dropped = model.train().readout(states)
    kept = dropped != 0
    assert 0.3 < kept.double().mean() < 0.7
    assert torch.equal(dropped[kept], 2 * states[kept])  # inverted dropout: kept ones x 1/(1-p)
    plain = make(name).train()
    plain.load_state_dict(model.state_dict())
    torch.manual_seed(5)
    with_dropout, _ = model(*batch())
    torch.manual_seed(5)
    assert torch.equal(with_dropout, plain(*batch())[0])  # not inside the recurrence


def test_deepm3_recommendations_normalise_the_state_evolved_to_the_query_time():
    """A recommendation evolves the raw state to the query time, then reads it out: scores
    equal LayerNorm(evolve(raw last state)) against the items, the normalisation computed
    here, not the evolution of a normalised state."""
    model = make("deepm3", output_norm="layer").eval()
    with torch.no_grad():
        model.head.norm.weight.uniform_(0.5, 2.0)
        model.head.norm.bias.uniform_(-0.3, 0.3)
    items, timestamps, gaps = batch()
    scoring = Scoring(model, lambda b: None, MAX_LEN, batch_size=4)
    raw = states_at_events(model, items, timestamps, gaps)[:, -1]
    query = timestamps[:, -1] + 86_400 * torch.tensor([1, 3, 0, 7])
    scores = scoring.states(raw, timestamps[:, -1].tolist(), query.tolist(), None)
    evolved = evolve_to(model, raw, timestamps[:, -1], query)
    assert not torch.allclose(evolved, raw)
    norm = model.head.norm
    mean = evolved.mean(-1, keepdim=True)
    variance = evolved.var(-1, unbiased=False, keepdim=True)
    scored = (evolved - mean) / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias
    expected = (scored @ model.item_embedding.weight.T).detach().numpy()
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_the_new_options_are_checked():
    with pytest.raises(ConfigError, match="model.output_norm must be one of none, layer"):
        model_options("gru4rec", {"output_norm": "batch"})
    with pytest.raises(ConfigError, match="model.hidden_dropout must be in"):
        model_options("deepm3", {"hidden_dropout": 1.0})
    with pytest.raises(ConfigError, match="unknown key"):
        model_options("sasrec", {"output_norm": "layer"})  # SASRec ends in a LayerNorm already
