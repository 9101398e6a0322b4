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
    seen items (n_i,) unless its request includes the history (one indexed write for all rows)."""
    stacked = torch.stack(list(scores))
    stacked[:, 0] = float("-inf")
    masked = [row for row, request in enumerate(requests) if not request.include_history]
    if masked:
        rows = np.repeat(masked, [len(seen[row]) for row in masked])
        columns = np.concatenate([np.asarray(seen[row], dtype=np.int64) for row in masked])
        device = stacked.device
        stacked[torch.as_tensor(rows, device=device), torch.as_tensor(columns, device=device)] = (
            float("-inf")
        )
    return stacked


def _ranked(row: torch.Tensor, values: list[float], indices: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` item indices of one row of scores (N + 1,), best first, ties in item
    index order: ``values`` and ``indices`` are the row's ``topk`` (at least ``k``, one more
    where the row has it), whose order among equal scores torch leaves open."""
    tied = any(values[i] == values[i + 1] for i in range(min(k, len(values) - 1)))
    if not tied:
        return indices[:k]
    # every item that ties with the k-th best or beats it, in index order, then stably by score
    contenders = torch.nonzero(row >= values[k - 1]).squeeze(1)
    order = torch.sort(row[contenders], descending=True, stable=True).indices
    return contenders[order[:k]].cpu().numpy()


def top_many(
    requests: Sequence[Request],
    scores: Sequence[torch.Tensor],
    seen: Sequence[np.ndarray],
    item_ids: np.ndarray,
    notes: Sequence[list[str]],
    solver: Sequence[str | None],
) -> list[Recommendation]:
    """The answers to ``requests`` from their scores (N + 1,) each, ranked together (one
    ``topk`` for the batch): per request the best ``k`` candidates (fewer when fewer may be
    recommended) as raw ids (``item_ids`` (N + 1,) maps an index to its id), with their scores
    rounded to 6 decimals, best first; equal scores in item index order, so an answer does
    not depend on the other requests of its batch. ``notes`` and ``solver``: per request."""
    if not requests:
        return []
    masked = candidates(scores, requests, seen)  # (R, N + 1)
    available = torch.isfinite(masked).sum(dim=1).tolist()
    # one more than the widest k: a tie across the k-th place shows
    widest = min(max(request.k for request in requests) + 1, masked.shape[1])
    top = torch.topk(masked, widest, dim=1)
    indices, values = top.indices.cpu().numpy(), top.values.cpu().tolist()
    out = []
    for row, request in enumerate(requests):
        k = min(request.k, available[row])
        chosen = _ranked(masked[row], values[row], indices[row], k) if k else indices[row, :0]
        ids = item_ids[chosen].tolist()
        rounded = [round(value, 6) for value in values[row][:k]]
        out.append(Recommendation(ids, rounded, request.user, solver[row], notes[row], request.id))
    return out
