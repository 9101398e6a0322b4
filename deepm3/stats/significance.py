"""Paired significance of one model against another, over the same evaluated users.

Every function takes per-user values of two models, aligned so that position ``i`` of ``a`` and
``b`` is the same user (for example NDCG@10 from two runs' ``per_user`` ranks, after a join on
``user``). Users are the unit of resampling and of pairing: the two models saw the same users,
so their differences are paired, never treated as two independent samples.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

BOOTSTRAP_ELEMENTS_PER_CHUNK = 1 << 22  # resampled indices held at once (32 MiB of int64)
ROUNDING_ULPS = 8  # differences this close (relative) are one constant shift


def per_user_ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """NDCG@k of each user from its target's rank.

    ranks: (N,) 1-based pessimistic ranks (see :mod:`deepm3.eval.metrics`). Returns (N,) float64
    ``1 / log2(rank + 1)`` where ``rank <= k``, else 0; its mean is ``metrics_from_ranks``'s
    ``ndcg@k``.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 1 or not np.issubdtype(ranks.dtype, np.integer) or (ranks < 1).any():
        raise ValueError("ranks must be a 1-D integer array of 1-based ranks")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    ndcg = np.zeros(len(ranks), dtype=np.float64)
    hit = ranks <= k
    ndcg[hit] = 1.0 / np.log2(ranks[hit].astype(np.float64) + 1.0)
    return ndcg


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as (N,) float64, checked to be the same length, finite, N >= 2."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D and of one length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a paired comparison needs at least 2 users")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite")
    return a, b


def _relative(mean_a: float, mean_b: float) -> float:
    """``mean_a / mean_b - 1``; NaN when ``mean_b`` is 0 (no relative difference exists)."""
    return mean_a / mean_b - 1.0 if mean_b != 0 else float("nan")


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sided paired tests of ``a`` against ``b``, and the size of the difference.

    a, b: (N,) per-user values of the two models, N >= 2, same users in the same order.
    Returns a dict with ``users`` (N), ``differing_users`` (users whose values differ),
    ``mean_a``, ``mean_b``, ``mean_difference`` (mean of a - b), ``relative_difference``
    (``mean(a) / mean(b) - 1``, NaN when ``mean(b)`` is 0), ``wilcoxon_p`` and ``t_p``.

    Wilcoxon signed-rank test (``scipy.stats.wilcoxon``): users whose difference is exactly zero
    are dropped before ranking (Wilcoxon's own rule, ``zero_method="wilcox"``, scipy's and R's
    default); with ranking metrics most users miss under both models, so the test is about the
    users where the models differ. Other options are scipy's defaults (no continuity
    correction, ``method="auto"``: exact or permutation for small samples, else the normal
    approximation). Paired t-test: ``scipy.stats.ttest_rel``.

    Defined edge cases instead of scipy's NaN: when every difference is zero both p-values are
    1; when every difference is the same non-zero constant (up to float rounding, 8 ulps of
    the largest) the t statistic is infinite and ``t_p`` is 0.
    """
    a, b = _paired(a, b)
    difference = a - b
    differing = int(np.count_nonzero(difference))
    if differing == 0:
        wilcoxon_p = t_p = 1.0
    else:
        wilcoxon_p = float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
        rounding = ROUNDING_ULPS * np.finfo(np.float64).eps * np.abs(difference).max()
        constant = np.ptp(difference) <= rounding  # scipy would warn and return p ~ 0
        t_p = 0.0 if constant else float(stats.ttest_rel(a, b).pvalue)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    return {
        "users": len(a),
        "differing_users": differing,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "mean_difference": float(difference.mean()),
        "relative_difference": _relative(mean_a, mean_b),
        "wilcoxon_p": wilcoxon_p,
        "t_p": t_p,
    }


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values, in the input's key order.

    With the m p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value of the
    j-th is ``max over i <= j of min(1, (m - i + 1) * p_(i))``: monotone in the raw p-values and
    capped at 1. Rejecting every hypothesis whose adjusted value is at most alpha is Holm's
    step-down procedure at level alpha (the same values as statsmodels'
    ``multipletests(method="holm")``). Equal raw p-values get equal adjusted values.
    """
    names = list(p_values)
    raw = np.array([p_values[name] for name in names], dtype=np.float64)
    if ((raw < 0) | (raw > 1) | np.isnan(raw)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p_values}")
    order = np.argsort(raw, kind="stable")
    multipliers = len(raw) - np.arange(len(raw))  # m, m - 1, ..., 1
    stepped = np.maximum.accumulate(np.minimum(1.0, multipliers * raw[order]))
    adjusted = np.empty_like(raw)
    adjusted[order] = stepped
    return {name: float(value) for name, value in zip(names, adjusted, strict=True)}


def bootstrap_relative_ci(
    a: np.ndarray,
    b: np.ndarray,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) / mean(b) - 1`` over users.

    a, b: (N,) per-user values, the same users in the same order. Each resample draws N users
    with replacement and keeps both models' values of each drawn user (a paired bootstrap).
    Returns the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (numpy's
    default linear interpolation) of the resampled relative differences. Same inputs and seed,
    same interval. Raises ValueError when ``mean(b)`` is 0; a resample whose mean of ``b`` is 0
    has no relative difference and is left out.
    """
    a, b = _paired(a, b)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    if b.mean() == 0:
        raise ValueError("mean(b) is 0: the relative difference is undefined")
    rng = np.random.default_rng(seed)
    users = len(a)
    chunk = max(1, BOOTSTRAP_ELEMENTS_PER_CHUNK // users)  # bounds memory for many users
    relative = []
    for start in range(0, n_resamples, chunk):
        drawn = rng.integers(0, users, size=(min(chunk, n_resamples - start), users))
        sum_a, sum_b = a[drawn].sum(axis=1), b[drawn].sum(axis=1)  # (chunk,)
        usable = sum_b != 0
        relative.append(sum_a[usable] / sum_b[usable] - 1.0)  # ratio of sums = ratio of means
    values = np.concatenate(relative)
    if values.size == 0:
        raise ValueError("every resample drew only users with b = 0")
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
