"""The test-time perturbations a suite applies, built from a budget's grids.

Each maps one evaluation table's histories ``(items, timestamps, target_time)`` to new ones
(:mod:`deepm3.analysis.perturb` does the work). Random ones draw from a generator seeded by the
perturbation's key and the repeat, so every model sees exactly the same perturbed histories.

Groups: ``time`` (items and order kept, only time changes: says whether a model reads time at
all) and ``robustness`` (order shuffles, Gaussian jitter, event dropout, the paper's "drop").
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deepm3.analysis import perturb

History = tuple[np.ndarray, np.ndarray, np.ndarray]  # items, timestamps (N, T); target_time (N,)
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Perturbation:
    key: str  # column name in the result files, e.g. "jitter_sorted:24"
    label: str
    group: str  # time | robustness
    family: str  # curve it belongs to (jitter_sorted, dropout, ...)
    level: float  # x value on that curve (sigma in hours, p, ...); 0 is the clean input
    apply: Callable[[History, np.random.Generator], History]

    @property
    def random(self) -> bool:
        """False for the deterministic ones (drawing repeats of them would change nothing)."""
        return self.family not in ("gaps_mean", "time_zeroed", "paper_drop")


def rng_for(key: str, repeat: int) -> np.random.Generator:
    """The generator of one perturbation and repeat: the same for every model."""
    return np.random.default_rng([zlib.crc32(key.encode()), repeat])


def _keep_target(function) -> Callable[[History, np.random.Generator], History]:
    def apply(history: History, rng: np.random.Generator) -> History:
        items, times = function(history[0], history[1], rng)
        return items, times, history[2]

    return apply


def _zeroed(history: History, rng: np.random.Generator) -> History:
    """Every timestamp zeroed, the target's too (a model then sees no time at all)."""
    items, times = perturb.zero_timestamps(history[0], history[1])
    return items, times, np.zeros_like(history[2])


def build(sigmas_hours, drop_ps, local_window: int) -> list[Perturbation]:
    """Every perturbation of a budget, time group first."""
    out = [
        Perturbation(
            "gaps_shuffled",
            "gaps shuffled across positions",
            "time",
            "gaps_shuffled",
            1,
            _keep_target(perturb.shuffle_gaps),
        ),
        Perturbation(
            "gaps_mean",
            "every gap = the user's mean gap",
            "time",
            "gaps_mean",
            1,
            _keep_target(lambda items, times, rng: perturb.mean_gaps(items, times)),
        ),
        Perturbation("time_zeroed", "timestamps zeroed", "time", "time_zeroed", 1, _zeroed),
        Perturbation(
            f"order_local:{local_window}",
            f"order shuffled within {local_window}-event windows",
            "robustness",
            "order_local",
            local_window,
            _keep_target(lambda i, t, rng: perturb.shuffle_order(i, t, rng, local_window)),
        ),
        Perturbation(
            "order_full",
            "order shuffled (whole history)",
            "robustness",
            "order_full",
            1,
            _keep_target(lambda i, t, rng: perturb.shuffle_order(i, t, rng, None)),
        ),
        Perturbation(
            "paper_drop",
            'the paper\'s "drop": timestamps zeroed, events kept',
            "robustness",
            "paper_drop",
            1,
            _zeroed,
        ),
    ]
    for hours in sigmas_hours:
        for resort in (False, True):
            family = "jitter_sorted" if resort else "jitter_kept"

            def jitter(i, t, rng, sigma=hours * SECONDS_PER_HOUR, resort=resort):
                return perturb.jitter_timestamps(t, i, sigma, rng, resort)

            out.append(
                Perturbation(
                    f"{family}:{hours:g}",
                    f"Gaussian jitter sigma={hours:g} h "
                    f"({'re-sorted' if resort else 'order kept'})",
                    "robustness",
                    family,
                    hours,
                    _keep_target(jitter),
                )
            )
    for p in drop_ps:
        out.append(
            Perturbation(
                f"dropout:{p:g}",
                f"event dropout p={p:g}",
                "robustness",
                "dropout",
                p,
                _keep_target(lambda i, t, rng, p=p: perturb.drop_events(i, t, p, rng)),
            )
        )
    return out
