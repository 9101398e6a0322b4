"""Every trainable model honours the contract: causal, padding- and batch-invariant."""

import pytest
import torch

from deepm3.data.sequences import gap_features
from deepm3.models import MODELS, build_model, model_options
from deepm3.models.attention import TimeTerms, attention_mask
from deepm3.models.sasrec import SASRec, SASRecOptions
from deepm3.models.tisasrec import TiSASRec, TiSASRecOptions, interval_matrix
from deepm3.suite.design import TIME_READING_BASELINES, TRAINED_BASELINES

NUM_ITEMS, MAX_LEN = 30, 12
VARIANTS = {
    "sasrec": {},
    "tisasrec": {},
    "gru4rec": {},
    "deepm3": {},
    "deepm3-rk4-bounded": {"solver": "rk4", "lipschitz": "bounded", "steps": 2},
    "deepm3-target-time": {"predict_at": "target_time"},
    "deepm3-no-ode": {"ode": "none"},
    "deepm3-decay": {"ode": "decay", "lipschitz_constant": 2.0},
    "deepm3-decay-target-time": {"ode": "decay", "predict_at": "target_time"},
    "deepm3-gap-encoding": {"gap_encoding": "shared"},
    "timeattn": {},
    "timeattn-target-time": {"flow": "decay", "predict_at": "target_time"},
    "timeattn-time-blind": {"time_bias": "none"},
    "timeattn-gap-encoding": {"gap_encoding": "shared"},
    "tisasrec-gap-encoding": {"gap_encoding": "shared"},
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


SCALES = torch.tensor([3600 * 7, 3600, 60, 3600 * 14, 1, 3600 * 7])  # per-user time units


def run(model, items, timestamps, scales=None):
    time_gaps, next_gaps = features(items, timestamps)
    scales = SCALES[: len(items)] if scales is None else scales
    states, _ = model(items, timestamps, time_gaps, next_gaps, scales)
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


TIME_AWARE = {
    "tisasrec",
    "deepm3",
    "deepm3-rk4-bounded",
    "deepm3-target-time",
    "deepm3-no-ode",
    "deepm3-decay",
    "deepm3-decay-target-time",
    "timeattn",
    "timeattn-target-time",
    "deepm3-gap-encoding",
    "timeattn-gap-encoding",
    "tisasrec-gap-encoding",
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_causality_a_later_timestamp_never_changes_an_earlier_output(variant):
    """Moving the times of events t.. (and so every later gap) leaves outputs before t alone;
    under predict_at=target_time the output at t - 1 is *meant* to see event t's time."""
    model = make(variant)
    items, timestamps = random_batch()
    before = run(model, items, timestamps)
    moved_any = False
    for position in (3, 7, MAX_LEN - 1):
        later = timestamps.clone()
        later[:, position:] += 3600 * 50 + 17 * torch.arange(MAX_LEN - position)
        later[items == 0] = 0
        after = run(model, items, later)
        kept = position - 1 if variant.endswith("target-time") else position
        torch.testing.assert_close(after[:, :kept], before[:, :kept], rtol=0, atol=1e-10)
        moved_any |= not torch.allclose(after[0, position:], before[0, position:])
    assert moved_any == (variant in TIME_AWARE)  # time-blind models ignore timestamps entirely
    if variant in TRAINED_BASELINES:  # the report's time-only duels rely on this declaration
        assert moved_any == (variant in TIME_READING_BASELINES)


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
        alone = run(model, items[row : row + 1], timestamps[row : row + 1], SCALES[row : row + 1])
        real = items[row] > 0
        torch.testing.assert_close(alone[0][real], together[row][real], rtol=0, atol=1e-10)


def test_target_time_prediction_uses_the_gap_and_default_does_not():
    items, timestamps = random_batch()
    time_gaps, next_gaps = features(items, timestamps)
    for variant, should_change in (
        ("deepm3-target-time", True),
        ("deepm3", False),
        ("deepm3-decay-target-time", True),
        ("deepm3-decay", False),
        ("timeattn-target-time", True),
        ("timeattn", False),
    ):
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
    assert set(MODELS) == {"deepm3", "sasrec", "tisasrec", "gru4rec", "timeattn"}


def test_tisasrec_intervals_follow_the_paper():
    timestamps = torch.tensor([[0, 100, 100, 114, 126, 10_000]])
    items = torch.tensor([[0, 1, 2, 3, 4, 5]])  # first slot is padding
    intervals = interval_matrix(timestamps, items, torch.tensor([8]), span=50)
    # units round((t - 100) / 8) = 0, 0, 2 (1.75), 3 (3.25), 1238 -> clipped at k = 50
    assert intervals[0, 2, 1].item() == 0 and intervals[0, 3, 1].item() == 2
    assert intervals[0, 4, 3].item() == 1 and intervals[0, 4, 1].item() == 3
    assert intervals[0, 5, 1].item() == 50
    assert intervals[0, 0].abs().sum() == 0 and intervals[0, :, 0].abs().sum() == 0
    # the unit is the user's, given from training data: it never comes from the window
    halved = interval_matrix(timestamps, items, torch.tensor([4]), span=50)
    assert halved[0, 3, 1].item() == 4  # round(3.5) = 4 (half to even, as Python's round)


def test_tisasrec_scale_comes_from_training_events_only(synthetic):
    from deepm3.data.sequences import evaluation_table, personal_time_scales

    scales = personal_time_scales(synthetic)
    events, split = synthetic.events, synthetic.split
    for user in range(1, synthetic.num_users + 1):
        times = events.timestamps[
            events.offsets[user] : events.offsets[user] + split.train_len[user]
        ]
        gaps = [g for g in (times[1:] - times[:-1]).tolist() if g > 0]
        assert scales[user] == (min(gaps) if gaps else 1)
    table = evaluation_table(synthetic, "test")
    assert (table.time_scale == scales[table.users]).all()


def test_tisasrec_with_time_terms_zeroed_equals_sasrec_on_the_same_weights():
    """The two models share one block: without positions and intervals they are one model."""
    torch.manual_seed(4)
    tisasrec = TiSASRec(NUM_ITEMS, TiSASRecOptions(hidden_size=16, dropout=0.0), MAX_LEN)
    sasrec = SASRec(NUM_ITEMS, SASRecOptions(hidden_size=16, dropout=0.0), MAX_LEN)
    with torch.no_grad():
        for table in ("position_k", "position_v", "interval_k", "interval_v"):
            getattr(tisasrec, table).weight.zero_()
        sasrec.position_embedding.weight.zero_()
    missing, unexpected = sasrec.load_state_dict(tisasrec.state_dict(), strict=False)
    assert missing == ["position_embedding.weight"]
    assert sorted(unexpected) == ["interval_k.weight", "interval_v.weight"] + [
        "position_k.weight",
        "position_v.weight",
    ]
    items, timestamps = random_batch()
    tisasrec.eval(), sasrec.eval()
    torch.testing.assert_close(
        run(tisasrec, items, timestamps), run(sasrec, items, timestamps), rtol=1e-5, atol=1e-5
    )


def test_tisasrec_attention_equals_the_naive_four_dimensional_form():
    """Gather/scatter relative terms == building R^K, R^V as (B, T, T, d) tensors."""
    torch.manual_seed(3)
    model = TiSASRec(
        NUM_ITEMS, TiSASRecOptions(hidden_size=8, num_heads=2, dropout=0.0, time_span=6), MAX_LEN
    ).double()
    attention = model.blocks[0].attention
    items, timestamps = random_batch()
    x = torch.randn(4, MAX_LEN, 8, dtype=torch.float64)
    pos_k, pos_v = torch.randn(2, 4, MAX_LEN, 8, dtype=torch.float64)
    table_k, table_v = model.interval_k.weight, model.interval_v.weight
    intervals = interval_matrix(timestamps, items, SCALES[:4], 6)
    mask = attention_mask(items)
    fast = attention(x, x, mask, TimeTerms(pos_k, pos_v, intervals, table_k, table_v))
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
