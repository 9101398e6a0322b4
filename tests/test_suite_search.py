"""The suite's search can tune: the first trials of every study spread over the learning rate
(the same rates for every model), pruning waits its warm-up, DeepM3's variant rows own their
studies and the core rows use their results, and the checks of a best trial (at an edge of
the space, cut by its limit) that the report shows."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from suites import trained_in_search
from synthetic import write_synthetic_csv

from deepm3.models import model_options
from deepm3.suite import search as search_module
from deepm3.suite import training
from deepm3.suite.budgets import BUDGETS, DESIGNS
from deepm3.suite.design import plan_specs, searched_rows
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.suite.report import header
from deepm3.suite.search import (
    Search,
    SearchJob,
    best_settings,
    create_studies,
    cut_by_limit,
    search_worker,
    searched_sections,
    study_name,
    worker_study,
)
from deepm3.suite.search_storage import give_heartbeats, open_storage, storage_url
from deepm3.suite.spaces import edges
from deepm3.suite.training import Source

LOW, HIGH = 3e-4, 1e-2  # the learning rate range every space must cover


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    return write_synthetic_csv(tmp_path_factory.mktemp("search") / "events.csv")


def _search(events, tmp_path, rows, **budget_fields) -> Search:
    """A tiny search on the synthetic data: 1-epoch trials of width 8, ``budget_fields`` on top
    of the smoke budget."""
    budget = dataclasses.replace(
        BUDGETS["smoke"],
        dataset=str(events),
        data={"max_len": 10},
        train={"epochs": 1, "patience": 1, "batch_size": 64},
        trial_train={"epochs": 1},
        widths=(8,),
        **budget_fields,
    )
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    url = storage_url(layout, None)
    return Search(budget, Source(str(events), None), layout, Execution(), url, tuple(rows))


def _trials(search: Search, row: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=study_name(search, row), storage=search.url)
    return sorted(study.trials, key=lambda t: t.number)


def test_the_first_trials_of_every_study_spread_the_same_learning_rates(events, tmp_path):
    """Four enqueued trials per study, once (creating the studies again enqueues nothing), run
    first; their learning rates are the centres of four equal log-bins of 3e-4..1e-2 (computed
    here on their own), the same for GRU4Rec and DeepM3, within a factor 2 of both ends; the
    other settings at the documented middle; the fifth trial is TPE's."""
    search = _search(events, tmp_path, ("gru4rec", "deepm3"), trials=5, spread_trials=4)
    create_studies(search)
    create_studies(search)  # a restarted search stage must not enqueue twice
    for row in search.rows:
        waiting = [t for t in _trials(search, row) if t.state == optuna.trial.TrialState.WAITING]
        assert len(waiting) == 4, row
    search_worker(SearchJob(search, 0))

    bins = np.linspace(math.log(LOW), math.log(HIGH), 9)[1::2]  # the centres of 4 log-bins
    expected = np.exp(bins)
    assert expected[0] / LOW < 2 and HIGH / expected[-1] < 2
    rates = {}
    for row in search.rows:
        trials = _trials(search, row)
        assert len(trials) == 5 and all(t.state.is_finished() for t in trials)
        rates[row] = [t.params["lr"] for t in trials[:4]]
        np.testing.assert_allclose(rates[row], expected, rtol=1e-9)
        assert not np.isclose(trials[4].params["lr"], expected, rtol=1e-6).any()  # TPE's own
        for trial in trials[:4]:
            assert trial.params["weight_decay"] == 1e-4 and trial.params["dropout"] == 0.3
            assert trial.params["hidden_size"] == 8
    assert rates["gru4rec"] == rates["deepm3"]
    first = _trials(search, "deepm3")[0].params
    assert (first["lipschitz_constant"], first["steps"], first["field_width"]) == (1.0, 2, 128)
    assert _trials(search, "gru4rec")[0].params["num_layers"] == 2


SEARCH_FIELDS = ("trials", "spread_trials", "prune_warmup", "search_variants")


