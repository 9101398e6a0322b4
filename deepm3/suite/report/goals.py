"""Issue 20's goals: the best continuous-time row, chosen by validation, against SASRec (all
users, the most irregular ML-1M users), against its own time-blind twin, and under jitter
against TiSASRec. Gathers the figures (:class:`deepm3.suite.rules.GoalFacts`); the verdicts
are :func:`deepm3.suite.goals.goal_rows`'. Only in the budgets that train the variant rows."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pandas as pd

from deepm3.reporting.records import RunRecord
from deepm3.stats import drops, effects
from deepm3.stats.perturbation_grid import Perturbation
from deepm3.suite import goals as rules
from deepm3.suite.design import GOAL_BASELINE, JITTER_OPPONENT, TIME_AWARE_TWINS
from deepm3.suite.layout import Layout
from deepm3.suite.report.core import CoreFacts, by_row
from deepm3.suite.report.irregular import CLAIM_GROUPS

# make bench's result (CPU, 1 thread, interleaved rounds), read by the speed goal
BENCH_FILE = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "cpu-quick.json"
# a candidate row -> its variant in benchmarks/variants.py (deepm3-gaps has none)
BENCHED = {
    "deepm3": "deepm3-euler",
    "deepm3-rk4": "deepm3-rk4",
    "deepm3-decay": "deepm3-decay",
    "timeattn": "timeattn",
}
# (variant, the ratio's column, what it compares, limit): the training goals, at T = 50 and 200
TRAINING_RATIOS = (
    ("deepm3-decay", "train_vs_no_flow", "deepm3-decay train step / GRU without flow", 1.1),
    ("timeattn", "train_vs_sasrec", "timeattn train step / SASRec", 1.3),
    ("timeattn-flow", "train_vs_sasrec", "timeattn-flow train step / SASRec", 1.3),
)
INFERENCE_LIMIT = 3.0


def speed_facts(bench: dict, chosen: str | None) -> rules.SpeedFacts:
    """The speed goal's ratios from a ``benchmarks/speed.py`` result (pure): each training
    ratio at B=256, T=50 and T=200, and ``chosen``'s one-user inference against SASRec (B=1,
    T=200)."""
    rows = {(r["model"], r["batch"], r["length"]): r for r in bench.get("rows", [])}
    missing: list[str] = []

    def ratio(model: str, batch: int, length: int, column: str, what: str, limit: float):
        row = rows.get((model, batch, length))
        if row is None or column not in row:
            missing.append(f"{model} at B={batch}, T={length}")
            return None
        low, high = row.get(f"{column}_iqr", [row[column], row[column]])
        return rules.Ratio(what, batch, length, float(row[column]), low, high, limit)

    training = [
        ratio(model, 256, length, column, what, limit)
        for model, column, what, limit in TRAINING_RATIOS
        for length in (50, 200)
    ]
    inference = None
    if chosen in BENCHED:
        inference = ratio(
            BENCHED[chosen],
            1,
            200,
            "infer_vs_sasrec",
            f"{chosen} one-user inference / SASRec",
            INFERENCE_LIMIT,
        )
    info = bench.get("info", {})
    load = info.get("load_average", {})
    loads = [v[0] for v in (load.get("start"), load.get("end")) if v]
    source = (
        f"make bench: {info.get('device', '?')}, {info.get('threads', '?')} thread(s)"
        + (f", load {min(loads):.1f}-{max(loads):.1f}" if loads else "")
        + ", models interleaved, median [q1-q3] of per-round ratios; "
        "benchmarks/results/cpu-quick.json"
    )
    return rules.SpeedFacts(
        source, tuple(r for r in training if r), inference, tuple(dict.fromkeys(missing))
    )


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
    (``analyses/user_cv``), the core runs' perturbation ranks, and ``make bench``'s ratios
    (:data:`BENCH_FILE`, when the checkout has it)."""
    cv = pd.read_csv(layout.user_cv).set_index("user")["cv"] if layout.user_cv.is_file() else None

    def ranks(row: str) -> list[pd.DataFrame]:
        return [pd.read_csv(path) for path in layout.perturb_seeds("core", row)]

    facts = goal_facts(
        dataset, found.seeds, found.untied, validation_means(records), cv, ranks, jitter_key(grid)
    )
    if not BENCH_FILE.is_file():
        return facts
    return replace(facts, speed=speed_facts(json.loads(BENCH_FILE.read_text()), facts.chosen))
