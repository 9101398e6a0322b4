"""The users x seeds bootstrap: it widens the user-only interval by the seed-to-seed variance,
reduces to the paired user bootstrap with one seed, covers the truth at about its level where
the user-only interval does not, pairs users by id and never pairs seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepm3.stats.hierarchical import HierarchicalResult, hierarchical_bootstrap
from deepm3.stats.significance import bootstrap_relative_ci


def _frame(values: np.ndarray, users: np.ndarray | None = None) -> pd.DataFrame:
    """(users, seeds) values as a frame indexed by user id, one column per seed."""
    users = np.arange(100, 100 + len(values)) if users is None else users
    return pd.DataFrame(values, index=pd.Index(users, name="user"))


def _models(
    rng: np.random.Generator,
    users: int,
    seed_shifts_a: np.ndarray,
    seed_shifts_b: np.ndarray,
    effect: float = 0.0,
    user_noise: float = 0.3,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user values of two models: a shared user level (the pairing), a per-model user
    term, one shift per seed (a training run's luck) and cell noise; ``a`` is ``effect`` higher."""
    level = 1.0 + rng.normal(0, 0.5, users)
    frames = []
    for shifts, extra in ((seed_shifts_a, effect), (seed_shifts_b, 0.0)):
        values = (
            level[:, None]
            + extra
            + rng.normal(0, user_noise, users)[:, None]
            + np.asarray(shifts)[None, :]
            + rng.normal(0, 0.3, (users, len(shifts)))
        )
        frames.append(_frame(values))
    return frames[0], frames[1]


