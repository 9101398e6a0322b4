"""The suite's stages in order, each skippable and resumable (``deepm3 suite``).

    search -> core -> lipschitz -> paper -> analyses -> report

Every stage writes its small results under the output folder when it ends, and the suite log
gets one line per stage (wall seconds, what ran), so a stopped suite continues from what
exists. Only the command line imports this module.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from deepm3.data.datasets import get_spec, is_generic, locate, resolve_data_dir
from deepm3.data.prepare import prepare
from deepm3.errors import DataError
from deepm3.stats.perturbation_grid import build
from deepm3.suite import STAGES, measure, report, search
from deepm3.suite.budgets import Budget, Design, Suite
from deepm3.suite.design import FOCUS, TRAINING_STAGES, SpecPlan, plan_specs, searched_rows
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution, parallel
from deepm3.suite.search_progress import search_lines
from deepm3.suite.search_storage import storage_url
from deepm3.suite.training import (
    PlannedRun,
    RunJob,
    Source,
    copy_finished,
    execute,
    finished_here,
    is_done,
    plan,
    publish,
    status,
)
from deepm3.train.rundir import git_commit, write_json


@dataclass(frozen=True)
class SuiteSettings:
    suite: Suite
    budget: Budget
    design: Design
    source: Source
    layout: Layout
    execution: Execution
    storage: str | None = None  # Optuna storage URL (None: SQLite under the results)
    skip: frozenset[str] = frozenset()


def _log(settings: SuiteSettings, record: dict) -> None:
    settings.layout.out.mkdir(parents=True, exist_ok=True)
    with open(settings.layout.log, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def planned_runs(settings: SuiteSettings) -> dict[str, list[PlannedRun]]:
    """Every training run by stage, each spec resolved and hashed once (reads no data)."""
    specs: SpecPlan = plan_specs(
        settings.budget, settings.design, search.searched_sections(settings.layout)
    )
    return {
        stage: [plan(spec, settings.source, settings.execution) for spec in specs.stage(stage)]
        for stage in TRAINING_STAGES
    }


def train_stage(stage: str, runs: list[PlannedRun], settings: SuiteSettings) -> dict:
    """Run every planned run not yet done, publishing each one's records as it ends (a stopped
    stage keeps them for a commit); publish the records of all. Returns what ran."""
    layout = settings.layout
    pending = [each for each in runs if not is_done(each, layout)]
    # a config that another row computes too (a twin that chose the same settings) is trained
    # once: the first run of each identity trains, the others get a copy of its finished run
    first: dict[str, PlannedRun] = {}
    for each in runs:
        first.setdefault(each.digest, each)

    waiting = {each.name for each in pending}

    def copied(each: PlannedRun) -> bool:  # its source trains here or finished here
        source = first[each.digest]
        return source is not each and (source.name in waiting or finished_here(source, layout))

    copies = [each for each in pending if copied(each)]
    todo = [RunJob(each, layout) for each in pending if not copied(each)]
    print(
        f"{stage}: {len(runs)} runs, {len(runs) - len(pending)} already done"
        + (f", {len(copies)} equal to another row's (copied)" if copies else ""),
        flush=True,
    )

    def label(job: RunJob) -> str:
        spec = job.planned.spec
        metrics = json.loads((layout.run_dir(stage, spec.name) / "metrics.json").read_text())
        return (
            f"{spec.stage}/{spec.name}: valid ndcg@10 {metrics['valid']['ndcg@10']:.4f}, "
            f"test {metrics['test']['ndcg@10']:.4f}, {metrics['epochs_run']} epochs "
            f"({metrics['stopped_by']}), {metrics['seconds']:.0f} s"
        )

    parallel(
        execute,
        todo,
        settings.execution,
        label,
        logs=lambda job: layout.run_log(stage, job.name),
        finished=lambda job: publish([job.planned], layout),
    )
    for each in copies:
        if copy_finished(first[each.digest], each, layout):
            publish([each], layout)
    publish(runs, layout)
    return {"runs": len(runs), "trained": len(todo), "copied": len(copies)}


def _search(settings: SuiteSettings, url: str) -> search.Search:
    """The suite's search over ``url``'s storage: every searched row of its budget."""
    return search.Search(
        settings.budget,
        settings.source,
        settings.layout,
        settings.execution,
        url,
        searched_rows(settings.budget),
    )


def search_stage(settings: SuiteSettings) -> dict:
    url = storage_url(settings.layout, settings.storage)
    chosen = _search(settings, url)
    search.create_studies(chosen)
    workers = range(settings.execution.jobs)
    jobs = [search.SearchJob(chosen, worker) for worker in workers]
    print(
        f"search: {settings.budget.trials} trials for each of {', '.join(chosen.rows)}, "
        f"storage {url}",
        flush=True,
    )
    parallel(
        search.search_worker,
        jobs,
        settings.execution,
        lambda job: f"{job.name} done",
        logs=lambda job: settings.layout.worker_log(job.worker),
    )
    best = search.best_settings(chosen)
    for row, entry in best.items():
        print(
            f"  {row}: best valid ndcg@10 {entry['valid_ndcg@10']:.4f} (trial {entry['trial']}, "
            f"{entry['trials_counted']} trials, {entry['trials_pruned']} pruned) {entry['params']}"
        )
    return {"trials_per_model": settings.budget.trials}


def analysis_jobs(settings: SuiteSettings, runs: dict[str, list[PlannedRun]]) -> list:
    """Every measurement whose file is missing: perturbation ranks of core and Lipschitz runs,
    the solver ablation of each DeepM3 seed, inference cost of each trained row's first seed."""
    layout, design = settings.layout, settings.design
    grid = build(design.sigmas_hours, design.drop_ps, design.local_window)
    jobs: list = []
    for each in runs["core"] + runs["lipschitz"]:
        path = layout.perturb_ranks(each.spec.stage, each.name)
        if not path.is_file():
            jobs.append(
                measure.PerturbJob(RunJob(each, layout), grid, design.perturb_repeats, path)
            )
    for each in runs["core"]:
        spec = each.spec
        path = layout.solver_file(each.name)
        if spec.row == FOCUS and not path.is_file():  # the Euler-trained focus row
            jobs.append(measure.SolverJob(RunJob(each, layout), design.solver_steps, path))
        path = layout.efficiency_file(each.name)
        if spec.seed == settings.budget.seeds[0] and not spec.counted and not path.is_file():
            jobs.append(measure.CostJob(RunJob(each, layout), path))
    return jobs


