"""Issue 20's goals in the claims table, on constructed per-user frames whose answer is known by
construction: a row 10% better than SASRec on every user and seed meets the +5% goal, an equal
one is at parity; the row is chosen by validation, never by test; a row without a finished run
says "not run yet"; a run capped while rising makes the verdict inconclusive. And the core
significance's Holm families: variant rows do not change the baseline comparisons' p-values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from deepm3.reporting.records import RunRecord
from deepm3.stats import effects
from deepm3.stats.perturbation_grid import build
from deepm3.stats.significance import holm
from deepm3.suite import claims
from deepm3.suite import goals as rules
from deepm3.suite.layout import Layout
from deepm3.suite.report import core as core_report
from deepm3.suite.report import goals

USERS = pd.Index(np.arange(240), name="user")
UNTIED = USERS[::2]  # every other user's target is untied
RNG = np.random.default_rng(7)
# (users, seeds): users differ a lot, seeds of one user by about 1%
BASE = pd.DataFrame(
    RNG.uniform(0.1, 0.5, (240, 1)) * RNG.uniform(0.99, 1.01, (240, 3)), index=USERS
)
EVERY_CANDIDATE = ("deepm3", "deepm3-rk4", "deepm3-decay", "deepm3-gaps", "timeattn")


def scaled(factor: float, users=USERS) -> pd.DataFrame:
    """BASE with ``factor`` times every value of ``users`` (every seed)."""
    frame = BASE.copy()
    frame.loc[users] *= factor
    return frame


def facts(
    seeds: dict[str, pd.DataFrame],
    validation: dict[str, float] | None = None,
    dataset: str = "amazon-beauty",
    cv: pd.Series | None = None,
    ranks=lambda row: [],
) -> rules.GoalFacts:
    """Every candidate gets a low validation unless ``validation`` says otherwise."""
    scores = {row: 0.01 for row in seeds} | (validation or {})
    return goals.goal_facts(dataset, seeds, UNTIED, scores, cv, ranks, "jitter_kept:24")


def everything(**rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every row the goals read at SASRec's level, ``rows`` (name with _ for -) replaced."""
    twins = [f"{row}-notime" for row in EVERY_CANDIDATE]
    names = [*EVERY_CANDIDATE, "sasrec", "tisasrec", "deepm3-noode", *twins]
    found = {name: BASE for name in names}
    return found | {name.replace("_", "-"): frame for name, frame in rows.items()}


def verdicts(found: rules.GoalFacts, capped=None) -> dict[str, str]:
    rows = rules.goal_rows(found, capped or {})
    return {key: row["verdict"] for key, row in zip(rules.GOALS, rows, strict=True)}


def test_a_row_ten_percent_better_on_every_user_and_seed_meets_the_goal():
    said = verdicts(facts(everything(deepm3_decay=scaled(1.10)), {"deepm3-decay": 0.2}))
    assert said["best"] == "confirmed (parity); +5% goal met"
    assert said["time_helps"] == "confirmed"  # its twin deepm3-decay-notime is BASE
    figure = rules.best_vs_baseline(
        facts(everything(deepm3_decay=scaled(1.10)), {"deepm3-decay": 0.2})
    )
    assert "`deepm3-decay`" in figure["our figure"] and "+10.00%" in figure["our figure"]


def test_an_equal_row_is_at_parity_and_rules_the_goal_out():
    said = verdicts(facts(everything(), {"timeattn": 0.2}))
    assert said["best"] == "confirmed (parity); +5% goal ruled out"
    assert said["time_helps"] == "inconclusive"  # timeattn equals its twin timeattn-notime
    worse = verdicts(facts(everything(timeattn=scaled(0.8)), {"timeattn": 0.2}))
    assert worse["best"] == "refuted (parity); +5% goal ruled out"
    assert worse["time_helps"] == "refuted"


