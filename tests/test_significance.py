import math
import re
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from deepm3.eval.metrics import metrics_from_ranks
from deepm3.stats import significance
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


def test_bootstrap_defaults_to_2000_resamples_from_seed_0():
    rng = np.random.default_rng(17)
    a, b = rng.random(20), rng.random(20) + 0.1
    draws = np.random.default_rng(0).integers(0, 20, size=(2000, 20))
    relative = [a[users].mean() / b[users].mean() - 1 for users in draws]
    expected = tuple(np.quantile(relative, [0.025, 0.975]))
    assert bootstrap_relative_ci(a, b) == pytest.approx(expected, rel=1e-12)


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


# --- refusals, boundaries and dtypes (each check alone, so that no other one hides it)

RANKS_MESSAGE = "ranks must be a 1-D integer array of 1-based ranks"


@pytest.mark.parametrize(
    "ranks",
    [
        np.array([[1, 2], [3, 4]]),  # 2-D, integer, every rank >= 1
        np.array([1.0, 2.0]),  # 1-D, float, every rank >= 1
        np.array([3, 0, 2]),  # 1-D, integer, a rank of 0
        np.array([-1, 5]),
    ],
)
def test_per_user_ndcg_refuses_anything_but_1d_integer_ranks_from_one(ranks):
    with pytest.raises(ValueError, match=f"^{RANKS_MESSAGE}$"):
        per_user_ndcg(ranks)


def test_per_user_ndcg_at_k_one_and_at_the_cutoff():
    ranks = np.array([1, 2, 5, 6, 1], dtype=np.int32)
    np.testing.assert_array_equal(per_user_ndcg(ranks, k=1), [1.0, 0.0, 0.0, 0.0, 1.0])
    at_five = per_user_ndcg(ranks, k=5)  # rank == k is a hit, rank k + 1 is not
    np.testing.assert_allclose(at_five, [1.0, 1 / math.log2(3), 1 / math.log2(6), 0.0, 1.0])
    assert at_five.dtype == np.float64 and per_user_ndcg(ranks).dtype == np.float64
    assert per_user_ndcg(np.array([7]), k=6).tolist() == [0.0]  # a single user
    assert per_user_ndcg(np.array([10, 11])).tolist() == [1 / math.log2(11), 0.0]  # k = 10
    assert per_user_ndcg(np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize("k", [0, -3])
def test_per_user_ndcg_refuses_k_below_one(k):
    with pytest.raises(ValueError, match=f"^k must be at least 1, got {k}$"):
        per_user_ndcg(np.array([1, 2]), k=k)


def test_paired_tests_of_exactly_two_users():
    result = paired_tests(np.array([0.5, 0.25]), np.array([0.25, 0.0]))
    assert result["users"] == 2 and result["differing_users"] == 2
    assert result["wilcoxon_p"] == pytest.approx(0.5)  # 1 of 4 sign patterns on each side
    assert result["t_p"] == 0.0  # both differences 0.25: a constant shift


@pytest.mark.parametrize("a", [np.array([0.5]), np.array([], dtype=np.float64)])
def test_paired_tests_refuse_fewer_than_two_users(a):
    with pytest.raises(ValueError, match="^a paired comparison needs at least 2 users$"):
        paired_tests(a, a.copy())


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (np.zeros(3), np.zeros(4)),
        (np.zeros((2, 2)), np.zeros((2, 2))),  # one shape, but not 1-D
        (np.zeros(4), np.zeros((4, 1))),
    ],
)
def test_paired_tests_refuse_inputs_that_are_not_two_aligned_vectors(a, b):
    message = f"a and b must be 1-D and of one length, got {a.shape} and {b.shape}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        paired_tests(a, b)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bootstrap_relative_ci(a + 1, b + 1)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([np.nan, 1.0, 0.5], [0.5, 0.5, 0.5]),  # only a
        ([0.5, 0.5, 0.5], [0.1, np.inf, 0.2]),  # only b
        ([0.1, -np.inf, 0.2], [0.5, np.nan, 0.5]),  # both
    ],
)
def test_paired_tests_refuse_nan_or_infinite_values_on_either_side(a, b):
    with pytest.raises(ValueError, match="^a and b must be finite$"):
        paired_tests(np.array(a), np.array(b))


