"""Ranking metrics as pure functions of scores and ranks.

Ranks are 1-based and pessimistic: every other candidate whose score is greater than **or
equal to** the target's counts as ranked above it, so a model that gives all items the same
score ranks every target last, never first.

Every metric is a mean of per-user values in [0, 1]; :func:`check_metrics` refuses anything else
(a NaN, an infinity, a rank below 1 left by a bug), so no such number is ever written or printed.
"""

from __future__ import annotations

import math

import torch

from deepm3.errors import DeepM3Error


class MetricError(DeepM3Error):
    """A metric cannot be computed (no user to average over) or came out invalid."""


def pessimistic_ranks(scores: torch.Tensor, target_columns: torch.Tensor) -> torch.Tensor:
    """Rank of each row's target among that row's candidates.

    scores: (B, C) float, masked candidates set to -inf; target_columns: (B,) int64 column of
    the target in ``scores``. Returns (B,) int64 ranks in 1..C.
    """
    target_scores = scores.gather(1, target_columns[:, None])  # (B, 1)
    at_least = (scores >= target_scores).sum(dim=1)  # includes the target itself
    return at_least.to(torch.int64)


def check_metrics(metrics: dict[str, float], where: str = "metrics") -> dict[str, float]:
    """Return ``metrics`` unchanged if every value is a finite number in [0, 1], else raise a
    :class:`MetricError` naming the first bad one."""
    for name, value in metrics.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
            raise MetricError(
                f"{where}: {name} = {value!r} is not in [0, 1]; refusing to record it"
            )
    return metrics


def metrics_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """Mean HR@k, NDCG@k and MRR@k over users, from (N,) 1-based ranks (N >= 1)."""
    if ranks.numel() == 0:
        raise MetricError("no ranks to average: no user was evaluated")
    if int(ranks.min()) < 1:
        raise MetricError(f"ranks are 1-based, got {int(ranks.min())}: a user was never ranked")
    ranks = ranks.double()
    result: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        result[f"hr@{k}"] = hit.double().mean().item()
        result[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0).mean().item()
        result[f"mrr@{k}"] = torch.where(hit, 1.0 / ranks, 0.0).mean().item()
    return check_metrics(result)
