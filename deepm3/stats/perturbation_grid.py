"""The grid of test-time perturbations a suite applies, built once from its analysis design.

Each :class:`Perturbation` maps one evaluation table's histories ``(items, timestamps,
target_time)`` to new ones (:mod:`deepm3.stats.perturb` does the work). It is plain data (its
family and level say what it does), so the grid is built once and handed to worker processes
as it is. Random ones draw from a generator seeded by the perturbation's key and the repeat,
so every model sees exactly the same perturbed histories.

Groups: ``time`` (items and order kept, only time changes: says whether a model reads time at
all) and ``robustness`` (order shuffles, Gaussian jitter, event dropout, the paper's "drop").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from deepm3.stats import perturb

History = tuple[np.ndarray, np.ndarray, np.ndarray]  # items, timestamps (N, T); target_time (N,)
SECONDS_PER_HOUR = 3600
DETERMINISTIC = ("gaps_mean", "time_zeroed", "paper_drop")  # repeats would change nothing

# families that move timestamps only; shuffles, re-sorted jitter and dropout change the events
TIME_ONLY = ("gaps_shuffled", "gaps_mean", "time_zeroed", "paper_drop", "jitter_kept")


@dataclass(frozen=True)
class Perturbation:
    key: str  # column name in the result files, e.g. "jitter_sorted:24"
    label: str
    group: str  # time | robustness
    family: str  # curve it belongs to (jitter_sorted, dropout, ...)
    level: float  # x value on that curve (sigma in hours, p, window, ...)

    @property
    def time_only(self) -> bool:
        """True when only timestamps move (items and their order kept): a model that reads no
        time is unchanged by construction."""
        return self.family in TIME_ONLY

    @property
    def random(self) -> bool:
        """False for the deterministic ones (drawing repeats of them would change nothing)."""
        return self.family not in DETERMINISTIC

    def apply(self, history: History, rng: np.random.Generator) -> History:
        """The perturbed ``(items, timestamps, target_time)``; inputs are not modified."""
        items, times, target_time = history
        if self.family in ("time_zeroed", "paper_drop"):  # the target's time is zeroed too
            items, times = perturb.zero_timestamps(items, times)
            return items, times, np.zeros_like(target_time)
        return (*_FAMILIES[self.family](items, times, rng, self.level), target_time)


def _jitter(resort: bool):
    def apply(items, times, rng, hours):
        return perturb.jitter_timestamps(times, items, hours * SECONDS_PER_HOUR, rng, resort)

    return apply


# family -> f(items, timestamps, rng, level) -> (items, timestamps); the target time is kept.
_FAMILIES = {
    "gaps_shuffled": lambda items, times, rng, level: perturb.shuffle_gaps(items, times, rng),
    "gaps_mean": lambda items, times, rng, level: perturb.mean_gaps(items, times),
    "order_local": lambda items, times, rng, level: perturb.shuffle_order(
        items, times, rng, int(level)
    ),
    "order_full": lambda items, times, rng, level: perturb.shuffle_order(items, times, rng, None),
    "jitter_kept": _jitter(resort=False),
    "jitter_sorted": _jitter(resort=True),
    "dropout": lambda items, times, rng, level: perturb.drop_events(items, times, level, rng),
}


def rng_for(key: str, repeat: int) -> np.random.Generator:
    """The generator of one perturbation and repeat: the same for every model."""
    return np.random.default_rng([zlib.crc32(key.encode()), repeat])


def build(
    sigmas_hours: tuple[float, ...], drop_ps: tuple[float, ...], local_window: int
) -> tuple[Perturbation, ...]:
    """Every perturbation of a design, time group first."""
    grid = [
        Perturbation("gaps_shuffled", "gaps shuffled across positions", "time", "gaps_shuffled", 1),
        Perturbation("gaps_mean", "every gap = the user's mean gap", "time", "gaps_mean", 1),
        Perturbation("time_zeroed", "timestamps zeroed", "time", "time_zeroed", 1),
        Perturbation(
            f"order_local:{local_window}",
            f"order shuffled within {local_window}-event windows",
            "robustness",
            "order_local",
            local_window,
        ),
        Perturbation("order_full", "order shuffled (whole history)", "robustness", "order_full", 1),
        Perturbation(
            "paper_drop",
            'the paper\'s "drop": timestamps zeroed, events kept',
            "robustness",
            "paper_drop",
            1,
        ),
    ]
    for hours in sigmas_hours:
        for family, order in (("jitter_kept", "order kept"), ("jitter_sorted", "re-sorted")):
            grid.append(
                Perturbation(
                    f"{family}:{hours:g}",
                    f"Gaussian jitter sigma={hours:g} h ({order})",
                    "robustness",
                    family,
                    hours,
                )
            )
    for p in drop_ps:
        grid.append(
            Perturbation(f"dropout:{p:g}", f"event dropout p={p:g}", "robustness", "dropout", p)
        )
    return tuple(grid)


def focus_keys(grid: tuple[Perturbation, ...], local_window: int) -> list[str]:
    """The robustness claim's noise: full and local shuffles, the paper's drop, and each of
    jitter (both kinds) and dropout at its largest level."""
    keys = ["order_full", f"order_local:{local_window}", "paper_drop"]
    for family in ("jitter_kept", "jitter_sorted", "dropout"):
        levels = [p for p in grid if p.family == family]
        if levels:
            keys.append(max(levels, key=lambda p: p.level).key)
    return keys