@pytest.mark.parametrize("name", ["smoke", "quick"])
def test_quick_and_smoke_keep_the_committed_search(events, tmp_path, name):
    """Budgets of the committed results enqueue nothing, prune after one epoch once two trials
    have completed, and search the four models only."""
    fields = {field: getattr(BUDGETS[name], field) for field in SEARCH_FIELDS}
    search = _search(events, tmp_path, ("gru4rec",), **fields)
    create_studies(search)
    assert _trials(search, "gru4rec") == []
    study = worker_study(search, "gru4rec", 0, open_storage(search.url))
    assert (study.pruner._n_warmup_steps, study.pruner._n_startup_trials) == (1, 2)
    assert searched_rows(search.budget) == ("gru4rec", "sasrec", "tisasrec", "deepm3")


def test_pruning_waits_its_warm_up_and_spares_the_spread_trials(events, tmp_path):
    """With the study a worker runs (its sampler and pruner): the four spread trials, each
    worse than the one before at every epoch, are never pruned against each other; a later
    trial far below the median is pruned at its warm-up epoch, not before."""
    search = _search(events, tmp_path, ("gru4rec",), trials=8, spread_trials=4, prune_warmup=5)
    create_studies(search)
    study = worker_study(search, "gru4rec", 0, open_storage(search.url))
    pruned_at: dict[int, int] = {}

    def objective(trial: optuna.Trial) -> float:
        value = 0.5 - 0.1 * trial.number  # each trial below the ones before it
        for epoch in range(1, 9):
            trial.report(value, epoch)
            if trial.should_prune():
                pruned_at[trial.number] = epoch
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=5)
    assert [t.state for t in study.trials[:4]] == [optuna.trial.TrialState.COMPLETE] * 4
    assert pruned_at == {4: 5}


def test_variant_rows_own_a_study_and_the_core_rows_use_it(events, tmp_path, monkeypatch):
    """A budget that searches the variants: one study per row (today's names for the models),
    each trial trained with its row's fixed option (RK4 searching its own steps, the no-ODE twin
    without the field's settings), best.json per row, and each core row planned with its own
    row's settings; a budget that does not search them plans the variants with DeepM3's."""
    search = _search(
        events,
        tmp_path,
        ("deepm3", "deepm3-rk4", "deepm3-noode"),
        trials=2,
        search_variants=True,
    )
    trained = []
    real_plan_run = search_module.plan_run

    def spy(model, config):
        trained.append(model_options(model, config.model))  # every option, defaults included
        return real_plan_run(model, config)

    monkeypatch.setattr(search_module, "plan_run", spy)
    create_studies(search)
    search_worker(SearchJob(search, 0))
    names = set(optuna.get_all_study_names(search.url))
    assert names == {f"{search.source.dataset}-smoke-{row}" for row in search.rows}
    assert [m.solver for m in trained] == ["euler"] * 2 + ["rk4"] * 2 + ["euler"] * 2
    assert [m.ode for m in trained] == ["ode"] * 4 + ["none"] * 2
    rk4 = [t for t in _trials(search, "deepm3-rk4")]
    assert [t.params["steps"] for t in rk4] == [m.steps for m in trained[2:4]]
    assert all("lipschitz_constant" not in t.params for t in _trials(search, "deepm3-noode"))

    best = best_settings(search)
    assert set(best) == set(search.rows)
    assert "steps" not in best["deepm3-noode"]["sections"]["model"]
    # Give each variant a learning rate no trial had, to see which settings the core rows take.
    for row, lr in (("deepm3-rk4", 0.00711), ("deepm3-noode", 0.00733)):
        best[row]["sections"]["train"]["lr"] = lr
    search.layout.best.write_text(json.dumps(best))
    searched = searched_sections(search.layout)
    core = {s.row: s.sections for s in plan_specs(search.budget, DESIGNS["smoke"], searched).core}
    assert core["deepm3-rk4"]["train"]["lr"] == 0.00711
    assert core["deepm3-rk4"]["model"]["steps"] == best["deepm3-rk4"]["params"]["steps"]
    assert core["deepm3-rk4"]["model"]["solver"] == "rk4"
    assert core["deepm3-noode"]["train"]["lr"] == 0.00733
    assert core["deepm3"]["train"]["lr"] == best["deepm3"]["params"]["lr"]
    assert core["deepm3-target"]["train"]["lr"] == best["deepm3"]["params"]["lr"]  # no study

    reused = {
        s.row: s.sections for s in plan_specs(BUDGETS["quick"], DESIGNS["quick"], searched).core
    }
    assert reused["deepm3-rk4"]["train"]["lr"] == 0.00711  # a result that exists is used
    assert searched_rows(BUDGETS["quick"]) == ("gru4rec", "sasrec", "tisasrec", "deepm3")
    assert searched_rows(BUDGETS["standard"])[4:7] == (
        "deepm3-rk4",
        "deepm3-noode",
        "deepm3-target",
    )