def _simple(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The two-stage bootstrap as a loop. a: (S_a, N), b: (S_b, N), users in the same order.
    Each replicate: a's seeds, b's seeds (each with replacement, separately), one draw of users
    for both; the 2.5% and 97.5% quantiles of the ratio of the resampled means, minus 1."""
    rng = np.random.default_rng(seed)
    relative = np.empty(resamples)
    for r in range(resamples):
        seeds_a = rng.integers(0, a.shape[0], a.shape[0])
        seeds_b = rng.integers(0, b.shape[0], b.shape[0])
        users = rng.integers(0, a.shape[1], a.shape[1])
        relative[r] = a[seeds_a][:, users].mean() / b[seeds_b][:, users].mean() - 1
    low, high = np.quantile(relative, [0.025, 0.975])
    return float(low), float(high)


def test_seed_variance_widens_the_interval_past_zero():
    """Equal models whose seeds disagree: averaging seeds first, the user-only bootstrap sees a
    +6% gain that is only seed luck; the users x seeds interval is many times wider and covers 0."""
    rng = np.random.default_rng(0)
    a, b = _models(rng, 2000, np.array([0.15, -0.05, 0.08]), np.array([-0.08, 0.10, -0.02]))
    result = hierarchical_bootstrap(a, b, resamples=2000, seed=1)
    low, high = bootstrap_relative_ci(a.mean(axis=1).to_numpy(), b.mean(axis=1).to_numpy())
    assert low > 0  # the user-only interval claims a gain
    assert result.ci_low < 0 < result.ci_high and result.p > 0.05
    assert result.ci_high - result.ci_low > 4 * (high - low)
    assert result.relative == pytest.approx(a.to_numpy().mean() / b.to_numpy().mean() - 1)
    assert (result.mean_a, result.mean_b) == pytest.approx((a.to_numpy().mean(), b.mean().mean()))
    assert (result.n_users, result.seeds_a, result.seeds_b, result.resamples) == (2000, 3, 3, 2000)


def test_an_effect_larger_than_both_sources_is_found():
    rng = np.random.default_rng(1)
    a, b = _models(
        rng, 2000, np.array([0.15, -0.05, 0.08]), np.array([-0.08, 0.10, -0.02]), effect=0.5
    )
    result = hierarchical_bootstrap(a, b, resamples=2000, seed=1)
    assert 0 < result.ci_low < result.relative < result.ci_high
    assert result.p == pytest.approx(2 / 2001)  # no replicate crossed zero
    assert result.relative == pytest.approx(0.5, abs=0.08)
    worse = hierarchical_bootstrap(b, a, resamples=2000, seed=1)  # the same gap, as a loss
    assert worse.ci_low < worse.relative < worse.ci_high < 0
    assert worse.p == pytest.approx(2 / 2001)


def test_one_seed_each_is_the_paired_user_bootstrap():
    """With one seed per model the seed draw is trivial: the interval is the paired user
    bootstrap's (a loop written out here), up to Monte Carlo error, and far narrower than an
    unpaired user bootstrap would give on these strongly paired users."""
    rng = np.random.default_rng(2)
    a, b = _models(rng, 400, np.array([0.0]), np.array([0.0]), effect=0.05, user_noise=0.05)
    result = hierarchical_bootstrap(a, b, resamples=4000, seed=3)
    low, high = _simple(a.to_numpy().T, b.to_numpy().T, 4000, seed=4)
    width = high - low
    assert result.ci_low == pytest.approx(low, abs=0.08 * width)
    assert result.ci_high == pytest.approx(high, abs=0.08 * width)
    assert result.relative == pytest.approx(a[0].mean() / b[0].mean() - 1, rel=1e-12)


def test_several_seeds_agree_with_a_written_out_loop():
    rng = np.random.default_rng(3)
    a, b = _models(rng, 200, np.array([0.1, -0.1, 0.05]), np.array([0.0, 0.08, -0.06, 0.02]))
    result = hierarchical_bootstrap(a, b, resamples=3000, seed=5)
    low, high = _simple(a.to_numpy().T, b.to_numpy().T, 3000, seed=6)
    width = high - low
    assert (result.seeds_a, result.seeds_b) == (3, 4)
    assert result.ci_low == pytest.approx(low, abs=0.1 * width)
    assert result.ci_high == pytest.approx(high, abs=0.1 * width)


def test_the_same_draws_replicate_by_replicate():
    """Exactly the loop's numbers when it consumes the generator as the module documents for
    one chunk: user draws (R, N), then a's seed draws (R, S_a), then b's (R, S_b)."""
    rng = np.random.default_rng(10)
    a, b = _models(rng, 50, np.array([0.1, -0.1, 0.05]), np.array([0.0, 0.08]), effect=0.03)
    result = hierarchical_bootstrap(a, b, resamples=500, seed=11)
    values_a, values_b = a.to_numpy().T, b.to_numpy().T  # users already sorted by id
    draws = np.random.default_rng(11)
    users = draws.integers(0, 50, size=(500, 50))
    seeds_a, seeds_b = draws.integers(0, 3, size=(500, 3)), draws.integers(0, 2, size=(500, 2))
    means = np.array(
        [
            (values_a[seeds_a[r]][:, users[r]].mean(), values_b[seeds_b[r]][:, users[r]].mean())
            for r in range(500)
        ]
    )
    relative = means[:, 0] / means[:, 1] - 1
    low, high = np.quantile(relative, [0.025, 0.975])
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-12)
    below, above = (relative <= 0).sum(), (relative >= 0).sum()
    assert result.p == pytest.approx(min(1, 2 * (min(below, above) + 1) / 501), rel=1e-12)
    assert 0.01 < result.p < 1  # both tails were counted from replicates, not the floor


def test_seed_columns_are_not_paired_across_models():
    """Seed s of a and seed s of b are unrelated runs: reversing b's columns must not change the
    interval's width. Here b's seed shifts equal a's column by column, so resampling the seeds of
    both models jointly would cancel them and shrink the interval to the user-only one."""
    rng = np.random.default_rng(4)
    shifts = np.array([0.2, -0.15, 0.05, -0.1])
    a, b = _models(rng, 1000, shifts, shifts)
    same = hierarchical_bootstrap(a, b, resamples=2000, seed=7)
    reversed_ = hierarchical_bootstrap(a, b[b.columns[::-1]], resamples=2000, seed=7)
    width, other = same.ci_high - same.ci_low, reversed_.ci_high - reversed_.ci_low
    assert 0.75 < width / other < 1.33
    low, high = bootstrap_relative_ci(a.mean(axis=1).to_numpy(), b.mean(axis=1).to_numpy())
    assert width > 3 * (high - low)


def test_coverage_on_a_simulated_null():
    """200 simulated experiments of two equal models (5 seeds, 300 users, seed variance of the
    difference about twice the user variance): the users x seeds interval covers the true
    relative difference (0) near 95% of the time; the user-only interval of the seed means, about
    73% (it misses the seed variance), which this tolerance rejects."""
    rng = np.random.default_rng(5)
    covered = covered_users_only = 0
    simulations = 200
    for index in range(simulations):
        a, b = _models(rng, 300, rng.normal(0, 0.06, 5), rng.normal(0, 0.06, 5))
        result = hierarchical_bootstrap(a, b, resamples=400, seed=index)
        covered += result.ci_low <= 0 <= result.ci_high
        low, high = bootstrap_relative_ci(
            a.mean(axis=1).to_numpy(), b.mean(axis=1).to_numpy(), n_resamples=400, seed=index
        )
        covered_users_only += low <= 0 <= high
    assert 0.9 <= covered / simulations <= 0.99
    assert covered_users_only / simulations < 0.85  # the tolerance would catch this method


def test_users_are_paired_by_id_not_by_row_order():
    rng = np.random.default_rng(6)
    a, b = _models(rng, 300, np.array([0.0, 0.02]), np.array([0.01, -0.01, 0.0]), effect=0.02)
    result = hierarchical_bootstrap(a, b, resamples=500, seed=8)
    shuffled_b = b.sample(frac=1.0, random_state=0)
    shuffled_a = a.sample(frac=1.0, random_state=1)
    assert not shuffled_b.index.equals(b.index)
    assert hierarchical_bootstrap(a, shuffled_b, resamples=500, seed=8) == result
    assert hierarchical_bootstrap(shuffled_a, shuffled_b, resamples=500, seed=8) == result
    # b's values given to other users (same ids, rows moved): a different comparison
    moved = pd.DataFrame(shuffled_b.to_numpy(), index=b.index)
    assert hierarchical_bootstrap(a, moved, resamples=500, seed=8) != result


def test_same_seed_same_result_and_a_frozen_result():
    rng = np.random.default_rng(7)
    a, b = _models(rng, 100, np.array([0.0, 0.1]), np.array([0.05]))
    first = hierarchical_bootstrap(a, b, resamples=300, seed=9)
    assert hierarchical_bootstrap(a, b, resamples=300, seed=9) == first
    assert hierarchical_bootstrap(a, b, resamples=300, seed=10) != first
    assert isinstance(first, HierarchicalResult)
    with pytest.raises(AttributeError):
        first.p = 0.0  # type: ignore[misc]


def test_identical_models_give_p_one():
    values = _frame(np.random.default_rng(8).random((50, 2)))
    result = hierarchical_bootstrap(values, values.copy(), resamples=200)
    assert result.relative == 0 and result.p == 1.0


def _good() -> pd.DataFrame:
    return _frame(np.random.default_rng(9).random((20, 3)) + 0.1)


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (_good(), _frame(_good().to_numpy(), np.arange(500, 520)), "same users.*20 only in a"),
        (_good(), _good().iloc[:15], "same users.*5 only in a.*15 in both"),
        (_good(), _good().iloc[:, :0], "b has no seed column"),
        (_good().iloc[[0, 0, 1]], _good().iloc[[0, 0, 1]], "a lists a user more than once"),
        (_good(), _good().where(_good() > 0.5), "NaN"),
        (_good()[0], _good(), "a must be a DataFrame"),
        (_good().iloc[:1], _good().iloc[:1], "at least 2 users"),
        (_good(), _good() * 0, r"mean\(b\) is 0"),
    ],
    ids=["disjoint", "misaligned", "no-seed", "duplicate", "nan", "series", "one-user", "zero"],
)
def test_bad_inputs_are_named(a, b, match):
    with pytest.raises(ValueError, match=match):
        hierarchical_bootstrap(a, b, resamples=10)


@pytest.mark.parametrize(
    ("keyword", "match"),
    [({"resamples": 0}, "resamples"), ({"confidence": 1.0}, "confidence")],
)
def test_bad_settings_are_named(keyword, match):
    with pytest.raises(ValueError, match=match):
        hierarchical_bootstrap(_good(), _good(), **keyword)
