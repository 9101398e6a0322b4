"""The suite's numbers (deepm3.stats.effects) against hand computation and scipy: seed
intervals, per-user NDCG over seeds, relative changes, significance tables, irregularity
groups, perturbation effects, solver summaries and latency ratios."""

from __future__ import annotations

import math
import re
import statistics

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from deepm3.stats import effects
from deepm3.stats.hierarchical import hierarchical_bootstrap


def _ndcg(rank: int) -> float:
    """NDCG@10 of one user whose target has this rank."""
    return 1 / math.log2(rank + 1) if rank <= 10 else 0.0


def _bootstrap_by_hand(a, b, seed: int, n_resamples: int = 1000) -> tuple[float, float]:
    """Paired percentile 95% bootstrap of mean(a) / mean(b) - 1, one resample at a time."""
    draws = np.random.default_rng(seed).integers(0, len(a), size=(n_resamples, len(a)))
    relative = [a[users].mean() / b[users].mean() - 1 for users in draws]
    low, high = np.quantile(relative, [0.025, 0.975])
    return float(low), float(high)


# --- seed_interval


def test_seed_interval_of_two_seeds_by_hand():
    mean, sd, half = effects.seed_interval([1.0, 3.0])
    assert mean == 2.0 and sd == pytest.approx(math.sqrt(2), rel=1e-15)
    # one degree of freedom: the t quantile is tan(pi * (0.975 - 1/2)) (a Cauchy quantile)
    assert half == pytest.approx(math.tan(math.pi * 0.475), rel=1e-9)
    assert half == pytest.approx(12.706, abs=1e-3)  # the t table's value


def test_seed_interval_follows_the_confidence():
    values = [0.2, 0.5, 0.9, 0.4]
    mean, sd, half = effects.seed_interval(values, confidence=0.9)
    assert mean == pytest.approx(0.5, rel=1e-15)
    assert sd == pytest.approx(statistics.stdev(values), rel=1e-14)
    assert half == pytest.approx(stats.t.ppf(0.95, 3) * sd / 2, rel=1e-14)
    assert half == pytest.approx(2.353 * sd / 2, rel=1e-3)  # the t table's value at 3 df


def test_seed_interval_of_one_seed():
    mean, sd, half = effects.seed_interval([0.25])
    assert mean == 0.25 and sd == 0.0 and math.isnan(half)
    assert all(type(x) is float for x in (mean, sd, half))


def test_seed_interval_computes_in_float64_whatever_the_input_type():
    values32 = [np.float32(x) for x in (0.1, 0.2, 0.7, 0.3)]
    result = effects.seed_interval(values32)
    assert result == effects.seed_interval([float(x) for x in values32])
    assert all(type(x) is float for x in result)


# --- mean_user_ndcg


def test_mean_user_ndcg_averages_each_users_ndcg_over_seeds():
    seeds = [
        pd.Series([1, 3, 12], index=[4, 5, 6]),
        pd.Series([2, 10, 1], index=[6, 4, 5]),
        pd.Series([11, 1, 3], index=[5, 6, 4]),
    ]
    mean = effects.mean_user_ndcg(seeds)
    expected = {
        4: (_ndcg(1) + _ndcg(10) + _ndcg(3)) / 3,
        5: (_ndcg(3) + _ndcg(1) + _ndcg(11)) / 3,
        6: (_ndcg(12) + _ndcg(2) + _ndcg(1)) / 3,
    }
    assert mean.to_dict() == pytest.approx(expected, rel=1e-15)
    assert mean.dtype == np.float64


def test_mean_user_ndcg_refuses_seeds_that_ranked_other_users():
    seeds = [pd.Series([1, 2], index=[7, 9]), pd.Series([1, 2], index=[7, 8])]
    with pytest.raises(ValueError, match="^seeds of one row must rank the same users$"):
        effects.mean_user_ndcg(seeds)


