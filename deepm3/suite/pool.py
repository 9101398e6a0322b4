"""How a suite runs its jobs: :class:`Execution` (device, torch threads, parallel jobs) and
:func:`parallel`, a pool of spawned single-purpose worker processes.

A job is any picklable object with a ``name``; the function runs in a worker with its own
thread count and its output sent to the job's log file. A failure is reported with its
traceback's last line and raised as one error once every other job is done, so one bad run
never stops the others.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deepm3.errors import DeepM3Error

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class Execution:
    """How runs execute: never part of what they compute (left out of a run's identity)."""

    device: str = "auto"
    threads: int = 1  # torch threads per process
    jobs: int = 1  # processes at once


def default_jobs(device: str) -> int:
    """JOBS=auto: one single-thread process per core on CPU, four per GPU."""
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return 4 * torch.cuda.device_count()
    return max(1, len(os.sched_getaffinity(0)))


def _call(fn: Callable, argument: Any, log: Path | None, threads: int) -> tuple[bool, Any]:
    """Worker body: ``threads`` torch threads, output to ``log``; exceptions come back as
    text."""
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
    execution: Execution,
    label: Callable[[Any], str],
    logs: Callable[[Any], Path | None] = lambda item: None,
    finished: Callable[[Any], None] = lambda item: None,
) -> list[Any]:
    """``fn`` over ``items`` in ``execution.jobs`` spawned worker processes; returns the
    results in order. ``finished(item)`` runs here as soon as an item succeeds (a stopped pool
    keeps what it did). Failures are printed with their traceback's last line and re-raised as
    one DeepM3Error once every other item is done."""
    if not items:
        return []
    results: list[Any] = [None] * len(items)
    failures = []
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ProcessPoolExecutor(execution.jobs, mp_context=context) as pool:
        futures = {
            pool.submit(_call, fn, item, logs(item), execution.threads): index
            for index, item in enumerate(items)
        }
        for done, future in enumerate(as_completed(futures), 1):
            index = futures[future]
            ok, value = future.result()
            elapsed = time.perf_counter() - started
            if ok:
                results[index] = value
                finished(items[index])
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
        raise DeepM3Error(
            f"{len(failures)} job(s) failed: {', '.join(failures)} (their logs are named above; "
            "rerun the same command to retry only what failed)"
        )
    return results
