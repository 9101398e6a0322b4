"""TiSASRec (Li, Wang & McAuley, WSDM 2020): self-attention aware of time intervals.

As in the paper: each user's times are expressed in that user's own unit, the smallest non-zero
gap between the user's events, and rounded (``round((t - t_0) / unit)``); the interval between
events ``i`` and ``j`` is ``r_ij = min(|u_i - u_j|, k)`` in those rounded units; attention adds
learned interval embeddings and absolute position embeddings to the keys and to the values
(separate tables, not projected); the block is the one SASRec uses
(:mod:`deepm3.models.attention`), so the two models differ only by these time terms.

Deviations from the original, for correctness and a fair comparison:

* the personal unit comes from the user's *training* events only (``Batch.time_scale``, computed
  in :func:`deepm3.data.sequences.personal_time_scales`); the original computed it over the whole
  sequence, validation and test events included, which leaks the future into the past;
* the origin ``t_0`` of the rounding is the first event in the input window (the original uses
  the user's first event; the two agree whenever the window holds the whole history and
  otherwise shift a rounded interval by at most one unit);
* positions are counted from the first event in the window (padding invariance), as in SASRec;
* the shared loss (full softmax cross-entropy by default) replaces the original's binary
  cross-entropy with one negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.models.attention import Block, TimeTerms, attention_mask, check_heads
from deepm3.models.contract import positions_from_first_event, real_positions
from deepm3.models.gap_encoding import GAP_ENCODINGS, gap_encoding
from deepm3.settings import check_choice, check_settings, setting


@dataclass(frozen=True)
class TiSASRecOptions:
    hidden_size: int = setting(128, low=1)
    num_layers: int = setting(2, low=1)
    num_heads: int = setting(2, low=1)
    dropout: float = setting(0.2, low=0, below=1)
    time_span: int = setting(256, low=1)  # k: intervals are clipped at this many personal units
    # none | shared: deepm3.models.gap_encoding's features of the gap to the previous event,
    # projected and added to the item embedding (beside the paper's interval embeddings)
    gap_encoding: str = "none"

    def __post_init__(self) -> None:
        check_choice("model.gap_encoding", self.gap_encoding, GAP_ENCODINGS)
        check_settings(self, "model")
        check_heads(self.hidden_size, self.num_heads)


def interval_matrix(
    timestamps: torch.Tensor, items: torch.Tensor, time_scale: torch.Tensor, span: int
) -> torch.Tensor:
    """(B, T, T) int64 clipped personal intervals ``r_ij`` (0 wherever padding is involved).

    timestamps, items (B, T) int64; time_scale (B,) int64 seconds per personal unit.
    Each time is rounded to whole units from the row's first event (half to even, as Python's
    ``round`` in the original code), so r_ij depends only on events i and j and that first
    event: never on a later event.
    """
    real = real_positions(items)
    largest = torch.iinfo(timestamps.dtype).max
    origin = timestamps.masked_fill(~real, largest).min(dim=1, keepdim=True).values
    elapsed = (timestamps - origin).clamp_min(0).double()  # int64 -> float64: exact below 2**53
    units = torch.round(elapsed / time_scale[:, None].double()).long()
    intervals = (units[:, :, None] - units[:, None, :]).abs().clamp(max=span)
    return intervals * (real[:, :, None] & real[:, None, :])


class TiSASRec(nn.Module):
    evolves_to_query_time = False  # no flow in time (the model contract's capability)
    absorbs_events = False  # no one-step update of a cached state: a server replays

    def __init__(self, num_items: int, options: TiSASRecOptions, max_len: int) -> None:
        super().__init__()
        size = options.hidden_size
        self.options, self.max_len, self.span = options, max_len, options.time_span
        self.item_embedding = nn.Embedding(num_items + 1, size, padding_idx=0)
        self.position_k = nn.Embedding(max_len, size)
        self.position_v = nn.Embedding(max_len, size)
        self.interval_k = nn.Embedding(options.time_span + 1, size)
        self.interval_v = nn.Embedding(options.time_span + 1, size)
        for table in (
            self.item_embedding,
            self.position_k,
            self.position_v,
            self.interval_k,
            self.interval_v,
        ):
            nn.init.normal_(table.weight, std=size**-0.5)
        self.dropout = nn.Dropout(options.dropout)
        self.blocks = nn.ModuleList(
            Block(size, options.num_heads, options.dropout) for _ in range(options.num_layers)
        )
        self.norm = nn.LayerNorm(size)
        self.gap_encoding = gap_encoding(options.gap_encoding, size)  # None unless shared

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
        time_scale: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items, timestamps (B, T) int64, time_scale (B,) int64 -> states (B, T, d);
        ``time_gaps`` (B, T) float is read only by the gap encoding (``gap_encoding=shared``)."""
        if time_scale is None:
            raise ValueError("TiSASRec needs time_scale: each user's time unit (Batch.time_scale)")
        real = real_positions(items)[..., None]
        positions = positions_from_first_event(items, self.max_len)
        time = TimeTerms(
            position_k=self.dropout(self.position_k(positions)),
            position_v=self.dropout(self.position_v(positions)),
            intervals=interval_matrix(timestamps, items, time_scale, self.span),
            table_k=self.dropout(self.interval_k.weight),
            table_v=self.dropout(self.interval_v.weight),
        )
        x = self.item_embedding(items) * self.item_embedding.embedding_dim**0.5
        if self.gap_encoding is not None:
            x = x + self.gap_encoding(time_gaps)
        x = self.dropout(x) * real
        mask = attention_mask(items)
        for block in self.blocks:
            x = block(x, mask, real, time)
        return self.norm(x) * real, {}

    def readout(self, states: torch.Tensor) -> torch.Tensor:
        """The states as they are: forward ends in the final LayerNorm already."""
        return states
