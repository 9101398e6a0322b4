"""Interleaved timing: ratios between calls that hold while the machine's load changes.

Timing one model's repeats and then the next model's lets a load change between them move their
ratio (on this project's shared 2-core CPU, DeepM3-Euler / SASRec training step measured 0.79
on a quiet machine and 3.37 with another job running). Here every round times each call once,
so a load that changes between rounds slows every call of a round alike; the order is reversed
every other round (A B C, C B A, A B C, ...), so a load that drifts within rounds favours no
call over two rounds. A ratio is taken within each round, and the figure reported is the median
of the per-round ratios with their interquartile range. Warm-up rounds run and are discarded.

    times = interleaved_times({"sasrec": step_a, "deepm3": step_b}, rounds=6, warmup=1)
    spread(round_ratios(times, "deepm3", "sasrec"))  # {"median": .., "q1": .., "q3": .., ...}

Pure Python: the clock and the synchronisation (a CUDA device's) are passed in.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def _no_sync() -> None:
    return None


def interleaved_times(
    calls: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], None] = _no_sync,
) -> dict[str, list[float]]:
    """Seconds of each call in each timed round, ``{name: [round 1, ..., round rounds]}``.

    Round ``r`` (warm-ups counted) calls every entry of ``calls`` once, in their order when ``r``
    is even and in reverse when it is odd; ``sync`` runs after each call, inside its time. The
    first ``warmup`` rounds are not returned, so entry ``i`` of every list comes from the same
    round and the lists can be divided element by element (:func:`round_ratios`).
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got {rounds} and {warmup}")
    names = list(calls)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            started = clock()
            calls[name]()
            sync()
            elapsed = clock() - started
            if round_index >= warmup:
                times[name].append(elapsed)
    return times


def round_ratios(times: dict[str, list[float]], name: str, baseline: str) -> list[float]:
    """``times[name][r] / times[baseline][r]`` for every round ``r`` (the lists must align)."""
    return [a / b for a, b in zip(times[name], times[baseline], strict=True)]


def spread(values: list[float]) -> dict[str, float | int]:
    """Median, first and third quartiles (inclusive method: within the values' range) and the
    count of ``values``; one value is its own quartiles."""
    if not values:
        raise ValueError("no values")
    median = statistics.median(values)
    if len(values) == 1:
        return {"median": median, "q1": median, "q3": median, "rounds": 1}
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3, "rounds": len(values)}


def ratio_spread(times: dict[str, list[float]], name: str, baseline: str) -> dict:
    """:func:`spread` of the per-round ratios of ``name`` to ``baseline``."""
    return spread(round_ratios(times, name, baseline))


def format_spread(figure: dict) -> str:
    """``0.79 [0.75-0.82]``: the median and, in brackets, the interquartile range."""
    return f"{figure['median']:.2f} [{figure['q1']:.2f}-{figure['q3']:.2f}]"
