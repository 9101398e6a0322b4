"""Time left, as arithmetic on measured seconds: what the epoch lines and ``--estimate`` print.

Pure functions, no clock: the caller measures, these extrapolate and format. Every estimate
assumes the run goes on at the rate measured so far and trains every epoch it is allowed;
patience may end it sooner, so the time left is an upper bound on the remaining epochs' count
and a rate-based guess on their speed.
"""

from __future__ import annotations


def remaining_seconds(elapsed: float, done: int, total: int) -> float:
    """Seconds left for ``total - done`` more epochs at the mean rate of the ``done`` measured
    in ``elapsed`` seconds; 0 when none are left, and when none were measured yet."""
    if done <= 0 or done >= total:
        return 0.0
    return elapsed / done * (total - done)


def validations(epochs: int, every: int) -> int:
    """Validations in a run of ``epochs`` epochs that validates every ``every``-th epoch and
    always after the last one (as :func:`deepm3.train.loop.fit` does)."""
    return epochs // every + (1 if epochs % every else 0)


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``"42 s"`` under two minutes, else ``"7.5 min"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"
