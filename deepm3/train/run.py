"""Run one model on one data set and write its run directory (see :mod:`rundir`).

A run is planned once (:func:`plan_run`: model options, fully resolved config, device), before any
data is read, for trainable and count models alike; :func:`run` then prepares the data, trains
or fits, evaluates (validation, then test once) and writes one ``metrics.json`` schema for
every model. Resuming and re-evaluating rebuild the plan from the stored, fully resolved config.

Under ``torchrun`` the same :func:`run` joins the process group for its duration (see
:mod:`deepm3.train.distributed`); every rank prepares the data and trains its shard, rank 0 alone
writes the run directory and returns the metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deepm3.config import SECTIONS, RunConfig, config_from_dict
from deepm3.data.prepare import Prepared, prepare, resolved
from deepm3.data.sequences import evaluation_table
from deepm3.errors import ConfigError, DeepM3Error
from deepm3.eval.evaluator import EvalResult, Scorer, evaluate
from deepm3.models import (
    COUNT_BASELINES,
    build_model,
    check_name,
    describe_options,
    model_options,
)
from deepm3.models.contract import count_parameters
from deepm3.models.loops import LOOPS
from deepm3.ode.field import lipschitz_upper_bound, measured_lipschitz
from deepm3.setting_changes import ADDED_LATER
from deepm3.train import checkpoint, distributed
from deepm3.train.device import device_name, select_device
from deepm3.train.loop import TrainState, fit, model_scorer
from deepm3.train.rundir import (
    FAILED,
    RUN_FILES,
    SERVING,
    after_failure,
    failure,
    provenance,
    read_record,
    write_json,
)
from deepm3.train.serving import ServingData, save_serving, serving_data


@dataclass(frozen=True)
class RunPlan:
    """Everything a run is built from; ``config`` is fully resolved (what config.json stores)."""

    name: str
    config: RunConfig
    options: Any | None  # the model's frozen options; None for a count baseline
    device: torch.device

    @property
    def trainable(self) -> bool:
        return self.options is not None


def plan_run(name: str, config: RunConfig) -> RunPlan:
    """Validate and resolve ``config`` for model ``name`` without reading any data."""
    options = model_options(name, config.model)
    model_section = {} if options is None else dataclasses.asdict(options)
    config = dataclasses.replace(config, data=resolved(config.data), model=model_section)
    device = select_device(config.train.device) if options is not None else torch.device("cpu")
    _check_loop_device(options, device)
    return RunPlan(name, config, options, device)


def _check_loop_device(options: Any | None, device: torch.device) -> None:
    """A model whose ``implementation`` names a loop of CUDA graphs needs a CUDA device (the
    options themselves refused an adaptive solver in a static loop)."""
    implementation = getattr(options, "implementation", None)
    loop = LOOPS.get(implementation)
    if loop is not None and loop.needs_cuda and device.type != "cuda":
        raise ConfigError(
            f"model.implementation={implementation} needs a CUDA device, not {device.type}"
        )


def load_plan(run_dir: str | Path, device: str | None = None) -> RunPlan:
    """The plan a run directory recorded, checked strictly: a damaged ``config.json``, a stored
    key that no longer exists or a damaged ``provenance.json`` is an error naming the file.
    ``device`` replaces the recorded ``train.device`` (use a GPU-trained run on a CPU)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no config.json)")
    saved = read_record(path, ("model_name",))
    name = saved.pop("model_name")
    if not isinstance(name, str):
        raise ConfigError(f"{path}: damaged, model_name is {name!r:.40}, expected a model name")
    if (run_dir / "provenance.json").exists():
        read_record(run_dir / "provenance.json")
    try:
        check_name(name)
        config = config_from_dict(saved, str(path), tuple(describe_options(name)))
        _check_complete(saved, model_options(name, config.model), path)
    except ConfigError as exc:
        raise ConfigError(
            f"{_naming(path, exc)} (the file is damaged or was written by another deepm3 "
            "version; start a new run)"
        ) from None
    if device is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, device=device))
    try:
        return plan_run(name, config)
    except ConfigError as exc:  # e.g. the recorded device is not available here
        raise ConfigError(_naming(path, exc)) from None