def test_settings_at_an_edge_of_the_space():
    lr = FloatDistribution(LOW, HIGH, log=True)
    dropout = FloatDistribution(0.0, 0.5, step=0.1)
    width = CategoricalDistribution([64, 128, 256])
    layers = IntDistribution(1, 3)
    found = edges(
        {"lr": 3.1e-4, "dropout": 0.5, "hidden_size": 128, "num_layers": 2},
        {"lr": lr, "dropout": dropout, "hidden_size": width, "num_layers": layers},
    )
    assert found == {"lr": "low", "dropout": "high"}
    # 5% of the log range: a factor 1.19 from either end
    step = (HIGH / LOW) ** 0.05
    assert edges({"lr": HIGH / step * 1.001}, {"lr": lr}) == {"lr": "high"}
    assert edges({"lr": HIGH / step / 1.01}, {"lr": lr}) == {}
    assert edges({"lr": LOW * step / 1.001}, {"lr": lr}) == {"lr": "low"}
    assert edges({"lr": 1e-3}, {"lr": lr}) == {}
    assert edges(
        {"hidden_size": 256, "num_layers": 1}, {"hidden_size": width, "num_layers": layers}
    ) == {
        "hidden_size": "high",
        "num_layers": "low",
    }
    weight_decay = CategoricalDistribution([0.0, 1e-4, 1e-2])
    assert edges({"weight_decay": 0.0}, {"weight_decay": weight_decay}) == {"weight_decay": "low"}
    assert edges({"weight_decay": 1e-4}, {"weight_decay": weight_decay}) == {}
    # nothing searched (one width), or choices without an order: never an edge
    assert edges({"hidden_size": 8}, {"hidden_size": CategoricalDistribution([8])}) == {}
    assert edges({"ode": "none"}, {"ode": CategoricalDistribution(["none", "neural"])}) == {}


def test_a_best_trial_cut_by_its_limit():
    assert cut_by_limit(15, 15, "epochs")  # still improving when the epochs ran out
    assert cut_by_limit(6, 6, "time_budget")
    assert not cut_by_limit(14, 15, "epochs")  # its best came earlier
    assert not cut_by_limit(9, 15, "patience")
    assert not cut_by_limit(5, 5, "pruned")


def test_the_report_shows_the_checks_of_each_best_trial(tmp_path):
    layout = Layout(tmp_path / "runs", tmp_path / "out")
    layout.search.mkdir(parents=True)
    entry = {
        "trial": 3,
        "valid_ndcg@10": 0.07,
        "params": {"lr": 0.0095, "hidden_size": 128},
        "trials_counted": 8,
        "trials_pruned": 2,
    }
    best = {
        "gru4rec": {
            **entry,
            "tuning": {
                "edges": {"lr": "high"},
                "best_epoch": 15,
                "epochs_run": 15,
                "stopped_by": "epochs",
                "cut": True,
            },
        },
        "deepm3-noode": {
            **entry,
            "tuning": {
                "edges": {},
                "best_epoch": 9,
                "epochs_run": 15,
                "stopped_by": "epochs",
                "cut": False,
            },
        },
    }
    layout.best.write_text(json.dumps(best))
    text = header.search(layout, BUDGETS["standard"])
    assert "| gru4rec | 0.0095 | lr (high) | 15 / 15 | **yes** (epochs) |" in text
    assert "| deepm3-noode | 0.0095 | none | 9 / 15 | no |" in text
    assert "variants (RK4, no ODE, target time) are searched on their own" in text
    assert "A trial may be pruned once it has run 5 epochs" in text


