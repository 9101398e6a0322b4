"""Is one model hurt less by a perturbation than another? A paired test of their drops.

Each model's drop is its relative NDCG@10 change under the perturbation,
``mean(perturbed) / mean(clean) - 1`` over the same users. Two models' drops are compared by a
paired bootstrap over users: each resample draws users with replacement and recomputes both
drops on them, so the interval of ``drop_a - drop_b`` carries the users both models share (two
overlapping intervals of the separate drops say nothing about their difference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepm3.stats.significance import per_user_ndcg

K = 10
CHUNK_ELEMENTS = 2**24  # users x resamples drawn at once (bounds memory: 128 MB of int64)


def user_ndcg_under(ranks: list[pd.DataFrame], key: str) -> pd.Series:
    """Per-user NDCG@10 under perturbation ``key`` (``"clean"``: none), averaged over repeats
    (columns ``key#r``) and then over seeds. ranks: one frame per seed with a ``user`` column and
    one rank column per perturbation; returns a Series indexed by user, sorted."""
    per_seed = []
    for frame in ranks:
        columns = [c for c in frame.columns if c.split("#")[0] == key]
        if not columns:
            raise ValueError(f"no ranks under {key!r} (columns: {', '.join(frame.columns)})")
        values = np.mean([per_user_ndcg(frame[c].to_numpy(), K) for c in columns], axis=0)
        per_seed.append(pd.Series(values, index=frame["user"].to_numpy()))
    joined = pd.concat(per_seed, axis=1)
    if joined.isna().any().any():
        raise ValueError("seeds of one row must rank the same users")
    return joined.mean(axis=1).sort_index()


def drop_difference(
    clean_a: pd.Series,
    perturbed_a: pd.Series,
    clean_b: pd.Series,
    perturbed_b: pd.Series,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """``drop_a - drop_b`` (positive: model a is hurt less) with a paired bootstrap 95% interval
    and two-sided p-value over the users all four series share (aligned by user id).

    Each argument: per-user NDCG@10 indexed by user (:func:`user_ndcg_under`). Returns drop_a,
    drop_b, difference, ci_low, ci_high, p (twice the smaller share of resampled differences on
    either side of 0, at least ``1 / n_resamples``) and users.
    """
    frame = pd.concat([clean_a, perturbed_a, clean_b, perturbed_b], axis=1, join="inner")
    if len(frame) < 2:
        raise ValueError(f"{len(frame)} shared user(s): a paired test needs at least 2")
    values = frame.to_numpy(dtype=float)  # (users, 4)
    if values[:, 0].sum() == 0 or values[:, 2].sum() == 0:
        raise ValueError("a clean NDCG@10 of 0: the relative drop is undefined")

    def difference(sums: np.ndarray) -> np.ndarray:  # sums (..., 4) -> drop_a - drop_b
        return sums[..., 1] / sums[..., 0] - sums[..., 3] / sums[..., 2]

    rng = np.random.default_rng(seed)
    users = len(values)
    chunk = max(1, CHUNK_ELEMENTS // users)
    found = []
    for start in range(0, n_resamples, chunk):
        drawn = rng.integers(0, users, size=(min(chunk, n_resamples - start), users))
        sums = values[drawn].sum(axis=1)  # (chunk, 4)
        usable = (sums[:, 0] > 0) & (sums[:, 2] > 0)
        found.append(difference(sums[usable]))
    resampled = np.concatenate(found)
    totals = values.sum(axis=0)
    low, high = np.quantile(resampled, [0.025, 0.975])
    side = min((resampled <= 0).mean(), (resampled >= 0).mean())
    return {
        "drop_a": float(totals[1] / totals[0] - 1),
        "drop_b": float(totals[3] / totals[2] - 1),
        "difference": float(difference(totals)),
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(min(1.0, max(2 * side, 1 / len(resampled)))),
        "users": users,
    }
