"""From item scores to an answer: what may be recommended (never the padding column; a user's
own items unless the request includes its history), then the top k as raw item ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from deepm3.recommend.requests import Recommendation, Request


def candidates(
    scores: Sequence[torch.Tensor], requests: Sequence[Request], seen: Sequence[np.ndarray]
) -> torch.Tensor:
    """(R, N + 1) scores with what may not be recommended at -inf: padding, and each row's
    seen items (n_i,) unless its request includes the history."""
    stacked = torch.stack(list(scores))
    stacked[:, 0] = float("-inf")
    for row, (request, items) in enumerate(zip(requests, seen, strict=True)):
        if not request.include_history:
            stacked[row, torch.as_tensor(items, device=stacked.device)] = float("-inf")
    return stacked


def top_k(
    request: Request,
    scores: torch.Tensor,
    seen: np.ndarray,
    item_ids: np.ndarray,
    notes: list[str],
    solver: str | None,
) -> Recommendation:
    """The answer to ``request`` from its scores (N + 1,): the best ``k`` candidates (fewer when
    fewer may be recommended) as raw ids (``item_ids`` (N + 1,) maps an index to its id), with
    their scores rounded to 6 decimals, best first."""
    scores = candidates([scores], [request], [seen])[0]
    k = min(request.k, int(torch.isfinite(scores).sum()))
    top = torch.topk(scores, k)
    ids = item_ids[top.indices.cpu().numpy()].tolist()
    values = [round(float(v), 6) for v in top.values.cpu()]
    return Recommendation(ids, values, request.user, solver, notes, request.id)
