"""timeattn: SASRec with a gap bias in attention and a closed-form flow to the query time.

The contract tests every model passes (causality in items and timestamps, padding and batch
invariance) cover it through ``tests/test_models.py``'s variants; here: its buckets against
integer arithmetic, its reduction to SASRec, its bias as an additive score term, and its flow
as the closed form written out from its parameters.
"""

import math

import pytest
import torch
from test_models import MAX_LEN, NUM_ITEMS, features, random_batch

from deepm3.errors import ConfigError
from deepm3.models import model_options
from deepm3.models.attention import attention_mask
from deepm3.models.contract import item_scores
from deepm3.models.sasrec import SASRec, SASRecOptions
from deepm3.models.timeattn import (
    NUM_BUCKETS,
    TimeAttention,
    TimeAttentionOptions,
    gap_buckets,
    gap_buckets_reference,
)


def expected_bucket(gap: int) -> int:
    """0 for 0 s, else 1 + floor(log2(gap)) from the integer's bit length, capped."""
    return 0 if gap == 0 else min(gap.bit_length(), NUM_BUCKETS - 1)


@pytest.mark.parametrize("buckets_of", [gap_buckets, gap_buckets_reference])
def test_gap_buckets_are_log2_of_the_gap_with_their_own_zero_bucket(buckets_of):
    """Both forms: frexp (eager) and the corrected log2 (what ONNX runs)."""
    gaps = [0, 1, 2, 3, 4, 7, 8, 86_399, 86_400, 2**20 - 1, 2**20, 2**31 - 1, 2**31, 2**40]
    gaps += [2**52 - 1, 2**52]
    times = torch.tensor([[10**9 + g for g in gaps]])
    buckets = buckets_of(times)[0]
    for i, gap in enumerate(gaps):
        assert buckets[i, 0].item() == expected_bucket(gap), gap
        assert buckets[0, i].item() == expected_bucket(gap), gap  # symmetric: |t_i - t_j|
    assert buckets[1, 0].item() == 1 and buckets[6, 0].item() == 4  # 1 s -> 1, 8 s -> 4
    assert int(buckets.max()) == NUM_BUCKETS - 1


def test_both_forms_of_the_buckets_agree_on_random_histories():
    """Random sorted timestamps with ties, gaps around powers of two and unix-scale values."""
    generator = torch.Generator().manual_seed(3)
    steps = 2 ** torch.randint(0, 34, (64, 40), generator=generator)
    steps = steps + torch.randint(-1, 2, (64, 40), generator=generator)  # 2^k - 1, 2^k, 2^k + 1
    steps = steps * (torch.rand(64, 40, generator=generator) > 0.3)  # ties: same second
    times = 978_300_000 + torch.cumsum(steps.clamp_min(0), dim=1)
    assert torch.equal(gap_buckets(times).long(), gap_buckets_reference(times))


def same_weights(options: TimeAttentionOptions) -> tuple[TimeAttention, SASRec]:
    """A timeattn model with its time bias zeroed, and a SASRec with the same weights."""
    torch.manual_seed(5)
    hybrid = TimeAttention(NUM_ITEMS, options, MAX_LEN).double().eval()
    sasrec = SASRec(NUM_ITEMS, SASRecOptions(hidden_size=16, dropout=0.0), MAX_LEN).double()
    with torch.no_grad():
        hybrid.time_bias.zero_()
    missing, unexpected = sasrec.load_state_dict(hybrid.state_dict(), strict=False)
    assert missing == []
    assert all(name == "time_bias" or name.startswith("decay.") for name in unexpected)
    return hybrid, sasrec.eval()


@pytest.mark.parametrize("flow", ["none", "decay"])
def test_with_time_terms_zeroed_it_equals_sasrec_on_the_same_weights(flow):
    """Time bias zero, and the flow off (or evolving over zero gaps, where the closed form is
    exactly the identity): the scored vectors and every item's score are SASRec's."""
    predict_at = "target_time" if flow == "decay" else "last_event"
    options = TimeAttentionOptions(hidden_size=16, dropout=0.0, flow=flow, predict_at=predict_at)
    hybrid, sasrec = same_weights(options)
    items, timestamps = random_batch()
    time_gaps, _ = features(items, timestamps)
    zero = torch.zeros_like(time_gaps)
    states, _ = hybrid(items, timestamps, time_gaps, zero)
    expected, _ = sasrec(items, timestamps, time_gaps, zero)
    real = items > 0
    got = hybrid.readout(states)
    torch.testing.assert_close(got[real], expected[real], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        item_scores(hybrid, states)[real], item_scores(sasrec, expected)[real], rtol=0, atol=1e-9
    )
    with torch.no_grad():  # a non-zero bias changes the outputs: the comparison can fail
        hybrid.time_bias.normal_()
    moved, _ = hybrid(items, timestamps, time_gaps, zero)
    assert not torch.allclose(hybrid.readout(moved)[real], expected[real])