def test_user_ndcg_by_seed_keeps_each_seed_by_user():
    seeds = [pd.Series([1, 3, 12], index=[4, 5, 6]), pd.Series([2, 10, 1], index=[6, 4, 5])]
    frame = effects.user_ndcg_by_seed(seeds)
    assert list(frame.columns) == [0, 1]
    assert frame.loc[4].tolist() == pytest.approx([_ndcg(1), _ndcg(10)], rel=1e-15)
    assert frame.loc[6].tolist() == pytest.approx([_ndcg(12), _ndcg(2)], rel=1e-15)
    assert frame.mean(axis=1).to_dict() == effects.mean_user_ndcg(seeds).to_dict()
    with pytest.raises(ValueError, match="same users"):
        effects.user_ndcg_by_seed([seeds[0], pd.Series([1, 2, 3], index=[4, 5, 7])])


# --- untied_users


def test_untied_users_by_hand():
    runs = [
        pd.Series([True, False, False, True], index=[1, 2, 3, 4]),
        pd.Series([False, True, False], index=[3, 4, 2]),  # another order
        pd.Series([False, True], index=[5, 6]),  # users the other runs did not rank
    ]
    assert effects.untied_users(runs).tolist() == [2, 3, 5]


def test_untied_users_refuse_runs_that_disagree():
    runs = [pd.Series([True, False], index=[1, 2]), pd.Series([True, True], index=[1, 2])]
    with pytest.raises(ValueError, match=r"disagree.*\[2\]"):
        effects.untied_users(runs)


# --- relative_change

CHANGE_KEYS = ["relative", "ci_low", "ci_high", "wilcoxon_p", "t_p", "mean_a", "mean_b"]


