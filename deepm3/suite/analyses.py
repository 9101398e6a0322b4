"""Analyses of trained suite runs: each writes small files that the report reads.

Per run (parallel processes, skipped when the file exists):

* ``analyses/perturb/<stage>-<run>.csv.gz``: test rank of every user, clean and under every
  perturbation of the budget (:mod:`deepm3.suite.perturbations`), for core and Lipschitz runs;
* ``analyses/solver/<run>.json``: a trained Euler DeepM3 re-solved with euler/rk4 x steps and
  dopri5 (same weights): NDCG@10, the final state's distance from dopri5, latency, evaluations;
* ``analyses/efficiency/<run>.json``: inference latency at B=1 and batched, peak GPU memory.

Once: ``analyses/user_cv.csv.gz`` (each test user's coefficient of variation of the gaps
between their events before the test target) and ``analyses/parameters.json`` (parameter
counts at equal widths and at the paper's sizes).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepm3.suite import perturbations
from deepm3.suite.runs import Place, RunSpec, execute, parallel, run_dir
from deepm3.train.rundir import write_json

SOLVER_GRID = ("euler", "rk4")


def _trained(spec: RunSpec, place: Place, data=None, **changes):
    """The run's best model, trained again (deterministic on CPU) when this machine lacks the
    run or its checkpoint; ``data`` reuses an already prepared data set."""
    from deepm3.train.run import load_trained

    folder = run_dir(spec, place)
    count_model = spec.model in ("pop", "last_item")
    if not (folder / "config.json").is_file() or not (
        count_model or (folder / "best.pt").is_file()
    ):
        execute(spec, place)
    return load_trained(folder, data, **changes)


def perturbation_ranks(item: tuple[RunSpec, Place, list, int, Path]) -> str:
    """Test ranks of every user, clean and under each perturbation -> csv.gz."""
    from deepm3.data.sequences import evaluation_table, with_history
    from deepm3.eval.evaluator import evaluate

    spec, place, grid_settings, repeats, path = item
    grid = perturbations.build(*grid_settings)  # rebuilt here: closures do not pickle
    plan, data, scorer, _ = _trained(spec, place)
    table = evaluation_table(data, "test")
    history = (table.items, table.timestamps, table.target_time)
    clean = evaluate(scorer, data, "test", plan.config.eval, plan.device)
    columns = {"user": table.users, "clean": clean.per_user["rank"].to_numpy()}
    for perturbation in grid:
        for repeat in range(repeats if perturbation.random else 1):
            rng = perturbations.rng_for(perturbation.key, repeat)
            items, times, target_time = perturbation.apply(history, rng)
            changed = with_history(table, items, times, target_time)
            result = evaluate(scorer, data, "test", plan.config.eval, plan.device, table=changed)
            suffix = f"#{repeat}" if repeat else ""
            columns[perturbation.key + suffix] = result.per_user["rank"].to_numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def _final_states(model, table, device, batch_size: int) -> tuple[torch.Tensor, int, float]:
    """States after each test user's last event (N, d), function evaluations, seconds."""
    from deepm3.models.contract import run_model

    states, evaluations = [], 0
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(table), batch_size):
            batch = table.batch(np.arange(start, min(start + batch_size, len(table)))).to(device)
            out, aux = run_model(model, batch)
            states.append(out[:, -1].float().cpu())
            evaluations += int(aux.get("nfe", 0))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return torch.cat(states), evaluations, time.perf_counter() - started


