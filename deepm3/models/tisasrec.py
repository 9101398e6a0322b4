"""TiSASRec (Li, Wang & McAuley, WSDM 2020): self-attention aware of time intervals.

As in the paper: each user's timestamps are divided by that user's smallest non-zero gap, the
interval between events ``i`` and ``j`` is ``r_ij = min(floor(|t_i - t_j| / scale), k)``, and
attention adds learned interval embeddings and absolute position embeddings to the keys and to
the values (separate tables for each, not projected):

    e_ij = q_i . (K_j + P^K_j + R^K[r_ij]) / sqrt(d_h),   z_i = sum_j a_ij (V_j + P^V_j + R^V[r_ij])

Two deviations, both for correctness: positions are counted from the first event in the window
(padding invariance), and the scale uses the events in the input window (the history available
at prediction time). The interval terms are computed exactly without a (B, T, T, d) tensor:
``q_i . R^K[r]`` for all k+1 buckets, gathered by ``r_ij``; and the attention weights summed per
bucket before multiplying by ``R^V``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.models.contract import positions_from_first_event, real_positions
from deepm3.models.sasrec import FeedForward, attention_mask


@dataclass(frozen=True)
class TiSASRecOptions:
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2
    time_span: int = 256  # k: intervals are clipped at this many user-scaled units


def interval_matrix(timestamps: torch.Tensor, items: torch.Tensor, span: int) -> torch.Tensor:
    """(B, T, T) int64 clipped personal intervals ``r_ij`` (0 wherever padding is involved)."""
    real = real_positions(items)
    previous_real = torch.roll(real, 1, dims=1)
    previous_real[:, 0] = False
    gaps = timestamps - torch.roll(timestamps, 1, dims=1)
    gaps = torch.where(real & previous_real & (gaps > 0), gaps, torch.iinfo(gaps.dtype).max)
    scale = gaps.min(dim=1).values  # smallest non-zero gap of each row
    scale = torch.where(scale == torch.iinfo(gaps.dtype).max, torch.ones_like(scale), scale)
    distance = (timestamps[:, :, None] - timestamps[:, None, :]).abs()  # int64, exact
    intervals = torch.div(distance, scale[:, None, None], rounding_mode="floor").clamp(max=span)
    both_real = real[:, :, None] & real[:, None, :]
    return intervals * both_real


class TimeAwareAttention(nn.Module):
    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n, d) -> (..., heads, n, d / heads) for (B, T, d); (n, d) -> (heads, n, dh)."""
        *lead, count, size = x.shape
        return x.view(*lead, count, self.heads, size // self.heads).transpose(-3, -2)

    def forward(self, queries, keys, intervals, position_k, position_v, table_k, table_v, mask):
        """queries, keys, position_k/v (B, T, d); intervals (B, T, T); table_k/v (k+1, d)."""
        batch, length, size = queries.shape
        q = self._split(self.query(queries))  # (B, H, T, dh)
        k = self._split(self.key(keys) + position_k)
        v = self._split(self.value(keys) + position_v)
        rk, rv = self._split(table_k), self._split(table_v)  # (H, k+1, dh)
        index = intervals[:, None].expand(batch, self.heads, length, length)
        logits = q @ k.transpose(-1, -2)  # (B, H, T, T)
        logits = logits + torch.einsum("bhtd,hrd->bhtr", q, rk).gather(-1, index)
        logits = logits / (size // self.heads) ** 0.5
        weights = self.dropout(torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1))
        per_bucket = torch.zeros(
            *weights.shape[:3], rk.shape[1], dtype=weights.dtype, device=weights.device
        ).scatter_add_(-1, index, weights)
        out = weights @ v + per_bucket @ rv  # (B, H, T, dh)
        return out.transpose(1, 2).reshape(batch, length, size)


class TiSASRec(nn.Module):
    def __init__(self, num_items: int, options: TiSASRecOptions, max_len: int) -> None:
        super().__init__()
        size = options.hidden_size
        self.max_len, self.span = max_len, options.time_span
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
        self.attention_norms = nn.ModuleList(nn.LayerNorm(size) for _ in range(options.num_layers))
        self.attentions = nn.ModuleList(
            TimeAwareAttention(size, options.num_heads, options.dropout)
            for _ in range(options.num_layers)
        )
        self.feed_norms = nn.ModuleList(nn.LayerNorm(size) for _ in range(options.num_layers))
        self.feeds = nn.ModuleList(
            FeedForward(size, options.dropout) for _ in range(options.num_layers)
        )
        self.norm = nn.LayerNorm(size)

    def forward(
        self,
        items: torch.Tensor,
        timestamps: torch.Tensor,
        time_gaps: torch.Tensor,
        next_gaps: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """items, timestamps (B, T) int64 -> states (B, T, d)."""
        real = real_positions(items)[..., None]
        positions = positions_from_first_event(items, self.max_len)
        intervals = interval_matrix(timestamps, items, self.span)
        x = self.dropout(self.item_embedding(items) * self.item_embedding.embedding_dim**0.5)
        x = x * real
        position_k = self.dropout(self.position_k(positions))
        position_v = self.dropout(self.position_v(positions))
        table_k = self.dropout(self.interval_k.weight)
        table_v = self.dropout(self.interval_v.weight)
        mask = attention_mask(items)
        for norm, attention, feed_norm, feed in zip(
            self.attention_norms, self.attentions, self.feed_norms, self.feeds, strict=True
        ):
            queries = norm(x)
            x = queries + attention(
                queries, x, intervals, position_k, position_v, table_k, table_v, mask
            )
            x = feed_norm(x)
            x = (x + feed(x)) * real
        return self.norm(x) * real, {}