def test_relative_change_by_hand():
    rng = np.random.default_rng(20)
    b = rng.random(40) + 0.1
    a = b * 1.1 + rng.normal(0, 0.1, size=40)
    for seed in (0, 5):
        change = effects.relative_change(a, b, seed=seed)
        assert list(change) == CHANGE_KEYS
        assert change["relative"] == pytest.approx(a.mean() / b.mean() - 1, rel=1e-13)
        low, high = _bootstrap_by_hand(a, b, seed)
        assert change["ci_low"] == pytest.approx(low, rel=1e-12)
        assert change["ci_high"] == pytest.approx(high, rel=1e-12)
        assert change["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)
        assert change["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
        assert change["mean_a"] == pytest.approx(a.mean(), rel=1e-15)
        assert change["mean_b"] == pytest.approx(b.mean(), rel=1e-15)
    default = effects.relative_change(a, b)  # seed 0
    assert default["ci_low"] == pytest.approx(_bootstrap_by_hand(a, b, 0)[0], rel=1e-12)


def test_relative_change_against_a_zero_baseline_has_no_interval():
    a, b = np.array([0.5, 0.0, 1.0, 0.25]), np.zeros(4)
    change = effects.relative_change(a, b)
    assert math.isnan(change["relative"])
    assert math.isnan(change["ci_low"]) and math.isnan(change["ci_high"])
    assert change["mean_a"] == pytest.approx(0.4375) and change["mean_b"] == 0.0
    assert change["wilcoxon_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)


# --- significance


def _holm_by_hand(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's adjusted p-values, written out for a handful of hypotheses."""
    ordered = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for j, name in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - j) * p_values[name]))
        adjusted[name] = running
    return adjusted


def test_significance_table_by_hand():
    rng = np.random.default_rng(21)
    users = np.arange(100, 160)
    focus = pd.Series(rng.random(60), index=users)
    others = {
        "x": focus * 0.9 + rng.normal(0, 0.05, 60),
        "y": focus * 0.98 + rng.normal(0, 0.2, 60),
        "z": pd.Series(rng.random(60), index=users),
    }
    ndcg = {"x": others["x"], "focus": focus, "y": others["y"], "z": others["z"]}
    frame = effects.significance(ndcg, "focus")
    assert list(frame.columns) == ["baseline", *CHANGE_KEYS, "wilcoxon_p_holm", "t_p_holm"]
    assert frame["baseline"].tolist() == ["x", "y", "z"]  # the input's order, focus left out
    a = focus.to_numpy()
    for column, test in (("wilcoxon_p", stats.wilcoxon), ("t_p", stats.ttest_rel)):
        raw = {name: test(a, others[name].to_numpy()).pvalue for name in others}
        adjusted = _holm_by_hand(raw)
        for _, row in frame.iterrows():
            assert row[column] == pytest.approx(raw[row["baseline"]], rel=1e-12)
            assert row[f"{column}_holm"] == pytest.approx(adjusted[row["baseline"]], rel=1e-12)
    x = frame.set_index("baseline").loc["x"]
    low, high = _bootstrap_by_hand(a, others["x"].to_numpy(), 0)
    assert (x["ci_low"], x["ci_high"]) == pytest.approx((low, high), rel=1e-12)


def _seed_frames(rng: np.random.Generator) -> tuple[dict[str, pd.DataFrame], pd.Index]:
    """Per-seed per-user values of three rows (the baseline y lacks some users and lists them
    in another order) and the untied users (some of them ranked by one row only)."""
    users = np.arange(200, 320)
    level = rng.random(120)
    seeds = {
        "focus": pd.DataFrame(level[:, None] + rng.normal(0.05, 0.2, (120, 3)), index=users),
        "x": pd.DataFrame(level[:, None] + rng.normal(0.0, 0.2, (120, 2)), index=users),
        "y": pd.DataFrame(level[:, None] + rng.normal(0.02, 0.2, (120, 3)), index=users)
        .iloc[10:]
        .sample(frac=1.0, random_state=2),
    }
    untied = pd.Index(np.concatenate([np.arange(200, 260, 2), [205, 207, 999]]))
    return seeds, untied


def test_significance_adds_users_x_seeds_columns_on_the_compared_and_untied_users():
    seeds, untied = _seed_frames(np.random.default_rng(23))
    ndcg = {name: frame.mean(axis=1) for name, frame in seeds.items()}
    frame = effects.significance(ndcg, "focus", seeds, untied)
    old = ["baseline", *CHANGE_KEYS, "wilcoxon_p_holm", "t_p_holm"]
    assert list(frame.columns) == [
        *old,
        *["h_relative", "h_ci_low", "h_ci_high", "h_p"],
        *["untied_users", "untied_relative", "untied_ci_low", "untied_ci_high", "untied_p"],
        *["h_p_holm", "untied_p_holm"],
    ]
    pd.testing.assert_frame_equal(frame[old], effects.significance(ndcg, "focus"))
    raw = {}
    for name in ("x", "y"):
        row = frame.set_index("baseline").loc[name]
        both = sorted(set(seeds["focus"].index) & set(seeds[name].index))
        chosen = {"h": both, "untied": [user for user in both if user in set(untied)]}
        assert (len(chosen["h"]), len(chosen["untied"])) == (
            (120, 32) if name == "x" else (110, 25)
        )
        assert row["untied_users"] == len(chosen["untied"])
        for prefix, users in chosen.items():
            a, b = seeds["focus"].loc[users], seeds[name].loc[users]
            expected = hierarchical_bootstrap(a, b, resamples=2000, seed=0)
            assert row[f"{prefix}_relative"] == pytest.approx(
                a.to_numpy().mean() / b.to_numpy().mean() - 1, rel=1e-12
            )
            assert row[f"{prefix}_ci_low"] == pytest.approx(expected.ci_low, rel=1e-12)
            assert row[f"{prefix}_ci_high"] == pytest.approx(expected.ci_high, rel=1e-12)
            assert row[f"{prefix}_p"] == expected.p
            raw.setdefault(prefix, {})[name] = expected.p
        assert row["h_relative"] == pytest.approx(row["relative"], rel=1e-12)
    for prefix in ("h", "untied"):
        adjusted = _holm_by_hand(raw[prefix])
        assert frame[f"{prefix}_p_holm"].tolist() == pytest.approx([adjusted["x"], adjusted["y"]])


def test_significance_without_untied_users_leaves_the_untied_columns_empty():
    seeds, _ = _seed_frames(np.random.default_rng(24))
    ndcg = {name: frame.mean(axis=1) for name, frame in seeds.items()}
    frame = effects.significance(ndcg, "focus", seeds, pd.Index([200]))  # 1 user: no test
    assert frame["untied_users"].tolist() == [1, 0]  # y did not rank user 200
    for column in ("untied_relative", "untied_ci_low", "untied_ci_high", "untied_p"):
        assert frame[column].isna().all()
    assert frame["untied_p_holm"].isna().all() and frame["h_p_holm"].notna().all()
    with pytest.raises(ValueError, match="both or neither"):
        effects.significance(ndcg, "focus", seeds)


# --- irregularity_groups


def test_irregularity_groups_by_hand():
    rng = np.random.default_rng(22)
    users = np.arange(1, 11)
    cv = pd.Series([0.9, 0.1, np.nan, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6], index=users)
    focus = pd.Series(rng.random(10) + 0.1, index=users)
    other = pd.Series(rng.random(10) + 0.1, index=users)
    groups = effects.irregularity_groups(cv, {"f": focus, "o": other}, "f", 3)
    assert groups["group"].tolist() == [1, 2, 3]
    # by CV without the NaN user 3: [2, 7, 5] (0.1-0.3), [9, 4, 10] (0.4-0.6), [6, 8, 1]
    members = [[2, 7, 5], [9, 4, 10], [6, 8, 1]]
    assert groups["users"].tolist() == [3, 3, 3]
    assert groups["cv_min"].tolist() == pytest.approx([0.1, 0.4, 0.7])
    assert groups["cv_max"].tolist() == pytest.approx([0.3, 0.6, 0.9])
    assert "gain:f" not in groups and "ci:f" not in groups and "p:f" not in groups
    for index, chosen in enumerate(members):
        a, b = focus.loc[chosen].to_numpy(), other.loc[chosen].to_numpy()
        row = groups.iloc[index]
        assert row["ndcg:f"] == pytest.approx(a.mean()) and row["ndcg:o"] == pytest.approx(b.mean())
        assert row["gain:o"] == pytest.approx(a.mean() / b.mean() - 1, rel=1e-13)
        assert row["ci:o"] == pytest.approx(_bootstrap_by_hand(a, b, 0), rel=1e-12)
        assert row["p:o"] == pytest.approx(stats.wilcoxon(a, b).pvalue, rel=1e-12)


def test_irregularity_groups_of_one_user_or_none_have_no_comparison():
    users = np.array([10, 20, 30])
    cv = pd.Series([0.5, np.nan, 0.2], index=users)
    ndcg = {"f": pd.Series([1.0, 0.5, 0.0], index=users), "o": pd.Series([0.5] * 3, index=users)}
    # two users with a CV in 3 groups: user 30 (0.2) in group 1, user 10 in group 2, none in 3
    groups = effects.irregularity_groups(cv, ndcg, "f", 3)
    assert groups["group"].tolist() == [1, 2, 3]
    assert groups["users"].tolist() == [1, 1, 0]
    assert groups["ndcg:f"].tolist()[:2] == [0.0, 1.0] and math.isnan(groups["ndcg:f"].iloc[2])
    assert groups["cv_max"].tolist()[:2] == [0.2, 0.5] and math.isnan(groups["cv_max"].iloc[2])
    assert not any(column.startswith(("gain:", "ci:", "p:")) for column in groups.columns)


# --- perturbation_effects


def test_perturbation_effects_by_hand():
    rng = np.random.default_rng(23)
    users = np.arange(30)
    ranks = {
        column: rng.integers(1, 15, size=(2, 30))
        for column in ("clean", "drop#0", "drop#1", "drop#2", "jit", "dropout#0")
    }
    frames = []
    for seed, order in enumerate((users, rng.permutation(users))):  # seed 1 lists users shuffled
        columns = {column: r[seed][order] for column, r in ranks.items()}
        frames.append(pd.DataFrame({"user": order, **columns}))
    ndcg = {c: np.vectorize(_ndcg)(r).mean(axis=0) for c, r in ranks.items()}  # (30,) by user
    clean = ndcg["clean"]
    expected = {
        "drop": (ndcg["drop#0"] + ndcg["drop#1"] + ndcg["drop#2"]) / 3,  # repeats averaged
        "jit": ndcg["jit"],
    }
    table = effects.perturbation_effects(frames, ["drop", "jit"])
    assert list(table.columns) == [
        "key",
        "clean",
        "perturbed",
        "relative",
        "ci_low",
        "ci_high",
        "wilcoxon_p",
    ]
    assert table["key"].tolist() == ["drop", "jit"]
    for row, (key, perturbed) in zip(table.itertuples(), expected.items(), strict=True):
        assert row.clean == pytest.approx(clean.mean(), rel=1e-14)
        assert row.perturbed == pytest.approx(perturbed.mean(), rel=1e-14), key
        assert row.relative == pytest.approx(perturbed.mean() / clean.mean() - 1, rel=1e-13)
        low, high = _bootstrap_by_hand(perturbed, clean, 0)
        assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=1e-12), key
        p = stats.wilcoxon(perturbed, clean).pvalue
        assert row.wilcoxon_p == pytest.approx(p, rel=1e-12), key
    # the same ranks listed in another order give the same table
    shuffled = [frame.sample(frac=1.0, random_state=3) for frame in frames]
    pd.testing.assert_frame_equal(effects.perturbation_effects(shuffled, ["drop", "jit"]), table)


