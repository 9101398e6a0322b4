"""Losses against values computed by hand, and the count baselines' training-only fit."""

import math

import numpy as np
import pytest
import torch

from deepm3.data.sequences import evaluation_table
from deepm3.models.baselines import LastItem, Popularity, training_counts
from deepm3.train.losses import (
    bpr,
    chunked_ce,
    full_softmax_ce,
    inbatch_ce,
    sampled_softmax_ce,
    sequence_loss,
    shared_sampled_ce,
    target_log_q,
)

# one position, d = 2; items 1..3 (row 0 is padding)
STATE = torch.tensor([[1.0, 2.0]])
ITEMS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # scores 1, 2, 3
TARGET = torch.tensor([2])  # score 2


def test_full_softmax_ce_by_hand():
    expected = -math.log(math.exp(2) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert math.isclose(full_softmax_ce(STATE, ITEMS, TARGET).item(), expected, rel_tol=1e-6)


def test_sampled_ce_by_hand_and_a_negative_equal_to_the_target_never_counts():
    negatives = torch.tensor([[1, 3, 2]])  # the last one is the target itself
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(3)))
    value = sampled_softmax_ce(STATE, ITEMS, TARGET, negatives).item()
    assert math.isclose(value, expected, rel_tol=1e-6)


def test_bpr_by_hand_averages_over_valid_negatives():
    negatives = torch.tensor([[1, 3, 2]])

    def log_sigmoid(x):
        return -math.log1p(math.exp(-x))

    expected = -(log_sigmoid(2 - 1) + log_sigmoid(2 - 3)) / 2  # the target negative is dropped
    assert math.isclose(bpr(STATE, ITEMS, TARGET, negatives).item(), expected, rel_tol=1e-6)


def test_count_baselines_are_fitted_on_training_events_only(synthetic):
    events, split = synthetic.events, synthetic.split
    counts = np.zeros(synthetic.num_items + 1)
    pairs = {}
    for user in range(1, synthetic.num_users + 1):
        start = events.offsets[user]
        train = events.items[start : start + split.train_len[user]]
        np.add.at(counts, train, 1)
        for a, b in zip(train[:-1], train[1:], strict=True):
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    # held-out events exist whose items would change the counts if they leaked in
    held_out = events.items[events.offsets[1:-1] + split.test_pos[1:]]
    assert len(held_out) > 0
    batch = evaluation_table(synthetic, "test").batch(np.arange(5))
    pop = Popularity(training_counts(synthetic))(batch)
    np.testing.assert_array_equal(pop[0].numpy(), counts)
    last = LastItem(training_counts(synthetic))(batch).numpy()
    for row, previous in enumerate(batch.items[:, -1].tolist()):
        transitions = np.floor(last[row])  # integer part: counts; fraction: popularity tie-break
        expected = [pairs.get((previous, item), 0) for item in range(synthetic.num_items + 1)]
        np.testing.assert_array_equal(transitions, expected)


def test_shared_negatives_loss_by_hand():
    """shared_ce: softmax over [target, K shared negatives]; a negative equal to the target
    is masked."""
    torch.manual_seed(0)
    states, items = torch.randn(3, 4), torch.randn(6, 4)
    targets, negatives = torch.tensor([1, 2, 5]), torch.tensor([2, 3])
    expected = []
    for state, target in zip(states, targets, strict=True):
        candidates = [int(target)] + [int(n) for n in negatives if n != target]
        logits = items[candidates] @ state
        expected.append(-torch.log_softmax(logits, 0)[0])
    loss = shared_sampled_ce(states, items, targets, negatives)
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Losses for many items: chunked exact CE, logQ-corrected sampled softmax, in-batch negatives


def _random_problem(num_items=37, dim=5, positions=11, dtype=torch.float32, seed=0, scale=1.0):
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(positions, dim, generator=generator, dtype=dtype) * scale
    items = torch.randn(num_items + 1, dim, generator=generator, dtype=dtype)
    targets = torch.randint(1, num_items + 1, (positions,), generator=generator)
    return states, items, targets


def _value_and_grads(loss_fn, states, items, targets):
    states = states.clone().requires_grad_()
    items = items.clone().requires_grad_()
    loss = loss_fn(states, items, targets)
    loss.backward()
    return loss.detach(), states.grad, items.grad