def test_the_row_is_chosen_by_validation_not_by_test():
    """deepm3-decay is 10% better on test, timeattn (equal to SASRec) has the better
    validation: timeattn is judged."""
    seeds = everything(deepm3_decay=scaled(1.10))
    found = facts(seeds, {"deepm3-decay": 0.05, "timeattn": 0.06})
    assert found.chosen == "timeattn"
    said = verdicts(found)
    assert said["best"] == "confirmed (parity); +5% goal ruled out"
    assert "`timeattn`" in rules.best_vs_baseline(found)["our figure"]
    # its twin: the same settings with the time bias off, not the separately tuned sasrec
    assert found.vs_twin.baseline == "timeattn-notime"


def test_a_row_without_runs_is_not_run_yet():
    seeds = everything(deepm3_decay=scaled(1.10))
    del seeds["sasrec"]
    said = verdicts(facts(seeds, {"deepm3-decay": 0.2}, dataset="ml-1m"))
    assert said["best"] == "not run yet: no finished runs of sasrec"
    assert said["irregular_best"] == "not run yet: no finished runs of sasrec"
    assert said["time_helps"] == "confirmed"  # needs only the chosen row and its twin
    seeds = everything()
    del seeds["deepm3-gaps"], seeds["tisasrec"]
    said = verdicts(facts(seeds))
    for key in ("best", "time_helps"):
        assert said[key] == "not run yet: no finished runs of deepm3-gaps", key
    assert said["jitter"] == "not run yet: no finished runs of deepm3-gaps, tisasrec"
    nothing = verdicts(facts({}, dataset="ml-1m"))  # no row at all: no crash
    runs = {key: v for key, v in nothing.items() if key != "speed"}  # speed reads a bench
    assert all(v.startswith("not run yet") for v in runs.values()), nothing
    assert verdicts(facts(everything(), cv=None, dataset="ml-1m"))["irregular_best"] == (
        "not run yet: no users' gap CV (analyses stage)"
    )


def test_a_run_capped_while_rising_makes_the_goal_inconclusive():
    found = facts(everything(deepm3_decay=scaled(1.10)), {"deepm3-decay": 0.2})
    said = verdicts(found, capped={"deepm3-decay": (2, 3)})
    for key in ("best", "time_helps"):
        assert said[key].startswith("inconclusive: stopped by a cap"), key
        assert "deepm3-decay (2 of 3 runs)" in said[key]
    assert said["best"].endswith("(the figures alone: confirmed (parity); +5% goal met)")
    # a capped row the goals do not compare changes nothing
    assert verdicts(found, capped={"gru4rec": (1, 3)})["best"].startswith("confirmed")


def test_the_irregular_goal_reads_the_most_irregular_tertile_of_ml1m_only():
    """timeattn is 10% better than SASRec on the third of users with the largest CV and equal
    elsewhere: the goal is met on that tertile, and over all users +5% is not shown."""
    cv = pd.Series(RNG.permutation(240) / 10.0, index=USERS)  # distinct CVs
    most = cv.sort_values().index[160:]  # the 80 largest, chosen by hand
    seeds = everything(timeattn=scaled(1.10, most))
    found = facts(seeds, {"timeattn": 0.2}, dataset="ml-1m", cv=cv)
    assert found.irregular.users == 80
    assert found.irregular.relative == pytest.approx(
        seeds["timeattn"].loc[most].to_numpy().mean() / BASE.loc[most].to_numpy().mean() - 1
    )
    said = verdicts(found)
    assert said["irregular_best"] == "confirmed"
    assert said["best"] != "confirmed (parity); +5% goal met"
    least = cv.sort_values().index[:80]
    elsewhere = facts(everything(timeattn=scaled(1.10, least)), {"timeattn": 0.2}, "ml-1m", cv)
    assert verdicts(elsewhere)["irregular_best"] == "refuted"
    beauty = verdicts(facts(seeds, {"timeattn": 0.2}, dataset="amazon-beauty", cv=cv))
    assert beauty["irregular_best"].startswith("n/a (the goal is about ML-1M")