def test_paired_tests_compute_in_float64_whatever_the_input_type():
    rng = np.random.default_rng(12)
    a32, b32 = rng.random(5000).astype(np.float32), rng.random(5000).astype(np.float32)
    result = paired_tests(a32, b32)
    a, b = a32.astype(np.float64), b32.astype(np.float64)
    assert result["mean_a"] == pytest.approx(math.fsum(a) / len(a), rel=1e-14)
    assert result["mean_b"] == pytest.approx(math.fsum(b) / len(b), rel=1e-14)
    assert result["mean_difference"] == pytest.approx(math.fsum(a - b) / len(a), rel=1e-12)
    # per-user hits as booleans (HR@k) are 0/1 values, compared like any other
    hit_a, hit_b = rng.random(60) < 0.4, rng.random(60) < 0.3
    hits = paired_tests(hit_a, hit_b)
    assert hits["mean_a"] == hit_a.mean() and hits["mean_b"] == hit_b.mean()
    assert hits["differing_users"] == int((hit_a != hit_b).sum())
    assert hits["wilcoxon_p"] == pytest.approx(
        stats.wilcoxon(hit_a.astype(float), hit_b.astype(float)).pvalue, rel=1e-12
    )


def test_paired_tests_return_every_documented_key_as_python_numbers():
    rng = np.random.default_rng(13)
    a, b = rng.random(30), rng.random(30)
    result = paired_tests(a, b)
    assert list(result) == [
        "users",
        "differing_users",
        "mean_a",
        "mean_b",
        "mean_difference",
        "relative_difference",
        "wilcoxon_p",
        "t_p",
    ]
    assert type(result["users"]) is int and type(result["differing_users"]) is int
    assert all(type(result[key]) is float for key in list(result)[2:])
    assert result["users"] == 30 and result["differing_users"] == 30
    assert result["mean_a"] == pytest.approx(a.mean(), rel=1e-15)
    assert result["mean_b"] == pytest.approx(b.mean(), rel=1e-15)
    assert result["mean_difference"] == pytest.approx((a - b).mean(), rel=1e-13)
    assert result["relative_difference"] == pytest.approx(a.mean() / b.mean() - 1, rel=1e-13)
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
    assert result["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


def test_relative_difference_by_hand():
    b = np.array([0.5, 0.25, 0.25])  # mean 1/3
    a = np.array([0.25, 0.25, 0.0])  # mean 1/6
    assert paired_tests(a, b)["relative_difference"] == pytest.approx(-0.5, rel=1e-15)
    assert paired_tests(b, a)["relative_difference"] == pytest.approx(1.0, rel=1e-15)


def test_one_differing_user_is_counted_and_tested():
    b = np.array([0.2, 0.4, 0.6, 0.8])
    a = b.copy()
    a[2] = 1.0
    result = paired_tests(a, b)
    assert result["differing_users"] == 1
    assert result["wilcoxon_p"] == pytest.approx(1.0)  # one positive difference of one: p = 1
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert result["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)


@pytest.mark.parametrize("scale", [1.0, -1.0, 2.0**-20, 2.0**20])
def test_a_constant_shift_is_told_apart_from_a_nearly_constant_one_at_eight_ulps(scale):
    # differences (1 - j * 2**-52) * scale and scale: j ulps of the largest difference apart
    # (a power of two scales them exactly); up to 8 is one constant shift, 9 is not
    b = np.zeros(2)
    for ulps in (1, 8):
        a = scale * np.array([1 - ulps * 2.0**-52, 1.0])
        assert paired_tests(a, b)["t_p"] == 0.0, ulps
    nearly = scale * np.array([1 - 9 * 2.0**-52, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: catastrophic cancellation
        expected = stats.ttest_rel(nearly, b).pvalue
        assert 0 < expected < 1e-14
        assert paired_tests(nearly, b)["t_p"] == pytest.approx(expected, rel=1e-9)


HOLM_MESSAGE = "p-values must lie in [0, 1], got "


@pytest.mark.parametrize("bad", [1.5, 1.0000001, -0.01, -1e-300, float("nan")])
def test_holm_refuses_a_p_value_outside_zero_one(bad):
    p_values = {"good": 0.5, "bad": bad}
    with pytest.raises(ValueError, match=f"^{re.escape(HOLM_MESSAGE + str(p_values))}$"):
        holm(p_values)


def test_holm_accepts_zero_and_one():
    assert holm({"a": 0.0, "b": 1.0, "c": 0.25}) == {"a": 0.0, "b": 1.0, "c": 0.5}


def test_holm_computes_in_float64_whatever_the_input_type():
    # 3 * float32(0.1) rounds to another value in float32 than in float64
    p32 = {"a": np.float32(0.1), "b": np.float32(0.3), "c": np.float32(0.2)}
    adjusted = holm(p32)
    assert adjusted == holm({name: float(value) for name, value in p32.items()})
    assert adjusted["a"] == 3 * float(np.float32(0.1))
    assert all(type(value) is float for value in adjusted.values())


def test_bootstrap_of_a_single_resample_and_of_two_users():
    a, b = np.array([0.3, 0.9]), np.array([0.5, 0.2])
    for seed in range(5):
        drawn = np.random.default_rng(seed).integers(0, 2, size=(1, 2))[0]
        expected = a[drawn].mean() / b[drawn].mean() - 1
        low, high = bootstrap_relative_ci(a, b, n_resamples=1, seed=seed)
        assert low == pytest.approx(expected, rel=1e-14) and high == low
        assert type(low) is float and type(high) is float


@pytest.mark.parametrize("confidence", [0.5, 0.8, 0.99])
def test_bootstrap_quantiles_follow_the_confidence(confidence):
    rng = np.random.default_rng(14)
    a, b = rng.random(25), rng.random(25) + 0.1
    draws = np.random.default_rng(3).integers(0, 25, size=(200, 25))
    relative = [a[users].mean() / b[users].mean() - 1 for users in draws]
    tails = [(1 - confidence) / 2, (1 + confidence) / 2]
    expected = tuple(np.quantile(relative, tails))
    interval = bootstrap_relative_ci(a, b, n_resamples=200, confidence=confidence, seed=3)
    assert interval == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_bootstrap_refuses_a_confidence_outside_the_open_interval(confidence):
    message = f"confidence must lie in (0, 1), got {confidence}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bootstrap_relative_ci(np.ones(4), np.ones(4), confidence=confidence)


@pytest.mark.parametrize("n_resamples", [0, -1])
def test_bootstrap_refuses_fewer_than_one_resample(n_resamples):
    message = f"n_resamples must be at least 1, got {n_resamples}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bootstrap_relative_ci(np.ones(4), np.ones(4), n_resamples=n_resamples)


def test_bootstrap_refuses_a_zero_baseline_with_its_reason():
    message = "mean(b) is 0: the relative difference is undefined"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        bootstrap_relative_ci(np.array([0.5, 0.2, 0.0]), np.zeros(3))


def test_bootstrap_leaves_out_resamples_whose_baseline_is_zero():
    a, b = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.0, 0.0, 0.0, 0.5])
    draws = np.random.default_rng(15).integers(0, 4, size=(400, 4))
    usable = [users for users in draws if b[users].sum() > 0]
    assert 50 < len(draws) - len(usable) < 350  # about (3/4)**4 of them are left out
    relative = [a[users].mean() / b[users].mean() - 1 for users in usable]
    interval = bootstrap_relative_ci(a, b, n_resamples=400, seed=15)
    assert interval == pytest.approx(tuple(np.quantile(relative, [0.025, 0.975])), rel=1e-12)


def test_bootstrap_refuses_when_every_resample_has_a_zero_baseline():
    a, b = np.array([0.4, 0.1]), np.array([0.0, 0.8])
    outcomes = set()
    for seed in range(16):
        drawn = np.random.default_rng(seed).integers(0, 2, size=(1, 2))[0]
        if b[drawn].sum() == 0:
            outcomes.add("refused")
            with pytest.raises(ValueError, match="^every resample drew only users with b = 0$"):
                bootstrap_relative_ci(a, b, n_resamples=1, seed=seed)
        else:
            outcomes.add("interval")
            expected = a[drawn].mean() / b[drawn].mean() - 1
            assert bootstrap_relative_ci(a, b, n_resamples=1, seed=seed) == pytest.approx(
                (expected, expected)
            )
    assert outcomes == {"refused", "interval"}


class _DrawSpy(np.random.Generator):
    """A generator that records the shape of each ``integers`` draw."""

    def __init__(self, seed: int) -> None:
        super().__init__(np.random.PCG64(seed))
        self.shapes: list[tuple[int, int]] = []

    def integers(self, *args, **kwargs):
        self.shapes.append(kwargs["size"])
        return super().integers(*args, **kwargs)


@pytest.mark.parametrize(
    ("elements", "users", "rows"),
    [
        (7 * 6, 6, [7] * 42 + [6]),  # 300 resamples in chunks of 7 resamples
        (7 * 5 + 4, 5, [7] * 42 + [6]),  # not a multiple of the users
        (3, 5, [1] * 300),  # one resample alone is more: one at a time
        (5, 5, [1] * 300),
    ],
)
def test_bootstrap_in_chunks_holds_bounded_draws_and_equals_one_draw(
    monkeypatch, elements, users, rows
):
    rng = np.random.default_rng(16)
    a, b = rng.random(users), rng.random(users) + 0.2
    whole = bootstrap_relative_ci(a, b, n_resamples=300, seed=4)  # one chunk
    spies: list[_DrawSpy] = []

    def spy_rng(seed):
        spies.append(_DrawSpy(seed))
        return spies[-1]

    monkeypatch.setattr(significance, "BOOTSTRAP_ELEMENTS_PER_CHUNK", elements)
    monkeypatch.setattr(np.random, "default_rng", spy_rng)
    chunked = bootstrap_relative_ci(a, b, n_resamples=300, seed=4)
    assert [shape[0] for shape in spies[0].shapes] == rows
    assert all(shape[1] == users for shape in spies[0].shapes)
    assert chunked == whole
