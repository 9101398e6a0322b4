"""Where the sampled losses draw their negatives from: a proposal ``Q`` over items 1..N.

* ``uniform`` (``train.loss_sampling=uniform``, the default): ``Q(j) = 1 / N``.
* ``popularity``: ``Q(j) = c_j ** alpha / sum_i c_i ** alpha``, with ``c_j`` the item's count
  among the training targets (an item never seen there counts as 0.5, the floor of
  :func:`~deepm3.train.losses.target_log_q`) and ``alpha = train.loss_sampling_alpha``
  (GRU4Rec's ``sample_alpha``): 0 is uniform, 1 follows the counts. Popular items are the
  hard negatives a uniform draw rarely offers.

``sampled_ce``, ``shared_ce`` and ``bpr`` draw ``K`` items with replacement, per position or
once per batch; a draw equal to a position's target is masked by the loss, whatever the
proposal. With ``train.logq`` each draw ``j`` is corrected by ``log(K Q(j))``
(:meth:`NegativeSampler.log_expected_count`; module docstring of
:mod:`deepm3.train.losses`): ``log(K / N)`` for uniform draws.

Draws are made on the CPU from the training loop's generator, so they follow the seed, then
moved to the device. Popularity draws use ``torch.multinomial`` with replacement: at
N = 12,101 items on one CPU thread, 0.07 ms for K = 256 and 0.40 ms for K = 2,048 draws
(uniform: 0.006 and 0.018 ms), well under a millisecond per batch for ``shared_ce``; for
per-position draws (``sampled_ce``, P x K of them) about 12x the uniform draw's time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from deepm3.config import NEGATIVE_SAMPLING


@dataclass(frozen=True)
class NegativeSampler:
    """Draws negatives among items 1..N from ``Q``.

    ``num_items``: N. ``probabilities``: (N,) float64 ``Q`` of items 1..N, on the CPU; None for
    uniform draws. ``log_q``: (N + 1,) float32 ``log Q`` (entry 0, padding: -inf) on the
    device the loss runs on; None for uniform draws.
    """

    num_items: int
    probabilities: torch.Tensor | None = None
    log_q: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> NegativeSampler:
        """The same sampler with its ``log_q`` on ``device`` (draws stay on the CPU)."""
        log_q = None if self.log_q is None else self.log_q.to(device)
        return replace(self, log_q=log_q)

    def draw(
        self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """int64 item ids in 1..N of ``shape`` ((K,) or (P, K)), drawn with replacement on
        the CPU from ``generator``, returned on ``device``."""
        if self.probabilities is None:
            draws = torch.randint(1, self.num_items + 1, shape, generator=generator, device="cpu")
        else:
            count = math.prod(shape)
            draws = torch.multinomial(self.probabilities, count, True, generator=generator)
            draws = (draws + 1).view(shape)  # column 0 of Q is item 1
        return draws.to(device)

    def log_expected_count(self, negatives: torch.Tensor) -> float | torch.Tensor:
        """log(K Q(j)) of each draw of ``negatives`` ((K,) or (P, K), K = the last
        dimension): how many times the draws are expected to hold item j. A float for
        uniform draws (``log(K / N)``, the same for all), else a float32 tensor shaped like
        ``negatives``."""
        draws = negatives.shape[-1]
        if self.log_q is None:
            return math.log(draws / self.num_items)
        return math.log(draws) + self.log_q[negatives]


def uniform_sampler(num_items: int) -> NegativeSampler:
    """Uniform draws over items 1..``num_items``."""
    return NegativeSampler(num_items)


def popularity_sampler(item_log_q: torch.Tensor, alpha: float) -> NegativeSampler:
    """Draws with ``Q(j)`` proportional to ``c_j ** alpha``, from ``item_log_q`` (N + 1,),
    the log frequency of each item among training targets
    (:func:`~deepm3.train.losses.target_log_q`; entry 0 is padding and never drawn)."""
    log_weights = alpha * item_log_q[1:].double()  # log(c_j ** alpha) up to a constant
    log_q = log_weights - torch.logsumexp(log_weights, 0)  # (N,)
    padding = log_q.new_full((1,), float("-inf"))
    return NegativeSampler(
        num_items=len(log_q),
        probabilities=log_q.exp().cpu(),
        log_q=torch.cat([padding, log_q]).float(),
    )


def negative_sampler(
    kind: str, num_items: int, item_log_q: torch.Tensor | None, alpha: float
) -> NegativeSampler:
    """The sampler ``train.loss_sampling`` names (``kind``, a name in
    :data:`~deepm3.config.NEGATIVE_SAMPLING`); ``popularity`` reads ``item_log_q`` (N + 1,)."""
    if kind not in NEGATIVE_SAMPLING:
        valid = ", ".join(NEGATIVE_SAMPLING)
        raise ValueError(f"unknown negative sampling {kind!r}; valid: {valid}")
    if kind == "uniform":
        return uniform_sampler(num_items)
    if item_log_q is None or len(item_log_q) != num_items + 1:
        raise ValueError(f"popularity sampling needs item_log_q of shape ({num_items + 1},)")
    return popularity_sampler(item_log_q, alpha)