def _check_complete(saved: dict, options: Any | None, path: Path) -> None:
    """A stored config is fully resolved: a key it lacks would silently take today's default."""
    expected = dict(SECTIONS)
    if options is not None:
        expected["model"] = type(options)
    missing = [
        f"{section}.{field.name}"
        for section, cls in expected.items()
        for field in dataclasses.fields(cls)
        if field.name not in saved[section] and f"{section}.{field.name}" not in ADDED_LATER
    ]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}")


def _naming(path: Path, error: Exception) -> str:
    """``error``'s message, led by ``path`` unless it names it already."""
    return str(error) if str(path) in str(error) else f"{path}: {error}"


def build_scorer(plan: RunPlan, serving: ServingData) -> tuple[Scorer, nn.Module | None]:
    """The plan's scorer, and its model when it is trainable (on ``plan.device``), from what
    the run directory keeps (:mod:`deepm3.train.serving`): a count baseline from its counts."""
    if not plan.trainable:
        return COUNT_BASELINES[plan.name](serving.counts), None
    torch.manual_seed(plan.config.train.seed)
    model = build_model(plan.name, serving.num_items, plan.options, serving.max_len)
    model = model.to(plan.device)
    return model_scorer(model), model


def field_lipschitz(model: nn.Module, data: Prepared, device: torch.device) -> dict:
    """Measured Lipschitz constant of a trained DeepM3 field at real inputs from validation."""
    if model.field is None:
        return {}
    table = evaluation_table(data, "valid")
    batch = table.batch(np.arange(min(64, len(table)))).to(device)
    with torch.no_grad():
        states, elapsed, context = model.field_inputs(
            batch.items, batch.timestamps, batch.time_gaps, batch.next_gaps
        )
    field = model.field
    measured = measured_lipschitz(field, states.float(), elapsed.float(), context.float())
    return {
        "lipschitz": {
            "measured": round(measured, 5),
            "upper_bound": round(lipschitz_upper_bound(field), 5),
            "mode": field.mode,
            "constant": field.constant,
            "points": int(states.shape[0]),
        }
    }


# Model-specific measurements added to metrics.json: name -> function(model, data, device).
DIAGNOSTICS = {"deepm3": field_lipschitz}


def metrics_record(
    plan: RunPlan,
    data: Prepared,
    valid: EvalResult,
    test: EvalResult,
    state: TrainState | None,
    model: nn.Module | None,
    seconds: float,
) -> dict:
    """The one metrics.json schema, for trainable and count models alike."""
    epochs = state.epoch if state is not None else 0
    record = {
        "model": plan.name,
        "dataset": data.name,
        "valid": valid.metrics,
        "test": test.metrics,
        "test_untied": test.untied_metrics,
        "protocol": test.protocol,
        "options": plan.config.model,
        "parameters": count_parameters(model if model is not None else nn.Module()),
        "best_epoch": state.best_epoch if state is not None else None,
        "epochs_run": epochs,
        "stopped_by": state.stopped_by if state is not None else None,
        "seconds": round(seconds, 3),
        "seconds_per_epoch": round(state.seconds / epochs, 3) if epochs else None,
        "nfe_per_epoch": state.nfe // epochs if epochs else None,
        "device": device_name(plan.device),
    }
    if model is not None and plan.name in DIAGNOSTICS:
        record.update(DIAGNOSTICS[plan.name](model, data, plan.device))
    return record


def _claim_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run over an old one (its best.pt would be reused), unless asked."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; a run needs a folder of its own")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
    existing = [name for name in RUN_FILES if (out / name).exists()]
    if resume or not existing:
        return
    if not overwrite:
        raise ConfigError(
            f"{out} already holds a run ({', '.join(existing)}); continue it with "
            f"'deepm3 train --resume {out}', or pass --overwrite to start it again"
        )
    for name in (*existing, FAILED):
        (out / name).unlink(missing_ok=True)


