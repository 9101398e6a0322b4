"""Stage 1: hyper-parameter search with Optuna, on the validation split only.

One study per searched row of the core table (``<dataset>-<budget>-<row>``; a model's own row
is named after it, variant rows such as ``deepm3-rk4`` get theirs when the budget searches
them, :func:`~deepm3.suite.design.searched_rows`) in one storage URL: by default an SQLite file
under ``<out>/search/``; any database URL (``postgresql://...``) lets workers on several
machines share the studies (start the same command on each). The first
``min(trials, budget.spread_trials)`` trials of every study are enqueued when it is created:
the same learning rates, spread log-evenly over the space's range, for every row, the other
settings at the space's middle (:func:`~deepm3.suite.spaces.spread`). Then the seeded TPE
sampler (worker ``w`` uses seed ``1000 * seed + w``) takes over. Median pruning on validation
NDCG@10 after every epoch, once a trial has run ``budget.prune_warmup`` epochs and the spread
trials (at least two) have completed. Every row gets exactly ``budget.trials`` trials that
complete or are pruned: a trial that would exceed the budget is failed before it trains and does
not count; a trial whose worker was killed is failed by its missing heartbeat (one killed before
its first heartbeat gets one once it is older than the grace period,
:mod:`deepm3.suite.search_storage`) and run again with the same parameters (Optuna's
``RetryHeartbeatStaleTrialCallback``), from the killed trial's last checkpoint when its folder
is on this machine and holds the same settings (:func:`take_over`; the retry inherits the
validation values it reported, for the pruner), and a spread trial lost that way before this
rule existed is enqueued again when the stage restarts (its parameters are never left to TPE).
Trials never touch the test split.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from deepm3.data.prepare import prepare
from deepm3.suite.budgets import Budget
from deepm3.suite.design import RunSpec, Sections, core_rows, merge, shared_sections
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.suite.search_storage import RETRIES, give_heartbeats, open_storage
from deepm3.suite.spaces import SEARCHED_MODELS, edges, sections_from_params, spread, suggest
from deepm3.suite.training import Source, identity, mark, resolved_config, resumable
from deepm3.train.loop import fit
from deepm3.train.run import build_scorer, plan_run
from deepm3.train.rundir import write_json
from deepm3.train.serving import serving_data

COUNTED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
POLL_SECONDS = 15.0  # how often a worker looks whether the trials it waits for have ended


class BudgetReachedError(Exception):
    """Raised by a trial that would exceed its model's budget (it is recorded as failed)."""


@dataclass(frozen=True)
class Search:
    """One suite's search: what is searched, on which data, where, how, in which storage."""

    budget: Budget
    source: Source
    layout: Layout
    execution: Execution
    url: str  # Optuna storage URL
    rows: tuple[str, ...]  # rows of the budget's table searched, one study each (searched_rows)


@dataclass(frozen=True)
class SearchJob:
    """One search worker's share: the search and the worker's number."""

    search: Search
    worker: int

    @property
    def name(self) -> str:
        return f"search worker {self.worker}"


def study_name(search: Search, row: str) -> str:
    return f"{search.source.dataset}-{search.budget.name}-{row}"


def spread_count(budget: Budget) -> int:
    """How many first trials of every study are enqueued spread over the learning rate."""
    return min(budget.trials, budget.spread_trials)


def spread_trials(search: Search, row: str) -> list[dict]:
    """The parameters enqueued as the first trials of ``row``'s study."""
    chosen = core_rows(search.budget)[row]
    return spread(chosen.model, search.budget.widths, spread_count(search.budget), chosen.fixed)


def _counted_before(study: optuna.Study, number: int) -> int:
    states = (*COUNTED, optuna.trial.TrialState.RUNNING)
    return sum(1 for t in study.get_trials(deepcopy=False, states=states) if t.number < number)