@pytest.mark.parametrize("chunk", [1, 5, 16, 37, 1000])  # 1, not dividing 37, exactly N, > N
def test_chunked_ce_equals_full_softmax_value_and_gradients(chunk):
    problem = _random_problem()
    expected = _value_and_grads(full_softmax_ce, *problem)
    actual = _value_and_grads(lambda s, i, t: chunked_ce(s, i, t, chunk), *problem)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert actual[2][0].abs().max() == 0  # the padding row is never a candidate


def test_chunked_ce_in_float64_against_log_softmax_and_gradcheck():
    states, items, targets = _random_problem(dtype=torch.float64, positions=6, num_items=9)
    log_probabilities = torch.log_softmax(states @ items[1:].T, dim=1)  # items 1..N only
    expected = -log_probabilities[torch.arange(6), targets - 1].mean()
    value = chunked_ce(states, items, targets, 4)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    states.requires_grad_(), items.requires_grad_()
    assert torch.autograd.gradcheck(lambda s, i: chunked_ce(s, i, targets, 4), (states, items))


def test_chunked_ce_under_bfloat16_autocast_matches_full_softmax():
    """Backward restores forward's autocast, so it recomputes the same bfloat16 logits."""
    problem = _random_problem(num_items=50, dim=16, positions=20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = _value_and_grads(full_softmax_ce, *problem)
        actual = _value_and_grads(lambda s, i, t: chunked_ce(s, i, t, 7), *problem)
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-3)