def test_a_killed_workers_spread_trials_are_run_again_with_their_learning_rates(events, tmp_path):
    """A worker killed inside a spread trial (its heartbeat long stopped) and a spread trial
    failed before retries existed (state FAIL, no retry enqueued): when the search stage
    restarts, both learning rates are trained, so all four spread rates are among the counted
    trials, each once, and the budget still counts five."""
    import sqlite3

    search = _search(events, tmp_path, ("gru4rec",), trials=5, spread_trials=4)
    create_studies(search)
    storage = open_storage(search.url)
    study = worker_study(search, "gru4rec", 0, storage)
    killed = study.ask()  # the first spread trial, RUNNING in a worker that then dies
    storage.record_heartbeat(killed._trial_id)
    lost = study.ask()  # the second, failed by an older search that did not retry
    storage.set_trial_state_values(lost._trial_id, optuna.trial.TrialState.FAIL)
    database = sqlite3.connect(search.layout.optuna_db)
    with database:
        database.execute("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00.000000'")
    database.close()

    create_studies(search)  # the restarted stage
    search_worker(SearchJob(search, 0))
    trials = _trials(search, "gru4rec")
    counted = [t for t in trials if t.state in search_module.COUNTED]
    assert len(counted) == 5
    spread_rates = [t["lr"] for t in search_module.spread_trials(search, "gru4rec")]
    rates = [t.params["lr"] for t in counted]
    for rate in spread_rates:
        assert sum(np.isclose(rates, rate, rtol=1e-12)) == 1, (rate, rates)
    assert killed.number in [t.number for t in trials if t.state.name == "FAIL"]


def test_the_plan_shows_each_rows_search_progress_and_creates_nothing(events, tmp_path):
    """``--plan``'s search lines: a row whose trials all counted is done with its best trial
    (the maximum computed here from the study), a row with one trial told and one running is in
    progress, a row without a study is to run; with no storage at all nothing is created, and
    a committed best.json alone counts as done."""
    from deepm3.suite.search_progress import search_lines

    missing = tmp_path / "nowhere" / "optuna.db"
    fresh = _search(events, tmp_path / "fresh", ("gru4rec", "sasrec"), trials=2)
    fresh = dataclasses.replace(fresh, url=f"sqlite:///{missing}")
    assert [line.split()[-2:] for line in search_lines(fresh)] == [["to", "run"]] * 2
    assert not missing.parent.exists()  # the plan created no storage

    search = _search(events, tmp_path / "one", ("gru4rec", "sasrec", "deepm3"), trials=2)
    create_studies(search)
    search_worker(SearchJob(dataclasses.replace(search, rows=("gru4rec",)), 0))
    study = worker_study(search, "sasrec", 0, open_storage(search.url))
    told = study.ask()
    study.tell(told, 0.5)
    study.ask()  # left running
    storage_study = optuna.load_study(study_name=study_name(search, "deepm3"), storage=search.url)
    storage_study.enqueue_trial({"lr": 1e-3})  # waiting only: not started
    lines = {line.split()[1]: line for line in search_lines(search)}
    values = [t.value for t in _trials(search, "gru4rec") if t.value is not None]
    top = max(_trials(search, "gru4rec"), key=lambda t: t.value or -1)
    assert lines["gru4rec"].endswith(
        f"2/2 trials, best valid NDCG@10 {max(values):.4f} (trial {top.number})  done"
    )
    assert lines["sasrec"].endswith(
        f"1/2 trials, 1 running, best valid NDCG@10 0.5000 (trial {told.number})  in progress"
    )
    assert lines["deepm3"].endswith("0/2 trials  to run")

    best_only = _search(events, tmp_path / "committed", ("gru4rec",), trials=4)
    best_only.layout.search.mkdir(parents=True, exist_ok=True)
    best_only.layout.best.write_text(
        json.dumps({"gru4rec": {"trials_counted": 4, "valid_ndcg@10": 0.25, "trial": 2}})
    )
    assert search_lines(best_only) == [
        f"{'search':<10} {'gru4rec':<22} 4/4 trials (best.json), best valid NDCG@10 0.2500 "
        "(trial 2)  done"
    ]


