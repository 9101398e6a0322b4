import itertools
from collections import Counter

import numpy as np
import pytest
import torch

from deepm3.data.sequences import _gaps, evaluation_table, gap_features
from deepm3.stats.perturb import (
    drop_events,
    jitter_timestamps,
    mean_gaps,
    shuffle_gaps,
    shuffle_order,
    zero_timestamps,
)

BASE = 1_000_000_000

PERTURBATIONS = {
    "shuffle_gaps": lambda items, times, rng: shuffle_gaps(items, times, rng),
    "mean_gaps": lambda items, times, rng: mean_gaps(items, times),
    "zero_timestamps": lambda items, times, rng: zero_timestamps(items, times),
    "shuffle_order": lambda items, times, rng: shuffle_order(items, times, rng),
    "shuffle_order_window": lambda items, times, rng: shuffle_order(items, times, rng, window=3),
    "jitter": lambda items, times, rng: jitter_timestamps(times, items, 5000.0, rng, False),
    "jitter_resort": lambda items, times, rng: jitter_timestamps(times, items, 5000.0, rng, True),
    "drop_events": lambda items, times, rng: drop_events(items, times, 0.5, rng),
}
KEEP_TIME_ORDER = set(PERTURBATIONS) - {"jitter"}
KEEP_EVENT_COUNT = set(PERTURBATIONS) - {"drop_events"}


