import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from deepm3.config import EvalConfig
from deepm3.data.sequences import Batch, evaluation_table, with_history
from deepm3.errors import ConfigError
from deepm3.eval.evaluator import evaluate, evaluated_rows, sample_negatives, users_per_chunk
from deepm3.eval.metrics import metrics_from_ranks, pessimistic_ranks


def test_ranks_by_hand_with_pessimistic_ties():
    scores = torch.tensor(
        [
            [0.9, 0.1, 0.5, 0.3],  # target col 2 (0.5): only 0.9 above -> rank 2
            [0.2, 0.2, 0.2, 0.2],  # all tied: target ranks last (4)
            [0.1, 0.7, 0.7, 0.0],  # tie with one other: rank 2, not 1
            [0.0, 0.0, 1.0, -1.0],  # clear winner: rank 1
        ]
    )
    ranks = pessimistic_ranks(scores, torch.tensor([2, 0, 1, 2]))
    assert ranks.tolist() == [2, 4, 2, 1]


def test_metrics_from_hand_computed_ranks():
    ranks = torch.tensor([1, 2, 11, 5])
    m = metrics_from_ranks(ranks, ks=(1, 5, 10))
    assert m["hr@1"] == 0.25
    assert m["hr@5"] == 0.75 and m["hr@10"] == 0.75
    expected_ndcg5 = (1 + 1 / math.log2(3) + 1 / math.log2(6)) / 4
    assert m["ndcg@5"] == pytest.approx(expected_ndcg5)
    assert m["mrr@5"] == pytest.approx((1 + 0.5 + 0.2) / 4)
    assert m["ndcg@1"] == pytest.approx(0.25)


def _history_lover(data):
    """Scores every history item 10, the target 5, everything else 0."""

    def scorer(batch: Batch) -> torch.Tensor:
        scores = torch.zeros(batch.items.shape[0], data.num_items + 1)
        scores.scatter_(1, batch.items, 10.0)
        scores[torch.arange(len(batch.target)), batch.target] = 5.0
        return scores

    return scorer


def _scorer_for(data, fill):
    def scorer(batch: Batch) -> torch.Tensor:
        scores = torch.full((batch.items.shape[0], data.num_items + 1), fill)
        scores[torch.arange(len(batch.target)), batch.target] = 1.0
        return scores

    return scorer


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_a_model_that_ranks_the_target_first_scores_one(synthetic, protocol):
    config = EvalConfig(protocol=protocol, num_negatives=10, exclude_seen=False)
    result = evaluate(_scorer_for(synthetic, 0.0), synthetic, "test", config)
    assert all(value == 1.0 for value in result.metrics.values())
    assert (result.per_user["rank"] == 1).all()


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_one_masking_rule_for_both_protocols(synthetic, protocol):
    """exclude_seen masks every history item, a repeated target included (a sure miss, ranked
    last); without it nothing is masked and sampled negatives may be items seen before."""
    oracle = _scorer_for(synthetic, 0.0)
    config = EvalConfig(protocol=protocol, num_negatives=10, ks=(1,))
    masked = evaluate(oracle, synthetic, "test", config)
    repeats = masked.protocol["targets_seen_before"]
    assert 0 < repeats < len(masked.per_user)
    assert masked.metrics["hr@1"] == pytest.approx(1 - repeats / len(masked.per_user))
    last = 11 if protocol == "sampled" else synthetic.num_items
    assert (masked.per_user["rank"] > 1).sum() == (masked.per_user["rank"] == last).sum()
    unmasked = evaluate(oracle, synthetic, "test", dataclasses.replace(config, exclude_seen=False))
    assert unmasked.metrics["hr@1"] == 1.0


def test_sampled_negatives_include_seen_items_only_without_exclude_seen(synthetic):
    """History items outscore the target: they hurt only when they can be drawn as negatives."""

    history_lover = _history_lover(synthetic)
    config = EvalConfig(protocol="sampled", num_negatives=5, ks=(1,))
    masked = evaluate(history_lover, synthetic, "test", config)
    first = (masked.per_user["rank"] == 1).sum()
    assert first == len(masked.per_user) - masked.protocol["targets_seen_before"]
    unmasked = evaluate(
        history_lover, synthetic, "test", dataclasses.replace(config, exclude_seen=False)
    )
    assert (unmasked.per_user["rank"] > 1).sum() > masked.protocol["targets_seen_before"]