def _objective(row: str, search: Search, worker: int = 0):
    budget = search.budget
    chosen = core_rows(budget)[row]
    fixed = {"model": chosen.fixed} if chosen.fixed else {}

    def objective(trial: optuna.Trial) -> float:
        if _counted_before(trial.study, trial.number) >= budget.trials:
            trial.study.stop()
            raise BudgetReachedError(f"{row}: {budget.trials} trials already")
        sections = suggest(chosen.model, trial, budget.widths, chosen.fixed)
        spec = RunSpec(
            "search",
            f"{row}-trial{trial.number}",
            chosen.model,
            0,
            merge(
                shared_sections(budget, chosen.model),
                sections,
                fixed,
                {"train": budget.trial_train},
            ),
        )
        plan = plan_run(chosen.model, resolved_config(spec, search.source, search.execution))
        data = prepare(plan.config.data)
        _, network = build_scorer(plan, serving_data(data, plan.name))
        folder = search.layout.trial_dir(spec.name)
        digest = identity(chosen.model, plan.config)
        earlier = [
            search.layout.trial_dir(replace(spec, row=f"{row}-trial{number}").name)
            for number in retried(trial)
        ]
        resumed = take_over(folder, earlier, digest)
        if not resumed:
            mark(folder, digest, spec)

        def report(epoch: int, value: float) -> bool:
            trial.report(value, epoch)
            return trial.should_prune()

        state, valid, _ = fit(
            network,
            data,
            plan.config,
            folder,
            plan.device,
            resume=resumed,
            on_validation=report,
            evaluate_test=False,
        )
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("resumed", resumed)
        trial.set_user_attr("epochs_run", state.epoch)
        trial.set_user_attr("best_epoch", state.best_epoch)
        trial.set_user_attr("stopped_by", state.stopped_by)
        trial.set_user_attr("seconds", round(state.seconds, 1))
        shutil.rmtree(folder)  # checkpoints of a trial are not kept
        if state.stopped_by == "pruned":
            raise optuna.TrialPruned()
        return state.best_metric

    return objective


def retried(trial: optuna.Trial) -> list[int]:
    """The numbers of the killed trials that ``trial`` runs again, the first one first."""
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    return optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(frozen)


def take_over(folder: Path, earlier: list[Path], digest: str) -> bool:
    """Prepare a trial's ``folder``; True when it resumes a killed trial.

    A retried trial (a killed worker's, enqueued again with its parameters; ``earlier``: the
    folders of the trials it retries, :func:`retried`, the first one first) takes over the
    latest of them that holds a checkpoint of the same settings
    (``digest``, :func:`~deepm3.suite.training.resumable`, the runs' own rule): the folder
    is renamed to this trial's, so a worker that was only paused, not killed, can no longer
    write into it. Every other folder of the retried trials, and a stale one of this trial's
    own name, is removed; a trial that resumes nothing starts in an empty folder."""
    if folder.exists():
        shutil.rmtree(folder)
    resumed = False
    for killed in reversed(earlier):
        if not killed.is_dir():
            continue
        if not resumed and resumable(killed, digest):
            killed.rename(folder)
            resumed = True
        else:
            shutil.rmtree(killed)
    if not resumed:
        folder.mkdir(parents=True)
    return resumed


def create_studies(search: Search) -> None:
    """Create the storage and every study once, before workers start (concurrent creation of
    one SQLite schema races), and enqueue the spread trials of a study that has none yet (a
    resumed search enqueues only the spread trials it lost, see :func:`lost_spread`;
    ``skip_if_exists`` guards two machines starting at once)."""
    storage = open_storage(search.url)
    for row in search.rows:
        study = optuna.create_study(
            study_name=study_name(search, row),
            storage=storage,
            direction="maximize",
            load_if_exists=True,
        )
        trials = study.get_trials(deepcopy=False)
        spread_params = spread_trials(search, row)
        for params in lost_spread(trials, spread_params) if trials else spread_params:
            study.enqueue_trial(params, skip_if_exists=not trials)


def lost_spread(trials: list[optuna.trial.FrozenTrial], spread_params: list[dict]) -> list[dict]:
    """The spread parameters of which every trial failed (a worker killed before its trial was
    retried, at most ``RETRIES`` failures): none counted, running or waiting."""
    lost = []
    for params in spread_params:
        mine = [t for t in trials if t.system_attrs.get("fixed_params") == params]
        failed = [t for t in mine if t.state == optuna.trial.TrialState.FAIL]
        if mine and len(failed) == len(mine) and len(failed) <= RETRIES:
            lost.append(params)
    return lost


def worker_study(search: Search, row: str, worker: int, storage) -> optuna.Study:
    """``row``'s study as worker ``worker`` runs it: its seeded sampler and its pruner."""
    budget = search.budget
    return optuna.create_study(
        study_name=study_name(search, row),
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(
            seed=1000 * budget.seeds[0] + worker, n_startup_trials=max(2, budget.trials // 3)
        ),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=max(2, spread_count(budget)), n_warmup_steps=budget.prune_warmup
        ),
    )