def _histories(rows: int = 60, columns: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (rows, columns) histories of random length 0..columns, with tied times."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, columns + 1, size=rows)
    lengths[:3] = [0, 1, columns]  # always an empty, a single-event and a full row
    gaps = rng.choice([0, 60, 3600, 86400, 7 * 86400], size=(rows, columns))
    times = BASE + np.cumsum(gaps, axis=1)
    real = np.arange(columns)[None, :] >= (columns - lengths)[:, None]
    items = np.where(real, rng.integers(1, 30, size=(rows, columns)), 0)
    return items.astype(np.int64), np.where(real, times, 0).astype(np.int64)


def _assert_layout(items: np.ndarray, times: np.ndarray) -> None:
    real = items > 0
    assert items.dtype == np.int64 and times.dtype == np.int64
    assert not (real[:, :-1] & ~real[:, 1:]).any(), "a real event before padding"
    assert (times[~real] == 0).all(), "padding with a timestamp"


def _real_rows(items: np.ndarray, times: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(i[i > 0], t[i > 0]) for i, t in zip(items, times, strict=True)]


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_layout_dtype_and_time_order(name):
    items, times = _histories()
    new_items, new_times = PERTURBATIONS[name](items, times, np.random.default_rng(1))
    assert new_items.shape == items.shape
    _assert_layout(new_items, new_times)
    counts, new_counts = (items > 0).sum(1), (new_items > 0).sum(1)
    if name in KEEP_EVENT_COUNT:
        np.testing.assert_array_equal(new_counts, counts)
    else:
        assert ((new_counts <= counts) & ((new_counts > 0) == (counts > 0))).all()
    if name in KEEP_TIME_ORDER:
        assert all((np.diff(t) >= 0).all() for _, t in _real_rows(new_items, new_times))


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_inputs_untouched_and_same_seed_same_output(name):
    items, times = _histories()
    kept_items, kept_times = items.copy(), times.copy()
    first = PERTURBATIONS[name](items, times, np.random.default_rng(2))
    second = PERTURBATIONS[name](items, times, np.random.default_rng(2))
    np.testing.assert_array_equal(items, kept_items)
    np.testing.assert_array_equal(times, kept_times)
    for output, again, source in zip(first, second, (items, times), strict=True):
        np.testing.assert_array_equal(output, again)
        assert not np.shares_memory(output, source)


@pytest.mark.parametrize("name", PERTURBATIONS)
def test_real_evaluation_histories(synthetic, name):
    table = evaluation_table(synthetic, "test")
    new_items, new_times = PERTURBATIONS[name](
        table.items, table.timestamps, np.random.default_rng(3)
    )
    _assert_layout(new_items, new_times)


def test_zero_noise_and_zero_dropout_return_the_input():
    items, times = _histories()
    rng = np.random.default_rng(4)
    for resort in (False, True):
        jittered = jitter_timestamps(times, items, 0.0, rng, resort)
        np.testing.assert_array_equal(jittered[0], items)
        np.testing.assert_array_equal(jittered[1], times)
    kept = drop_events(items, times, 0.0, rng)
    np.testing.assert_array_equal(kept[0], items)
    np.testing.assert_array_equal(kept[1], times)
    one_window = shuffle_order(items, times, rng, window=1)
    np.testing.assert_array_equal(one_window[0], items)


def test_shuffle_gaps_keeps_items_first_time_span_and_gap_multiset():
    items, times = _histories()
    new_items, new_times = shuffle_gaps(items, times, np.random.default_rng(5))
    np.testing.assert_array_equal(new_items, items)
    changed = 0
    for (_, old), (_, new) in zip(
        _real_rows(items, times), _real_rows(new_items, new_times), strict=True
    ):
        if len(old) == 0:
            continue
        assert new[0] == old[0] and new[-1] == old[-1]
        assert sorted(np.diff(new)) == sorted(np.diff(old))
        changed += not np.array_equal(new, old)
    assert changed > 10


def test_shuffle_gaps_permutations_are_uniform():
    # One row with gaps 1, 10, 100 (padding in front), 2400 copies: each of the 6 orders ~400.
    items = np.tile([[0, 0, 5, 6, 7, 8]], (2400, 1))
    times = np.tile([[0, 0, BASE, BASE + 1, BASE + 11, BASE + 111]], (2400, 1))
    _, new_times = shuffle_gaps(items, times, np.random.default_rng(6))
    counts = Counter(tuple(np.diff(row[2:])) for row in new_times)
    assert set(counts) == set(itertools.permutations([1, 10, 100]))
    assert all(320 < count < 480 for count in counts.values())  # 4 standard deviations


def test_mean_gaps_by_hand_and_constant():
    items = np.array([[0, 1, 2, 3, 4], [0, 0, 1, 2, 3], [0, 0, 0, 0, 9]], dtype=np.int64)
    times = np.array(
        [[0, BASE, BASE + 1, BASE + 5, BASE + 10], [0, 0, 7, 8, 12], [0, 0, 0, 0, 99]],
        dtype=np.int64,
    )
    new_items, new_times = mean_gaps(items, times)
    np.testing.assert_array_equal(new_items, items)
    # span 10 over 3 gaps -> rint(3.33) = 3; span 5 over 2 gaps -> rint(2.5) = 2 (half to even)
    assert new_times.tolist() == [
        [0, BASE, BASE + 3, BASE + 6, BASE + 9],
        [0, 0, 7, 9, 11],
        [0, 0, 0, 0, 99],
    ]
    items, times = _histories()
    _, new_times = mean_gaps(items, times)
    for (_, old), (_, new) in zip(
        _real_rows(items, times), _real_rows(items, new_times), strict=True
    ):
        if len(old) >= 2:
            assert len(set(np.diff(new))) == 1 and new[0] == old[0]
            assert abs((new[-1] - new[0]) - (old[-1] - old[0])) <= (len(old) - 1) / 2


def test_zero_timestamps_keeps_events():
    items, times = _histories()
    new_items, new_times = zero_timestamps(items, times)
    np.testing.assert_array_equal(new_items, items)
    assert (new_times == 0).all()


def test_shuffle_order_moves_items_not_times():
    items, times = _histories()
    new_items, new_times = shuffle_order(items, times, np.random.default_rng(7))
    np.testing.assert_array_equal(new_times, times)
    for (old, _), (new, _) in zip(
        _real_rows(items, times), _real_rows(new_items, new_times), strict=True
    ):
        assert sorted(old) == sorted(new)
    assert not np.array_equal(new_items, items)


def test_full_shuffle_order_is_uniform():
    items = np.tile([[0, 1, 2, 3, 4]], (2400, 1))
    times = np.tile([[0, 10, 20, 30, 40]], (2400, 1))
    new_items, _ = shuffle_order(items, times, np.random.default_rng(8))
    counts = Counter(tuple(row[1:]) for row in new_items)
    assert len(counts) == 24 and all(60 < count < 140 for count in counts.values())


def test_windowed_shuffle_stays_inside_windows_counted_from_the_end():
    # 7 real events, window 3: windows are columns {5, 6, 7}, {2, 3, 4} and {1} alone.
    items = np.tile([[0, 1, 2, 3, 4, 5, 6, 7]], (500, 1))
    times = np.tile([[0, 1, 2, 3, 4, 5, 6, 7]], (500, 1))
    new_items, _ = shuffle_order(items, times, np.random.default_rng(9), window=3)
    assert (new_items[:, 0] == 0).all() and (new_items[:, 1] == 1).all()
    assert (np.sort(new_items[:, 2:5], axis=1) == [2, 3, 4]).all()
    assert (np.sort(new_items[:, 5:], axis=1) == [5, 6, 7]).all()
    assert len({tuple(row) for row in new_items[:, 5:]}) == 6  # every order inside occurs


def test_jitter_noise_is_rounded_gaussian_and_clipped():
    items = np.ones((200, 100), dtype=np.int64)
    times = np.full((200, 100), BASE, dtype=np.int64)
    _, new_times = jitter_timestamps(times, items, 1000.0, np.random.default_rng(10), False)
    noise = (new_times - BASE).astype(float)
    assert abs(noise.mean()) < 10 and abs(noise.std() - 1000) < 15  # 20000 draws
    small = np.tile([[0, 1, 2, 3]], (100, 1))
    _, clipped = jitter_timestamps(
        small, np.where(small > 0, 1, 0), 50.0, np.random.default_rng(0), False
    )
    assert clipped.min() == 0 and (clipped[:, 1:] == 0).any()


def test_jitter_with_resort_sorts_events_with_their_times():
    items, times = _histories()
    plain = jitter_timestamps(times, items, 86400.0, np.random.default_rng(11), resort=False)
    sorted_ = jitter_timestamps(times, items, 86400.0, np.random.default_rng(11), resort=True)
    np.testing.assert_array_equal(plain[0], items)  # without resort the order stays
    assert any((np.diff(t) < 0).any() for _, t in _real_rows(*plain))
    for (i, t), (si, st) in zip(_real_rows(*plain), _real_rows(*sorted_), strict=True):
        assert (np.diff(st) >= 0).all()
        assert sorted(zip(i, t, strict=True)) == sorted(
            zip(si, st, strict=True)
        )  # each item keeps its jittered time


def test_a_backwards_jitter_reads_as_a_zero_gap_in_the_pipeline():
    items = np.array([[0, 1, 2]])
    times = np.array([[0, BASE + 100, BASE]])  # what resort=False can produce
    gaps = _gaps(times, items)
    assert gaps.tolist() == [[0, 0, -100]]
    assert gap_features(torch.from_numpy(gaps)).tolist() == [[0.0, 0.0, 0.0]]


def test_drop_events_keeps_order_and_the_last_event():
    items, times = _histories()
    new_items, new_times = drop_events(items, times, 0.5, np.random.default_rng(12))
    dropped = total = 0
    for (old_i, old_t), (new_i, new_t) in zip(
        _real_rows(items, times), _real_rows(new_items, new_times), strict=True
    ):
        if len(old_i) == 0:
            assert len(new_i) == 0
            continue
        assert new_i[-1] == old_i[-1] and new_t[-1] == old_t[-1]
        position = 0  # the kept (item, time) pairs are a subsequence of the original
        for pair in zip(new_i, new_t, strict=True):
            while (old_i[position], old_t[position]) != pair:
                position += 1
            position += 1
        dropped += len(old_i) - len(new_i)
        total += len(old_i) - 1
    assert 0.4 < dropped / total < 0.6


def test_drop_everything_leaves_the_last_event():
    items, times = _histories()
    new_items, new_times = drop_events(items, times, 1.0, np.random.default_rng(13))
    real = items[:, -1] > 0
    np.testing.assert_array_equal(new_items[:, -1], items[:, -1])
    np.testing.assert_array_equal(new_times[:, -1], times[:, -1])
    assert (new_items[:, :-1] == 0).all() and real.sum() == (new_items > 0).sum()


def test_bad_layouts_and_arguments_are_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        shuffle_gaps(np.array([[1, 0, 2]]), np.array([[5, 0, 6]]), rng)  # padding inside
    with pytest.raises(ValueError):
        mean_gaps(np.array([[0, 1]]), np.array([[3, 5]]))  # padding with a time
    with pytest.raises(ValueError):
        drop_events(np.array([[0, 1]]), np.array([[0, 5]]), 1.5, rng)
    with pytest.raises(ValueError):
        shuffle_order(np.array([[0, 1]]), np.array([[0, 5]]), rng, window=0)
    with pytest.raises(ValueError):
        jitter_timestamps(np.array([[0, 5]]), np.array([[0, 1]]), -1.0, rng, True)