def _old_sampled_losses(states, items, targets, negatives, shared):
    """The sampled losses as they were before the logQ option, written out again."""
    if shared:
        positive = (states * items[targets]).sum(-1)
        negative = (states @ items[negatives].T).masked_fill(
            negatives[None, :] == targets[:, None], float("-inf")
        )
    else:
        positive = (states * items[targets]).sum(-1)
        negative = torch.einsum("pd,pkd->pk", states, items[negatives])
        negative = negative.masked_fill(negatives == targets[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return torch.nn.functional.cross_entropy(logits, torch.zeros_like(targets))


@pytest.mark.parametrize("name", ["sampled_ce", "shared_ce"])
def test_logq_off_reproduces_the_previous_values_bit_for_bit(name):
    states, items, targets = _random_problem(positions=12)
    states, targets = states.reshape(3, 4, 5), targets.reshape(3, 4)
    targets[0, :2] = 0  # padding positions are skipped
    shape = (6,) if name == "shared_ce" else (10, 6)
    negatives = torch.randint(1, 38, shape, generator=torch.Generator().manual_seed(3))
    real = targets > 0
    old = _old_sampled_losses(states[real], items, targets[real], negatives, name == "shared_ce")
    for extra in ({}, {"logq": False}):
        new = sequence_loss(
            name, states, items, targets, 6, torch.Generator().manual_seed(3), **extra
        )
        assert torch.equal(new, old)


@pytest.mark.parametrize("name", ["sampled_ce", "shared_ce"])
def test_logq_corrected_sampled_softmax_approaches_the_full_softmax(name):
    """K = 20 N uniform draws: the corrected sum (N / K) sum_k exp(s_k) estimates the partition
    over N items with relative standard deviation sqrt((N sum e^2s / (sum e^s)^2 - 1) / K), about
    sqrt((e - 1) / 20 N) = 4% per position for unit-variance scores at N = 50, i.e. about 0.04
    on each position's loss (~log 50 = 3.9) and less on the mean over 64 positions: 2% relative
    is a safe bound (the seeds are fixed). Without the correction every item is counted ~20
    times and the loss is too large by about log 20 = 3."""
    num_items = 50
    states, items, targets = _random_problem(num_items=num_items, dim=8, positions=64, seed=1)
    states = states / 8**0.5  # unit-variance scores
    exact = full_softmax_ce(states, items, targets).item()
    batch = (states[None], items, targets[None], 20 * num_items)
    corrected = sequence_loss(name, *batch, torch.Generator().manual_seed(0), logq=True).item()
    plain = sequence_loss(name, *batch, torch.Generator().manual_seed(0)).item()
    assert abs(corrected - exact) / exact < 0.02
    assert plain - exact > 2.5


def test_logq_correction_by_hand():
    """Target score 2, negatives 1 and 3 among N = 3 items, K = 2: each stands for N / K."""
    negatives = torch.tensor([[1, 3]])
    partition = math.exp(2) + 1.5 * (math.exp(1) + math.exp(3))
    expected = -(2 - math.log(partition))
    value = sampled_softmax_ce(STATE, ITEMS, TARGET, negatives, math.log(2 / 3)).item()
    assert math.isclose(value, expected, rel_tol=1e-6)
    value = shared_sampled_ce(STATE, ITEMS, TARGET, negatives[0], math.log(2 / 3)).item()
    assert math.isclose(value, expected, rel_tol=1e-6)


def test_target_log_q_is_a_distribution_over_items_with_a_floor():
    log_q = target_log_q(np.array([7, 3, 0, 1]))  # the padding count 7 is ignored
    q = log_q.exp()
    assert q[0] == 0 and math.isclose(q[1:].sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(q[1:], torch.tensor([3, 0.5, 1]) / 4.5)


def test_inbatch_ce_equals_full_softmax_when_the_batch_is_the_training_targets():
    """c_j = P Q(j) for every item: each in-batch negative stands for exactly one item."""
    targets = torch.tensor([1, 1, 2, 3, 3, 3, 4, 5, 5, 6])  # every item 1..6, uneven counts
    states, items, _ = _random_problem(num_items=6, dim=4, positions=len(targets))
    item_log_q = target_log_q(torch.bincount(targets, minlength=7))
    expected = _value_and_grads(full_softmax_ce, states, items, targets)
    actual = _value_and_grads(
        lambda s, i, t: inbatch_ce(s, i, t, item_log_q), states, items, targets
    )
    for want, got in zip(expected, actual, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_inbatch_ce_against_a_per_position_loop_over_the_other_targets():
    """Each other position whose target j differs from mine is one draw from Q, standing for
    1 / (P Q(j)) items; my own target (even repeated elsewhere) is the positive only."""
    states, items, _ = _random_problem(num_items=8, dim=3, positions=5, dtype=torch.float64)
    targets = torch.tensor([4, 2, 4, 7, 1])
    q = [0, 0.3, 0.05, 0.1, 0.2, 0.1, 0.05, 0.15, 0.05]
    item_log_q = torch.tensor(q, dtype=torch.float64).log()
    expected = []
    for p, target in enumerate(targets.tolist()):
        scores = items @ states[p]
        negatives = [j for j in targets.tolist() if j != target]
        weights = [1 / (len(targets) * item_log_q[j].exp()) for j in negatives]
        partition = scores[target].exp() + sum(
            w * scores[j].exp() for w, j in zip(weights, negatives, strict=True)
        )
        expected.append(partition.log() - scores[target])
    value = inbatch_ce(states, items, targets, item_log_q)
    torch.testing.assert_close(value, torch.stack(expected).mean(), rtol=1e-10, atol=1e-10)


def test_inbatch_ce_through_the_dispatcher_skips_padding_and_gradients_flow():
    states, items, targets = _random_problem(num_items=20, dim=4, positions=12, seed=2)
    states, targets = states.reshape(3, 4, 4).requires_grad_(), targets.reshape(3, 4).clone()
    targets[1, :3] = 0
    item_log_q = target_log_q(torch.bincount(targets.ravel(), minlength=21) + 1)
    items.requires_grad_()
    loss = sequence_loss("inbatch_ce", states, items, targets, 0, item_log_q=item_log_q)
    real = targets > 0
    direct = inbatch_ce(states[real], items, targets[real], item_log_q)
    assert torch.isfinite(loss) and torch.equal(loss, direct)
    loss.backward()
    assert states.grad[~real].abs().max() == 0 and states.grad[real].abs().min() > 0
    used = torch.zeros(21, dtype=torch.bool)
    used[targets[real]] = True
    assert items.grad[~used].abs().max() == 0  # only the batch's targets are candidates
    assert (items.grad[used].abs().sum(1) > 0).all()


def test_dispatcher_refuses_inbatch_without_frequencies_and_logq_on_exact_losses():
    states, items, targets = _random_problem()
    with pytest.raises(ValueError, match="item_log_q"):
        sequence_loss("inbatch_ce", states[None], items, targets[None], 0)
    for name in ("ce", "chunked_ce", "bpr"):
        with pytest.raises(ValueError, match="logq"):
            sequence_loss(name, states[None], items, targets[None], 3, logq=True)


def test_dispatcher_chunked_ce_matches_ce():
    states, items, targets = _random_problem()
    full = sequence_loss("ce", states[None], items, targets[None], 0)
    chunked = sequence_loss("chunked_ce", states[None], items, targets[None], 0, chunk=6)
    torch.testing.assert_close(chunked, full)
