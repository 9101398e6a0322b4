"""The time-aware variant rows (issue 20): the standard and full budgets train them with the
baselines' epochs and search, each with a study of its own; quick and smoke (the committed
results) train none of them; each row's search space follows the flow its row fixes.

The expectations are written out here, from the issue, not read from the code's tables."""

from __future__ import annotations

import dataclasses
import json

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from suites import planning_settings, trained_in_search
from synthetic import write_synthetic_csv

from deepm3.models import model_options
from deepm3.stats.perturbation_grid import build, focus_keys
from deepm3.suite.budgets import SUITES
from deepm3.suite.design import searched_rows
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.suite.report import header, robustness
from deepm3.suite.search import Search, create_studies
from deepm3.suite.search_storage import storage_url
from deepm3.suite.spaces import suggest
from deepm3.suite.stages import SuiteSettings, planned_runs
from deepm3.suite.training import Source

CORE = [
    "pop",
    "last_item",
    "gru4rec",
    "sasrec",
    "tisasrec",
    "deepm3",
    "deepm3-rk4",
    "deepm3-noode",
    "deepm3-target",
]
VARIANTS = {  # row -> (registry model, options the row fixes), as issue 20 defines them
    "deepm3-decay": ("deepm3", {"ode": "decay"}),
    "deepm3-gaps": ("deepm3", {"gap_encoding": "shared"}),
    "timeattn": ("timeattn", {}),
    "timeattn-flow": ("timeattn", {"flow": "decay", "predict_at": "target_time"}),
    "tisasrec-gaps": ("tisasrec", {"gap_encoding": "shared"}),
}
TWINS = {  # each goal candidate with its time terms off (its own settings: another test)
    "deepm3-notime": ("deepm3", {"ode": "none"}),
    "deepm3-rk4-notime": ("deepm3", {"ode": "none"}),
    "deepm3-decay-notime": ("deepm3", {"ode": "none"}),
    "deepm3-gaps-notime": ("deepm3", {"ode": "none", "gap_encoding": "none"}),
    "timeattn-notime": ("timeattn", {"time_bias": "none"}),
}
SUITE_NAMES = ("ml1m", "amazon")
SHARED_KEYS = {"lr", "weight_decay", "dropout", "hidden_size"}  # every space's
SASREC_KEYS = SHARED_KEYS | {"num_layers", "num_heads"}
FIELD_KEYS = {"lipschitz_constant", "steps", "field_width"}  # DeepM3's solved field
BOUND = FloatDistribution(0.25, 4.0, log=True)  # a flow's Lipschitz constant


def _settings(suite: str, name: str, tmp_path) -> SuiteSettings:
    return planning_settings(suite, name, tmp_path)


def _core_rows(settings: SuiteSettings) -> list[str]:
    return list(dict.fromkeys(p.spec.row for p in planned_runs(settings)["core"]))


@pytest.mark.parametrize("suite,name", [(s, b) for s in SUITE_NAMES for b in ("standard", "full")])
def test_standard_and_full_train_every_variant_row_with_its_fixed_options(suite, name, tmp_path):
    """After the core rows, in order: each variant row, the budget's seeds (standard 3, full 5),
    its model, its fixed options
    in the resolved config, the baselines' data and training settings."""
    settings = _settings(suite, name, tmp_path)
    budget = settings.budget
    runs = planned_runs(settings)["core"]
    assert _core_rows(settings) == CORE + list(VARIANTS) + list(TWINS)
    for row, (model, fixed) in (VARIANTS | TWINS).items():
        mine = [p for p in runs if p.spec.row == row]
        assert [p.spec.seed for p in mine] == ([0, 1, 2] if name == "standard" else [0, 1, 2, 3, 4])
        for each in mine:
            assert each.spec.model == model
            options = model_options(model, each.config.model)  # every option, defaults included
            assert {key: getattr(options, key) for key in fixed} == fixed
            assert each.spec.sections["train"] == budget.train
            assert each.spec.sections["data"] == budget.data


@pytest.mark.parametrize("suite,name", [(s, b) for s in SUITE_NAMES for b in ("smoke", "quick")])
def test_quick_and_smoke_train_and_search_no_variant_row(suite, name, tmp_path):
    settings = _settings(suite, name, tmp_path)
    assert _core_rows(settings) == CORE
    assert searched_rows(settings.budget) == ("gru4rec", "sasrec", "tisasrec", "deepm3")


