"""Verdict rules of issue 19: unconverged runs, the ML-1M-only claim, the Euler/RK4 latency
measurements, and the paired duel of drops among models that read time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepm3.errors import DataError
from deepm3.reporting.records import RunRecord, still_rising, validation_curve
from deepm3.stats.drops import drop_difference, user_ndcg_under
from deepm3.stats.perturbation_grid import build
from deepm3.suite import claims
from deepm3.suite.layout import Layout
from deepm3.suite.report import capped_rows
from deepm3.suite.report import core as core_report
from deepm3.suite.report.robustness import duels


def significance(relative: float, low: float, high: float, p: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "baseline": b,
                "relative": relative,
                "ci_low": low,
                "ci_high": high,
                "wilcoxon_p_holm": p,
            }  # fmt: skip
            for b in ("gru4rec", "sasrec", "tisasrec", "deepm3-noode")
        ]
    )


def table(facts: claims.Facts) -> dict[str, str]:
    found = claims.claims_table(facts, ("gru4rec", "sasrec", "tisasrec"), "deepm3-noode")
    return dict(zip(found["claim"], found["verdict"], strict=True))


def test_a_verdict_on_a_run_cut_by_a_cap_while_rising_is_inconclusive():
    clear_win = significance(0.10, 0.05, 0.15, 1e-6)
    plain = table(claims.Facts(clear_win))
    assert plain[claims.PAPER["main"]] == "confirmed"
    assert plain[claims.PAPER["ode"]] == "confirmed"
    capped = table(claims.Facts(clear_win, capped={"sasrec": (1, 3)}))
    assert capped[claims.PAPER["main"]].startswith("inconclusive: stopped by a cap")
    assert "sasrec (1 of 3 runs)" in capped[claims.PAPER["main"]]
    assert capped[claims.PAPER["ode"]] == "confirmed"  # the ablation does not use SASRec
    twin = table(claims.Facts(clear_win, capped={"deepm3-noode": (3, 3)}))
    assert twin[claims.PAPER["ode"]].startswith("inconclusive")
    assert twin[claims.PAPER["main"]] == "confirmed"


def test_a_capped_row_used_twice_is_named_once():
    verdict = {"verdict": "refuted: a reason"}
    said = claims.unconverged(verdict, ["deepm3", "tisasrec", "tisasrec"], {"tisasrec": (2, 3)})
    assert said["verdict"].count("tisasrec (2 of 3 runs)") == 1
    assert said["verdict"].endswith("(the figures alone: refuted)")


def test_the_irregularity_claim_is_judged_on_ml1m_only():
    fact = claims.IrregularFact("sasrec", -0.05, -0.08, -0.02, 0.001, 1000)
    on_ml1m = claims.irregular(fact, "ml-1m")
    assert on_ml1m["verdict"] == "refuted" and on_ml1m["claim"] == claims.PAPER["irregular"]
    beauty = claims.irregular(fact, "amazon-beauty")
    assert beauty["verdict"].startswith("n/a") and "analogue on amazon-beauty" in beauty["claim"]
    capped = table(
        claims.Facts(significance(0, -1, 1, 1), irregular=fact, capped={"deepm3": (1, 3)})
    )
    assert capped[claims.PAPER["irregular"]].startswith("inconclusive")
    assert table(claims.Facts(significance(0, -1, 1, 1), irregular=fact, dataset="amazon-beauty"))


def test_the_latency_verdict_needs_both_measurements_to_agree():
    assert claims.euler(claims.LatencyFact(0.45, 0.40))["verdict"] == "confirmed"
    assert claims.euler(claims.LatencyFact(0.80, 0.90))["verdict"] == "refuted"
    split = claims.euler(claims.LatencyFact(0.45, 0.70))["verdict"]
    assert split.startswith("inconclusive") and "one user outside" in split


def test_still_rising_reads_the_last_five_validations():
    assert still_rising([0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.31])
    assert not still_rising([0.1, 0.3, 0.29, 0.28, 0.3, 0.29, 0.27])  # best 5+ validations ago
    assert not still_rising([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    assert still_rising([0.1, 0.2]) and not still_rising([0.2]) and not still_rising([])


def write_run(folder: Path, stopped_by: str, curve: list[float]) -> RunRecord:
    folder.mkdir(parents=True)
    lines = [json.dumps({"epoch": i + 1, "valid": {"ndcg@10": v}}) for i, v in enumerate(curve)]
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n")
    metrics = {"stopped_by": stopped_by, "epochs_run": len(curve)}
    return RunRecord(folder.name, folder, {}, {}, metrics)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"\x00\xff not json", "line 3: damaged (not UTF-8 text)"),
        (b'{"epoch": 2, "valid": {"hr@10": 0.3}}', "line 3: damaged, no validation ndcg@10"),
        (b'{"valid": {"ndcg@10": 0.3}}', "line 3: damaged, no integer 'epoch'"),
    ],
)
def test_a_damaged_log_line_names_its_file_and_line(tmp_path, line, expected):
    """The validation curve reads the log as a resume does (one reader): blank and
    whitespace-only lines count in the line numbers but hold no record."""
    log = tmp_path / "log.jsonl"
    good = json.dumps({"epoch": 1, "valid": {"ndcg@10": 0.2}})
    log.write_bytes(f"{good}\n \t\n".encode() + line + b"\n")
    with pytest.raises(DataError) as error:
        validation_curve(tmp_path)
    assert str(error.value).startswith(f"{log}, {expected}"), error.value
    log.write_text(f"{good}\n \t\n\n{good.replace('0.2', '0.25')}\n")
    assert validation_curve(tmp_path) == [0.2, 0.25]


def test_capped_rows_count_only_capped_runs_still_rising(tmp_path):
    rising = [0.1, 0.12, 0.14, 0.15, 0.16, 0.17, 0.18]
    runs = [
        write_run(tmp_path / "deepm3-s0", "time_budget", rising),
        write_run(tmp_path / "deepm3-s1", "patience", rising),  # converged by its own rule
        write_run(tmp_path / "sasrec-s0", "epochs", [0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]),
        write_run(tmp_path / "gru4rec-s0", "epochs", rising),
    ]
    assert capped_rows(runs) == {"deepm3": (1, 2), "gru4rec": (1, 1)}
    # the core table's "stopped by" says which caps stopped runs still rising
    assert core_report._stops(runs[:2]) == "patience, time_budget (1 still rising)"
    assert core_report._stops(runs[2:3]) == "epochs"


def test_the_drop_difference_pairs_users_by_id():
    """Both models lose most on the same users: paired by id the interval is narrow; paired by
    position after one frame's rows are shuffled it would be several times wider."""
    rng = np.random.default_rng(0)
    users = np.arange(400)
    clean_a = pd.Series(rng.uniform(0.2, 0.4, 400), index=users)
    clean_b = pd.Series(rng.uniform(0.2, 0.4, 400), index=users)
    shared = rng.uniform(0.3, 1.0, 400)  # how hard the noise hits each user, for both models
    perturbed_a, perturbed_b = clean_a * shared, clean_b * (shared - 0.05)
    found = drop_difference(clean_a, perturbed_a, clean_b, perturbed_b)
    assert found["ci_low"] > 0 and found["p"] < 0.01 and found["users"] == 400
    order = rng.permutation(400)
    again = drop_difference(clean_a, perturbed_a, clean_b.iloc[order], perturbed_b.iloc[order])
    for key in ("difference", "ci_low", "ci_high"):
        assert again[key] == pytest.approx(found[key])
    assert found["ci_high"] - found["ci_low"] < 0.05
    same = drop_difference(clean_a, clean_a * 0.9, clean_a, clean_a * 0.9)
    assert same["difference"] == 0 and same["ci_low"] <= 0 <= same["ci_high"]


