"""Training losses as pure functions of states, item embeddings and targets.

Every loss reads only positions with a real target (target id > 0); item row 0 is padding and
never a candidate. ``P`` is the number of such positions, ``N`` the number of items, ``d`` the
embedding size.

* ``ce``: full softmax cross-entropy over all items (the default); memory O(P x N).
* ``chunked_ce``: the same value and gradients, computed over chunks of items in forward and
  backward, so memory is O(P x chunk) (see :class:`ChunkedSoftmaxCE`).
* ``sampled_ce``: softmax over the target and ``K`` sampled negatives per position.
* ``shared_ce``: softmax over the target and ``K`` sampled negatives shared by the whole batch
  (much cheaper when items are many; see :func:`shared_sampled_ce`).
* ``inbatch_ce``: softmax over the target and the other targets of the batch, with the logQ
  correction by training frequency (see :func:`inbatch_ce`).
* ``bpr``: ``-log sigmoid(s_pos - s_neg)`` averaged over ``K`` negatives (``K = 1`` reproduces
  the one-negative protocol of the original DeepM3 code).

The sampled losses draw uniformly, or by popularity (:mod:`deepm3.train.negatives`).

**logQ correction.** A sampled softmax estimates the full one when each sampled negative ``j``
stands for the ``1 / (K Q(j))`` items it represents, ``Q`` being the proposal it was drawn from
and ``K`` the number of draws (the importance-sampled softmax of Bengio & Senecal, used for
large vocabularies by Jean et al. 2015; Yi et al. 2019 apply it to in-batch negatives). The
loss of a position with target ``t`` and score ``s_t`` is then::

    -s_t + log( exp(s_t) + sum_{k: j_k != t} exp(s_{j_k} - log(K Q(j_k))) )

where the sum, ``sum_k exp(s_{j_k}) / (K Q(j_k))``, is an unbiased estimate of
``sum_{j != t} exp(s_j)``: the positive keeps its exact logit, only negatives are corrected.

**How many negatives.** A training run refuses ``K > N`` when it starts (:func:`check_negatives`:
more draws than items only repeat items); :func:`sequence_loss` itself accepts any ``K`` (a
logQ estimate may use ``K > N``) but refuses one whose tensors could not fit in the device's
memory, with the estimate, instead of trying to allocate them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from deepm3.config import LOSSES, SAMPLED_LOSSES
from deepm3.errors import ConfigError
from deepm3.train.negatives import NegativeSampler, uniform_sampler

# log(K Q(j)) of sampled negatives: one float for all draws, a tensor per draw, or None (off)
Correction = float | torch.Tensor | None


def check_negatives(loss: str, num_negatives: int, num_items: int) -> None:
    """Refuse, when training starts, more sampled negatives than the data set has items: the
    extra draws only repeat items, at a memory cost that grows with ``num_negatives``."""
    if loss in SAMPLED_LOSSES and num_negatives > num_items:
        raise ConfigError(
            f"train.loss_negatives={num_negatives} exceeds the {num_items:,} items of the data "
            f"set (loss={loss} draws its negatives among them): use at most {num_items}"
        )


def negatives_bytes(
    loss: str, positions: int, num_negatives: int, width: int, element_size: int
) -> int:
    """An estimate of the bytes a sampled loss holds for its negatives: the int64 draws (on the
    CPU and the device), their gathered embeddings and their scores."""
    if loss == "shared_ce":  # (K,) draws, (K, d) embeddings, (P, K) scores and mask
        return num_negatives * (16 + width * element_size) + positions * num_negatives * 12
    # (P, K) draws, (P, K, d) embeddings, (P, K) scores and mask
    return positions * num_negatives * (28 + width * element_size)


def _device_memory(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes (None where it cannot be read)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):  # not a POSIX system
            return None
    return None


def _check_negatives_fit(
    loss: str, states: torch.Tensor, item_table: torch.Tensor, num_negatives: int
) -> None:
    """Refuse ``num_negatives`` whose tensors could not fit in the device's whole memory."""
    positions, width = states.shape
    need = negatives_bytes(loss, positions, num_negatives, width, item_table.element_size())
    have = _device_memory(item_table.device)
    if have is not None and need > have:
        num_items = item_table.shape[0] - 1
        raise ConfigError(
            f"train.loss_negatives={num_negatives} needs about {need / 2**30:,.0f} GiB for "
            f"loss={loss} on a batch of {positions:,} positions, more than the "
            f"{have / 2**30:,.0f} GiB of the {item_table.device.type} device; the data set has "
            f"{num_items:,} items: use loss_negatives <= {num_items}"
        )