@pytest.mark.parametrize("suite", SUITE_NAMES)
def test_each_variant_row_owns_a_study_in_standard(suite, tmp_path):
    """The standard search creates one study per trained row, the variants' included, and
    enqueues each row's first trials from its own space (no training here)."""
    settings = _settings(suite, "standard", tmp_path)
    budget, layout = settings.budget, settings.layout
    rows = searched_rows(budget)
    trained = [row for row in CORE if row not in ("pop", "last_item")] + list(VARIANTS)
    assert rows == tuple(trained)
    search = Search(budget, settings.source, layout, Execution(), storage_url(layout, None), rows)
    create_studies(search)
    names = optuna.get_all_study_names(search.url)
    assert sorted(names) == sorted(f"{budget.dataset}-standard-{row}" for row in trained)

    def first(row: str) -> set[str]:
        study = optuna.load_study(study_name=f"{budget.dataset}-standard-{row}", storage=search.url)
        waiting = min(study.trials, key=lambda t: t.number)  # enqueued, not yet run
        return set(waiting.system_attrs["fixed_params"])

    assert first("deepm3-decay") == SHARED_KEYS | {"lipschitz_constant"}
    assert first("deepm3-gaps") == SHARED_KEYS | FIELD_KEYS
    assert first("timeattn") == SASREC_KEYS
    assert first("timeattn-flow") == SASREC_KEYS | {"lipschitz_constant"}
    assert first("tisasrec-gaps") == SASREC_KEYS | {"time_span"}


def _space(model: str, fixed: dict | None = None) -> dict:
    """The distributions one real Optuna trial of ``model``'s space asks for."""
    trial = optuna.create_study().ask()
    sections = suggest(model, trial, (64, 128), fixed)
    assert set(trial.params) == set(sections["train"]) | set(sections["model"])
    return trial.distributions


def test_the_timeattn_space_is_sasrecs_plus_the_flows_bound_with_a_flow():
    assert set(_space("timeattn")) == SASREC_KEYS == set(_space("sasrec"))
    assert set(_space("timeattn", {"time_bias": "none"})) == SASREC_KEYS
    flow = _space("timeattn", VARIANTS["timeattn-flow"][1])
    assert set(flow) == SASREC_KEYS | {"lipschitz_constant"}
    assert flow["lipschitz_constant"] == BOUND == _space("deepm3")["lipschitz_constant"]


def test_the_deepm3_decay_space_has_the_rates_bound_and_no_solver_settings():
    assert set(_space("deepm3", {"ode": "decay"})) == SHARED_KEYS | {"lipschitz_constant"}
    assert _space("deepm3", {"ode": "decay"})["lipschitz_constant"] == BOUND
    assert set(_space("deepm3")) == SHARED_KEYS | FIELD_KEYS  # the solved field: all three
    assert set(_space("deepm3", {"solver": "rk4"})) == SHARED_KEYS | FIELD_KEYS
    assert set(_space("deepm3", {"ode": "none"})) == SHARED_KEYS  # no flow: none of them
    assert set(_space("tisasrec", {"gap_encoding": "shared"})) == SASREC_KEYS | {"time_span"}


def test_a_variant_rows_trials_train_with_its_fixed_options_and_searched_bound(
    tmp_path, monkeypatch
):
    """One 1-epoch trial of each flow variant on synthetic data: the model trained is the row's
    (its fixed options) with the trial's Lipschitz constant."""
    events = write_synthetic_csv(tmp_path / "events.csv")
    budget = dataclasses.replace(
        SUITES["ml1m"].budget("standard"),
        dataset=str(events),
        data={"max_len": 10},
        train={"epochs": 1, "patience": 1, "batch_size": 64},
        trials=1,
        trial_train={"epochs": 1},
        widths=(8,),
    )
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    rows = ("deepm3-decay", "timeattn-flow")
    search = Search(
        budget, Source(str(events), None), layout, Execution(), storage_url(layout, None), rows
    )
    trained = trained_in_search(search, monkeypatch)
    assert [model for model, _ in trained] == ["deepm3", "timeattn"]
    decay, flow = trained[0][1], trained[1][1]
    assert (decay.ode, flow.flow, flow.predict_at) == ("decay", "decay", "target_time")
    for row, options in zip(rows, (decay, flow), strict=True):
        study = optuna.load_study(study_name=f"{events}-standard-{row}", storage=search.url)
        assert options.lipschitz_constant == study.trials[0].params["lipschitz_constant"]