def test_untied_metrics_keep_targets_not_sharing_the_last_timestamp(synthetic):
    table = evaluation_table(synthetic, "test")
    config = EvalConfig(ks=(1, 3))
    result = evaluate(_scorer_for(synthetic, 0.5), synthetic, "test", config)
    tied = table.target_time == table.timestamps[:, -1]
    assert 0 < tied.sum() < len(tied)
    np.testing.assert_array_equal(result.per_user["tied"].to_numpy(), tied)
    ranks = torch.from_numpy(result.per_user["rank"].to_numpy()[~tied])
    assert result.untied_metrics == metrics_from_ranks(ranks, (1, 3))  # the configured ks
    assert result.protocol["untied_users"] == (~tied).sum()
    # every target tied with the last history event: no untied metrics at all
    all_tied = with_history(table, table.items, table.timestamps, table.timestamps[:, -1])
    result = evaluate(_scorer_for(synthetic, 0.5), synthetic, "test", config, table=all_tied)
    assert result.untied_metrics == {} and result.protocol["untied_users"] == 0
    assert result.per_user["tied"].all()


@pytest.mark.parametrize("protocol", ["full", "sampled"])
def test_a_constant_model_ranks_every_target_last(synthetic, protocol):
    constant = lambda batch: torch.zeros(batch.items.shape[0], synthetic.num_items + 1)  # noqa: E731
    config = EvalConfig(protocol=protocol, num_negatives=10, exclude_seen=False)
    result = evaluate(constant, synthetic, "test", config)
    last = 11 if protocol == "sampled" else synthetic.num_items
    assert (result.per_user["rank"] == last).all()


def test_nan_scores_never_rank_first(synthetic):
    def nan_model(batch: Batch) -> torch.Tensor:
        return torch.full((batch.items.shape[0], synthetic.num_items + 1), float("nan"))

    assert evaluate(nan_model, synthetic, "test", EvalConfig()).metrics["hr@5"] == 0.0


def test_nan_scores_rank_below_every_real_score(synthetic):
    def nan_but_the_target(batch: Batch) -> torch.Tensor:  # the target's score is negative
        scores = torch.full((batch.items.shape[0], synthetic.num_items + 1), float("nan"))
        scores[torch.arange(len(batch.target)), batch.target] = -5.0
        return scores

    for protocol in ("full", "sampled"):
        config = EvalConfig(protocol=protocol, num_negatives=10, exclude_seen=False)
        result = evaluate(nan_but_the_target, synthetic, "test", config)
        assert (result.per_user["rank"] == 1).all(), protocol


def test_the_evaluation_records_its_role_integer_ranks_and_is_quiet(synthetic, capsys):
    scorer = _scorer_for(synthetic, 0.5)
    result = evaluate(scorer, synthetic, "valid", EvalConfig())
    assert result.protocol["role"] == "valid"
    assert result.per_user["rank"].dtype == np.int64  # written as integers to per_user_*.csv
    assert capsys.readouterr().err == ""  # no progress bar unless asked
    evaluate(scorer, synthetic, "test", EvalConfig(), progress=True)
    assert "evaluate test" in capsys.readouterr().err


def test_exclude_seen_masks_history_and_is_recorded(synthetic):
    """Giving history items the top scores only hurts when they are not masked."""

    history_lover = _history_lover(synthetic)
    masked = evaluate(history_lover, synthetic, "test", EvalConfig(exclude_seen=True, ks=(1,)))
    unmasked = evaluate(history_lover, synthetic, "test", EvalConfig(exclude_seen=False, ks=(1,)))
    assert masked.protocol["exclude_seen"] is True and unmasked.protocol["exclude_seen"] is False
    repeat = masked.protocol["targets_seen_before"]
    # targets seen before are masked too: pessimistic misses, counted in the protocol record
    assert (masked.per_user["rank"] == 1).sum() == len(masked.per_user) - repeat
    assert unmasked.metrics["hr@1"] < masked.metrics["hr@1"]


def raw_histories(csv_path, data, role: str) -> dict[int, tuple[set[int], int]]:
    """Per user (the data's user index): the items of every event before the ``role`` target
    and the target item, read from the raw CSV (leave-one-out: the test target is a user's
    last event, the validation target the one before; ties keep file order). Independent of
    the evaluator and of :func:`deepm3.data.sequences.history_items`."""
    frame = pd.read_csv(csv_path, dtype=str)
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    item_index = {raw: index for index, raw in enumerate(data.events.item_ids)}
    user_index = {raw: index for index, raw in enumerate(data.events.user_ids)}
    back = {"test": 1, "valid": 2}[role]
    histories = {}
    for raw_user, events in frame.groupby("user_id", sort=False):
        items = events.sort_values("timestamp", kind="stable")["item_id"].tolist()
        if len(items) < 3:  # too short to be evaluated
            continue
        target = len(items) - back
        histories[user_index[raw_user]] = (
            {item_index[raw] for raw in items[:target]},
            item_index[items[target]],
        )
    return histories


