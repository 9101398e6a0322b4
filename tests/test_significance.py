import math

import numpy as np
import pytest
import torch
from scipy import stats

from deepm3.eval.metrics import metrics_from_ranks
from deepm3.stats.significance import (
    bootstrap_relative_ci,
    holm,
    paired_tests,
    per_user_ndcg,
)


def test_per_user_ndcg_by_hand():
    ndcg = per_user_ndcg(np.array([1, 2, 3, 10, 11]), k=10)
    expected = [1.0, 1 / math.log2(3), 0.5, 1 / math.log2(11), 0.0]
    np.testing.assert_allclose(ndcg, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("k", [1, 5, 10, 20])
def test_per_user_ndcg_mean_is_the_evaluators_metric(k):
    ranks = np.random.default_rng(0).integers(1, 40, size=500)
    expected = metrics_from_ranks(torch.from_numpy(ranks), ks=(k,))[f"ndcg@{k}"]
    assert per_user_ndcg(ranks, k).mean() == pytest.approx(expected, rel=1e-12)


def test_per_user_ndcg_rejects_zero_ranks():
    with pytest.raises(ValueError):
        per_user_ndcg(np.array([0, 1]))


def test_wilcoxon_exact_p_by_hand():
    # All 5 differences positive: only 1 of the 2**5 sign patterns is as extreme on each side.
    b = np.zeros(5)
    result = paired_tests(b + np.arange(1, 6), b)
    assert result["wilcoxon_p"] == pytest.approx(2 / 32)


def test_wilcoxon_normal_approximation_by_hand():
    rng = np.random.default_rng(1)
    b = rng.random(80)
    a = b + rng.normal(0.05, 0.2, size=80)  # continuous: no ties, no zeros
    difference = a - b
    ranks = stats.rankdata(np.abs(difference))
    n = len(difference)
    z = (ranks[difference > 0].sum() - n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    assert paired_tests(a, b)["wilcoxon_p"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_zero_differences_are_dropped_before_ranking():
    rng = np.random.default_rng(2)
    b = rng.random(300)
    a = b + rng.normal(0.02, 0.1, size=300)
    a[:120] = b[:120]  # 120 users where both models agree exactly
    with_zeros = paired_tests(a, b)
    without = paired_tests(a[120:], b[120:])
    assert with_zeros["differing_users"] == 180 and with_zeros["users"] == 300
    assert with_zeros["wilcoxon_p"] == pytest.approx(without["wilcoxon_p"], rel=1e-12)
    assert with_zeros["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)


def test_paired_t_test_by_hand_and_against_scipy():
    b = np.array([0.1, 0.4, 0.0, 0.3, 0.2, 0.9])
    a = b + np.array([1.0, 2.0, 3.0, 4.0, 5.0, -1.0])
    difference = a - b
    t = difference.mean() / (difference.std(ddof=1) / math.sqrt(len(difference)))
    result = paired_tests(a, b)
    assert result["t_p"] == pytest.approx(2 * stats.t.sf(abs(t), df=5), rel=1e-9)
    assert result["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert result["mean_difference"] == pytest.approx(14 / 6)
    assert result["relative_difference"] == pytest.approx(a.mean() / b.mean() - 1)


def test_identical_models_give_p_one_and_no_difference():
    a = np.random.default_rng(3).random(50)
    result = paired_tests(a, a.copy())
    assert result["wilcoxon_p"] == 1.0 and result["t_p"] == 1.0
    assert result["differing_users"] == 0
    assert result["mean_difference"] == 0.0 and result["relative_difference"] == 0.0


def test_a_large_constant_shift_is_significant():
    rng = np.random.default_rng(4)
    b = rng.random(200)
    result = paired_tests(b + 0.5 + rng.normal(0, 0.01, size=200), b)
    assert result["wilcoxon_p"] < 1e-30 and result["t_p"] < 1e-30
    assert result["relative_difference"] == pytest.approx(0.5 / b.mean(), rel=0.01)
    constant = paired_tests(b + 0.5, b)  # equal differences up to rounding: t is infinite
    assert constant["t_p"] == 0.0 and constant["wilcoxon_p"] < 1e-30


def test_relative_difference_is_nan_when_b_is_zero():
    assert math.isnan(paired_tests(np.array([0.5, 0.1]), np.zeros(2))["relative_difference"])


def test_paired_tests_reject_mismatched_inputs():
    with pytest.raises(ValueError):
        paired_tests(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        paired_tests(np.array([np.nan, 1.0]), np.zeros(2))


def test_holm_by_hand():
    # Sorted: d .005 (x4), a .01 (x3), c .03 (x2), b .04 (x1) -> .02, .03, .06, .04 -> monotone.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert list(adjusted) == ["a", "b", "c", "d"]
    expected = {"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02}
    assert adjusted == pytest.approx(expected)


def test_holm_caps_at_one_and_keeps_ties_equal():
    assert holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}
    assert holm({"x": 0.02, "y": 0.02, "z": 0.5}) == pytest.approx({"x": 0.06, "y": 0.06, "z": 0.5})
    assert holm({"only": 0.3}) == {"only": 0.3}
    assert holm({}) == {}


def _holm_step_down(p_values: dict[str, float], alpha: float) -> set[str]:
    """Holm's procedure as stated: reject in ascending order while p_(j) <= alpha / (m - j)."""
    rejected: set[str] = set()
    ordered = sorted(p_values, key=p_values.get)
    for j, name in enumerate(ordered):
        if p_values[name] > alpha / (len(ordered) - j):
            break
        rejected.add(name)
    return rejected


def test_holm_adjusted_values_reproduce_the_step_down_procedure():
    rng = np.random.default_rng(5)
    for _ in range(20):
        p_values = {f"h{i}": float(p) for i, p in enumerate(rng.random(7) ** 3)}
        adjusted = holm(p_values)
        raw = sorted(p_values.values())
        assert all(x <= y for x, y in zip(raw, sorted(adjusted.values()), strict=True))
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.3):
            by_adjusted = {name for name, value in adjusted.items() if value <= alpha}
            assert by_adjusted == _holm_step_down(p_values, alpha)


def test_bootstrap_is_deterministic_and_matches_a_plain_loop():
    rng = np.random.default_rng(6)
    a, b = rng.random(40), rng.random(40)
    interval = bootstrap_relative_ci(a, b, n_resamples=300, seed=7)
    assert interval == bootstrap_relative_ci(a, b, n_resamples=300, seed=7)
    assert interval != bootstrap_relative_ci(a, b, n_resamples=300, seed=8)
    draws = np.random.default_rng(7).integers(0, 40, size=(300, 40))
    relative = [a[users].mean() / b[users].mean() - 1 for users in draws]
    assert interval == pytest.approx(tuple(np.quantile(relative, [0.025, 0.975])), rel=1e-12)


def test_bootstrap_of_identical_or_scaled_models_is_a_point():
    b = np.random.default_rng(9).random(100)
    assert bootstrap_relative_ci(b, b.copy()) == (0.0, 0.0)
    low, high = bootstrap_relative_ci(1.1 * b, b)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)


def test_bootstrap_agrees_with_scipys_paired_percentile_bootstrap():
    rng = np.random.default_rng(10)
    b = rng.random(300)
    a = b * 1.05 + rng.normal(0, 0.2, size=300)

    def relative(x, y, axis):
        return x.mean(axis=axis) / y.mean(axis=axis) - 1

    reference = stats.bootstrap(
        (a, b), relative, paired=True, n_resamples=4000, method="percentile", rng=11
    ).confidence_interval
    low, high = bootstrap_relative_ci(a, b, n_resamples=4000)
    width = reference.high - reference.low
    assert low < a.mean() / b.mean() - 1 < high
    assert abs(low - reference.low) < 0.1 * width and abs(high - reference.high) < 0.1 * width


def test_bootstrap_rejects_a_zero_baseline():
    with pytest.raises(ValueError):
        bootstrap_relative_ci(np.ones(5), np.zeros(5))