def full_softmax_ce(
    states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """states (P, d), items (N + 1, d) embedding table, targets (P,) in 1..N -> scalar."""
    logits = states @ items.T  # (P, N + 1)
    logits[:, 0] = float("-inf")  # padding is never a candidate
    return nn.functional.cross_entropy(logits.float(), targets)


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    """At least float32 (float64 stays float64): softmax sums are never taken in bfloat16."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _chunk_logits(
    states: torch.Tensor, items: torch.Tensor, chunk: int
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first item id, logits (P, width)) for the items 1..N in consecutive chunks."""
    for start in range(1, items.shape[0], chunk):
        yield start, _wide(states @ items[start : start + chunk].T)


def _target_column(
    targets: torch.Tensor, start: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column of each target in the chunk starting at item ``start`` (P,), clamped into the
    chunk, and whether the target is there at all (P,) bool. No host sync: masks, not indexing."""
    column = targets - start
    inside = (column >= 0) & (column < width)
    return column.clamp(0, width - 1)[:, None], inside


class ChunkedSoftmaxCE(torch.autograd.Function):
    """Exact full-softmax cross-entropy, one chunk of items at a time.

    Forward keeps a running ``logsumexp`` over chunks and picks each target's logit from the
    chunk that holds it; it saves only states, the table, targets and the (P,) logsumexp.
    Backward recomputes each chunk's logits and, with ``g = softmax - onehot`` for that chunk
    (P, width), accumulates ``grad_states += g @ items_chunk`` and sets
    ``grad_items_chunk = g.T @ states``; both sums are scaled by ``grad_loss / P`` once, at the
    end, rather than every chunk. Peak memory is O(P x chunk) in both passes, for one
    extra ``P x N x d`` product. The autocast state of forward is restored in backward, so under
    bfloat16 autocast the recomputed logits are those forward saw.
    """

    @staticmethod
    def forward(ctx, states, items, targets, chunk):
        device = states.device.type
        ctx.autocast = (device, torch.get_autocast_dtype(device), torch.is_autocast_enabled(device))
        logsumexp = _wide(states.new_full((len(targets),), float("-inf")))  # (P,)
        positive = torch.zeros_like(logsumexp)  # (P,) the target's logit, from its chunk
        for start, logits in _chunk_logits(states, items, chunk):
            logsumexp = torch.logaddexp(logsumexp, logits.logsumexp(1))
            column, inside = _target_column(targets, start, logits.shape[1])
            positive = positive + torch.where(inside, logits.gather(1, column)[:, 0], 0.0)
        ctx.save_for_backward(states, items, targets, logsumexp)
        ctx.chunk = chunk
        return (logsumexp - positive).mean()

    @staticmethod
    def backward(ctx, grad_loss):
        states, items, targets, logsumexp = ctx.saved_tensors
        need_states, need_items = ctx.needs_input_grad[:2]
        grad_states = torch.zeros_like(_wide(states)) if need_states else None
        grad_items = torch.zeros_like(_wide(items)) if need_items else None
        scale = grad_loss / len(targets)
        device, dtype, enabled = ctx.autocast
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            for start, logits in _chunk_logits(states, items, ctx.chunk):
                grad_logits = logits.sub_(logsumexp[:, None]).exp_()  # softmax of this chunk
                column, inside = _target_column(targets, start, logits.shape[1])
                grad_logits.scatter_add_(1, column, -inside[:, None].to(grad_logits.dtype))
                block = items[start : start + logits.shape[1]]  # (width, d)
                if need_states:
                    grad_states += grad_logits @ block
                if need_items:
                    grad_items[start : start + logits.shape[1]] = grad_logits.T @ states
        # the scale is applied to the (P, d) and (N + 1, d) sums, not to every (P, width) chunk
        grad_states = (grad_states * scale).to(states.dtype) if need_states else None
        grad_items = (grad_items * scale).to(items.dtype) if need_items else None
        return grad_states, grad_items, None, None


def chunked_ce(
    states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int = 16384
) -> torch.Tensor:
    """:func:`full_softmax_ce` (same arguments) in chunks of ``chunk`` items: memory
    O(P x chunk) instead of O(P x N) in forward and backward."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return ChunkedSoftmaxCE.apply(states, items, targets, chunk)


def candidate_scores(
    states: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of the target (P,) and of negatives (P, K); negatives equal to the target are
    pushed to -inf so they never count."""
    positive = (states * items[targets]).sum(-1)
    negative = torch.einsum("pd,pkd->pk", states, items[negatives])
    return positive, negative.masked_fill(negatives == targets[:, None], float("-inf"))


def _positive_first_ce(
    positive: torch.Tensor, negative: torch.Tensor, log_expected_count: Correction
) -> torch.Tensor:
    """Mean cross-entropy of the softmax over [positive (P,), negative (P, K)] whose answer is
    the positive; with ``log_expected_count`` = log(K Q) (a float, or (K,) or (P, K) per
    draw), negatives are logQ-corrected."""
    if log_expected_count is not None:
        positive, negative = positive.float(), negative.float() - log_expected_count
    logits = torch.cat([positive[:, None], negative], dim=1).float()
    return nn.functional.cross_entropy(logits, torch.zeros_like(positive, dtype=torch.long))


def sampled_softmax_ce(
    states: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    log_expected_count: Correction = None,
) -> torch.Tensor:
    """Softmax over the target and K negatives of its own: states (P, d), items (N + 1, d),
    targets (P,), negatives (P, K). A negative equal to the target is masked.
    ``log_expected_count`` = log(K Q(j)), a float or (P, K) per draw, turns on the logQ
    correction (module docstring); for K uniform draws over N items it is log(K / N). None: no
    correction."""
    positive, negative = candidate_scores(states, items, targets, negatives)
    return _positive_first_ce(positive, negative, log_expected_count)


def shared_sampled_ce(
    states: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    negatives: torch.Tensor,
    log_expected_count: Correction = None,
) -> torch.Tensor:
    """Softmax over the target and K negatives shared by every position: states (P, d),
    negatives (K,). One (P, d) x (d, K) product instead of a (P, K, d) gather, so the output
    layer costs K / N of the full softmax. A negative equal to a position's target is masked.
    Without the correction (None) the loss ranks the target against K items as if they were
    all the items; ``log_expected_count`` = log(K Q(j)), a float or (K,) per draw (log(K / N)
    for uniform draws), makes it an estimate of the full CE."""
    positive = (states * items[targets]).sum(-1)  # (P,)
    negative = states @ items[negatives].T  # (P, K)
    negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
    return _positive_first_ce(positive, negative, log_expected_count)


def target_log_q(counts: np.ndarray | torch.Tensor, floor: float = 0.5) -> torch.Tensor:
    """(N + 1,) float32 log frequency of each item among training targets, from per-item target
    counts (N + 1,). Entry 0 (padding) is ignored and gets -inf; an item never seen counts as
    ``floor`` occurrences, so it stays rarer than any seen item with a finite log."""
    counts = torch.as_tensor(counts, dtype=torch.float64).clone()
    counts[0] = 0.0
    counts[1:] = counts[1:].clamp(min=floor)
    return (counts / counts.sum()).log().float()


def inbatch_ce(
    states: torch.Tensor,
    items: torch.Tensor,
    targets: torch.Tensor,
    item_log_q: torch.Tensor,
) -> torch.Tensor:
    """Softmax over the U distinct targets of the batch, with the logQ correction.

    states (P, d), items (N + 1, d), targets (P,) in 1..N, item_log_q (N + 1,) log frequency of
    each item among training targets (:func:`target_log_q`), on the states' device. One
    (P, d) x (d, U) product. The P targets are treated as P draws from Q: item j, present
    ``c_j`` times, stands for ``c_j / (P Q(j))`` items, so for each position with target t::

        loss = -s_t + log( exp(s_t) + sum_{j in batch, j != t} exp(s_j + log c_j - log(P Q(j))) )

    The own target's column is the positive (never a negative, even where other positions
    share it) and keeps its logit. When the batch's targets are exactly the training targets,
    c_j = P Q(j) and the loss equals the full softmax CE.
    """
    candidates, column, counts = torch.unique(targets, return_inverse=True, return_counts=True)
    logits = _wide(states @ items[candidates].T)  # (P, U)
    draws = math.log(len(targets))
    correction = counts.to(logits.dtype).log() - draws - item_log_q[candidates].to(logits.dtype)
    own = column[:, None] == torch.arange(len(candidates), device=targets.device)  # (P, U)
    logits = torch.where(own, logits, logits + correction)
    return nn.functional.cross_entropy(logits, column)


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
    *,
    logq: bool = False,
    item_log_q: torch.Tensor | None = None,
    chunk: int = 16384,
    sampler: NegativeSampler | None = None,
) -> torch.Tensor:
    """Loss over every position of (B, T, d) states with (B, T) next-item targets.

    ``sampled_ce``, ``shared_ce`` and ``bpr`` draw ``num_negatives`` negatives from ``sampler``
    (:mod:`deepm3.train.negatives`; None: uniform over the table's items) with ``generator``.
    ``logq`` corrects ``sampled_ce`` and ``shared_ce`` by ``log(K Q(j))`` for the sampler's
    ``Q`` (module docstring); the exact losses and ``bpr`` refuse it. ``inbatch_ce`` always
    corrects, with ``item_log_q`` (N + 1,) (:func:`target_log_q`). ``chunk``: items per chunk
    of ``chunked_ce``.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")
    if logq and name not in ("sampled_ce", "shared_ce", "inbatch_ce"):
        raise ValueError(f"logq corrects sampled softmax losses only, not {name!r}")
    if name == "inbatch_ce" and item_log_q is None:
        raise ValueError("inbatch_ce needs item_log_q, the (N + 1,) log target frequencies")
    real = targets > 0
    states, targets = states[real], targets[real]  # (P, d), (P,)
    if name == "ce":
        return full_softmax_ce(states, item_table, targets)
    if name == "chunked_ce":
        return chunked_ce(states, item_table, targets, chunk)
    if name == "inbatch_ce":
        return inbatch_ce(states, item_table, targets, item_log_q)
    num_items = item_table.shape[0] - 1
    sampler = sampler if sampler is not None else uniform_sampler(num_items)
    if sampler.num_items != num_items:
        raise ValueError(
            f"the sampler draws among {sampler.num_items} items, the table has {num_items}"
        )
    _check_negatives_fit(name, states, item_table, num_negatives)
    shape = (num_negatives,) if name == "shared_ce" else (len(targets), num_negatives)
    negatives = sampler.draw(shape, generator, targets.device)
    correction = sampler.log_expected_count(negatives) if logq else None
    if name == "shared_ce":
        return shared_sampled_ce(states, item_table, targets, negatives, correction)
    if name == "sampled_ce":
        return sampled_softmax_ce(states, item_table, targets, negatives, correction)
    return bpr(states, item_table, targets, negatives)
