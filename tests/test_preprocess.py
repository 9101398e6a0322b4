import numpy as np
import pandas as pd

from deepm3.data.preprocess import k_core, preprocess, zero_gap_share
from deepm3.data.sequences import evaluation_table, history_items, training_table
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


def test_no_test_or_validation_item_in_any_training_input(synthetic):
    """The leakage rule: training rows only contain events before each user's validation."""
    table = training_table(synthetic)
    offsets, split = synthetic.events.offsets, synthetic.split
    for row, user in enumerate(table.users):
        start, length = offsets[user], split.train_len[user]
        allowed = synthetic.events.timestamps[start : start + length]
        seen = table.timestamps[row][table.items[row] > 0]
        # every input and target is within the first train_len events, in order
        inputs = table.items[row][table.items[row] > 0]
        targets = table.targets[row][table.targets[row] > 0]
        expected = synthetic.events.items[start : start + length]
        np.testing.assert_array_equal(
            np.concatenate([inputs, targets[-1:]]), expected[-(len(inputs) + 1) :]
        )
        assert len(seen) <= len(allowed)


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
    split = temporal(events, 0.2, 0.1)  # cuts at 70 and 80 (range 0..95 -> 95*0.3=28 -> 67)
    for user in (1, 2):
        times = events.timestamps[events.offsets[user] : events.offsets[user + 1]]
        train_times = times[: split.train_len[user]]
        if split.valid_pos[user] >= 0:
            assert train_times.max() < times[split.valid_pos[user]]
        if split.test_pos[user] >= 0:
            assert (times[: split.test_pos[user]] <= times[split.test_pos[user]]).all()
    assert pd.Series(split.train_len).sum() < len(events.items)
