"""Ranking metrics as pure functions of scores and ranks.

Ranks are 1-based and pessimistic: every other candidate whose score is greater than **or
equal to** the target's counts as ranked above it, so a model that gives all items the same
score ranks every target last, never first.
"""

from __future__ import annotations

import torch


def pessimistic_ranks(scores: torch.Tensor, target_columns: torch.Tensor) -> torch.Tensor:
    """Rank of each row's target among that row's candidates.

    scores: (B, C) float, masked candidates set to -inf; target_columns: (B,) int64 column of
    the target in ``scores``. Returns (B,) int64 ranks in 1..C.
    """
    target_scores = scores.gather(1, target_columns[:, None])  # (B, 1)
    at_least = (scores >= target_scores).sum(dim=1)  # includes the target itself
    return at_least.to(torch.int64)


def metrics_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, float]:
    """Mean HR@k, NDCG@k and MRR@k over users, from (N,) 1-based ranks."""
    ranks = ranks.double()
    result: dict[str, float] = {}
    for k in ks:
        hit = ranks <= k
        result[f"hr@{k}"] = hit.double().mean().item()
        result[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0).mean().item()
        result[f"mrr@{k}"] = torch.where(hit, 1.0 / ranks, 0.0).mean().item()
    return result