def test_the_drop_difference_interval_matches_a_plain_loop_bootstrap():
    """An independent path: one resample at a time, relative drops recomputed by hand."""
    rng = np.random.default_rng(3)
    users = np.arange(150)
    a0, b0 = rng.uniform(0.1, 1, 150), rng.uniform(0.1, 1, 150)
    a1, b1 = a0 * rng.uniform(0.7, 1.0, 150), b0 * rng.uniform(0.8, 1.0, 150)
    series = [pd.Series(v, index=users) for v in (a0, a1, b0, b1)]
    found = drop_difference(*series, n_resamples=4000, seed=5)
    loop = np.random.default_rng(11)
    values = []
    for _ in range(4000):
        i = loop.integers(0, 150, 150)
        values.append((a1[i].sum() / a0[i].sum()) - (b1[i].sum() / b0[i].sum()))
    low, high = np.quantile(values, [0.025, 0.975])
    assert found["ci_low"] == pytest.approx(low, abs=0.006)
    assert found["ci_high"] == pytest.approx(high, abs=0.006)


def ranks_file(path: Path, users: np.ndarray, clean: np.ndarray, keyed: dict[str, np.ndarray]):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user": users, "clean": clean, **keyed}).to_csv(path, index=False)


def test_time_only_noise_is_dueled_among_models_that_read_time(tmp_path):
    """Under jitter with the order kept a time-blind SASRec is unchanged by construction: the
    duel must pick TiSASRec, and under a shuffle the least affected of all baselines."""
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    grid = build((0.0, 24.0), (0.0, 0.5), 5)
    keys = ["order_full", "jitter_kept:24"]
    users = np.arange(300)
    rng = np.random.default_rng(2)
    clean = rng.integers(1, 30, 300)
    worse = clean + rng.integers(0, 6, 300)
    much_worse = clean + rng.integers(3, 20, 300)
    rows = {  # row: (order_full ranks, jitter_kept ranks)
        "deepm3": (worse, worse),
        "sasrec": (worse, clean),  # time-blind: unchanged by jitter
        "gru4rec": (much_worse, clean),
        "tisasrec": (much_worse, much_worse),
    }
    effects = []
    for row, (shuffled, jittered) in rows.items():
        path = layout.perturb_ranks("core", f"{row}-s0")
        ranks_file(path, users, clean, {"order_full": shuffled, "jitter_kept:24": jittered})
        frame = [pd.read_csv(path)]
        for key in keys:
            base, moved = user_ndcg_under(frame, "clean"), user_ndcg_under(frame, key)
            effects.append({"row": row, "key": key, "relative": moved.mean() / base.mean() - 1})
    found = duels(layout, pd.DataFrame(effects), grid, keys).set_index("key")
    assert found.loc["jitter_kept:24", "baseline"] == "tisasrec"
    assert found.loc["jitter_kept:24", "outcome"] == "more"
    assert found.loc["order_full", "baseline"] == "sasrec"
    assert found.loc["order_full", "outcome"] == "no difference shown"


