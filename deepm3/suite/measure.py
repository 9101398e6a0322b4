"""Measurements of trained suite runs: each job writes one small file that the report reads.

Per run (parallel processes, skipped when the file exists; paths in :mod:`.layout`):

* perturbation ranks (:class:`PerturbJob`): test rank of every user, clean and under every
  perturbation of the design, for core and Lipschitz runs;
* solver ablation (:class:`SolverJob`): a trained Euler DeepM3 re-solved with every fixed-step
  method x steps and the adaptive reference (same weights): NDCG@10, the final state's
  distance from the reference, latency, evaluations;
* inference cost (:class:`CostJob`): latency at B=1 and batched, peak GPU memory.

Once per data set: each test user's coefficient of variation of the gaps before the test target
(:func:`user_cv`) and parameter counts at equal widths and at the paper's sizes
(:func:`parameter_counts`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deepm3.data.prepare import Prepared
from deepm3.data.sequences import _pad_windows, evaluation_table, trim_padding, with_history
from deepm3.eval.evaluator import evaluate
from deepm3.models import MODELS, build_model, model_options
from deepm3.models.contract import count_parameters, run_model
from deepm3.ode.solvers import METHODS, fixed_step_methods
from deepm3.stats.irregularity import coefficient_of_variation
from deepm3.stats.perturbation_grid import Perturbation, rng_for
from deepm3.suite.training import RunJob, execute
from deepm3.train.run import load_trained
from deepm3.train.rundir import write_json

REFERENCE = next(name for name, method in METHODS.items() if method.adaptive)
BOOKS_ITEMS = 367_982  # Amazon Books 2014 5-core (He & McAuley 2016)
ATTENTION_HEADS = {"sasrec": 2, "tisasrec": 2}  # the paper's sizes use two heads


def _trained(run: RunJob, data: Prepared | None = None, **changes):
    """The run's best model, trained again (deterministic on CPU) when this machine lacks the
    run or its checkpoint; ``data`` reuses an already prepared data set."""
    spec = run.planned.spec
    folder = run.layout.run_dir(spec.stage, spec.name)
    if not (folder / "config.json").is_file() or not (
        spec.counted or (folder / "best.pt").is_file()
    ):
        execute(run)
    return load_trained(folder, data, **changes)


def _job_name(what: str, run: RunJob) -> str:
    return f"{what} {run.planned.spec.stage}/{run.name}"


@dataclass(frozen=True)
class PerturbJob:
    run: RunJob
    grid: tuple[Perturbation, ...]
    repeats: int  # random perturbations are drawn this many times
    path: Path

    @property
    def name(self) -> str:
        return _job_name("perturbation_ranks", self.run)


def perturbation_ranks(job: PerturbJob) -> str:
    """Test ranks of every user, clean and under each perturbation -> csv.gz."""
    plan, data, scorer, _ = _trained(job.run)
    table = evaluation_table(data, "test")
    history = (table.items, table.timestamps, table.target_time)
    clean = evaluate(scorer, data, "test", plan.config.eval, plan.device)
    columns = {"user": table.users, "clean": clean.per_user["rank"].to_numpy()}
    for perturbation in job.grid:
        for repeat in range(job.repeats if perturbation.random else 1):
            items, times, target_time = perturbation.apply(
                history, rng_for(perturbation.key, repeat)
            )
            changed = with_history(table, items, times, target_time)
            result = evaluate(scorer, data, "test", plan.config.eval, plan.device, table=changed)
            suffix = f"#{repeat}" if repeat else ""
            columns[perturbation.key + suffix] = result.per_user["rank"].to_numpy()
    job.path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(columns).to_csv(job.path, index=False)
    return str(job.path)


# How the latencies below see a history: as the evaluator and the server do, without its padding
# (a batch of users of similar length, its leading padding trimmed; one user: its own events).
# Measurement files written before this key read as "padded" (every window max_len long).
HISTORY = "trimmed"


def _final_states(model, table, device, batch_size: int) -> tuple[torch.Tensor, int, float]:
    """States after each test user's last event (N, d) in the table's order, function
    evaluations, seconds; users are run in batches of similar history length, each trimmed of
    its leading padding (:data:`HISTORY`), as the evaluator ranks them."""
    parts, evaluations = [], 0
    order = np.argsort(table.lengths(), kind="stable")
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(table), batch_size):
            rows = order[start : start + batch_size]
            out, aux = run_model(model, trim_padding(table.batch(rows)).to(device))
            parts.append(out[:, -1].float().cpu())
            evaluations += int(aux.get("nfe", 0))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    sorted_states = torch.cat(parts)
    states = torch.empty_like(sorted_states)
    states[torch.from_numpy(order)] = sorted_states  # back in the table's order
    return states, evaluations, seconds


def _single_user_ms(model, table, device, users: int = 50) -> float:
    """Median milliseconds to compute one user's state (B=1) from its own events (no padding),
    after 5 warm-up calls."""
    times = []
    with torch.no_grad():
        for row in range(users + 5):
            batch = trim_padding(table.batch(np.array([row % len(table)]))).to(device)
            started = time.perf_counter()
            run_model(model, batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
    return float(np.median(times[5:]) * 1000)


@dataclass(frozen=True)
class SolverJob:
    run: RunJob
    steps: tuple[int, ...]  # steps per gap tried with each fixed-step method
    path: Path

    @property
    def name(self) -> str:
        return _job_name("solver_ablation", self.run)


def solver_ablation(job: SolverJob) -> str:
    """A trained DeepM3 re-solved with every solver setting (weights unchanged) -> JSON."""
    settings = [(s, n) for s in fixed_step_methods() for n in job.steps] + [(REFERENCE, 1)]
    rows, reference, data = [], None, None
    for solver, steps in reversed(settings):  # the adaptive reference first
        plan, data, scorer, model = _trained(job.run, data, solver=solver, steps=steps)
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
                "history": HISTORY,
                "device": str(plan.device),
            }
        )
    job.path.parent.mkdir(parents=True, exist_ok=True)
    write_json(job.path, {"run": job.run.name, "rows": rows[::-1], "users": len(table)})
    return str(job.path)


@dataclass(frozen=True)
class CostJob:
    run: RunJob
    path: Path

    @property
    def name(self) -> str:
        return _job_name("inference_cost", self.run)


def inference_cost(job: CostJob) -> str:
    """Latency at B=1 and batched, and peak GPU memory, of one trained model -> JSON."""
    plan, data, scorer, model = _trained(job.run)
    table = evaluation_table(data, "test")
    batch_size = plan.config.eval.eval_batch_size
    if plan.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _, _, seconds = _final_states(model, table, plan.device, batch_size)
    peak = torch.cuda.max_memory_allocated() if plan.device.type == "cuda" else None
    job.path.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        job.path,
        {
            "run": job.run.name,
            "model": job.run.planned.spec.model,
            "ms_single_user": _single_user_ms(model, table, plan.device),
            "ms_per_1000_users": 1000 * seconds / len(table) * 1000,
            "batch_size": batch_size,
            "max_len": data.max_len,
            "history": HISTORY,
            "device": str(plan.device),
            "peak_gpu_bytes": peak,
        },
    )
    return str(job.path)


Job = PerturbJob | SolverJob | CostJob
MEASURES = {PerturbJob: perturbation_ranks, SolverJob: solver_ablation, CostJob: inference_cost}


def measure(job: Job) -> str:
    """Run one measurement job (the worker pool's entry point)."""
    return MEASURES[type(job)](job)


def user_cv(data: Prepared) -> pd.DataFrame:
    """Each test user's CV of the gaps between the events before the test target."""
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


def parameter_counts(num_items: int, max_len: int) -> dict:
    """Parameters of every model with default options at several widths (built on the meta
    device: shapes only, no memory, so 370k items cost nothing)."""
    counts = {}
    for width in (50, 64, 128, 256, 512):
        for name in MODELS:
            heads = {"num_heads": ATTENTION_HEADS[name]} if name in ATTENTION_HEADS else {}
            options = model_options(name, {"hidden_size": width, **heads})
            with torch.device("meta"):
                model = build_model(name, num_items, options, max_len)
            counts[f"{name}@{width}"] = count_parameters(model)
    return {"num_items": num_items, "max_len": max_len, "counts": counts}


def data_set_sizes(data: Prepared) -> dict:
    """Parameter counts for this data set, the paper's full ML-1M and Amazon Books sizes."""
    return {
        "this_data": parameter_counts(data.num_items, data.max_len),
        "ml-1m_full_paper_sizes": parameter_counts(3706, 200),
        "amazon-books_sizes": parameter_counts(BOOKS_ITEMS, 50),
    }
