"""The suite's numbers, as pure functions of per-user ranks and run records (no I/O).

Conventions: per-user NDCG@10 of a row is averaged over its seeds (users aligned by id) before a
paired comparison; a relative change is ``mean(a) / mean(b) - 1``; intervals over users are paired
percentile bootstraps (:func:`deepm3.stats.significance.bootstrap_relative_ci`); intervals
over seeds are Student-t intervals of the mean; intervals over users and seeds together are the
users x seeds bootstrap (:func:`deepm3.stats.hierarchical.hierarchical_bootstrap`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from deepm3.stats.drops import user_ndcg_under
from deepm3.stats.hierarchical import hierarchical_bootstrap
from deepm3.stats.irregularity import quantile_groups
from deepm3.stats.significance import (
    bootstrap_relative_ci,
    holm,
    paired_tests,
    per_user_ndcg,
)

K = 10
H_RESAMPLES = 2000  # users x seeds bootstrap replicates of each comparison
H_P_FLOOR = 2 / (H_RESAMPLES + 1)  # its smallest p-value: no replicate crossed zero


def seed_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean, standard deviation (ddof=1; 0 for one value) and the half-width of the Student-t
    interval of the mean (NaN for one value)."""
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) < 2:
        return mean, 0.0, float("nan")
    sd = float(array.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, len(array) - 1) * sd / math.sqrt(len(array)))
    return mean, sd, half


def user_ndcg_by_seed(rank_columns: list[pd.Series]) -> pd.DataFrame:
    """(users, seeds) per-user NDCG@10 of each seed, columns 0..S-1; each series holds one
    seed's ranks indexed by user. Raises ValueError when the seeds ranked different users."""
    frame = pd.concat(
        [pd.Series(per_user_ndcg(s.to_numpy(), K), index=s.index) for s in rank_columns],
        axis=1,
        ignore_index=True,
    )
    if frame.isna().any().any():
        raise ValueError("seeds of one row must rank the same users")
    return frame


def mean_user_ndcg(rank_columns: list[pd.Series]) -> pd.Series:
    """Per-user NDCG@10 averaged over seeds; each series holds ranks indexed by user."""
    return user_ndcg_by_seed(rank_columns).mean(axis=1)


def untied_users(tied_columns: list[pd.Series]) -> pd.Index:
    """Users whose test target is untied (its timestamp differs from the last history event's),
    sorted; each series is one run's boolean ``tied`` column indexed by user. Tying is a
    property of the data, so runs that disagree about a user raise ValueError."""
    frame = pd.concat(tied_columns, axis=1, ignore_index=True)  # NaN: a run without the user
    disagree = frame.nunique(axis=1) > 1
    if disagree.any():
        raise ValueError(
            f"runs disagree on whether users' targets are tied, e.g. users "
            f"{frame.index[disagree][:5].tolist()}"
        )
    return frame.index[~frame.eq(True).any(axis=1)].sort_values()


def relative_change(a: np.ndarray, b: np.ndarray, seed: int = 0) -> dict:
    """``mean(a) / mean(b) - 1`` with a paired bootstrap 95% interval and paired p-values."""
    tests = paired_tests(a, b)
    if tests["mean_b"] == 0:
        low = high = float("nan")
    else:
        low, high = bootstrap_relative_ci(a, b, n_resamples=1000, seed=seed)
    return {
        "relative": tests["relative_difference"],
        "ci_low": low,
        "ci_high": high,
        "wilcoxon_p": tests["wilcoxon_p"],
        "t_p": tests["t_p"],
        "mean_a": tests["mean_a"],
        "mean_b": tests["mean_b"],
    }