# --- solver_summary and latency_ratio

SOLVER_COLUMNS = [
    "ndcg@10",
    "relative_state_error",
    "ms_per_1000_users",
    "ms_single_user",
    "nfe_per_batch",
]


def _solver_row(solver: str, steps: int, value: float) -> dict:
    return {"solver": solver, "steps": steps, **dict.fromkeys(SOLVER_COLUMNS, value), "note": "x"}


def test_solver_summary_means_each_solver_and_steps_over_runs():
    records = [
        {"rows": [_solver_row("rk4", 1, 1.0), _solver_row("euler", 1, 2.0)]},
        {"rows": [_solver_row("euler", 1, 4.0), _solver_row("rk4", 1, 3.0)]},
        {"rows": [_solver_row("rk4", 1, 8.0), _solver_row("euler", 4, 5.0)]},
    ]
    summary = effects.solver_summary(records)
    assert list(summary.columns) == ["solver", "steps", *SOLVER_COLUMNS, "runs"]
    # rows in the order first seen, not sorted
    assert summary["solver"].tolist() == ["rk4", "euler", "euler"]
    assert summary["steps"].tolist() == [1, 1, 4]
    for column in SOLVER_COLUMNS:
        assert summary[column].tolist() == pytest.approx([4.0, 3.0, 5.0])
    assert summary["runs"].tolist() == [3, 3, 3]


def test_latency_ratio_reads_one_step_per_gap():
    summary = pd.DataFrame(
        {
            "solver": ["rk4", "euler", "rk4", "euler"],
            "steps": [4, 4, 1, 1],
            "ms_single_user": [40.0, 10.0, 8.0, 2.0],
            "ms_per_1000_users": [400.0, 100.0, 30.0, 60.0],
        }
    )
    assert effects.latency_ratio(summary, "ms_single_user", "euler", "rk4") == 0.25
    assert effects.latency_ratio(summary, "ms_per_1000_users", "euler", "rk4") == 2.0
    assert effects.latency_ratio(summary, "ms_single_user", "rk4", "euler") == 4.0
    with pytest.raises(IndexError, match=re.escape("single positional indexer")):
        effects.latency_ratio(summary, "ms_single_user", "dopri5", "rk4")