def ranks_frame(users: pd.Index, clean: np.ndarray, jittered: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"user": users, "clean": clean, "jitter_kept:24": jittered})


def test_the_jitter_goal_compares_drops_with_tisasrec_and_is_na_when_not_perturbed(tmp_path):
    """Through the report's reader: the chosen row's ranks do not move under jitter, TiSASRec's
    get worse; the records' validation picks the row; without its ranks the verdict is n/a."""
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    clean = RNG.integers(1, 20, 240)
    worse = clean + RNG.integers(2, 10, 240)
    for row, jittered in (("deepm3-gaps", clean), ("tisasrec", worse)):
        path = layout.perturb_ranks("core", f"{row}-s0")
        path.parent.mkdir(parents=True, exist_ok=True)
        ranks_frame(USERS, clean, jittered).to_csv(path, index=False)
    seeds = everything()
    records = [
        RunRecord(
            f"{row}-s{s}",
            tmp_path,
            {},
            {},
            {"valid": {"ndcg@10": 0.3 if row == "deepm3-gaps" else 0.1}},
        )
        for row in seeds
        for s in range(2)
    ]
    found_core = core_report.CoreFacts({}, list(seeds), seeds, UNTIED)
    grid = build((0.0, 24.0), (0.0,), 5)
    found = goals.goals(layout, records, found_core, grid, "amazon-beauty")
    assert found.chosen == "deepm3-gaps" and found.jitter.key == "jitter_kept:24"
    assert found.jitter.drop_row == 0 and found.jitter.drop_baseline < -0.1
    assert verdicts(found)["jitter"] == "confirmed"
    layout.perturb_ranks("core", "deepm3-gaps-s0").unlink()
    unperturbed = goals.goals(layout, records, found_core, grid, "amazon-beauty")
    assert verdicts(unperturbed)["jitter"].startswith("n/a (deepm3-gaps or tisasrec has no")


def test_the_goals_are_rows_of_the_claims_table_only_when_given():
    found = facts(everything(deepm3_decay=scaled(1.10)), {"deepm3-decay": 0.2})
    significance = pd.DataFrame(columns=["baseline"])
    without = claims.claims_table(claims.Facts(significance), ("sasrec",), "deepm3-noode")
    assert without.empty
    table = claims.claims_table(claims.Facts(significance, goals=found), ("sasrec",), "x")
    assert list(table["claim"]) == list(rules.GOALS.values())


def test_variant_rows_are_holm_corrected_in_their_own_family():
    """DeepM3 against the core rows: the same Holm p-values with or without the variant rows;
    the variant rows' p-values are Holm over the variant rows alone (checked by hand)."""
    core_rows = {"deepm3": scaled(1.03), "sasrec": BASE, "gru4rec": scaled(0.98)}
    variants = {"timeattn": scaled(1.01), "deepm3-decay": scaled(0.97)}

    def run(seeds):
        ndcg = {row: frame.mean(axis=1) for row, frame in seeds.items()}
        found = core_report.CoreFacts(ndcg, list(seeds), seeds, UNTIED)
        return core_report.significance(found)

    alone_text, alone = run(core_rows)
    both_text, both = run(core_rows | variants)
    columns = ["wilcoxon_p_holm", "t_p_holm", "h_p_holm", "untied_p_holm"]
    first = both.set_index("baseline")
    pd.testing.assert_frame_equal(
        alone.set_index("baseline")[columns], first.loc[["sasrec", "gru4rec"], columns]
    )
    for column in ("wilcoxon_p", "h_p"):
        by_hand = holm({row: first.loc[row, column] for row in variants})
        for row in variants:
            assert first.loc[row, f"{column}_holm"] == pytest.approx(by_hand[row])
    assert "two families" in both_text and "two families" not in alone_text
    one_family = effects.significance(
        {row: frame.mean(axis=1) for row, frame in (core_rows | variants).items()}, "deepm3"
    ).set_index("baseline")
    assert one_family.loc["sasrec", "t_p_holm"] >= first.loc["sasrec", "t_p_holm"]


