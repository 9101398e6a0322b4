"""The suite's stages in order, each skippable and resumable (``deepm3 suite``).

    search -> core -> lipschitz -> paper -> analyses -> report

Every stage writes its small results under ``out`` when it ends, and ``out/suite_log.jsonl``
gets one line per stage (wall seconds, what ran), so a stopped suite continues from what exists.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

from deepm3.suite.budgets import Budget
from deepm3.suite.runs import (
    Place,
    RunSpec,
    execute,
    is_done,
    merge,
    parallel,
    publish,
    run_dir,
)
from deepm3.train.rundir import git_commit

STAGES = ("search", "core", "lipschitz", "paper", "analyses", "report")

# Core rows: label -> (model, fixed options beyond the searched ones).
CORE_ROWS: dict[str, tuple[str, dict]] = {
    "pop": ("pop", {}),
    "last_item": ("last_item", {}),
    "gru4rec": ("gru4rec", {}),
    "sasrec": ("sasrec", {}),
    "tisasrec": ("tisasrec", {}),
    "deepm3": ("deepm3", {"solver": "euler"}),
    "deepm3-rk4": ("deepm3", {"solver": "rk4"}),
    "deepm3-noode": ("deepm3", {"ode": "none"}),
    "deepm3-target": ("deepm3", {"predict_at": "target_time"}),
}
COUNT_ROWS = ("pop", "last_item")  # deterministic: one seed


@dataclass(frozen=True)
class SuiteSettings:
    budget: Budget
    place: Place
    jobs: int
    storage: str | None = None  # Optuna storage URL (None: SQLite under out/search)
    skip: frozenset[str] = frozenset()
    title: str = "MovieLens-1M"  # the suite's name in the report
    headline: str | None = None  # a section put first in the report ("robustness")


def _log(out: Path, record: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "suite_log.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def searched_sections(settings: SuiteSettings) -> dict[str, dict]:
    from deepm3.suite.search import read_best, settings_for_rows

    return settings_for_rows(read_best(settings.place.out))


def core_specs(settings: SuiteSettings) -> list[RunSpec]:
    budget = settings.budget
    searched = searched_sections(settings)
    shared = {"data": budget.data, "train": budget.train}
    specs = []
    for row, (model, fixed) in CORE_ROWS.items():
        seeds = budget.seeds[:1] if row in COUNT_ROWS else budget.seeds
        sections = merge(shared, searched.get(model, {}), {"model": fixed} if fixed else {})
        specs += [RunSpec("core", row, model, seed, sections) for seed in seeds]
    return specs


def lipschitz_specs(settings: SuiteSettings) -> list[RunSpec]:
    budget = settings.budget
    shared = merge(
        {"data": budget.data, "train": budget.train}, searched_sections(settings)["deepm3"]
    )
    specs = []
    for mode, constant in budget.lipschitz:
        fixed = {"model": {"lipschitz": mode, "lipschitz_constant": constant}}
        row = f"deepm3-{mode}" if mode == "none" else f"deepm3-{mode}{constant:g}"
        specs.append(RunSpec("lipschitz", row, "deepm3", budget.seeds[0], merge(shared, fixed)))
    return specs


def paper_specs(settings: SuiteSettings) -> list[RunSpec]:
    """The paper's protocol (20-event windows, BPR with one negative, 100 sampled negatives):
    DeepM3 and SASRec, first seed, otherwise the searched settings."""
    budget = settings.budget
    searched = searched_sections(settings)
    specs = []
    for model in ("deepm3", "sasrec"):
        sections = merge(
            {"data": budget.data, "train": budget.train}, searched[model], budget.paper_protocol
        )
        specs.append(RunSpec("paper", f"{model}-paper", model, budget.seeds[0], sections))
    return specs


def train_stage(stage: str, specs: list[RunSpec], settings: SuiteSettings) -> dict:
    """Run every spec not yet done; publish the records. Returns what ran."""
    place = settings.place
    todo = [spec for spec in specs if not is_done(spec, place)]
    print(f"{stage}: {len(specs)} runs, {len(specs) - len(todo)} already done", flush=True)

    def label(spec: RunSpec) -> str:
        folder = run_dir(spec, place)
        metrics = json.loads((folder / "metrics.json").read_text())
        return (
            f"{spec.stage}/{spec.name}: valid ndcg@10 {metrics['valid']['ndcg@10']:.4f}, "
            f"test {metrics['test']['ndcg@10']:.4f}, {metrics['epochs_run']} epochs "
            f"({metrics['stopped_by']}), {metrics['seconds']:.0f} s"
        )

    parallel(
        functools.partial(execute, place=place),
        todo,
        settings.jobs,
        label,
        logs=lambda spec: run_dir(spec, place).with_suffix(".out"),
        threads=place.threads,
    )
    publish(specs, place)
    return {"runs": len(specs), "trained": len(todo)}


def search_stage(settings: SuiteSettings) -> dict:
    from deepm3.suite.search import best_settings, create_studies, search_worker, storage_url
    from deepm3.suite.spaces import SEARCHED_MODELS

    url = storage_url(settings.place, settings.storage)
    create_studies(settings.place, settings.budget, url)
    items = [
        (worker, settings.budget, settings.place, url, SEARCHED_MODELS)
        for worker in range(settings.jobs)
    ]
    print(f"search: {settings.budget.trials} trials per model, storage {url}", flush=True)
    parallel(
        search_worker,
        items,
        settings.jobs,
        lambda item: f"search worker {item[0]} done",
        logs=lambda item: settings.place.runs / "search" / f"worker{item[0]}.out",
        threads=settings.place.threads,
    )
    best = best_settings(settings.place, settings.budget, url)
    for model, entry in best.items():
        print(
            f"  {model}: best valid ndcg@10 {entry['valid_ndcg@10']:.4f} (trial {entry['trial']}, "
            f"{entry['trials_counted']} trials, {entry['trials_pruned']} pruned) {entry['params']}"
        )
    return {"trials_per_model": settings.budget.trials}


def plan_lines(settings: SuiteSettings) -> list[str]:
    """What the training stages would run: one line per run with its config hash and status
    (done, resumable, to train). Reads no data; a bad setting fails here, before any work."""
    from deepm3.suite.runs import config_hash, run_dir

    lines = []
    for stage, specs in (
        ("core", core_specs(settings)),
        ("lipschitz", lipschitz_specs(settings)),
        ("paper", paper_specs(settings)),
    ):
        for spec in specs:
            digest = config_hash(spec, settings.place)
            if is_done(spec, settings.place):
                status = "done"
            elif (run_dir(spec, settings.place) / "last.pt").is_file():
                status = "resumes"
            else:
                status = "to train"
            lines.append(f"{stage:<10} {spec.name:<22} {digest}  {status}")
    return lines


def run_suite(settings: SuiteSettings) -> None:
    """Run every stage not in ``settings.skip``, in order."""
    from deepm3.suite import analyses, report

    out = settings.place.out
    stages = {
        "search": lambda: search_stage(settings),
        "core": lambda: train_stage("core", core_specs(settings), settings),
        "lipschitz": lambda: train_stage("lipschitz", lipschitz_specs(settings), settings),
        "paper": lambda: train_stage("paper", paper_specs(settings), settings),
        "analyses": lambda: analyses.run_analyses(settings),
        "report": lambda: report.write(settings),
    }
    for stage in STAGES:
        if stage in settings.skip:
            print(f"{stage}: skipped", flush=True)
            continue
        started = time.time()
        summary = stages[stage]()
        _log(
            out,
            {
                "stage": stage,
                "budget": settings.budget.name,
                "dataset": settings.place.dataset,
                "device": settings.place.device,
                "jobs": settings.jobs,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "wall_seconds": round(time.time() - started, 1),
                "git_commit": git_commit(),
                **(summary or {}),
            },
        )


def check_data(settings: SuiteSettings) -> None:
    """Fail at once, in one line, when the suite's raw data can be neither found nor fetched
    (before any worker starts), saying how to point the suite at a local copy."""
    from deepm3.data.datasets import get_spec, is_generic, locate, resolve_data_dir
    from deepm3.errors import DataError

    dataset = settings.place.dataset
    if is_generic(dataset):
        return
    try:
        locate(get_spec(dataset), resolve_data_dir(settings.place.data_dir))
    except DataError as error:
        raise DataError(
            f"{dataset} is not available here ({error}). Put the official file in a folder and "
            f"pass it: DEEPM3_DATA_DIR=/path/to/folder (or --data-dir), or choose another data "
            "set (DATASET=amazon-beauty)"
        ) from None
