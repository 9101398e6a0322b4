"""The standard budget's recipe end to end, scaled down: every stage, every searched row (the
time-aware variant rows among them), on the synthetic data. The real runs take days; this
catches a stage that would fail on them before they get there."""

from __future__ import annotations

import dataclasses
import json

import pytest
from synthetic import write_synthetic_csv

from deepm3.suite import stages
from deepm3.suite.budgets import SUITES
from deepm3.suite.design import VARIANT_ROWS, searched_rows
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.suite.training import Source


@pytest.mark.slow
def test_a_scaled_down_standard_budget_runs_every_stage_with_the_variant_rows(tmp_path):
    """The standard budget with 2 trials of 1 epoch, 2 seeds of 2 epochs, 16 negatives and
    width 16 (40 items); the paper's protocol with 10 sampled negatives instead of 100."""
    events = write_synthetic_csv(tmp_path / "events.csv")
    suite = SUITES["amazon"]
    standard = suite.budget("standard", "amazon-beauty")
    budget = dataclasses.replace(
        standard,
        dataset=str(events),
        data={**standard.data, "max_len": 20},
        train={**standard.train, "epochs": 2, "min_epochs": 0, "loss_negatives": 16},
        trial_train={"epochs": 1},
        trials=2,
        spread_trials=2,
        prune_warmup=1,
        seeds=(0, 1),
        widths=(16,),
    )
    base = suite.design("standard")
    sampled = {"protocol": "sampled", "num_negatives": 10}
    design = dataclasses.replace(
        base,
        lipschitz=(("none", 1.0),),
        solver_steps=(1,),
        paper_protocol={**base.paper_protocol, "eval": sampled},
    )
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    settings = stages.SuiteSettings(
        suite, budget, design, Source(str(events), None), layout, Execution(jobs=2)
    )
    stages.run_suite(settings)

    out = layout.out
    best = json.loads(layout.best.read_text())
    assert set(best) == set(searched_rows(budget)) >= set(VARIANT_ROWS)
    assert {entry["trials_counted"] for entry in best.values()} == {2}
    core = {path.name for path in layout.records("core").iterdir()}
    assert {f"{row}-s{seed}" for row in VARIANT_ROWS for seed in (0, 1)} <= core
    assert {json.loads(p.read_text())["history"] for p in layout.efficiency_files()} == {"trimmed"}
    report = (out / "report.md").read_text()
    for text in (
        "## Claims",
        "The best continuous-time model >= the calibrated SASRec",
        "Time helps: the best continuous-time model beats its own time-blind twin",
        "## 7. Solver",
        "## 9. The paper's protocol",
    ):
        assert text in report, text