@pytest.mark.parametrize("role", ["valid", "test"])
def test_full_ranking_equals_a_per_user_loop(synthetic, synthetic_events, role):
    """Every item of the whole history (not only the last max_len events the model reads) is
    masked: ranks equal a per-user loop over a mask built from the raw events."""
    torch.manual_seed(0)
    table_scores = torch.randn(synthetic.num_users + 1, synthetic.num_items + 1)
    scorer = lambda batch: table_scores[batch.users]  # noqa: E731
    result = evaluate(scorer, synthetic, role, EvalConfig(eval_batch_size=7))
    histories = raw_histories(synthetic_events, synthetic, role)
    # the synthetic data reach past max_len, so a truncated mask would show here
    assert max(len(seen) for seen, _ in histories.values()) > synthetic.max_len
    ranks = dict(zip(result.per_user["user"], result.per_user["rank"], strict=True))
    targets = dict(zip(result.per_user["user"], result.per_user["target"], strict=True))
    assert sorted(ranks) == sorted(histories)
    for user, (seen, target) in histories.items():
        scores = table_scores[user].clone()
        scores[0] = -float("inf")
        scores[sorted(seen)] = -float("inf")
        expected = int((scores[1:] >= scores[target]).sum())
        assert (targets[user], ranks[user]) == (target, expected), user


@pytest.mark.parametrize("sampling", ["uniform", "popularity"])
def test_sampled_negatives_follow_the_sampling_rule_and_the_sample_seed(
    synthetic, synthetic_events, sampling
):
    """negative_sampling=popularity draws negatives with the training item counts (counted
    here from the raw events), uniform with equal weights, both with sample_seed: the ranks
    equal those computed by hand against the negatives :func:`sample_negatives` draws, and
    the two rules draw differently."""
    frame = pd.read_csv(synthetic_events, dtype=str)
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    item_index = {raw: index for index, raw in enumerate(synthetic.events.item_ids)}
    counts = np.zeros(synthetic.num_items + 1)
    for _, events in frame.groupby("user_id", sort=False):
        items = events.sort_values("timestamp", kind="stable")["item_id"].tolist()
        for raw in items[:-2] if len(items) >= 3 else items:  # training events
            counts[item_index[raw]] += 1
    torch.manual_seed(0)
    table_scores = torch.randn(synthetic.num_users + 1, synthetic.num_items + 1)
    scorer = lambda batch: table_scores[batch.users]  # noqa: E731
    config = EvalConfig(
        protocol="sampled", num_negatives=8, negative_sampling=sampling, sample_seed=7
    )
    result = evaluate(scorer, synthetic, "test", config)
    histories = raw_histories(synthetic_events, synthetic, "test")
    users = result.per_user["user"].to_numpy()
    seen = [sorted(histories[user][0]) for user in users]
    rows = np.repeat(np.arange(len(users)), [len(items) for items in seen])
    seen_items = np.concatenate(seen).astype(np.int64)
    targets = np.array([histories[user][1] for user in users])

    def ranks_against(weights):
        negatives = sample_negatives(rows, seen_items, targets, synthetic.num_items, 8, weights, 7)
        ranks = []
        for row, user in enumerate(users):
            scores = table_scores[user].clone()
            scores[seen[row]] = -float("inf")
            candidates = scores[[targets[row], *negatives[row]]]
            ranks.append(int((candidates >= candidates[0]).sum()))
        return ranks

    weights = counts if sampling == "popularity" else None
    assert result.per_user["rank"].tolist() == ranks_against(weights)
    assert ranks_against(counts) != ranks_against(None)  # the rule does matter here
    reseeded = evaluate(scorer, synthetic, "test", dataclasses.replace(config, sample_seed=8))
    assert reseeded.per_user["rank"].tolist() != result.per_user["rank"].tolist()


def test_sampled_negatives_are_fixed_unseen_and_distinct():
    rows = np.array([0, 0, 1])
    items = np.array([1, 2, 3])
    targets = np.array([4, 5])
    first = sample_negatives(rows, items, targets, 30, 10, None, seed=3)
    second = sample_negatives(rows, items, targets, 30, 10, None, seed=3)
    np.testing.assert_array_equal(first, second)
    assert not set(first[0]) & {1, 2, 4} and not set(first[1]) & {3, 5}
    assert all(len(set(row)) == 10 for row in first)
    weights = np.zeros(31)
    weights[20:] = 1.0  # popularity sampling only draws items with weight
    popular = sample_negatives(rows, items, targets, 30, 5, weights, seed=0)
    assert popular.min() >= 20