def users_seeds_change(a: pd.DataFrame, b: pd.DataFrame, users: pd.Index) -> dict:
    """The users x seeds bootstrap (:data:`H_RESAMPLES` replicates, seed 0) of
    ``mean(a) / mean(b) - 1`` on ``users``: a, b are (users, seeds) frames indexed by user.
    Returns ``users``, ``relative``, ``ci_low``, ``ci_high``, ``p``; NaN where there is no
    comparison (fewer than 2 users, or ``b``'s mean is 0)."""
    a, b = a.loc[users], b.loc[users]
    nothing = {"relative": math.nan, "ci_low": math.nan, "ci_high": math.nan, "p": math.nan}
    if len(users) < 2 or b.to_numpy().mean() == 0:
        return {"users": len(users), **nothing}
    result = hierarchical_bootstrap(a, b, resamples=H_RESAMPLES, seed=0)
    return {
        "users": result.n_users,
        "relative": result.relative,
        "ci_low": result.ci_low,
        "ci_high": result.ci_high,
        "p": result.p,
    }


def users_seeds_pair(a: pd.DataFrame, b: pd.DataFrame, untied: pd.Index) -> dict:
    """``a`` against ``b`` by the users x seeds bootstrap (:func:`users_seeds_change`) on the
    users both ranked and on the untied ones among them (co-primary), under the column names of
    :func:`significance`'s rows with the raw p in the ``*_p_holm`` columns (one comparison:
    nothing to correct). a, b: (users, seeds) per-user NDCG@10 frames indexed by user."""
    users = a.index.intersection(b.index).sort_values()
    whole = users_seeds_change(a, b, users)
    part = users_seeds_change(a, b, users.intersection(untied))
    return {
        "users": len(users),
        "relative": whole["relative"],
        "h_ci_low": whole["ci_low"],
        "h_ci_high": whole["ci_high"],
        "h_p_holm": whole["p"],
        "untied_users": part["users"],
        "untied_relative": part["relative"],
        "untied_ci_low": part["ci_low"],
        "untied_ci_high": part["ci_high"],
        "untied_p_holm": part["p"],
    }


def _holm(frame: pd.DataFrame, column: str, families: dict[str, str] | None) -> pd.Series:
    """Holm-adjusted ``column``, separately within each family of comparisons (``families``:
    baseline -> family; None: one family), over the comparisons that have a p-value (NaN stays
    NaN)."""
    family = frame["baseline"].map(families or {}).fillna("")
    adjusted: dict[str, float] = {}
    for name in dict.fromkeys(family):
        present = frame[column].notna() & (family == name)
        adjusted |= holm(dict(zip(frame["baseline"][present], frame[column][present], strict=True)))
    return frame["baseline"].map(adjusted)


def significance(
    ndcg: dict[str, pd.Series],
    focus: str,
    seeds: dict[str, pd.DataFrame] | None = None,
    untied: pd.Index | None = None,
    families: dict[str, str] | None = None,
) -> pd.DataFrame:
    """``focus`` against every other row on per-user NDCG@10: paired tests, Holm-corrected
    Wilcoxon and t p-values, bootstrap interval of the relative difference.

    ndcg: row -> per-user NDCG@10 averaged over seeds (a series indexed by user). Each
    comparison uses the users both rows ranked. With ``seeds`` (row -> (users, seeds) per-user
    NDCG@10 of each seed, whose row means are ``ndcg``) and ``untied`` (the users whose target
    is untied, :func:`untied_users`), the users x seeds bootstrap is added on the same users
    (``h_relative``, ``h_ci_low``, ``h_ci_high``, ``h_p``, ``h_p_holm``) and on the untied ones
    among them (``untied_users``, ``untied_relative``, ``untied_ci_low``, ``untied_ci_high``,
    ``untied_p``, ``untied_p_holm``; NaN when fewer than 2 are untied), after the other columns.
    Holm's correction runs over the comparisons of each column, within each family of
    ``families`` (other row -> family name; rows it does not name form one family; None: all
    the comparisons are one family).
    """
    if (seeds is None) != (untied is None):
        raise ValueError("seeds and untied come together: both or neither")
    rows, users_seeds = [], []
    for other, values in ndcg.items():
        if other == focus:
            continue
        a, b = ndcg[focus].align(values, join="inner")
        rows.append({"baseline": other, **relative_change(a.to_numpy(), b.to_numpy())})
        if seeds is not None:
            whole = users_seeds_change(seeds[focus], seeds[other], a.index)
            part = users_seeds_change(seeds[focus], seeds[other], a.index.intersection(untied))
            users_seeds.append(
                {f"h_{key}": value for key, value in whole.items() if key != "users"}
                | {f"untied_{key}": value for key, value in part.items()}
            )
    frame = pd.DataFrame(rows)
    for column in ("wilcoxon_p", "t_p"):
        frame[f"{column}_holm"] = _holm(frame, column, families)
    if seeds is None:
        return frame
    frame = pd.concat([frame, pd.DataFrame(users_seeds)], axis=1)
    for column in ("h_p", "untied_p"):
        frame[f"{column}_holm"] = _holm(frame, column, families)
    return frame