@pytest.mark.parametrize("suite", ["ml1m", "amazon"])
def test_the_standard_budget_compares_on_equal_epochs_without_a_time_cap(suite, tmp_path):
    """A comparison is decided by epochs, never seconds: every trained run of the standard
    budget, resolved as it would train, has the same epoch cap, no time cap, patience >= 10
    after a warm-up; >= 3 seeds; >= 8 search trials of >= 15 epochs."""
    from deepm3.suite.budgets import SUITES
    from deepm3.suite.pool import Execution
    from deepm3.suite.stages import SuiteSettings, planned_runs
    from deepm3.suite.training import Source

    chosen = SUITES[suite]
    budget = chosen.budget("standard", "amazon-beauty" if suite == "amazon" else None)
    assert len(budget.seeds) >= 3 and budget.trials >= 8 and budget.trial_train["epochs"] >= 15
    assert "time_budget" not in budget.trial_train
    settings = SuiteSettings(
        chosen,
        budget,
        chosen.design("standard"),
        Source(budget.dataset, str(tmp_path / "no-data")),
        Layout(tmp_path / "runs", tmp_path / "out"),
        Execution(),
    )
    trained = [run for run in planned_runs(settings)["core"] if not run.spec.counted]
    assert len({run.spec.row for run in trained}) >= 6
    trains = [run.config.train for run in trained]
    assert {t.epochs for t in trains} == {budget.train["epochs"]}
    assert all(t.time_budget is None and t.patience >= 10 and t.min_epochs >= 5 for t in trains)


def with_users_seeds(frame: pd.DataFrame, whole: tuple, untied: tuple) -> pd.DataFrame:
    """``frame`` with the users x seeds columns: whole, untied = (relative, low, high, p)."""
    names = ("relative", "ci_low", "ci_high", "p_holm")
    extra = {f"h_{n}": v for n, v in zip(names[1:], whole[1:], strict=True)}
    extra |= {f"untied_{n}": v for n, v in zip(names, untied, strict=True)}
    return frame.assign(**extra)


def test_verdicts_read_the_users_x_seeds_test_and_its_untied_co_primary():
    # the per-user test of seed averages says a clear win; the users x seeds test does not
    seed_noise = with_users_seeds(
        significance(0.10, 0.05, 0.15, 1e-6), (0.10, -0.02, 0.22, 0.2), (0.10, 0.04, 0.16, 1e-4)
    )
    said = table(claims.Facts(seed_noise))
    assert said[claims.PAPER["main"]] == "inconclusive"
    assert said[claims.PAPER["ode"]] == "inconclusive"
    # both co-primary tests confirm: confirmed; the untied one alone failing: inconclusive
    both = with_users_seeds(
        significance(0.10, 0.05, 0.15, 1e-6), (0.10, 0.04, 0.16, 1e-4), (0.08, 0.02, 0.14, 1e-3)
    )
    assert table(claims.Facts(both))[claims.PAPER["main"]] == "confirmed"
    tied_only = with_users_seeds(
        significance(0.10, 0.05, 0.15, 1e-6), (0.10, 0.04, 0.16, 1e-4), (0.0, -0.05, 0.05, 0.9)
    )
    found = claims.claims_table(
        claims.Facts(tied_only), ("gru4rec", "sasrec", "tisasrec"), "deepm3-noode"
    )
    main = found[found["claim"] == claims.PAPER["main"]].iloc[0]
    assert main["verdict"] == "inconclusive"
    assert "untied +0.00%" in main["our figure"]
    # both show a significant loss: refuted
    loss = with_users_seeds(
        significance(-0.10, -0.15, -0.05, 1e-6),
        (-0.10, -0.16, -0.04, 1e-4),
        (-0.1, -0.2, -0.01, 0.01),
    )
    assert table(claims.Facts(loss))[claims.PAPER["ode"]] == "refuted"