def test_a_budgets_model_options_reach_every_trial_and_run_of_that_model(
    events, tmp_path, monkeypatch
):
    """``budget.model`` fixes options per registry model: the search trials of GRU4Rec and of
    DeepM3's variant rows train with them, SASRec's without; the standard budget gives both
    recurrent models the ladder's output LayerNorm in the core and Lipschitz runs, not in the
    paper-protocol rows or to the attention models."""
    search = _search(
        events,
        tmp_path,
        ("gru4rec", "sasrec", "deepm3-noode"),
        trials=1,
        search_variants=True,
        model={"gru4rec": {"output_norm": "layer"}, "deepm3": {"output_norm": "layer"}},
    )
    trained = trained_in_search(search, monkeypatch)
    norms = {model: getattr(options, "output_norm", None) for model, options in trained}
    assert norms == {"gru4rec": "layer", "sasrec": None, "deepm3": "layer"}

    for suite in ("ml1m", "amazon"):
        from deepm3.suite.budgets import SUITES

        budget = SUITES[suite].budget("standard")
        specs = plan_specs(budget, SUITES[suite].design("standard"), {})
        for spec in (*specs.core, *specs.lipschitz, *specs.paper):
            norm = spec.sections.get("model", {}).get("output_norm")
            recurrent = spec.model in ("gru4rec", "deepm3") and spec.stage != "paper"
            assert norm == ("layer" if recurrent else None), (suite, spec.stage, spec.name)
        quick = plan_specs(BUDGETS["quick"], DESIGNS["quick"], {})
        assert all("output_norm" not in s.sections.get("model", {}) for s in quick.core)


def _stale(search: Search) -> None:
    """Age every heartbeat of the search's storage: their workers are dead."""
    import sqlite3

    database = sqlite3.connect(search.layout.optuna_db)
    with database:
        database.execute("UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00.000000'")
    database.close()


def test_a_killed_trial_resumes_from_its_checkpoint_and_ends_as_if_never_killed(
    events, tmp_path, monkeypatch
):
    """A worker killed in the third epoch of a trial: when the search restarts, the retry
    takes over the trial's folder and trains epoch 3 alone, and ends with the validation
    values and the value of the same trial run without a kill (a separate search)."""
    from deepm3.train import loop

    def three_epochs(where):
        search = _search(events, where, ("gru4rec",), trials=1, spread_trials=1)
        budget = dataclasses.replace(
            search.budget,
            train={"epochs": 3, "patience": 5, "batch_size": 64},
            trial_train={"epochs": 3},
            prune_warmup=10,
        )
        return dataclasses.replace(search, budget=budget)

    reference = three_epochs(tmp_path / "reference")
    create_studies(reference)
    search_worker(SearchJob(reference, 0))
    [expected] = _trials(reference, "gru4rec")

    search = three_epochs(tmp_path / "killed")
    create_studies(search)
    storage = open_storage(search.url)
    killed = worker_study(search, "gru4rec", 0, storage).ask()
    storage.record_heartbeat(killed._trial_id)
    original = loop._run_epoch

    def dies_in_epoch_three(*args, **kwargs):
        if args[5] == 3:  # (trainer, model, optimizer, table, config, epoch, ...)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", dies_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        search_module._objective("gru4rec", search)(killed)
    folder = search.layout.trial_dir(f"gru4rec-trial{killed.number}-s0")
    assert (folder / "last.pt").is_file()
    _stale(search)

    epochs = []

    def counts_epochs(*args, **kwargs):
        epochs.append(args[5])
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "_run_epoch", counts_epochs)
    search_worker(SearchJob(search, 0))
    [retry] = [t for t in _trials(search, "gru4rec") if t.state in search_module.COUNTED]
    assert epochs == [3] and retry.user_attrs["resumed"] is True
    assert retry.params == expected.params
    assert retry.intermediate_values == pytest.approx(expected.intermediate_values, abs=1e-12)
    assert retry.value == pytest.approx(expected.value, abs=1e-12)
    assert list((search.layout.runs / "search").glob("gru4rec-trial*")) == []


