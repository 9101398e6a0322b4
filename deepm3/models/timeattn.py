"""Continuous time inside a SASRec backbone (``timeattn``): a gap bias in attention, a flow after.

SASRec's blocks and positions (:mod:`deepm3.models.sasrec`, :mod:`deepm3.models.attention`),
with two time terms, each off by an option, so that with both off the model *is* SASRec:

* ``time_bias=buckets``: the attention score of query event ``i`` on key event ``j`` gets a
  learned bias per layer and head of the gap ``|t_i - t_j|``, log-bucketed in seconds
  (:func:`gap_buckets`): bucket 0 is a gap of exactly 0 s, bucket ``b >= 1`` holds gaps in
  ``[2^(b-1), 2^b)`` s, the last one everything from ``2^(NUM_BUCKETS - 2)`` s (about 68 years)
  up. Buckets rather than a per-head decay in ``log(1 + gap)``: a decay is monotone in the gap,
  and the data are not (53.5% of ML-1M's consecutive gaps are 0 s, the same sitting; Beauty's
  are whole days), so a free value per bucket can single out the same sitting, a day or a week,
  as HSTU's and FuXi-alpha's time biases do. The biases start near zero (a near-SASRec start).
  A pair's bias reads the two events' times only, never a later event (causal in timestamps).
* ``flow=decay`` (with ``predict_at=target_time``): the output at each event, before the final
  LayerNorm, is evolved over the gap to the time the prediction is asked (the next event's
  time in training and evaluation, ``at`` when recommending) by DeepM3's closed-form flow
  (:mod:`deepm3.ode.decay`: relaxation toward an equilibrium read from the state, rates in
  ``(0, lipschitz_constant)``: the flow's Lipschitz constant is known, it never expands
  distances). The final LayerNorm is the readout, applied after the flow.

The flow acts only at the query time, never between events, so it is trained only under
``predict_at=target_time``; ``flow=decay`` with ``last_event`` (a flow never trained) and
``target_time`` without a flow (nothing to evolve) are refused.

The model evolves a state to a query time (the contract's ``evolves_to_query_time`` with a
flow: :meth:`advance`), but it cannot absorb a new event without the events before it (every
key and value of the window enters the last output), so it declares ``absorbs_events`` False:
a server keeps its users' recent events and replays them, as for SASRec, and evolves the
replayed state to the query time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.attention import attention_mask, check_heads
from deepm3.models.contract import positions_from_first_event, real_positions
from deepm3.models.gap_encoding import GAP_ENCODINGS, gap_encoding
from deepm3.models.recurrence import is_onnx_exporting
from deepm3.models.sasrec import attention_backbone
from deepm3.ode.decay import DecayFlow, decay_flow
from deepm3.settings import check_choice, check_settings, setting

TIME_BIASES = ("buckets", "none")  # model.time_bias
FLOWS = ("decay", "none")  # model.flow: the flow from the last event to the query time
PREDICT_AT = ("last_event", "target_time")
NUM_BUCKETS = 33  # 0 s, then [2^(b-1), 2^b) s for b = 1..31, then >= 2^31 s
INITIAL_BIAS_STD = 0.02  # small, so the model starts near SASRec and still reads time


@dataclass(frozen=True)
class TimeAttentionOptions:
    hidden_size: int = setting(128, low=1)
    num_layers: int = setting(2, low=1)
    num_heads: int = setting(2, low=1)
    dropout: float = setting(0.2, low=0, below=1)
    time_bias: str = "buckets"  # buckets (a learned bias of the log-bucketed gap) | none
    flow: str = "none"  # decay (needs predict_at=target_time) | none
    lipschitz_constant: float = setting(1.0, above=0)  # the decay flow's rate bound L
    predict_at: str = "last_event"  # last_event | target_time
    # none | shared: deepm3.models.gap_encoding's features of the gap to the previous event,
    # projected and added to the item embedding (with the position embedding)
    gap_encoding: str = "none"

    def __post_init__(self) -> None:
        check_choice("model.gap_encoding", self.gap_encoding, GAP_ENCODINGS)
        check_choice("model.time_bias", self.time_bias, TIME_BIASES)
        check_choice("model.flow", self.flow, FLOWS)
        check_choice("model.predict_at", self.predict_at, PREDICT_AT)
        check_settings(self, "model")
        check_heads(self.hidden_size, self.num_heads)
        if self.flow != "none" and self.predict_at == "last_event":
            raise ConfigError(
                f"model.flow={self.flow} acts at the query time only, so predict_at=last_event "
                "would never train it: use predict_at=target_time, or flow=none"
            )
        if self.flow == "none" and self.predict_at == "target_time":
            raise ConfigError(
                "model.predict_at=target_time needs a flow to evolve the output with: "
                "use flow=decay, or predict_at=last_event"
            )


def gap_buckets(timestamps: torch.Tensor) -> torch.Tensor:
    """(B, T) int64 seconds -> (B, T, T) int32 bucket of ``|t_i - t_j|`` (module docstring).

    The bucket of a gap ``g >= 1`` is its bit length, the binary exponent ``e`` of
    ``g = m * 2^e`` with ``m`` in [0.5, 1) (``frexp``), exact for integers in float64 (below
    2^53 s, timestamps are); ``frexp(0)`` gives 0, the zero bucket. While exporting to ONNX,
    which has no ``frexp``, :func:`gap_buckets_reference` computes the same buckets (tested
    equal).
    """
    if is_onnx_exporting():
        return gap_buckets_reference(timestamps).int()
    seconds = timestamps.double()  # exact: a difference of two of them is exact too
    gaps = (seconds[:, :, None] - seconds[:, None, :]).abs_()  # (B, T, T)
    return torch.frexp(gaps).exponent.clamp_(max=NUM_BUCKETS - 1)


def gap_buckets_reference(timestamps: torch.Tensor) -> torch.Tensor:
    """:func:`gap_buckets` from ``log2`` (int64 buckets): the form ONNX runs, 7x slower here.

    ``floor(log2(gap))`` is computed in float64 and then corrected with exact comparisons
    against powers of two (exact in float64 below 2^53), so a gap of exactly ``2^k`` s falls in
    the same bucket whatever ``log`` the runtime (eager or exported) uses. The correction also
    places a zero gap: ``log2`` of it, clamped to 1, gives 0, and ``2^0 > 0`` lowers it to -1,
    bucket 0.
    """
    gaps = (timestamps[:, :, None] - timestamps[:, None, :]).abs().double()  # (B, T, T)
    exponent = torch.floor(torch.log2(gaps.clamp_min(1.0)))
    exponent = exponent - (torch.pow(2.0, exponent) > gaps).double()
    exponent = exponent + (torch.pow(2.0, exponent + 1) <= gaps).double()
    return (exponent + 1).clamp(max=NUM_BUCKETS - 1).long()


class TimeAttention(nn.Module):
    """SASRec with a gap bias in attention and a flow to the query time (module docstring)."""

    absorbs_events = False  # every event of the window enters the output: replay (contract)
    solver = None  # the flow is a closed form: no ODE method to choose

    def __init__(self, num_items: int, options: TimeAttentionOptions, max_len: int) -> None:
        super().__init__()
        size = options.hidden_size
        self.options, self.max_len = options, max_len
        attention_backbone(self, num_items, options, max_len)  # SASRec's layers, same init
        self.time_bias = (
            nn.Parameter(
                torch.randn(options.num_layers, NUM_BUCKETS, options.num_heads) * INITIAL_BIAS_STD
            )
            if options.time_bias == "buckets"
            else None
        )
        self.decay = (
            DecayFlow(size, options.lipschitz_constant) if options.flow == "decay" else None
        )
        self.gap_encoding = gap_encoding(options.gap_encoding, size)  # None unless shared

    @property
    def evolves_to_query_time(self) -> bool:
        """The contract's capability: True with a flow (:meth:`advance`)."""
        return self.decay is not None

    def masks(self, items: torch.Tensor, timestamps: torch.Tensor) -> list[torch.Tensor]:
        """One attention mask per layer: the causal (B, 1, T, T) bool mask without a time
        bias; with one, (B, H, T, T) float, the layer's gap bias where attention is allowed
        and ``-inf`` elsewhere (added to the scores)."""
        allowed = attention_mask(items)
        if self.time_bias is None:
            return [allowed] * len(self.blocks)
        # a pair that may not attend reads an extra entry of -inf: bias and mask in one gather
        buckets = gap_buckets(timestamps).masked_fill_(~allowed[:, 0], NUM_BUCKETS)  # (B, T, T)
        flat, blocked = buckets.reshape(-1), self.time_bias.new_full((1,), float("-inf"))
        # one 1-D gather per layer and head: its backward is a 1-D index_add, 7x faster here
        # than embedding's backward over (B, T, T) indices (measured at B=256, T=200)
        return [
            torch.stack(
                [
                    torch.cat([column, blocked]).index_select(0, flat).view(buckets.shape)
                    for column in table.unbind(1)  # (NUM_BUCKETS,) per head
                ],
                dim=1,
            )  # (B, H, T, T)
            for table in self.time_bias.unbind(0)  # (NUM_BUCKETS, H) per layer
        ]

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items, timestamps (B, T) int64; next_gaps (B, T) float -> states (B, T, d), before
        the final LayerNorm (the readout). ``time_scale`` is not read, ``time_gaps`` only by the
        gap encoding (``gap_encoding=shared``): the bias reads the timestamps, the flow the
        transformed gaps to the query time."""
        real = real_positions(items)[..., None]
        positions = positions_from_first_event(items, self.max_len)
        x = self.item_embedding(items) * self.item_embedding.embedding_dim**0.5
        if self.gap_encoding is not None:
            x = x + self.gap_encoding(time_gaps)
        x = self.dropout(x + self.position_embedding(positions)) * real
        for block, mask in zip(self.blocks, self.masks(items, timestamps), strict=True):
            x = block(x, mask, real)
        if self.decay is not None and next_gaps is not None:
            batch, length, size = x.shape
            flat = decay_flow(self.decay.weights(), x.reshape(-1, size), next_gaps.reshape(-1))
            x = flat.reshape(batch, length, size) * real
        return x, {}

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """States (..., d), at an event or evolved to a query time -> SASRec's final
        LayerNorm of them (..., d), the vectors scored against the item table."""
        return self.norm(states)

    def with_solver(self, method: str) -> TimeAttention:
        raise ValueError(f"timeattn's flow is exact (a closed form): no {method} to solve it with")

    def advance(
        self, h: torch.Tensor, gaps: torch.Tensor, last_times: torch.Tensor
    ) -> tuple[torch.Tensor, int]:
        """States h (B, d) right after the last event, evolved over transformed gaps (B,) by
        the flow, as ``predict_at=target_time`` evolves each output -> (states (B, d), 0
        function evaluations). ``last_times`` is not read: the closed form has no context."""
        if self.decay is None:
            return h, 0
        return decay_flow(self.decay.weights(), h, gaps), 0

    def absorb(self, h, items, gaps, previous_times) -> torch.Tensor:
        raise NotImplementedError(
            "timeattn cannot absorb an event without the window before it (absorbs_events "
            "is False): replay the window"
        )
