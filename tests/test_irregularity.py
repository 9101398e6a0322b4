import math

import numpy as np
import pytest

from deepm3.data.sequences import evaluation_table
from deepm3.stats.irregularity import coefficient_of_variation, quantile_groups

BASE = 1_000_000_000  # real times are far from the padding's 0: a padding gap would dominate


def _rows() -> tuple[np.ndarray, np.ndarray]:
    """(6, 6) left-padded histories whose CV is worked out in the test below."""
    timestamps = np.array(
        [
            [0, 0, BASE + 10, BASE + 20, BASE + 30, BASE + 40],  # gaps 10, 10, 10
            [0, 0, 0, BASE, BASE, BASE + 10],  # gaps 0, 10 (a tie)
            [BASE, BASE + 1, BASE + 3, BASE + 7, BASE + 15, BASE + 31],  # gaps 1, 2, 4, 8, 16
            [0, 0, 0, 0, BASE, BASE + 5],  # one gap
            [0, 0, 0, 0, 0, 0],  # empty
            [0, 0, 0, BASE, BASE, BASE],  # gaps 0, 0
        ],
        dtype=np.int64,
    )
    items = np.where(timestamps > 0, 7, 0).astype(np.int64)
    return timestamps, items


def test_coefficient_of_variation_by_hand():
    cv = coefficient_of_variation(*_rows())
    assert cv[0] == 0.0  # constant gaps
    assert cv[1] == pytest.approx(1.0)  # mean 5, population std 5
    # gaps 1, 2, 4, 8, 16: mean 6.2, mean of squares 68.2, variance 68.2 - 6.2**2 = 29.76
    assert cv[2] == pytest.approx(math.sqrt(29.76) / 6.2, rel=1e-12)
    assert np.isnan(cv[3]) and np.isnan(cv[4]) and np.isnan(cv[5])


def test_coefficient_of_variation_ignores_scale_shift_and_padding():
    timestamps, items = _rows()
    cv = coefficient_of_variation(timestamps, items)
    real = items > 0
    scaled = np.where(real, 3 * (timestamps - BASE) + 12345, 0)
    np.testing.assert_allclose(coefficient_of_variation(scaled, items), cv, rtol=1e-12)
    padded_items = np.pad(items, ((0, 0), (4, 0)))  # more left padding, same events
    padded_times = np.pad(timestamps, ((0, 0), (4, 0)))
    np.testing.assert_allclose(coefficient_of_variation(padded_times, padded_items), cv)


def test_coefficient_of_variation_matches_a_loop_over_evaluation_histories(synthetic):
    table = evaluation_table(synthetic, "test")
    cv = coefficient_of_variation(table.timestamps, table.items)
    for row, value in enumerate(cv):
        gaps = np.diff(table.timestamps[row][table.items[row] > 0]).astype(float)
        if len(gaps) < 2 or gaps.mean() == 0:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(gaps.std() / gaps.mean(), rel=1e-12)
    assert np.isfinite(cv).sum() > len(cv) // 2


def test_coefficient_of_variation_rejects_time_going_backwards():
    with pytest.raises(ValueError):
        coefficient_of_variation(np.array([[0, 10, 5, 20]]), np.array([[0, 1, 2, 3]]))


def test_quantile_groups_by_hand():
    values = np.array([5.0, 1.0, 3.0, np.nan, 2.0, 4.0])
    # 5 finite values; below = 4, 0, 2, -, 1, 3; group = below * 3 // 5
    assert quantile_groups(values, 3).tolist() == [2, 0, 1, -1, 0, 1]


def test_quantile_groups_without_ties_by_rank():
    values = np.random.default_rng(0).random(100)
    ranks = np.argsort(np.argsort(values))
    for count in (3, 5, 7):
        groups = quantile_groups(values, count)
        assert ((groups * 100 <= ranks * count) & (ranks * count < (groups + 1) * 100)).all()
    assert np.bincount(quantile_groups(values, 5)).tolist() == [20] * 5
    # ceil(100 j / 7) = 0, 15, 29, 43, 58, 72, 86, 100
    assert np.bincount(quantile_groups(values, 7)).tolist() == [15, 14, 14, 15, 14, 14, 14]
    assert np.bincount(quantile_groups(values[:10], 3)).tolist() == [4, 3, 3]


def test_quantile_groups_keep_ties_together_and_depend_only_on_value():
    values = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 2.0])
    # below = 0, 0, 0, 0, 4, 5 -> groups 0, 0, 0, 0, 2, 2: the tie fills group 0, group 1 empty
    assert quantile_groups(values, 3).tolist() == [0, 0, 0, 0, 2, 2]
    noisy = np.random.default_rng(1).integers(0, 4, size=50).astype(float)
    order = np.random.default_rng(2).permutation(50)
    np.testing.assert_array_equal(
        quantile_groups(noisy[order], 3), quantile_groups(noisy, 3)[order]
    )
    for value in np.unique(noisy):
        assert len(set(quantile_groups(noisy, 3)[noisy == value])) == 1


def test_quantile_groups_of_only_nan():
    assert quantile_groups(np.array([np.nan, np.nan]), 3).tolist() == [-1, -1]