def analyses_stage(settings: SuiteSettings, runs: dict[str, list[PlannedRun]]) -> dict:
    """Every analysis whose file is missing, in parallel; then the per-data-set files."""
    jobs = analysis_jobs(settings, runs)
    print(f"analyses: {len(jobs)} jobs to run", flush=True)
    parallel(measure.measure, jobs, settings.execution, lambda job: job.name)
    layout = settings.layout
    layout.analyses.mkdir(parents=True, exist_ok=True)
    data = prepare(runs["core"][0].config.data)
    measure.user_cv(data).to_csv(layout.user_cv, index=False)
    write_json(layout.parameters, measure.data_set_sizes(data))
    return {"analysis_jobs": len(jobs)}


def plan_lines(settings: SuiteSettings) -> list[str]:
    """What the stages would run: one line per searched row with its trials so far
    (:mod:`deepm3.suite.search_progress`), then one line per training run with its config hash
    and status (done, resumable, to train). Reads no data and creates no file; a bad setting
    fails here, before any work."""
    url = settings.storage or f"sqlite:///{settings.layout.optuna_db.resolve()}"
    return search_lines(_search(settings, url)) + [
        f"{stage:<10} {each.name:<22} {each.digest}  {status(each, settings.layout)}"
        for stage, runs in planned_runs(settings).items()
        for each in runs
    ]


def run_suite(settings: SuiteSettings) -> None:
    """Run every stage not in ``settings.skip``, in order."""
    suite, budget = settings.suite, settings.budget
    stages: dict[str, Callable[[], dict]] = {
        "search": lambda: search_stage(settings),
        **{
            stage: (lambda stage=stage: train_stage(stage, planned_runs(settings)[stage], settings))
            for stage in TRAINING_STAGES
        },
        "analyses": lambda: analyses_stage(settings, planned_runs(settings)),
        "report": lambda: report.write(
            suite.title, suite.headline, budget, settings.design, settings.layout
        ),
    }
    for stage in STAGES:
        if stage in settings.skip:
            print(f"{stage}: skipped", flush=True)
            continue
        started = time.time()
        summary = stages[stage]()
        _log(
            settings,
            {
                "stage": stage,
                "budget": budget.name,
                "dataset": settings.source.dataset,
                "device": settings.execution.device,
                "jobs": settings.execution.jobs,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "wall_seconds": round(time.time() - started, 1),
                "git_commit": git_commit(),
                **(summary or {}),
            },
        )


def check_data(source: Source) -> None:
    """Fail at once, in one line, when the suite's raw data can be neither found nor fetched
    (before any worker starts), saying how to point the suite at a local copy."""
    if is_generic(source.dataset):
        return
    try:
        locate(get_spec(source.dataset), resolve_data_dir(source.data_dir))
    except DataError as error:
        raise DataError(
            f"{source.dataset} is not available here ({error}). Put the official file in a "
            "folder and pass it: DEEPM3_DATA_DIR=/path/to/folder (or --data-dir), or choose "
            "another data set (DATASET=amazon-beauty)"
        ) from None