def _single_user_ms(model, table, device, users: int = 50) -> float:
    """Median milliseconds to compute one user's state (B=1), after 5 warm-up calls."""
    from deepm3.models.contract import run_model

    times = []
    with torch.no_grad():
        for row in range(users + 5):
            batch = table.batch(np.array([row % len(table)])).to(device)
            started = time.perf_counter()
            run_model(model, batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return float(np.median(times[5:]) * 1000)


def solver_ablation(item: tuple[RunSpec, Place, tuple[int, ...], Path]) -> str:
    """A trained DeepM3 re-solved with every solver setting (weights unchanged) -> JSON."""
    from deepm3.data.sequences import evaluation_table
    from deepm3.eval.evaluator import evaluate

    spec, place, steps_grid, path = item
    settings = [(s, n) for s in SOLVER_GRID for n in steps_grid] + [("dopri5", 1)]
    rows, reference = [], None
    data = None
    for solver, steps in reversed(settings):  # dopri5 first: the reference
        plan, data, scorer, model = _trained(spec, place, data, solver=solver, steps=steps)
        table = evaluation_table(data, "test")
        batch_size = plan.config.eval.eval_batch_size
        states, evaluations, seconds = _final_states(model, table, plan.device, batch_size)
        if reference is None:
            reference = states
        distance = (states - reference).norm(dim=1).mean() / reference.norm(dim=1).mean()
        result = evaluate(scorer, data, "test", plan.config.eval, plan.device)
        rows.append(
            {
                "solver": solver,
                "steps": steps,
                "ndcg@10": result.metrics["ndcg@10"],
                "relative_state_error": float(distance),
                "ms_per_1000_users": 1000 * seconds / len(table) * 1000,
                "ms_single_user": _single_user_ms(model, table, plan.device),
                "nfe_per_batch": evaluations / max(1, -(-len(table) // batch_size)),
                "batch_size": batch_size,
                "max_len": data.max_len,
                "device": str(plan.device),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"run": spec.name, "rows": rows[::-1], "users": len(table)})
    return str(path)


def inference_cost(item: tuple[RunSpec, Place, Path]) -> str:
    """Latency at B=1 and batched, and peak GPU memory, of one trained model -> JSON."""
    from deepm3.data.sequences import evaluation_table

    spec, place, path = item
    plan, data, scorer, model = _trained(spec, place)
    table = evaluation_table(data, "test")
    batch_size = plan.config.eval.eval_batch_size
    if plan.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _, _, seconds = _final_states(model, table, plan.device, batch_size)
    peak = torch.cuda.max_memory_allocated() if plan.device.type == "cuda" else None
    write_json(
        path,
        {
            "run": spec.name,
            "model": spec.model,
            "ms_single_user": _single_user_ms(model, table, plan.device),
            "ms_per_1000_users": 1000 * seconds / len(table) * 1000,
            "batch_size": batch_size,
            "max_len": data.max_len,
            "device": str(plan.device),
            "peak_gpu_bytes": peak,
        },
    )
    return str(path)


def user_cv(data) -> pd.DataFrame:
    """Each test user's CV of the gaps between the events before the test target."""
    from deepm3.analysis.irregularity import coefficient_of_variation
    from deepm3.data.sequences import _pad_windows

    positions = data.split.test_pos
    users = np.flatnonzero(positions >= 0)
    starts = data.events.offsets[users]
    ends = starts + positions[users]
    width = int(positions[users].max())
    items = _pad_windows(data.events.items, starts, ends, width)
    times = _pad_windows(data.events.timestamps, starts, ends, width)
    return pd.DataFrame(
        {
            "user": users,
            "cv": coefficient_of_variation(times, items),
            "events": positions[users],
        }
    )


BOOKS_ITEMS = 367_982  # Amazon Books 2014 5-core (He & McAuley 2016)


def parameter_counts(num_items: int, max_len: int) -> dict:
    """Parameters of every model with default options at several widths (built on the meta
    device: shapes only, no memory, so 370k items cost nothing)."""
    from deepm3.models import MODELS, build_model, model_options
    from deepm3.models.contract import count_parameters

    counts = {}
    for width in (50, 64, 128, 256, 512):
        for name in MODELS:
            heads = {"num_heads": 2} if name in ("sasrec", "tisasrec") else {}
            options = model_options(name, {"hidden_size": width, **heads})
            with torch.device("meta"):
                model = build_model(name, num_items, options, max_len)
            counts[f"{name}@{width}"] = count_parameters(model)
    return {"num_items": num_items, "max_len": max_len, "counts": counts}


def run_analyses(settings) -> dict:
    """Every analysis whose file is missing, in parallel; then the per-data-set files."""
    from deepm3.data.prepare import prepare
    from deepm3.suite.runner import core_specs, lipschitz_specs
    from deepm3.suite.runs import resolved_config

    budget, place = settings.budget, settings.place
    folder = place.out / "analyses"
    grid = (budget.sigmas_hours, budget.drop_ps, budget.local_window)
    core = core_specs(settings)
    lipschitz = lipschitz_specs(settings)
    jobs: list[tuple[str, object, tuple]] = []
    for spec in core + lipschitz:
        path = folder / "perturb" / f"{spec.stage}-{spec.name}.csv.gz"
        if not path.is_file():
            argument = (spec, place, grid, budget.perturb_repeats, path)
            jobs.append(("perturb", perturbation_ranks, argument))
    for spec in core:
        if spec.row == "deepm3":
            path = folder / "solver" / f"{spec.name}.json"
            if not path.is_file():
                jobs.append(("solver", solver_ablation, (spec, place, budget.solver_steps, path)))
        if spec.seed == budget.seeds[0] and spec.row not in ("pop", "last_item"):
            path = folder / "efficiency" / f"{spec.name}.json"
            if not path.is_file():
                jobs.append(("efficiency", inference_cost, (spec, place, path)))
    print(f"analyses: {len(jobs)} jobs to run", flush=True)
    (folder / "efficiency").mkdir(parents=True, exist_ok=True)
    parallel(
        _dispatch,
        [(fn, argument) for _, fn, argument in jobs],
        settings.jobs,
        lambda job: f"{job[0].__name__} {job[1][0].stage}/{job[1][0].name}",
        threads=place.threads,
    )
    data = prepare(resolved_config(core[0], place).data)
    user_cv(data).to_csv(folder / "user_cv.csv.gz", index=False)
    counts = {
        "this_data": parameter_counts(data.num_items, data.max_len),
        "ml-1m_full_paper_sizes": parameter_counts(3706, 200),
        "amazon-books_sizes": parameter_counts(BOOKS_ITEMS, 50),
    }
    write_json(folder / "parameters.json", counts)
    return {"analysis_jobs": len(jobs)}


def _dispatch(job):
    fn, argument = job
    return fn(argument)
