"""A trained run, loaded for recommending: its plan, what its directory keeps for serving
(``serving.npz``: the item vocabulary, the count baselines' counts), its best model, and its
training data where that is on this machine (the histories of known users).

The data is read from ``--data-dir`` when given (errors then say what is wrong with it), else
from ``DEEPM3_DATA_DIR`` or the location the run recorded, where the raw file is found there;
it is never downloaded. Without it the run still answers every request that brings its
own events. A run recorded before runs kept ``serving.npz`` is rebuilt from its data, as it
always was (which may download a named data set)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from deepm3.data.prepare import Prepared, available, prepare
from deepm3.errors import ConfigError
from deepm3.eval.evaluator import Scorer
from deepm3.train.device import select_device
from deepm3.train.run import RunPlan, build_scorer, load_best, load_plan
from deepm3.train.rundir import SERVING, read_record
from deepm3.train.serving import ServingData, load_serving, serving_data


@dataclass(frozen=True)
class LoadedRun:
    """A run ready to recommend from."""

    plan: RunPlan
    serving: ServingData  # vocabulary, max_len, counts: enough for requests that bring events
    data: Prepared | None  # the training data, where available: known users' histories
    scorer: Scorer
    model: nn.Module | None  # None for a count baseline


def load_run(
    run_dir: str | Path, data_dir: str | None = None, device: str | None = None
) -> LoadedRun:
    """``run_dir`` with its best weights; ``data_dir`` says where the raw files are and
    ``device`` replaces the recorded device. Refuses data whose fingerprint differs from the
    one the run recorded."""
    run_dir = Path(run_dir)
    if device is not None:
        select_device(device, option="--device")  # an unknown or absent device: one line
    plan = load_plan(run_dir, device)
    data_config = plan.config.data
    if data_dir is not None:
        data_config = dataclasses.replace(data_config, data_dir=data_dir)
    kept = run_dir / SERVING
    if kept.exists():
        serving = load_serving(kept)
        found = data_config if data_dir is not None else available(data_config)
        data = prepare(found) if found is not None else None
        recorded = serving.fingerprint
    else:  # recorded before runs kept serving.npz
        data = prepare(data_config)
        serving = serving_data(data, plan.name)
        provenance = run_dir / "provenance.json"
        recorded = provenance.exists() and read_record(provenance).get("data_fingerprint")
    if data is not None and recorded and recorded != data.fingerprint:
        raise ConfigError(
            f"{run_dir}: the data now prepared (fingerprint {data.fingerprint}) is not the "
            f"data this run was trained on ({recorded}); point --data-dir at the run's data"
        )
    scorer, model = build_scorer(plan, serving)
    if model is not None:
        load_best(run_dir, plan, model)
    return LoadedRun(plan, serving, data, scorer, model)
