"""The causal self-attention block that SASRec and TiSASRec share.

Both original implementations (SASRec's TensorFlow code by Kang & McAuley, TiSASRec's by Li, Wang &
McAuley) wire a block the same way, and so do we, so that a difference between the two models
measures their time terms and nothing else::

    q = LayerNorm_a(x);   x = q + Attention(q, x);   x = LayerNorm_f(x);   x = x + FFN(x)

The residual adds the *normalised* queries, keys and values read the un-normalised ``x``, and there
is no output projection after attention (the PyTorch port of SASRec adds one through
``nn.MultiheadAttention``; we follow the original code). Attention weights and the feed-forward
layers use dropout; outputs at padded positions are zeroed after every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deepm3.errors import ConfigError
from deepm3.models.contract import real_positions


def check_heads(hidden_size: int, num_heads: int) -> None:
    """Attention splits the width into equal heads: refuse a width the heads do not divide."""
    if hidden_size % num_heads:
        raise ConfigError(
            f"model.hidden_size ({hidden_size}) must be a multiple of model.num_heads "
            f"({num_heads}): attention splits the width into equal heads"
        )


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) bool, True where query t may attend to key s: s <= t and s is an event.

    A padded query may attend to itself only, which keeps softmax finite; its output is
    discarded anyway.
    """
    length = items.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    allowed = causal & real_positions(items)[:, None, :]
    return (allowed | torch.eye(length, dtype=torch.bool, device=items.device))[:, None]


class FeedForward(nn.Module):
    """Position-wise two-layer ReLU network (the original's two 1x1 convolutions)."""

    def __init__(self, size: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(size, size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(size, size),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass(frozen=True)
class TimeTerms:
    """TiSASRec's additions to attention, for one forward pass.

    Attention then computes, exactly and without a (B, T, T, d) tensor::

        e_ij = q_i . (K_j + P^K_j + R^K[r_ij]) / sqrt(d_h)
        z_i = sum_j a_ij (V_j + P^V_j + R^V[r_ij])
    """

    position_k: torch.Tensor  # (B, T, d) absolute position embeddings added to the keys
    position_v: torch.Tensor  # (B, T, d) ... and to the values
    intervals: torch.Tensor  # (B, T, T) int64 clipped personal intervals r_ij
    table_k: torch.Tensor  # (k + 1, d) interval embeddings for the keys
    table_v: torch.Tensor  # (k + 1, d) ... and for the values


class MultiHeadAttention(nn.Module):
    """Separate query, key and value projections, no output projection (see module docstring)."""

    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(size, size)
        self.key = nn.Linear(size, size)
        self.value = nn.Linear(size, size)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(..., n, d) -> (..., heads, n, d / heads)."""
        *lead, count, size = x.shape
        return x.view(*lead, count, self.heads, size // self.heads).transpose(-3, -2)

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        time: TimeTerms | None = None,
    ) -> torch.Tensor:
        """queries, keys (B, T, d); mask (B, 1, T, T) bool (True: may attend), or (B, H, T, T)
        float added to the scores (-inf: may not; plain attention only) -> (B, T, d)."""
        batch, length, size = queries.shape
        q, k, v = self.query(queries), self.key(keys), self.value(keys)
        if time is None:
            q, k, v = self._split(q), self._split(k), self._split(v)
            dropout = self.dropout.p if self.training else 0.0
            out = nn.functional.scaled_dot_product_attention(q, k, v, mask, dropout_p=dropout)
        else:
            out = self._with_time(q, k, v, mask, time)
        return out.transpose(1, 2).reshape(batch, length, size)

    def _with_time(self, q, k, v, mask, time: TimeTerms) -> torch.Tensor:
        """Attention with TiSASRec's position and interval terms -> (B, H, T, dh)."""
        q = self._split(q)  # (B, H, T, dh)
        k = self._split(k + time.position_k)
        v = self._split(v + time.position_v)
        rk, rv = self._split(time.table_k), self._split(time.table_v)  # (H, k + 1, dh)
        batch, heads, length, head_size = q.shape
        index = time.intervals[:, None].expand(batch, heads, length, length)
        logits = q @ k.transpose(-1, -2)  # (B, H, T, T)
        # q_i . R^K[r] for every bucket r, then picked out by r_ij
        logits = logits + torch.einsum("bhtd,hrd->bhtr", q, rk).gather(-1, index)
        logits = logits / head_size**0.5
        weights = self.dropout(torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1))
        # sum_j a_ij R^V[r_ij] = sum_r (sum_{j: r_ij = r} a_ij) R^V[r]
        per_bucket = torch.zeros(
            *weights.shape[:3], rk.shape[1], dtype=weights.dtype, device=weights.device
        ).scatter_add_(-1, index, weights)
        return weights @ v + per_bucket @ rv


class Block(nn.Module):
    """One block of the original SASRec/TiSASRec wiring (module docstring)."""

    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_attention = nn.LayerNorm(size)
        self.attention = MultiHeadAttention(size, heads, dropout)
        self.norm_feed = nn.LayerNorm(size)
        self.feed = FeedForward(size, dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        real: torch.Tensor,
        time: TimeTerms | None = None,
    ) -> torch.Tensor:
        """x (B, T, d), mask (B, 1, T, T), real (B, T, 1) -> (B, T, d)."""
        queries = self.norm_attention(x)
        x = queries + self.attention(queries, x, mask, time)
        x = self.norm_feed(x)
        return (x + self.feed(x)) * real