def cv_groups(cv: pd.Series, count: int) -> pd.Series:
    """Users with a defined gap CV (NaN left out) -> their group 0..count-1 by ``count``
    quantiles of the CV (:func:`deepm3.stats.irregularity.quantile_groups`); the last group is
    the most irregular."""
    users = cv.dropna().index
    return pd.Series(quantile_groups(cv.loc[users].to_numpy(), count), index=users)


def irregularity_groups(
    cv: pd.Series, ndcg: dict[str, pd.Series], focus: str, count: int
) -> pd.DataFrame:
    """Users grouped by ``count`` quantiles of their gap CV (NaN CVs left out); per group its
    CV range, size, every row's NDCG@10 and ``focus``'s relative gain over each other row."""
    groups = cv_groups(cv, count)
    rows = []
    for group in range(count):
        members = groups.index[groups.to_numpy() == group]
        row = {
            "group": group + 1,
            "users": len(members),
            "cv_min": float(cv.loc[members].min()),
            "cv_max": float(cv.loc[members].max()),
        }
        for name, values in ndcg.items():
            row[f"ndcg:{name}"] = float(values.loc[members].mean())
        for name, values in ndcg.items():
            if name == focus or len(members) < 2:
                continue
            a, b = ndcg[focus].loc[members].to_numpy(), values.loc[members].to_numpy()
            change = relative_change(a, b)
            row[f"gain:{name}"] = change["relative"]
            row[f"ci:{name}"] = (change["ci_low"], change["ci_high"])
            row[f"p:{name}"] = change["wilcoxon_p"]
        rows.append(row)
    return pd.DataFrame(rows)


def perturbation_effects(ranks: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Relative NDCG@10 change of each perturbation against the clean ranks of the same runs.

    ranks: one frame per seed with columns ``user``, ``clean`` and each key (``key#r`` for
    repeats, averaged). Returns rows key, clean, perturbed, relative, ci_low, ci_high, p.
    """

    clean = user_ndcg_under(ranks, "clean").to_numpy()
    rows = []
    for key in keys:
        perturbed = user_ndcg_under(ranks, key).to_numpy()
        change = relative_change(perturbed, clean)
        rows.append(
            {
                "key": key,
                "clean": change["mean_b"],
                "perturbed": change["mean_a"],
                "relative": change["relative"],
                "ci_low": change["ci_low"],
                "ci_high": change["ci_high"],
                "wilcoxon_p": change["wilcoxon_p"],
            }
        )
    return pd.DataFrame(rows)


def solver_summary(records: list[dict]) -> pd.DataFrame:
    """Mean over runs of each (solver, steps) row of the solver ablation records."""
    frame = pd.concat([pd.DataFrame(r["rows"]) for r in records])
    columns = [
        "ndcg@10",
        "relative_state_error",
        "ms_per_1000_users",
        "ms_single_user",
        "nfe_per_batch",
    ]
    summary = frame.groupby(["solver", "steps"], sort=False)[columns].mean().reset_index()
    summary["runs"] = len(records)
    return summary


def latency_ratio(summary: pd.DataFrame, column: str, fast: str, slow: str) -> float:
    """``fast``'s latency over ``slow``'s at one step per gap (same trained weights)."""

    def value(solver: str) -> float:
        chosen = summary[(summary["solver"] == solver) & (summary["steps"] == 1)]
        return float(chosen[column].iloc[0])

    return value(fast) / value(slow)