def test_the_time_bias_is_added_to_each_heads_attention_scores():
    """The first block's attention, written out naively: softmax((q k^T) / sqrt(dh) +
    bias[layer 0][bucket(|t_i - t_j|), head]) v over allowed keys."""
    torch.manual_seed(2)
    options = TimeAttentionOptions(hidden_size=8, num_heads=2, dropout=0.0)
    model = TimeAttention(NUM_ITEMS, options, MAX_LEN).double().eval()
    with torch.no_grad():
        model.time_bias.normal_()
    items, timestamps = random_batch()
    x = torch.randn(4, MAX_LEN, 8, dtype=torch.float64)
    attention = model.blocks[0].attention
    fast = attention(x, x, model.masks(items, timestamps)[0])
    heads, dh = 2, 4
    q = attention.query(x).view(4, MAX_LEN, heads, dh)
    k = attention.key(x).view(4, MAX_LEN, heads, dh)
    v = attention.value(x).view(4, MAX_LEN, heads, dh)
    rows = []
    for b in range(4):
        for t in range(MAX_LEN):
            heads_out = []
            for h in range(heads):
                logits = []
                for s in range(MAX_LEN):
                    gap = abs(int(timestamps[b, t]) - int(timestamps[b, s]))
                    bias = model.time_bias[0, expected_bucket(gap), h]
                    score = (q[b, t, h] @ k[b, s, h]) / math.sqrt(dh) + bias
                    allowed = attention_mask(items)[b, 0, t, s]
                    logits.append(score if allowed else torch.tensor(float("-inf")).double())
                weights = torch.softmax(torch.stack(logits), 0)
                heads_out.append(weights @ v[b, :, h])
            rows.append(torch.cat(heads_out))
    naive = torch.stack(rows).view(4, MAX_LEN, 8)
    torch.testing.assert_close(fast, naive, rtol=1e-10, atol=1e-10)


def test_the_flow_is_the_closed_form_relaxation_to_the_query_time():
    """predict_at=target_time: each output is the state at its event relaxed over next_gaps,
    c + (h - c) exp(-rate g), with c and rate written out from the flow's parameters; advance
    does the same to one state, and a later query time changes the scores."""
    torch.manual_seed(6)
    options = TimeAttentionOptions(
        hidden_size=16, dropout=0.0, flow="decay", predict_at="target_time"
    )
    model = TimeAttention(NUM_ITEMS, options, MAX_LEN).double().eval()
    items, timestamps = random_batch()
    time_gaps, next_gaps = features(items, timestamps)
    at_events, _ = model(items, timestamps, time_gaps, None)
    evolved, _ = model(items, timestamps, time_gaps, next_gaps)
    layer = model.decay.coefficients
    target, rate = (at_events @ layer.weight.T + layer.bias).chunk(2, dim=-1)
    target, rate = torch.tanh(target), options.lipschitz_constant * torch.sigmoid(rate)
    expected = target + (at_events - target) * torch.exp(-rate * next_gaps[..., None])
    real = items > 0
    torch.testing.assert_close(evolved[real], expected[real], rtol=1e-10, atol=1e-10)
    advanced, calls = model.advance(at_events[:, -1], next_gaps[:, -1], timestamps[:, -1])
    torch.testing.assert_close(advanced, evolved[:, -1], rtol=1e-12, atol=1e-12)
    assert calls == 0 and model.evolves_to_query_time and not model.absorbs_events
    later = item_scores(model, model.advance(at_events[:, -1], next_gaps[:, -1] + 3, None)[0])
    assert not torch.allclose(later, item_scores(model, evolved[:, -1]))


def test_options_refuse_a_flow_that_would_never_be_trained():
    with pytest.raises(ConfigError, match="predict_at=last_event would never train it"):
        model_options("timeattn", {"flow": "decay"})
    with pytest.raises(ConfigError, match="needs a flow"):
        model_options("timeattn", {"predict_at": "target_time"})
    with pytest.raises(ConfigError, match="time_bias must be one of"):
        model_options("timeattn", {"time_bias": "decay"})
    assert not TimeAttention(NUM_ITEMS, TimeAttentionOptions(), MAX_LEN).evolves_to_query_time
