"""Run one model on one data set and write its run directory."""

from __future__ import annotations

import time
from pathlib import Path

from deepm3.config import RunConfig
from deepm3.data.prepare import Prepared, prepare, resolved
from deepm3.errors import ConfigError
from deepm3.eval.evaluator import EvalResult, evaluate
from deepm3.models import COUNT_BASELINES, check_name
from deepm3.train.rundir import provenance, write_json


def save_result(out: Path, role: str, result: EvalResult) -> None:
    result.per_user.to_csv(out / f"per_user_{role}.csv", index=False)


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
        "protocol": test.protocol,
        "parameters": {"embedding": 0, "other": 0, "total": 0},
        "seconds": round(time.perf_counter() - started, 3),
    }


def run(name: str, config: RunConfig, out: str | Path) -> dict:
    """Prepare data, run ``name``, write ``out/`` (config, provenance, metrics)."""
    check_name(name)
    if name in COUNT_BASELINES and config.model:
        raise ConfigError(
            f"unknown option(s) {', '.join(sorted(config.model))}: {name} takes no model options"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = type(config)(
        data=resolved(config.data), eval=config.eval, train=config.train, model=config.model
    )
    data = prepare(config.data)
    write_json(out / "config.json", {"model": name, **config.to_dict()})
    write_json(out / "provenance.json", provenance(data.stats, config.train.seed, "cpu"))
    metrics = run_count_baseline(name, config, data, out)
    write_json(out / "metrics.json", metrics)
    return metrics