def search_worker(job: SearchJob) -> int:
    """One worker: for each row in turn, run trials until the row's budget is used or the rest
    of it is running elsewhere; then for each row in turn, wait for those trials: one whose
    worker was killed (a restart may come before its heartbeat is stale) comes back as a
    retry, which this worker runs. So every row ends with its budget counted."""
    search, worker = job.search, job.worker
    storage = open_storage(search.url)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for wait in (False, True):
        for row in search.rows:
            study = worker_study(search, row, worker, storage)
            _fill(search, row, worker, study, storage, wait)
    return worker


def _fill(
    search: Search,
    row: str,
    worker: int,
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    wait: bool,
) -> None:
    """Run ``row``'s trials until its budget is counted; when the rest of it is running (in
    other workers, or stale), return, or with ``wait`` poll every :data:`POLL_SECONDS`."""
    states = (*COUNTED, optuna.trial.TrialState.RUNNING)
    while True:
        give_heartbeats(study, storage)
        optuna.storages.fail_stale_trials(study)  # a stale trial's retry is enqueued
        trials = study.get_trials(deepcopy=False, states=states)
        if sum(1 for t in trials if t.state in COUNTED) >= search.budget.trials:
            return
        if len(trials) >= search.budget.trials:
            if not wait:
                return
            time.sleep(POLL_SECONDS)
            continue
        study.optimize(
            _objective(row, search, worker),
            n_trials=1,
            catch=(BudgetReachedError,),
            gc_after_trial=True,
        )


def cut_by_limit(best_epoch: int, epochs_run: int, stopped_by: str | None) -> bool:
    """A trial cut by its limit: its validation NDCG@10 was still at its best on the last epoch
    it ran, and it ended by its epoch limit or time cap (not by patience or pruning), so more
    epochs might have raised it."""
    return stopped_by in ("epochs", "time_budget") and best_epoch == epochs_run


def tuning(trial: optuna.trial.FrozenTrial) -> dict:
    """The checks of a best trial: its settings at an edge of the space, cut by its limit."""
    attrs = trial.user_attrs
    best_epoch = attrs.get("best_epoch")  # None: a trial run before it was recorded
    return {
        "edges": edges(trial.params, trial.distributions),
        "best_epoch": best_epoch,
        "epochs_run": attrs["epochs_run"],
        "stopped_by": attrs["stopped_by"],
        "cut": None
        if best_epoch is None
        else cut_by_limit(best_epoch, attrs["epochs_run"], attrs["stopped_by"]),
    }


def best_settings(search: Search) -> dict:
    """Per searched row: the best completed trial's parameters, value, settings and checks
    (:func:`tuning`); writes ``search/best.json`` and ``search/trials_<row>.csv``."""
    storage = open_storage(search.url)
    best: dict[str, Any] = {}
    for row in search.rows:
        study = optuna.load_study(study_name=study_name(search, row), storage=storage)
        frame: pd.DataFrame = study.trials_dataframe()
        frame.to_csv(search.layout.trials(row), index=False)
        completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not completed:
            raise RuntimeError(f"search: no completed trial for {row}")
        trial = max(completed, key=lambda t: t.value)
        counted = sum(1 for t in study.trials if t.state in COUNTED)
        chosen = core_rows(search.budget)[row]
        best[row] = {
            "trial": trial.number,
            "valid_ndcg@10": trial.value,
            "params": trial.params,
            "sections": sections_from_params(chosen.model, trial.params, chosen.fixed),
            "trials_counted": counted,
            "trials_pruned": sum(
                1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED
            ),
            "tuning": tuning(trial),
        }
    write_json(search.layout.best, best)
    return best


def read_best(layout: Layout) -> dict | None:
    """The search's ``best.json``, or None when there was no search."""
    if not layout.best.is_file():
        return None
    return json.loads(layout.best.read_text())


def searched_sections(layout: Layout) -> dict[str, Sections]:
    """Searched sections per searched row ({} for a model without a search result)."""
    best = read_best(layout) or {}
    rows = dict.fromkeys((*SEARCHED_MODELS, *best))
    return {row: best.get(row, {}).get("sections", {}) for row in rows}