def test_a_retry_resumes_only_a_checkpoint_of_its_own_settings(tmp_path):
    """``take_over``: the latest retried folder with a checkpoint and the same settings is
    renamed to the retry's; one of other settings, without a checkpoint or without a marker is
    removed and the retry starts empty (its trial writes its marker, as a run does)."""
    layout = Layout(tmp_path / "runs", tmp_path / "out")

    def killed(number: int, digest: str | None, checkpoint: bool = True):
        folder = layout.trial_dir(f"sasrec-trial{number}")
        folder.mkdir(parents=True)
        if digest is not None:
            (folder / training.MARKER).write_text(json.dumps({"hash": digest}))
        if checkpoint:
            (folder / "last.pt").write_bytes(b"epoch 2")
        return folder

    first, second = killed(3, "same"), killed(5, "same")
    mine = layout.trial_dir("sasrec-trial7")
    assert search_module.take_over(mine, [first, second], "same")
    assert (mine / "last.pt").read_bytes() == b"epoch 2"
    assert not first.exists() and not second.exists()

    for number, digest, checkpoint in ((8, "other", True), (9, "same", False), (10, None, True)):
        folder = killed(number, digest, checkpoint)
        fresh = layout.trial_dir(f"sasrec-trial{number + 10}")
        assert not search_module.take_over(fresh, [folder], "same")
        assert not folder.exists()
        assert fresh.is_dir() and list(fresh.iterdir()) == []


def test_a_restart_before_a_killed_trial_is_stale_still_counts_the_whole_budget(
    events, tmp_path, monkeypatch
):
    """The suite restarted seconds after its workers were killed: a killed trial still looks
    RUNNING (its heartbeat is fresh). The worker first runs the rest of the budget, then waits
    (time passes: the heartbeat ages) until the trial is failed and retried, and runs the
    retry: the row ends with its whole budget counted, both spread learning rates among it."""
    search = _search(events, tmp_path, ("gru4rec",), trials=2, spread_trials=2)
    create_studies(search)
    storage = open_storage(search.url)
    killed = worker_study(search, "gru4rec", 0, storage).ask()
    storage.record_heartbeat(killed._trial_id)  # fresh: the worker died a moment ago
    _restart_waits_once_and_retries(search, killed.number, monkeypatch)


def _restart_waits_once_and_retries(search: Search, killed: int, monkeypatch) -> None:
    """A restarted worker on a 2-trial gru4rec row with trial ``killed`` left RUNNING: it waits
    one poll (time passes: every heartbeat ages), trial ``killed`` is failed and retried, and
    the row ends with both spread learning rates counted."""
    waits = []

    def time_passes(seconds):
        waits.append(seconds)
        if len(waits) > 3:
            pytest.fail("the worker waits for a trial that will never end")
        _stale(search)

    monkeypatch.setattr(search_module.time, "sleep", time_passes)
    search_worker(SearchJob(search, 0))
    trials = _trials(search, "gru4rec")
    counted = [t for t in trials if t.state in search_module.COUNTED]
    assert len(counted) == 2 and waits == [search_module.POLL_SECONDS]
    spread_rates = sorted(t["lr"] for t in search_module.spread_trials(search, "gru4rec"))
    assert sorted(t.params["lr"] for t in counted) == pytest.approx(spread_rates, rel=1e-12)
    assert [t.number for t in trials if t.state.name == "FAIL"] == [killed]


def test_a_trial_killed_before_its_first_heartbeat_is_retried_not_waited_for(
    events, tmp_path, monkeypatch
):
    """A worker killed between creating a trial and its first heartbeat leaves a RUNNING trial
    Optuna never finds stale. Once it is older than the grace period, a waiting worker gives it
    a heartbeat, which ages (time passes), and the trial is failed and retried: the row ends
    with its whole budget counted instead of the worker waiting forever. A trial that has no
    heartbeat yet but began within the grace period (a live worker sampling) gets none."""
    import sqlite3

    search = _search(events, tmp_path, ("gru4rec",), trials=2, spread_trials=2)
    create_studies(search)
    storage = open_storage(search.url)
    study = worker_study(search, "gru4rec", 0, storage)
    silent = study.ask()  # no heartbeat: killed while its settings were sampled
    assert give_heartbeats(study, storage) == []  # too young: a live worker's
    database = sqlite3.connect(search.layout.optuna_db)
    with database:
        database.execute("UPDATE trials SET datetime_start = '2000-01-01 00:00:00.000000'")
    database.close()
    _restart_waits_once_and_retries(search, silent.number, monkeypatch)
