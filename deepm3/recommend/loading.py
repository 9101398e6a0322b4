"""A trained run, loaded for recommending: its plan, its data (prepared again from the raw
files, which must be the data it was trained on) and its best model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from deepm3.data.prepare import Prepared, prepare
from deepm3.data.sequences import Batch
from deepm3.errors import ConfigError
from deepm3.train.device import select_device
from deepm3.train.run import RunPlan, load_plan, load_trained
from deepm3.train.rundir import read_record


def load_run(
    run_dir: str | Path, data_dir: str | None = None, device: str | None = None
) -> tuple[RunPlan, Prepared, Callable[[Batch], torch.Tensor], nn.Module | None]:
    """(plan, data, scorer, model) of ``run_dir`` with its best weights; ``data_dir`` overrides
    where the raw files are and ``device`` the recorded device. Refuses data whose fingerprint
    differs from the one the run recorded."""
    run_dir = Path(run_dir)
    if device is not None:
        select_device(device, option="--device")  # an unknown or absent device: one line
    plan = load_plan(run_dir, device)
    data_config = plan.config.data
    if data_dir is not None:
        data_config = dataclasses.replace(data_config, data_dir=data_dir)
    data = prepare(data_config)
    provenance = run_dir / "provenance.json"
    recorded = provenance.exists() and read_record(provenance).get("data_fingerprint")
    if recorded and recorded != data.fingerprint:
        raise ConfigError(
            f"{run_dir}: the data now prepared (fingerprint {data.fingerprint}) is not the "
            f"data this run was trained on ({recorded}); point --data-dir at the run's data"
        )
    return load_trained(run_dir, data, device)