def test_negatives_use_up_exactly_the_unseen_items_and_refuse_one_more():
    rows, items, targets = np.array([0, 0]), np.array([1, 2]), np.array([3])
    # 10 items, 3 excluded (two seen, the target): exactly 7 unseen ones to draw
    drawn = sample_negatives(rows, items, targets, 10, 7, None, seed=0)
    assert sorted(drawn[0]) == [4, 5, 6, 7, 8, 9, 10]
    with pytest.raises(ConfigError, match="^cannot sample 8 unseen negatives for a user"):
        sample_negatives(rows, items, targets, 10, 8, None, seed=0)


def test_evaluated_rows_are_all_rows_or_a_sorted_sample_of_eval_users():
    np.testing.assert_array_equal(evaluated_rows(9, EvalConfig()), np.arange(9))
    np.testing.assert_array_equal(evaluated_rows(9, EvalConfig(eval_users=9)), np.arange(9))
    np.testing.assert_array_equal(evaluated_rows(9, EvalConfig(eval_users=50)), np.arange(9))
    for size in (1, 4, 8):
        sample = evaluated_rows(9, EvalConfig(eval_users=size))
        assert len(sample) == len(set(sample.tolist())) == size  # distinct rows, no repeats
        assert list(sample) == sorted(sample) and 0 <= sample.min() and sample.max() < 9


@pytest.mark.parametrize("items", [1, 40, 1000])
def test_users_per_chunk_is_the_most_that_fit_in_max_scores(items):
    for users in (1, 3, 7):
        exact = EvalConfig(max_scores=users * (items + 1), eval_batch_size=512)
        assert users_per_chunk(exact, items) == users
        short = dataclasses.replace(exact, max_scores=users * (items + 1) - 1)
        assert users_per_chunk(short, items) == max(1, users - 1)  # one user at least
        assert users_per_chunk(dataclasses.replace(exact, eval_batch_size=2), items) == min(
            2, users
        )


@pytest.mark.parametrize("users", [1, 5])
def test_bounded_score_chunks_give_the_same_ranks(synthetic, users):
    """A chunk never holds more than max_scores scores (one user at least); ranks do not
    depend on the chunking."""
    torch.manual_seed(0)
    table_scores = torch.randn(synthetic.num_users + 1, synthetic.num_items + 1)
    sizes = []

    def scorer(batch):
        sizes.append(len(batch.users))
        return table_scores[batch.users]

    reference = evaluate(scorer, synthetic, "test", EvalConfig(eval_batch_size=512))
    sizes.clear()
    max_scores = users * (synthetic.num_items + 1) + synthetic.num_items  # not a multiple
    result = evaluate(scorer, synthetic, "test", EvalConfig(max_scores=max_scores))
    assert max(sizes) == users
    assert sum(sizes) == len(reference.per_user)  # every user scored once
    assert result.protocol["users_per_chunk"] == max(sizes)
    pd.testing.assert_frame_equal(result.per_user, reference.per_user)


def test_eval_users_ranks_a_recorded_fixed_sample(synthetic):
    """eval_users=N ranks N distinct users, the same N for the same seed (whatever the model),
    each with the rank it gets in the full evaluation; the protocol records it."""
    torch.manual_seed(0)
    table_scores = torch.randn(synthetic.num_users + 1, synthetic.num_items + 1)
    scorer = lambda batch: table_scores[batch.users]  # noqa: E731
    full = evaluate(scorer, synthetic, "test", EvalConfig()).per_user.set_index("user")
    count = len(full) // 3
    first = evaluate(scorer, synthetic, "test", EvalConfig(eval_users=count))
    other_model = evaluate(
        _scorer_for(synthetic, 0.0), synthetic, "test", EvalConfig(eval_users=count)
    )
    reseeded = evaluate(scorer, synthetic, "test", EvalConfig(eval_users=count, eval_users_seed=1))
    users = first.per_user["user"]
    assert len(users) == count == users.nunique()
    assert list(other_model.per_user["user"]) == list(users)
    assert set(reseeded.per_user["user"]) != set(users)
    assert (first.per_user.set_index("user")["rank"] == full.loc[users, "rank"]).all()
    assert first.protocol["users"] == count and first.protocol["users_total"] == len(full)
    assert first.protocol["eval_users"] == count and first.protocol["eval_users_seed"] == 0
    everyone = evaluate(scorer, synthetic, "test", EvalConfig(eval_users=10 * len(full)))
    assert everyone.protocol["users"] == len(full)
