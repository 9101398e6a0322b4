"""Run one model on one data set and write its run directory (see :mod:`rundir`)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from deepm3.config import DataConfig, EvalConfig, RunConfig, TrainConfig
from deepm3.data.prepare import Prepared, prepare, resolved
from deepm3.data.sequences import evaluation_table
from deepm3.errors import ConfigError
from deepm3.eval.evaluator import EvalResult, evaluate
from deepm3.models import COUNT_BASELINES, build_model, model_options
from deepm3.models.contract import count_parameters
from deepm3.ode.field import lipschitz_upper_bound, measured_lipschitz
from deepm3.train import checkpoint
from deepm3.train.device import device_name, select_device
from deepm3.train.loop import fit, model_scorer
from deepm3.train.rundir import provenance, read_json, write_json


def save_result(out: Path, role: str, result: EvalResult) -> None:
    result.per_user.to_csv(out / f"per_user_{role}.csv", index=False)


def _protocol(result: EvalResult, options: object) -> dict:
    protocol = dict(result.protocol)
    protocol["predict_at"] = getattr(options, "predict_at", "last_event")
    return protocol


def run_count_baseline(name: str, config: RunConfig, data: Prepared, out: Path) -> dict:
    """Fit a count baseline on training events; evaluate on validation, then test once."""
    started = time.perf_counter()
    scorer = COUNT_BASELINES[name](data)
    valid = evaluate(scorer, data, "valid", config.eval)
    test = evaluate(scorer, data, "test", config.eval)
    for role, result in (("valid", valid), ("test", test)):
        save_result(out, role, result)
    return {
        "model": name,
        "dataset": data.name,
        "valid": valid.metrics,
        "test": test.metrics,
        "protocol": _protocol(test, None),
        "parameters": {"embedding": 0, "other": 0, "total": 0},
        "seconds": round(time.perf_counter() - started, 3),
    }


def run_trainable(name: str, config: RunConfig, data: Prepared, out: Path, resume: bool) -> dict:
    train = config.train
    torch.manual_seed(train.seed)
    device = select_device(train.device)
    options = model_options(name, config.model)
    model = build_model(name, data.num_items, options, data.max_len).to(device)
    state, valid, test = fit(model, data, config, out, device, resume=resume)
    for role, result in (("valid", valid), ("test", test)):
        save_result(out, role, result)
    extra = {}
    if getattr(model, "field", None) is not None:
        extra["lipschitz"] = field_lipschitz(model, data, device)
    return {
        "model": name,
        "dataset": data.name,
        "valid": valid.metrics,
        "test": test.metrics,
        "protocol": _protocol(test, options),
        **extra,
        "options": dataclasses.asdict(options),
        "parameters": count_parameters(model),
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "seconds": round(state.seconds, 3),
        "seconds_per_epoch": round(state.seconds / max(state.epoch, 1), 3),
        "nfe_per_epoch": state.nfe // max(state.epoch, 1),
        "device": device_name(device),
    }


def field_lipschitz(model, data: Prepared, device, users: int = 32) -> dict:
    """Measured Lipschitz constant of a trained DeepM3 field on real validation states."""
    table = evaluation_table(data, "valid")
    batch = table.batch(np.arange(min(users, len(table)))).to(device)
    with torch.no_grad():
        states, _ = model(batch.items, batch.timestamps, batch.time_gaps, batch.next_gaps)
    field = model.field.cpu()
    measured = measured_lipschitz(field, states[:, -1].float().cpu())
    bound = lipschitz_upper_bound(field)
    model.field.to(device)
    return {
        "measured": round(measured, 5),
        "upper_bound": round(bound, 5),
        "mode": field.mode,
        "constant": field.constant,
    }


def run(name: str, config: RunConfig, out: str | Path, resume: bool = False) -> dict:
    """Prepare data, train or fit ``name``, write ``out/`` (config, provenance, metrics)."""
    options = model_options(name, config.model)  # fail on bad options before any work
    if config.train.num_threads > 0:
        torch.set_num_threads(config.train.num_threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config, data=resolved(config.data))
    data = prepare(config.data)
    device = "cpu" if options is None else device_name(select_device(config.train.device))
    if not resume:
        write_json(out / "config.json", {"model_name": name, **config.to_dict()})
        write_json(out / "provenance.json", provenance(data.stats, config.train.seed, device))
    if name in COUNT_BASELINES:
        metrics = run_count_baseline(name, config, data, out)
    else:
        metrics = run_trainable(name, config, data, out, resume)
    write_json(out / "metrics.json", metrics)
    return metrics


def load_run_config(run_dir: Path) -> tuple[str, RunConfig]:
    """The model name and resolved config that a run directory recorded."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.json)")
    saved = read_json(path)
    config = RunConfig(
        data=DataConfig(**saved["data"]),
        eval=EvalConfig(**{**saved["eval"], "ks": tuple(saved["eval"]["ks"])}),
        train=TrainConfig(**saved["train"]),
        model=saved["model"],
    )
    return saved["model_name"], config


def resume(run_dir: str | Path) -> dict:
    """Continue an interrupted run from its ``last.pt``."""
    run_dir = Path(run_dir)
    name, config = load_run_config(run_dir)
    return run(name, config, run_dir, resume=True)


def evaluate_run(run_dir: str | Path, protocol: str) -> dict:
    """Re-evaluate a finished run's best model on the test split under ``protocol``."""
    run_dir = Path(run_dir)
    name, config = load_run_config(run_dir)
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, protocol=protocol))
    data = prepare(config.data)
    if name in COUNT_BASELINES:
        scorer = COUNT_BASELINES[name](data)
    else:
        device = select_device(config.train.device)
        options = model_options(name, config.model)
        model = build_model(name, data.num_items, options, data.max_len).to(device)
        best = run_dir / "best.pt"
        if not best.is_file():
            raise ConfigError(f"{run_dir}: no best.pt; the run has not validated any epoch")
        model.load_state_dict(checkpoint.load(best, device)["model"])
        model.eval()
        scorer = model_scorer(model)
    result = evaluate(
        scorer, data, "test", config.eval, "cpu" if name in COUNT_BASELINES else device
    )
    payload = {"model": name, "test": result.metrics, "protocol": result.protocol}
    write_json(run_dir / f"evaluate_{protocol}.json", payload)
    return payload
