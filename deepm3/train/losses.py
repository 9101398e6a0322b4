"""Training losses as pure functions of states, item embeddings and targets.

Every loss reads only positions with a real target (target id > 0).

* ``ce``: full softmax cross-entropy over all items (the default).
* ``sampled_ce``: softmax over the target and ``K`` uniform negatives per position.
* ``shared_ce``: softmax over the target and ``K`` uniform negatives shared by the whole batch
  (much cheaper when items are many; see :func:`shared_sampled_ce`).
* ``bpr``: ``-log sigmoid(s_pos - s_neg)`` averaged over ``K`` negatives (``K = 1`` reproduces
  the one-negative protocol of the original DeepM3 code).
"""

from __future__ import annotations

import torch
from torch import nn

from deepm3.config import LOSSES


def full_softmax_ce(
    states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """states (P, d), items (N + 1, d) embedding table, targets (P,) in 1..N -> scalar."""
    logits = states @ items.T  # (P, N + 1)
    logits[:, 0] = float("-inf")  # padding is never a candidate
    return nn.functional.cross_entropy(logits.float(), targets)


def candidate_scores(
    states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the target (P,) and of negatives (P, K); negatives equal to the target are
    pushed to -inf so they never count."""
    positive = (states * items[targets]).sum(-1)
    negative = torch.einsum("pd,pkd->pk", states, items[negatives])
    return positive, negative.masked_fill(negatives == targets[:, None], float("-inf"))


def sampled_softmax_ce(states, items, targets, negatives) -> torch.Tensor:
    positive, negative = candidate_scores(states, items, targets, negatives)
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return nn.functional.cross_entropy(logits, torch.zeros_like(targets))


def shared_sampled_ce(states, items, targets, negatives) -> torch.Tensor:
    """Softmax over the target and K uniform negatives shared by every position: states (P, d),
    negatives (K,). One (P, d) x (d, K) product instead of a (P, K, d) gather, so the output
    layer costs K / N of the full softmax. A negative equal to a position's target is masked.
    Uniform sampling needs no logQ correction (the proposal is the same for every item)."""
    positive = (states * items[targets]).sum(-1)  # (P,)
    negative = states @ items[negatives].T  # (P, K)
    negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return nn.functional.cross_entropy(logits, torch.zeros_like(targets))


def bpr(states, items, targets, negatives) -> torch.Tensor:
    positive, negative = candidate_scores(states, items, targets, negatives)
    valid = torch.isfinite(negative)
    losses = -nn.functional.logsigmoid((positive[:, None] - negative).float())
    return (losses * valid).sum() / valid.sum().clamp(min=1)


def sequence_loss(
    name: str,
    states: torch.Tensor,
    item_table: torch.Tensor,
    targets: torch.Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Loss over every position of (B, T, d) states with (B, T) next-item targets."""
    real = targets > 0
    states, targets = states[real], targets[real]  # (P, d), (P,)
    if name == "ce":
        return full_softmax_ce(states, item_table, targets)
    shape = (num_negatives,) if name == "shared_ce" else (len(targets), num_negatives)
    negatives = torch.randint(1, item_table.shape[0], shape, generator=generator, device="cpu").to(
        targets.device
    )
    if name == "shared_ce":
        return shared_sampled_ce(states, item_table, targets, negatives)
    if name == "sampled_ce":
        return sampled_softmax_ce(states, item_table, targets, negatives)
    if name == "bpr":
        return bpr(states, item_table, targets, negatives)
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
