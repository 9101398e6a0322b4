"""Suite runs: what a run is (:class:`RunSpec`), its identity (a hash of the resolved config),
and running many of them as parallel processes, skipping finished ones and resuming killed ones.

A run lives in ``<runs>/<stage>/<row>-s<seed>/`` (checkpoints included, never committed) and its
small records are copied to ``<out>/<stage>/runs/<row>-s<seed>/`` when the stage ends. Both hold
``suite.json`` with the config hash: a finished run whose hash matches is never redone (from
either copy, so a fresh machine continues from what was committed); a run with a matching
``last.pt`` resumes from it; a run whose settings changed starts again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepm3.analysis.report import collect
from deepm3.train.rundir import read_json, write_json

# Settings that change how a run computes, never what: left out of its identity.
NOT_IDENTITY = {
    "train": ("progress", "num_threads", "device", "loss_chunk"),
    "data": ("data_dir",),
    "eval": ("max_scores",),
}
# Options added after results were committed, whose default reproduces the earlier behaviour:
# left out of the identity at their default, so committed runs keep their hash.
NEUTRAL_AT_DEFAULT = {"train": {"logq": False}, "eval": {"eval_users": 0, "eval_users_seed": 0}}


@dataclass(frozen=True)
class RunSpec:
    """One training (or count-baseline fit) of the suite."""

    stage: str  # core | lipschitz | paper
    row: str  # the table row, e.g. deepm3-rk4
    model: str  # registry name
    seed: int
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # data/train/eval/model

    @property
    def name(self) -> str:
        return f"{self.row}-s{self.seed}"


@dataclass(frozen=True)
class Place:
    """Where a suite keeps its runs and results, and how it runs them."""

    dataset: str
    data_dir: str | None
    runs: Path  # working run directories (checkpoints)
    out: Path  # committed results
    device: str = "auto"
    threads: int = 1  # torch threads per process


def merge(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Sections merged key by key; later layers win."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(copy.deepcopy(values))
    return merged


def resolved_config(spec: RunSpec, place: Place):
    """The run's config: shipped defaults, then the spec's sections, then seed and device."""
    from deepm3.config import load_config
    from deepm3.defaults import shipped_settings

    base = merge(
        shipped_settings(place.dataset, spec.model),
        spec.sections,
        {
            "data": {"dataset": place.dataset, "data_dir": place.data_dir},
            "train": {
                "seed": spec.seed,
                "device": place.device,
                "num_threads": place.threads,
                "progress": False,
            },
        },
    )
    if spec.model in ("pop", "last_item"):
        base.pop("model", None)
    return load_config(None, [], base=base)


def config_hash(spec: RunSpec, place: Place) -> str:
    """12 hex digits identifying what the run computes (machine-specific settings left out)."""
    from deepm3.train.run import plan_run

    plan = plan_run(spec.model, resolved_config(spec, place))
    payload = {"model_name": spec.model, **plan.config.to_dict()}
    for section, keys in NOT_IDENTITY.items():
        for key in keys:
            payload[section].pop(key, None)
    for section, defaults in NEUTRAL_AT_DEFAULT.items():
        for key, default in defaults.items():
            if payload[section].get(key) == default:
                payload[section].pop(key)
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_dir(spec: RunSpec, place: Place) -> Path:
    return place.runs / spec.stage / spec.name


def record_dir(spec: RunSpec, place: Place) -> Path:
    return place.out / spec.stage / "runs" / spec.name


def _matches(folder: Path, digest: str, finished: bool) -> bool:
    marker = folder / "suite.json"
    if not marker.is_file() or read_json(marker).get("hash") != digest:
        return False
    return (folder / "metrics.json").is_file() or not finished


def is_done(spec: RunSpec, place: Place) -> bool:
    """True when a finished run with this config exists here or in the committed records."""
    digest = config_hash(spec, place)
    return _matches(run_dir(spec, place), digest, True) or _matches(
        record_dir(spec, place), digest, True
    )


def execute(spec: RunSpec, place: Place) -> dict:
    """Train (or resume, or skip) one run; returns its metrics. Runs in a worker process."""
    from deepm3.train.run import resume, run

    folder = run_dir(spec, place)
    digest = config_hash(spec, place)
    if _matches(folder, digest, True):
        return read_json(folder / "metrics.json")
    if _matches(folder, digest, False) and (folder / "last.pt").is_file():
        return resume(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)  # a stale result of other settings
    write_json(folder / "suite.json", {"hash": digest, "stage": spec.stage, "row": spec.row})
    return run(spec.model, resolved_config(spec, place), folder, overwrite=True)


def publish(specs: Iterable[RunSpec], place: Place) -> None:
    """Copy the small records of finished runs to ``<out>/<stage>/runs/`` (no checkpoints)."""
    for spec in specs:
        folder = run_dir(spec, place)
        if not (folder / "metrics.json").is_file():
            continue
        (copied,) = collect([folder], place.out / spec.stage)
        write_json(copied / "suite.json", read_json(folder / "suite.json"))


def _call(fn: Callable, argument: Any, log: Path | None, threads: int) -> Any:
    """Worker body: one thread, output to ``log``; exceptions come back as text."""
    import torch

    torch.set_num_threads(threads)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        stream = open(log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        sys.stdout = sys.stderr = stream
    try:
        return True, fn(argument)
    except BaseException:  # noqa: BLE001 - reported by the parent, the suite goes on
        text = traceback.format_exc()
        print(text, flush=True)  # into the log, when there is one
        return False, text


def parallel(
    fn: Callable[[Any], Any],
    items: list[Any],
    jobs: int,
    label: Callable[[Any], str],
    logs: Callable[[Any], Path | None] = lambda item: None,
    threads: int = 1,
) -> list[Any]:
    """``fn`` over ``items`` in ``jobs`` spawned worker processes; returns the
    results in order. Failures are printed with their traceback's last line and re-raised as
    one DeepM3Error once every other item is done."""
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    failures = []
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        futures = {
            pool.submit(_call, fn, item, logs(item), threads): index
            for index, item in enumerate(items)
        }
        for done, future in enumerate(as_completed(futures), 1):
            index = futures[future]
            ok, value = future.result()
            elapsed = time.perf_counter() - started
            if ok:
                results[index] = value
                print(f"  [{done}/{len(items)} {elapsed:6.0f}s] {label(items[index])}", flush=True)
            else:
                name = getattr(items[index], "name", None) or repr(items[index])[:80]
                failures.append(name)
                last = value.strip().splitlines()[-1]
                print(f"  [{done}/{len(items)}] FAILED {name}: {last}", flush=True)
                log = logs(items[index])
                if log is not None:
                    print(f"    log: {log}", flush=True)
    if failures:
        from deepm3.errors import DeepM3Error

        raise DeepM3Error(
            f"{len(failures)} job(s) failed: {', '.join(failures)} (their logs are named above; "
            "rerun the same command to retry only what failed)"
        )
    return results


def default_jobs(device: str) -> int:
    """JOBS=auto: one single-thread process per core on CPU, four per GPU."""
    if device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            return 4 * torch.cuda.device_count()
    return max(1, len(os.sched_getaffinity(0)))
