"""Losses against values computed by hand, and the count baselines' training-only fit."""

import math

import numpy as np
import torch

from deepm3.data.sequences import evaluation_table
from deepm3.models.baselines import LastItem, Popularity
from deepm3.train.losses import bpr, full_softmax_ce, sampled_softmax_ce

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
    pop = Popularity(synthetic)(batch)
    np.testing.assert_array_equal(pop[0].numpy(), counts)
    last = LastItem(synthetic)(batch).numpy()
    for row, previous in enumerate(batch.items[:, -1].tolist()):
        transitions = np.floor(last[row])  # integer part: counts; fraction: popularity tie-break
        expected = [pairs.get((previous, item), 0) for item in range(synthetic.num_items + 1)]
        np.testing.assert_array_equal(transitions, expected)


def test_shared_negatives_loss_by_hand():
    """shared_ce: softmax over [target, K shared negatives]; a negative equal to the target
    is masked."""
    from deepm3.train.losses import shared_sampled_ce

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