def run(
    name: str,
    config: RunConfig,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Prepare data, train or fit ``name``, write ``out/`` (config, provenance, metrics).

    Under torchrun, rank 0 returns the metrics and the other ranks an empty dict.
    """
    plan = plan_run(name, config)  # fails on any bad setting before any data is read
    with distributed.process_group(plan.device):
        return _run(plan, Path(out), resume, overwrite)


def _run(plan: RunPlan, out: Path, resume: bool, overwrite: bool) -> dict:
    main = distributed.is_main()
    created = not out.exists()
    if main:
        _claim_run_dir(out, resume, overwrite)
    try:
        metrics = _train_and_record(plan, out, resume)
    except BaseException as error:
        if main:
            with contextlib.suppress(OSError, DeepM3Error):  # the first error is the one to show
                after_failure(out, error, created, resume)
        raise
    if main:
        (out / FAILED).unlink(missing_ok=True)
    return metrics


def _train_and_record(plan: RunPlan, out: Path, resume: bool) -> dict:
    main = distributed.is_main()
    if plan.config.train.num_threads > 0:
        torch.set_num_threads(plan.config.train.num_threads)
    data = distributed.leader_first(lambda: prepare(plan.config.data))
    serving = serving_data(data, plan.name)
    if main and (not resume or not (out / SERVING).exists()):
        save_serving(out / SERVING, serving)
    if main and not resume:
        write_json(out / "config.json", {"model_name": plan.name, **plan.config.to_dict()})
        write_json(
            out / "provenance.json",
            provenance(
                data.stats,
                plan.config.train.seed,
                device_name(plan.device),
                distributed.world_size(),
            ),
        )
    started = time.perf_counter()
    scorer, model = build_scorer(plan, serving)
    state = None
    if model is not None:
        state, valid, test = fit(model, data, plan.config, out, plan.device, resume=resume)
    elif main:  # a count baseline: fitted on training events; validation, then test once
        valid = evaluate(scorer, data, "valid", plan.config.eval)
        test = evaluate(scorer, data, "test", plan.config.eval)
    if not main:
        return {}
    for role, result in (("valid", valid), ("test", test)):
        result.per_user.to_csv(out / f"per_user_{role}.csv.gz", index=False)
    metrics = metrics_record(plan, data, valid, test, state, model, time.perf_counter() - started)
    write_json(out / "metrics.json", metrics)
    return metrics


def resume(run_dir: str | Path) -> dict:
    """Continue an interrupted run from its ``last.pt`` (rebuilt from the stored config)."""
    plan = load_plan(run_dir)
    return run(plan.name, plan.config, run_dir, resume=True)


def load_trained(
    run_dir: str | Path,
    data: Prepared | None = None,
    device: str | None = None,
    **option_changes: Any,
) -> tuple[RunPlan, Prepared, Scorer, nn.Module | None]:
    """A finished run's scorer with its best weights, in eval mode (count baselines refitted).

    ``option_changes`` replace model options that hold no weights (e.g. ``solver="rk4"``).
    ``data`` reuses an already prepared data set (it must be the run's); ``device`` replaces
    the recorded one.
    """
    run_dir = Path(run_dir)
    plan = load_plan(run_dir, device)
    if option_changes:
        plan = dataclasses.replace(
            plan, options=dataclasses.replace(plan.options, **option_changes)
        )
    data = prepare(plan.config.data) if data is None else data
    scorer, model = build_scorer(plan, serving_data(data, plan.name))
    if model is not None:
        load_best(run_dir, plan, model)
    return plan, data, scorer, model


def load_best(run_dir: Path, plan: RunPlan, model: nn.Module) -> None:
    """Load the run's ``best.pt`` into ``model`` (on ``plan.device``) and put it in eval mode;
    a ConfigError when the run has not validated any epoch."""
    best = Path(run_dir) / "best.pt"
    if not best.exists():
        reason = failure(run_dir)
        raise ConfigError(
            f"{run_dir}: no best.pt; the run has not validated any epoch"
            + (f" (it failed: {reason})" if reason else "")
        )
    checkpoint.load_model(best, model, plan.device)
    model.eval()


def evaluate_run(run_dir: str | Path, protocol: str) -> dict:
    """Re-evaluate a finished run's best model on the test split under ``protocol``."""
    run_dir = Path(run_dir)
    plan, data, scorer, _ = load_trained(run_dir)
    config = dataclasses.replace(plan.config.eval, protocol=protocol)
    result = evaluate(scorer, data, "test", config, plan.device)
    payload = {
        "model": plan.name,
        "test": result.metrics,
        "test_untied": result.untied_metrics,
        "protocol": result.protocol,
    }
    write_json(run_dir / f"evaluate_{protocol}.json", payload)
    return payload
