"""Issue 20's goals: the best continuous-time row, chosen by validation, against SASRec (all
users, the most irregular ML-1M users), against its own time-blind twin, and under jitter
against TiSASRec. Gathers the figures (:class:`deepm3.suite.rules.GoalFacts`); the verdicts
are :func:`deepm3.suite.goals.goal_rows`'. Only in the budgets that train the variant rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd

from deepm3.reporting.records import RunRecord
from deepm3.stats import drops, effects
from deepm3.stats.perturbation_grid import Perturbation
from deepm3.suite import goals as rules
from deepm3.suite.design import GOAL_BASELINE, JITTER_OPPONENT, TIME_AWARE_TWINS
from deepm3.suite.layout import Layout
from deepm3.suite.report.core import CoreFacts, by_row
from deepm3.suite.report.irregular import CLAIM_GROUPS


def validation_means(records: list[RunRecord]) -> dict[str, float]:
    """Row -> validation NDCG@10 averaged over its runs."""
    return {
        row: sum(r.metrics["valid"]["ndcg@10"] for r in group) / len(group)
        for row, group in by_row(records).items()
    }


def jitter_key(grid: tuple[Perturbation, ...]) -> str | None:
    """The strongest Gaussian jitter with the order kept (the robustness claim's), if any."""
    levels = [p for p in grid if p.family == "jitter_kept"]
    return max(levels, key=lambda p: p.level).key if levels else None


def _comparison(row: str, baseline: str, a: pd.DataFrame, b: pd.DataFrame, untied: pd.Index):
    return rules.Comparison(row, baseline, **effects.users_seeds_pair(a, b, untied))


def goal_facts(
    dataset: str,
    seeds: dict[str, pd.DataFrame],
    untied: pd.Index,
    validation: dict[str, float],
    cv: pd.Series | None,
    ranks: Callable[[str], list[pd.DataFrame]],
    key: str | None,
) -> rules.GoalFacts:
    """The goals' figures (pure). seeds: row -> (users, seeds) per-user test NDCG@10 of every
    trained row; untied: users whose target is untied; validation: row -> mean validation
    NDCG@10; cv: each user's gap CV (None: not measured yet); ranks(row): the row's
    perturbation rank frames, one per seed ([] when not perturbed); key: the jitter read."""
    candidates = tuple(TIME_AWARE_TWINS)
    found = rules.GoalFacts(
        dataset=dataset,
        candidates=candidates,
        twins=dict(TIME_AWARE_TWINS),
        trained=tuple(seeds),
        validation={row: validation[row] for row in candidates if row in seeds},
        jitter_key=key,
        baseline=GOAL_BASELINE,
        opponent=JITTER_OPPONENT,
    )
    chosen = found.chosen
    if chosen is None:
        return found
    vs_baseline = irregular = vs_twin = jitter = None
    if GOAL_BASELINE in seeds:
        a, b = seeds[chosen], seeds[GOAL_BASELINE]
        vs_baseline = _comparison(chosen, GOAL_BASELINE, a, b, untied)
        if cv is not None and dataset == rules.IRREGULAR_DATASET:
            groups = effects.cv_groups(cv, CLAIM_GROUPS)
            most = groups.index[groups.to_numpy() == CLAIM_GROUPS - 1]
            most = most.intersection(a.index).intersection(b.index)
            irregular = _comparison(chosen, GOAL_BASELINE, a.loc[most], b.loc[most], untied)
    twin = TIME_AWARE_TWINS[chosen]
    if twin in seeds:
        vs_twin = _comparison(chosen, twin, seeds[chosen], seeds[twin], untied)
    if key is not None and JITTER_OPPONENT in seeds:
        mine, theirs = ranks(chosen), ranks(JITTER_OPPONENT)
        if mine and theirs:
            test = drops.drop_difference(
                drops.user_ndcg_under(mine, "clean"),
                drops.user_ndcg_under(mine, key),
                drops.user_ndcg_under(theirs, "clean"),
                drops.user_ndcg_under(theirs, key),
            )
            jitter = rules.DropFact(
                chosen,
                JITTER_OPPONENT,
                key,
                test["drop_a"],
                test["drop_b"],
                test["difference"],
                test["ci_low"],
                test["ci_high"],
                test["p"],
            )
    return replace(
        found, vs_baseline=vs_baseline, irregular=irregular, vs_twin=vs_twin, jitter=jitter
    )


def goals(
    layout: Layout,
    records: list[RunRecord],
    found: CoreFacts,
    grid: tuple[Perturbation, ...],
    dataset: str,
) -> rules.GoalFacts:
    """:func:`goal_facts` from the committed files: the core records, the users' CV
    (``analyses/user_cv``) and the core runs' perturbation ranks."""
    cv = pd.read_csv(layout.user_cv).set_index("user")["cv"] if layout.user_cv.is_file() else None

    def ranks(row: str) -> list[pd.DataFrame]:
        return [pd.read_csv(path) for path in layout.perturb_seeds("core", row)]

    return goal_facts(
        dataset, found.seeds, found.untied, validation_means(records), cv, ranks, jitter_key(grid)
    )
