"""Popularity-sampled negatives: their frequencies, their logQ correction, the seed, and the
settings that choose them; each against numpy computations written out here."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from deepm3.config import load_config
from deepm3.errors import ConfigError
from deepm3.train.losses import sequence_loss, target_log_q
from deepm3.train.negatives import negative_sampler, popularity_sampler, uniform_sampler

# training target counts of items 1..12 (entry 0, padding, is ignored); item 5 never seen
COUNTS = np.array([9, 40, 1, 7, 300, 0, 12, 3, 90, 25, 2, 150, 6])


def proposal(counts: np.ndarray, alpha: float) -> np.ndarray:
    """Q over items 1..N: max(c, 0.5) ** alpha, normalised (an unseen item counts 0.5)."""
    weights = np.maximum(counts[1:].astype(np.float64), 0.5) ** alpha
    return weights / weights.sum()


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_popularity_draws_follow_counts_to_the_power_alpha(alpha):
    """A chi-square goodness of fit of 200,000 draws (shared and per-position shapes) against
    Q computed with numpy; the control: the same draws reject the neighbouring exponents."""
    sampler = popularity_sampler(target_log_q(COUNTS), alpha)
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat(
        [
            sampler.draw((100_000,), generator, torch.device("cpu")),
            sampler.draw((500, 200), generator, torch.device("cpu")).ravel(),
        ]
    )
    assert draws.min() >= 1 and draws.max() <= len(COUNTS) - 1  # never padding
    observed = np.bincount(draws.numpy(), minlength=len(COUNTS))[1:]

    def p_value(exponent: float) -> float:
        expected = proposal(COUNTS, exponent) * len(draws)
        return stats.chisquare(observed, expected).pvalue

    assert p_value(alpha) > 1e-3
    for other in (alpha - 0.1, alpha + 0.1):
        assert p_value(other) < 1e-6


def test_the_correction_is_log_k_q_of_each_draw():
    alpha, draws = 0.5, 7
    sampler = popularity_sampler(target_log_q(COUNTS), alpha)
    negatives = torch.tensor([[1, 5, 5, 12, 6, 4, 2], [3, 3, 3, 9, 10, 11, 8]])
    expected = np.log(draws * proposal(COUNTS, alpha)[negatives.numpy() - 1])
    np.testing.assert_allclose(sampler.log_expected_count(negatives), expected, atol=1e-6)
    shared = sampler.log_expected_count(negatives[0])  # (K,) draws: K is the last dimension
    np.testing.assert_allclose(shared, expected[0], atol=1e-6)


def test_alpha_zero_is_uniform_in_its_draws_and_its_correction():
    num_items, draws = len(COUNTS) - 1, 5
    sampler = popularity_sampler(target_log_q(COUNTS), 0.0)
    np.testing.assert_allclose(sampler.probabilities, np.full(num_items, 1 / num_items))
    negatives = torch.arange(1, num_items + 1).repeat(2)[: 2 * draws].view(2, draws)
    uniform = uniform_sampler(num_items).log_expected_count(negatives)
    assert uniform == math.log(draws / num_items)
    np.testing.assert_allclose(sampler.log_expected_count(negatives), uniform, atol=1e-6)


def _sampled_softmax_by_hand(states, items, targets, negatives, log_q) -> float:
    """Each draw j of K stands for 1 / (K Q(j)) items; a draw equal to the target is dropped
    (the losses module docstring), one position at a time in float64."""
    states, items = states.double().numpy(), items.double().numpy()
    total = 0.0
    for state, target, drawn in zip(states, targets.tolist(), negatives.tolist(), strict=True):
        scores = items @ state
        partition = math.exp(scores[target]) + sum(
            math.exp(scores[j]) / (len(drawn) * math.exp(log_q[j])) for j in drawn if j != target
        )
        total += math.log(partition) - scores[target]
    return total / len(targets)


@pytest.mark.parametrize("name", ["sampled_ce", "shared_ce"])
def test_the_loss_corrects_popularity_draws_by_their_own_q(name):
    """sequence_loss with a popularity sampler and logq equals the sampled softmax computed by
    hand with the numpy Q, on the very draws the sampler makes from the same seed."""
    generator = torch.Generator().manual_seed(4)
    num_items, dim, positions, draws = len(COUNTS) - 1, 4, 6, 9
    states = torch.randn(1, positions, dim, generator=generator)
    items = torch.randn(num_items + 1, dim, generator=generator)
    targets = torch.randint(1, num_items + 1, (1, positions), generator=generator)
    sampler = popularity_sampler(target_log_q(COUNTS), 0.5)
    shape = (draws,) if name == "shared_ce" else (positions, draws)
    negatives = sampler.draw(shape, torch.Generator().manual_seed(11), torch.device("cpu"))
    negatives = negatives.expand(positions, draws)  # shared: the same draws for every position
    log_q = np.concatenate([[-np.inf], np.log(proposal(COUNTS, 0.5))])
    expected = _sampled_softmax_by_hand(states[0], items, targets[0], negatives, log_q)
    value = sequence_loss(
        name,
        states,
        items,
        targets,
        draws,
        torch.Generator().manual_seed(11),
        logq=True,
        sampler=sampler,
    )
    assert value.item() == pytest.approx(expected, rel=1e-5)
    plain = sequence_loss(
        name, states, items, targets, draws, torch.Generator().manual_seed(11), sampler=sampler
    )
    assert plain.item() != pytest.approx(expected, rel=1e-3)  # the correction is not a no-op


def test_draws_follow_the_seed_and_a_uniform_sampler_is_the_default_path():
    sampler = popularity_sampler(target_log_q(COUNTS), 0.5)
    cpu = torch.device("cpu")

    def drawn(seed: int) -> torch.Tensor:
        return sampler.draw((40,), torch.Generator().manual_seed(seed), cpu)

    assert torch.equal(drawn(3), drawn(3)) and not torch.equal(drawn(3), drawn(4))
    states, items = torch.randn(2, 5, 3), torch.randn(len(COUNTS), 3)
    targets = torch.randint(1, len(COUNTS), (2, 5))
    for name in ("sampled_ce", "shared_ce", "bpr"):
        default = sequence_loss(name, states, items, targets, 4, torch.Generator().manual_seed(1))
        uniform = uniform_sampler(len(COUNTS) - 1)
        chosen = sequence_loss(
            name, states, items, targets, 4, torch.Generator().manual_seed(1), sampler=uniform
        )
        assert torch.equal(default, chosen)


def test_the_sampler_is_chosen_by_name_and_checks_its_counts():
    log_q = target_log_q(COUNTS)
    assert negative_sampler("uniform", 12, None, 0.5).probabilities is None
    chosen = negative_sampler("popularity", 12, log_q, 0.3)
    np.testing.assert_allclose(chosen.probabilities, proposal(COUNTS, 0.3))
    with pytest.raises(ValueError, match="item_log_q"):
        negative_sampler("popularity", 12, None, 0.5)
    with pytest.raises(ValueError, match="valid: uniform, popularity"):
        negative_sampler("zipf", 12, log_q, 0.5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["loss_sampling=zipf"], "train.loss_sampling must be one of uniform, popularity"),
        (["loss_sampling=popularity"], "train.loss_sampling chooses the negatives"),  # loss=ce
        (["loss=shared_ce", "loss_sampling_alpha=0.3"], "acts with loss_sampling=popularity"),
        (
            ["loss=shared_ce", "loss_sampling=popularity", "loss_sampling_alpha=1.5"],
            "train.loss_sampling_alpha must be in [0, 1]",
        ),
    ],
)
def test_sampling_settings_that_change_nothing_or_are_out_of_range_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, overrides)


def test_popularity_settings_load():
    train = load_config(
        None, ["loss=shared_ce", "loss_sampling=popularity", "loss_sampling_alpha=0.2"]
    ).train
    assert (train.loss_sampling, train.loss_sampling_alpha) == ("popularity", 0.2)
