import numpy as np
import pandas as pd
import pytest

from deepm3.data.preprocess import k_core, preprocess, zero_gap_share
from deepm3.data.sequences import evaluation_table, history_items, training_table, window_ends
from deepm3.data.split import leave_one_out, temporal
from deepm3.data.tabular import interactions_frame


def frame(rows):
    users, items, times = zip(*rows, strict=True)
    return interactions_frame(list(users), list(items), np.array(times, dtype=np.int64))


def test_ties_keep_file_order_and_sort_is_by_time():
    rows = [("a", "x", 5), ("a", "y", 5), ("b", "z", 1), ("a", "w", 1), ("a", "v", 5)]
    events, _ = preprocess(frame(rows))
    user_a = events.offsets[1], events.offsets[2]
    names = events.item_ids[events.items[user_a[0] : user_a[1]]]
    assert list(names) == ["w", "x", "y", "v"]  # time 1 first, then the three ties in file order
    assert events.timestamps.dtype == np.int64


def test_reindex_starts_at_one_and_zero_is_padding():
    events, _ = preprocess(frame([("a", "x", 1), ("b", "y", 2), ("a", "y", 3)]))
    assert events.items.min() == 1 and events.num_items == 2 and events.num_users == 2
    assert events.user_ids[0] == "" and events.item_ids[0] == ""


def test_k_core_iterative_versus_single_pass():
    # item "rare" has 1 event; removing it leaves user "c" with 1 event, which iterative removes.
    rows = [
        ("a", "x", 1),
        ("a", "y", 2),
        ("b", "x", 1),
        ("b", "y", 2),
        ("c", "x", 1),
        ("c", "rare", 2),
    ]
    data = frame(rows)
    assert set(k_core(data, 2, "iterative")["user"]) == {"a", "b"}
    assert set(k_core(data, 2, "single")["user"]) == {"a", "b", "c"}


def test_dedup_rules_are_counted():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "x", 3)]
    _, stats = preprocess(frame(rows), dedup="none")
    assert stats["duplicate_events"] == 1
    events, stats = preprocess(frame(rows), dedup="first")
    assert list(events.item_ids[events.items]) == ["x", "y"]
    events, _ = preprocess(frame(rows), dedup="last")
    assert list(events.item_ids[events.items]) == ["y", "x"]


def test_zero_gap_share_ignores_user_boundaries():
    events, _ = preprocess(frame([("a", "x", 1), ("a", "y", 1), ("b", "x", 1), ("b", "y", 2)]))
    assert zero_gap_share(events) == 0.5


def test_leave_one_out_positions_and_short_users(synthetic):
    split = leave_one_out(synthetic.events)
    lengths = synthetic.events.lengths()
    evaluated = lengths >= 3
    assert (split.test_pos[evaluated] == lengths[evaluated] - 1).all()
    assert (split.valid_pos[evaluated] == lengths[evaluated] - 2).all()
    assert (split.valid_pos[~evaluated] == -1).all()
    assert (split.train_len[~evaluated] == lengths[~evaluated]).all()


@pytest.mark.parametrize(("windows", "stride"), [("last", None), ("all", None), ("all", 3)])
def test_training_windows_stay_inside_the_training_events(synthetic, windows, stride):
    """The leakage rule: every window is a run of consecutive training events of its user."""
    table = training_table(synthetic, windows, stride)
    offsets, split, events = synthetic.events.offsets, synthetic.split, synthetic.events
    for row, user in enumerate(table.users):
        train = events.items[offsets[user] : offsets[user] + split.train_len[user]]
        inputs = table.items[row][table.items[row] > 0]
        targets = table.targets[row][table.targets[row] > 0]
        window = np.concatenate([inputs, targets[-1:]])
        np.testing.assert_array_equal(targets, window[1:])
        starts = range(len(train) - len(window) + 1)
        assert any((train[s : s + len(window)] == window).all() for s in starts), row
    if windows == "last":
        assert len(set(table.users)) == len(table.users)


def test_all_windows_cover_every_training_target_exactly_once(synthetic):
    """With the default stride (max_len) each training event after a user's first is predicted
    once, whatever the history length; with a smaller stride some are predicted again."""
    split = synthetic.split
    expected = int(np.clip(split.train_len - 1, 0, None).sum())
    assert (training_table(synthetic, "all").targets > 0).sum() == expected
    assert (training_table(synthetic, "last").targets > 0).sum() < expected
    assert (training_table(synthetic, "all", 5).targets > 0).sum() > expected
    users, ends = window_ends(split.train_len, synthetic.max_len, "all", None)
    assert (ends <= split.train_len[users]).all() and (ends >= 2).all()


def test_shuffled_tie_order_is_seeded_and_only_reorders_ties():
    rows = [("a", "x", 5), ("a", "y", 5), ("a", "z", 5), ("a", "w", 1), ("a", "v", 9)] * 1
    rows += [("a", f"t{k}", 7) for k in range(12)]
    orders = []
    for seed in (0, 0, 1):
        events, _ = preprocess(frame(rows), tie_order="shuffle", tie_seed=seed)
        orders.append(list(events.item_ids[events.items]))
    assert orders[0] == orders[1] and orders[0] != orders[2]
    file_order, _ = preprocess(frame(rows))
    np.testing.assert_array_equal(events.timestamps, file_order.timestamps)  # still sorted by time
    assert orders[0][0] == "w" and orders[0][-1] == "v"
    assert sorted(orders[0]) == sorted(file_order.item_ids[file_order.items])


def test_evaluation_histories_end_right_before_the_target(synthetic):
    for role, positions in (
        ("valid", synthetic.split.valid_pos),
        ("test", synthetic.split.test_pos),
    ):
        table = evaluation_table(synthetic, role)
        for row, user in enumerate(table.users):
            start = synthetic.events.offsets[user]
            end = start + positions[user]
            assert table.target[row] == synthetic.events.items[end]
            history = synthetic.events.items[max(start, end - synthetic.max_len) : end]
            np.testing.assert_array_equal(table.items[row][-len(history) :], history)
            assert (table.items[row][: -len(history)] == 0).all()
        rows, items = history_items(synthetic, table.users, role)
        assert len(items) == positions[table.users].sum()


def test_gaps_are_seconds_between_real_events(synthetic):
    table = evaluation_table(synthetic, "test")
    real = table.items > 0
    previous_real = np.concatenate([np.zeros_like(real[:, :1]), real[:, :-1]], axis=1)
    first_real = real & ~previous_real
    assert (table.gaps[~real] == 0).all() and (table.gaps[first_real] == 0).all()
    inner = real & ~first_real
    diffs = np.diff(table.timestamps, axis=1, prepend=0)
    np.testing.assert_array_equal(table.gaps[inner], diffs[inner])


def test_temporal_split_never_uses_the_future():
    rows = [("a", f"i{t}", t) for t in range(0, 100, 10)] + [("b", "i0", 5), ("b", "i10", 95)]
    events, _ = preprocess(frame(rows))
    # range 0..95: validation from 95 - int(95 * 0.3) = 67, test from 95 - int(9.5) = 86
    split = temporal(events, 0.2, 0.1)
    # user a (0, 10, .., 90): trains on 0..60, validates on 70, is tested on 90
    assert (split.train_len[1], split.valid_pos[1], split.test_pos[1]) == (7, 7, 9)
    # user b (5, 95): trains on 5; 95 is past the test cut, so no validation target
    assert (split.train_len[2], split.valid_pos[2], split.test_pos[2]) == (1, -1, 1)
    assert pd.Series(split.train_len).sum() < len(events.items)
