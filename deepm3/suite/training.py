"""A suite run's identity, execution and publication.

A :class:`RunSpec` is planned once into a :class:`PlannedRun`: its fully resolved config and
the hash that identifies what it computes. A run lives in ``runs/<stage>/<row>-s<seed>/``
(checkpoints included, never committed) and its small records are copied to
``out/<stage>/runs/<row>-s<seed>/`` when its stage ends (:mod:`deepm3.suite.layout`). Both hold
``suite.json`` with the config hash: a finished run whose hash matches is never redone (from
either copy, so a fresh machine continues from what was committed); a run with a matching
``last.pt`` resumes from it; a run whose settings changed starts again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepm3.config import RunConfig, load_config
from deepm3.defaults import shipped_settings
from deepm3.reporting.records import collect
from deepm3.setting_changes import ADDED_LATER
from deepm3.suite.design import RunSpec, merge
from deepm3.suite.layout import Layout
from deepm3.suite.pool import Execution
from deepm3.train.run import plan_run, resume, run
from deepm3.train.rundir import read_json, write_json

# Settings that change how a run computes, never what: left out of its identity.
NOT_IDENTITY = {
    "train": ("progress", "num_threads", "device", "loss_chunk"),
    "data": ("data_dir",),
    "eval": ("max_scores",),
}


def _neutral_settings() -> dict[str, dict[str, Any]]:
    """Settings added after results were committed (:data:`ADDED_LATER`, beyond the machine
    settings of :data:`NOT_IDENTITY`), by section, with the value those runs used."""
    neutral: dict[str, dict[str, Any]] = {}
    for dotted, value in ADDED_LATER.items():
        section, key = dotted.split(".")
        if key not in NOT_IDENTITY.get(section, ()):
            neutral.setdefault(section, {})[key] = value
    return neutral


# left out of a run's identity at the value older runs used, so committed runs keep their hash
NEUTRAL_AT_DEFAULT = _neutral_settings()
MARKER = "suite.json"


@dataclass(frozen=True)
class Source:
    """The data a suite runs on: a data set name and where its raw files are."""

    dataset: str
    data_dir: str | None


@dataclass(frozen=True)
class PlannedRun:
    """A spec with its resolved config and identity, computed once."""

    spec: RunSpec
    config: RunConfig  # resolved: what config.json stores
    digest: str  # 12 hex digits of what the run computes

    @property
    def name(self) -> str:
        return self.spec.name


def resolved_config(spec: RunSpec, source: Source, execution: Execution) -> RunConfig:
    """The run's config: shipped defaults, then the spec's sections, then seed and device."""
    base = merge(
        shipped_settings(source.dataset, spec.model),
        spec.sections,
        {
            "data": {"dataset": source.dataset, "data_dir": source.data_dir},
            "train": {
                "seed": spec.seed,
                "device": execution.device,
                "num_threads": execution.threads,
                "progress": False,
            },
        },
    )
    if spec.counted:
        base.pop("model", None)
    return load_config(None, [], base=base)


def identity(model: str, config: RunConfig) -> str:
    """12 hex digits identifying what a resolved config computes (machine settings left out)."""
    payload: dict[str, Any] = {"model_name": model, **config.to_dict()}
    for section, keys in NOT_IDENTITY.items():
        for key in keys:
            payload[section].pop(key, None)
    for section, defaults in NEUTRAL_AT_DEFAULT.items():
        for key, default in defaults.items():
            if payload[section].get(key) == default:
                payload[section].pop(key)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def plan(spec: RunSpec, source: Source, execution: Execution) -> PlannedRun:
    """Resolve and validate ``spec`` (no data read): a bad setting fails here."""
    config = plan_run(spec.model, resolved_config(spec, source, execution)).config
    return PlannedRun(spec, config, identity(spec.model, config))


def _matches(folder: Path, digest: str, finished: bool) -> bool:
    marker = folder / MARKER
    if not marker.is_file() or read_json(marker).get("hash") != digest:
        return False
    return (folder / "metrics.json").is_file() or not finished


def resumable(folder: Path, digest: str) -> bool:
    """A killed run of identity ``digest`` in ``folder``: its marker matches and it left a
    ``last.pt`` (a run, or a search trial, resumes from it)."""
    return _matches(folder, digest, False) and (folder / "last.pt").is_file()


def mark(folder: Path, digest: str, spec: RunSpec, **extra: str) -> None:
    """Write ``folder``'s marker: the identity of what the run or trial in it computes (and
    ``extra``, e.g. ``copied_from``)."""
    write_json(folder / MARKER, {"hash": digest, "stage": spec.stage, "row": spec.row, **extra})


def is_done(planned: PlannedRun, layout: Layout) -> bool:
    """True when a finished run with this identity exists here or in the committed records."""
    stage, name = planned.spec.stage, planned.name
    return _matches(layout.run_dir(stage, name), planned.digest, True) or _matches(
        layout.record_dir(stage, name), planned.digest, True
    )


def status(planned: PlannedRun, layout: Layout) -> str:
    """``done``, ``resumes`` (a matching ``last.pt``) or ``to train``."""
    if is_done(planned, layout):
        return "done"
    if resumable(layout.run_dir(planned.spec.stage, planned.name), planned.digest):
        return "resumes"
    return "to train"


@dataclass(frozen=True)
class RunJob:
    """One run for a worker process: what to run and where."""

    planned: PlannedRun
    layout: Layout

    @property
    def name(self) -> str:
        return self.planned.name


def execute(job: RunJob) -> dict:
    """Train (or resume, or skip) one run; returns its metrics. Runs in a worker process."""
    planned = job.planned
    folder = job.layout.run_dir(planned.spec.stage, planned.name)
    if _matches(folder, planned.digest, True):
        return read_json(folder / "metrics.json")
    if resumable(folder, planned.digest):
        return resume(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)  # a stale result of other settings
    mark(folder, planned.digest, planned.spec)
    return run(planned.spec.model, planned.config, folder, overwrite=True)


def finished_here(planned: PlannedRun, layout: Layout) -> bool:
    """A finished run of this identity in this machine's run folder (not only its record)."""
    return _matches(layout.run_dir(planned.spec.stage, planned.name), planned.digest, True)


def copy_finished(source: PlannedRun, target: PlannedRun, layout: Layout) -> bool:
    """Give ``target`` the finished run of ``source`` when both compute the same config (equal
    identities: two rows that chose the same settings) instead of training it again; its
    marker names the source. False when ``source`` has no finished run folder here."""
    if source.digest != target.digest:
        raise ValueError(f"{target.name} and {source.name} compute different configs")
    if not finished_here(source, layout):
        return False
    origin = layout.run_dir(source.spec.stage, source.name)
    folder = layout.run_dir(target.spec.stage, target.name)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(origin, folder)
    mark(folder, target.digest, target.spec, copied_from=source.name)
    return True


def publish(planned: list[PlannedRun], layout: Layout) -> None:
    """Copy the small records of finished runs to ``out/<stage>/runs/`` (no checkpoints)."""
    for each in planned:
        folder = layout.run_dir(each.spec.stage, each.name)
        if not (folder / "metrics.json").is_file():
            continue
        (copied,) = collect([folder], layout.stage_out(each.spec.stage))
        write_json(copied / MARKER, read_json(folder / MARKER))
