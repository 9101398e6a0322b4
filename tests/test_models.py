"""Every trainable model honours the contract: causal, padding- and batch-invariant."""

import pytest
import torch

from deepm3.data.sequences import gap_features
from deepm3.models import MODELS, build_model, model_options
from deepm3.models.tisasrec import TiSASRec, TiSASRecOptions, interval_matrix

NUM_ITEMS, MAX_LEN = 30, 12
VARIANTS = {
    "sasrec": {},
    "tisasrec": {},
    "gru4rec": {},
    "deepm3": {},
    "deepm3-rk4-bounded": {"solver": "rk4", "lipschitz": "bounded", "steps": 2},
    "deepm3-target-time": {"predict_at": "target_time"},
    "deepm3-no-ode": {"ode": "none"},
}


def make(variant: str) -> torch.nn.Module:
    torch.manual_seed(0)
    name = variant.split("-")[0]
    options = model_options(name, {"hidden_size": 16, "dropout": 0.0, **VARIANTS[variant]})
    return build_model(name, NUM_ITEMS, options, MAX_LEN).double().eval()


def random_batch(batch: int = 4, length: int = MAX_LEN, seed: int = 1):
    """Left-padded rows of different lengths with irregular, tied timestamps."""
    generator = torch.Generator().manual_seed(seed)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    steps = torch.randint(0, 3, (batch, length), generator=generator) * 3600 * 7
    timestamps = 10**9 + steps.cumsum(1)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    pad = torch.arange(length)[None, :] < (length - lengths)[:, None]
    items[pad], timestamps[pad] = 0, 0
    return items, timestamps


def features(items, timestamps):
    real = items > 0
    previous = torch.roll(real, 1, 1)
    previous[:, 0] = False
    gaps = torch.where(real & previous, timestamps - torch.roll(timestamps, 1, 1), 0)
    next_times = torch.roll(timestamps, -1, 1)
    next_times[:, -1] = timestamps[:, -1] + 5000
    ahead = torch.where(real, next_times - timestamps, 0)
    return gap_features(gaps).double(), gap_features(ahead).double()


def run(model, items, timestamps):
    time_gaps, next_gaps = features(items, timestamps)
    states, _ = model(items, timestamps, time_gaps, next_gaps)
    return states


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_causality_a_later_item_never_changes_an_earlier_output(variant):
    model = make(variant)
    items, timestamps = random_batch()
    before = run(model, items, timestamps)
    for position in (4, 8, MAX_LEN - 1):
        changed = items.clone()
        changed[:, position] = changed[:, position] % NUM_ITEMS + 1
        changed[items == 0] = 0
        after = run(model, changed, timestamps)
        torch.testing.assert_close(after[:, :position], before[:, :position], rtol=0, atol=1e-10)
        assert not torch.allclose(after[0, position:], before[0, position:])


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padding_invariance_more_left_padding_changes_nothing(variant):
    model = make(variant)
    items, timestamps = random_batch()
    states = run(model, items, timestamps)
    extra = 5
    padded_items = torch.cat([torch.zeros(items.shape[0], extra, dtype=items.dtype), items], 1)
    padded_times = torch.cat([torch.zeros_like(padded_items[:, :extra]), timestamps], 1)
    padded = run(model, padded_items, padded_times)
    real = items > 0
    torch.testing.assert_close(padded[:, extra:][real], states[real], rtol=0, atol=1e-10)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_batch_composition_invariance(variant):
    model = make(variant)
    items, timestamps = random_batch(batch=6)
    together = run(model, items, timestamps)
    for row in range(6):
        alone = run(model, items[row : row + 1], timestamps[row : row + 1])
        real = items[row] > 0
        torch.testing.assert_close(alone[0][real], together[row][real], rtol=0, atol=1e-10)


def test_target_time_prediction_uses_the_gap_and_default_does_not():
    items, timestamps = random_batch()
    time_gaps, next_gaps = features(items, timestamps)
    for variant, should_change in (("deepm3-target-time", True), ("deepm3", False)):
        model = make(variant)
        first, _ = model(items, timestamps, time_gaps, next_gaps)
        second, _ = model(items, timestamps, time_gaps, next_gaps * 3)
        assert (not torch.allclose(first, second)) == should_change


def test_registry_rejects_unknown_names_and_options():
    from deepm3.errors import ConfigError

    with pytest.raises(ConfigError, match="valid: deepm3, sasrec"):
        model_options("bert4rec", {})
    with pytest.raises(ConfigError, match="valid keys: .*hidden_size"):
        model_options("sasrec", {"hiden_size": 3})
    with pytest.raises(ConfigError, match="solver must be one of"):
        model_options("deepm3", {"solver": "heun"})
    assert set(MODELS) == {"deepm3", "sasrec", "tisasrec", "gru4rec"}


def test_tisasrec_intervals_follow_the_paper():
    timestamps = torch.tensor([[0, 0, 100, 110, 130, 10_000]])
    items = torch.tensor([[0, 1, 2, 3, 4, 5]])  # first slot is padding
    intervals = interval_matrix(timestamps, items, span=50)
    # user scale = smallest non-zero gap between real events = 10 seconds
    assert intervals[0, 3, 2].item() == 1 and intervals[0, 4, 2].item() == 3
    assert intervals[0, 5, 1].item() == 50  # clipped at k
    assert intervals[0, 0].abs().sum() == 0 and intervals[0, :, 0].abs().sum() == 0


def test_tisasrec_attention_equals_the_naive_four_dimensional_form():
    """Gather/scatter relative terms == building R^K, R^V as (B, T, T, d) tensors."""
    torch.manual_seed(3)
    model = TiSASRec(
        NUM_ITEMS, TiSASRecOptions(hidden_size=8, num_heads=2, dropout=0.0, time_span=6), MAX_LEN
    ).double()
    attention = model.attentions[0]
    items, timestamps = random_batch()
    x = torch.randn(4, MAX_LEN, 8, dtype=torch.float64)
    pos_k, pos_v = torch.randn(2, 4, MAX_LEN, 8, dtype=torch.float64)
    table_k, table_v = model.interval_k.weight, model.interval_v.weight
    intervals = interval_matrix(timestamps, items, 6)
    from deepm3.models.sasrec import attention_mask

    mask = attention_mask(items)
    fast = attention(x, x, intervals, pos_k, pos_v, table_k, table_v, mask)
    heads, dh = 2, 4
    q = attention.query(x).view(4, MAX_LEN, heads, dh)
    k = (attention.key(x) + pos_k).view(4, MAX_LEN, heads, dh)
    v = (attention.value(x) + pos_v).view(4, MAX_LEN, heads, dh)
    rk = table_k[intervals].view(4, MAX_LEN, MAX_LEN, heads, dh)  # (B, T, T, H, dh)
    rv = table_v[intervals].view(4, MAX_LEN, MAX_LEN, heads, dh)
    logits = torch.einsum("bthd,bshd->bhts", q, k) + torch.einsum("bthd,btshd->bhts", q, rk)
    logits = (logits / dh**0.5).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(logits, -1)
    naive = torch.einsum("bhts,bshd->bthd", weights, v) + torch.einsum(
        "bhts,btshd->bthd", weights, rv
    )
    torch.testing.assert_close(fast, naive.reshape(4, MAX_LEN, 8))