def test_the_robustness_headline_hides_the_target_time_rows():
    """Like deepm3-target, timeattn-flow predicts at the target's time: not in the views."""
    grid = build((0.0, 24.0), (0.0, 0.5), 3)
    keys = focus_keys(grid, 3)
    shown = ["deepm3", "timeattn", "sasrec"]
    rows = [*shown, "deepm3-target", "timeattn-flow", "pop"]
    effects = pd.DataFrame(
        [
            {"row": row, "key": key, "relative": -0.01, "ci_low": -0.02, "ci_high": 0.0}
            for row in rows
            for key in keys
        ]
    )
    facts = robustness.RobustnessFacts(
        effects, pd.DataFrame(), pd.DataFrame(columns=robustness.DUEL_COLUMNS)
    )
    text = robustness.headline(facts, grid, rows, 3)
    table = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert [row for row in table if row in rows] == shown


def test_the_search_section_names_the_variant_rows_that_had_studies(tmp_path):
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    layout.search.mkdir(parents=True)
    entry = {"trial": 0, "valid_ndcg@10": 0.05, "params": {"lr": 1e-3}}
    entry |= {"trials_counted": 8, "trials_pruned": 0}
    rows = ("gru4rec", "deepm3", "deepm3-rk4", "deepm3-decay", "timeattn", "timeattn-flow")
    layout.best.write_text(json.dumps(dict.fromkeys(rows, entry)))
    text = header.search(layout, SUITES["ml1m"].budget("standard"))
    said = "The time-aware variant rows (deepm3-decay, timeattn, timeattn-flow) had studies"
    assert said in text
    layout.best.write_text(json.dumps(dict.fromkeys(("gru4rec", "deepm3"), entry)))
    assert "time-aware" not in header.search(layout, SUITES["ml1m"].budget("quick"))


def test_each_goal_candidate_has_a_twin_with_its_own_settings_and_time_off():
    """Issue 20's "the same model trained with its time terms off": every candidate's twin row
    is trained (standard) with the candidate's searched settings, not the separately searched
    time-blind row's, with the time terms off, and is never searched itself."""
    from deepm3.suite.budgets import BUDGETS, DESIGNS
    from deepm3.suite.design import TIME_AWARE_TWINS, TWIN_ROWS, plan_specs

    budget = BUDGETS["standard"]
    searched = {
        "timeattn": {"model": {"dropout": 0.5, "num_layers": 1}, "train": {"lr": 0.002}},
        "sasrec": {"model": {"dropout": 0.3, "num_layers": 2}, "train": {"lr": 0.001}},
        "deepm3-gaps": {"model": {"hidden_size": 64}, "train": {"lr": 0.003}},
        "deepm3-noode": {"model": {"hidden_size": 128}, "train": {"lr": 0.0005}},
    }
    core = {s.name: s for s in plan_specs(budget, DESIGNS["standard"], searched).core}
    twin = core["timeattn-notime-s0"]
    assert twin.model == "timeattn"
    assert twin.sections["model"]["time_bias"] == "none"
    assert twin.sections["model"]["dropout"] == 0.5 and twin.sections["model"]["num_layers"] == 1
    assert twin.sections["train"]["lr"] == 0.002
    gaps = core["deepm3-gaps-notime-s1"].sections
    assert gaps["model"]["ode"] == "none" and gaps["model"]["gap_encoding"] == "none"
    assert gaps["model"]["hidden_size"] == 64 and gaps["train"]["lr"] == 0.003
    assert set(TIME_AWARE_TWINS.values()) == set(TWIN_ROWS)
    for candidate, name in TIME_AWARE_TWINS.items():
        assert core[f"{name}-s0"].model == core[f"{candidate}-s0"].model
    assert not set(TWIN_ROWS) & set(searched_rows(budget))