def bench(**changes: float) -> dict:
    """A make bench result whose every ratio is within its goal; ``changes`` sets one ratio:
    ``<variant>__<column>__<length>`` (variant's - as _)."""
    rows = []
    for model in ("deepm3-decay", "timeattn", "timeattn-flow"):
        for length in (50, 200):
            rows.append(
                {"model": model, "batch": 256, "length": length, "train_vs_no_flow": 1.0}
                | {"train_vs_sasrec": 1.1, "train_vs_sasrec_iqr": [1.0, 1.2]}
            )
    for model, ratio in (("deepm3-euler", 2.0), ("timeattn", 1.1), ("deepm3-decay", 2.5)):
        rows.append({"model": model, "batch": 1, "length": 200, "infer_vs_sasrec": ratio})
    for key, value in changes.items():
        model, column, length = key.split("__")
        row = next(
            r
            for r in rows
            if r["model"] == model.replace("_", "-")
            and r["length"] == int(length)
            and column in r
            and (r["batch"] == 1) == column.startswith("infer")
        )
        row[column] = value
    return {"rows": rows, "info": {"device": "cpu", "threads": 1}}


def speed_verdict(result: dict | None, chosen: str) -> dict:
    found = facts(everything(), {chosen: 0.2})
    speed = None if result is None else goals.speed_facts(result, found.chosen)
    return rules.speed_goal(dataclasses.replace(found, speed=speed))


def test_the_speed_goal_reads_each_ratio_against_its_limit():
    """Within every limit: met. One training ratio over its limit, or the chosen row's
    one-user inference over 3x: not met, naming it. A row the goal needs missing from the
    result, or no result: not measured. The inference read is the chosen row's."""
    assert speed_verdict(bench(), "timeattn")["verdict"] == "met"
    assert speed_verdict(bench(), "deepm3")["verdict"] == "met"  # 2.0x, as deepm3-euler
    over = speed_verdict(bench(deepm3_decay__train_vs_no_flow__200=1.15), "timeattn")
    assert over["verdict"] == "not met: deepm3-decay train step / GRU without flow at T=200"
    slow = speed_verdict(bench(deepm3_euler__infer_vs_sasrec__200=3.4), "deepm3")
    assert slow["verdict"] == "not met: deepm3 one-user inference / SASRec at T=200"
    assert "3.40x" in slow["our figure"]
    assert (
        speed_verdict(bench(deepm3_euler__infer_vs_sasrec__200=3.4), "timeattn")["verdict"] == "met"
    )  # another row's inference does not count
    gone = bench()
    gone["rows"] = [r for r in gone["rows"] if not (r["model"] == "timeattn" and r["length"] == 50)]
    assert speed_verdict(gone, "deepm3-decay")["verdict"].startswith(
        "not measured: the bench result lacks timeattn at B=256, T=50"
    )
    assert "not benchmarked" in speed_verdict(bench(), "deepm3-gaps")["verdict"]
    assert speed_verdict(None, "timeattn")["verdict"].startswith("not measured")


def test_the_report_reads_the_committed_bench_result():
    """The report's speed figures are the committed make bench file's, read independently
    here: the chosen row's one-user inference ratio and each training ratio."""
    import json

    result = json.loads(goals.BENCH_FILE.read_text())
    speed = goals.speed_facts(result, "timeattn")
    [row] = [
        r
        for r in result["rows"]
        if r["model"] == "timeattn" and r["batch"] == 1 and r["length"] == 200
    ]
    assert speed.inference.value == row["infer_vs_sasrec"]
    assert len(speed.training) == 6 and not speed.missing
    decay = [r for r in result["rows"] if r["model"] == "deepm3-decay" and r["batch"] == 256]
    assert sorted(r.value for r in speed.training if r.what.startswith("deepm3-decay")) == sorted(
        r["train_vs_no_flow"] for r in decay
    )
